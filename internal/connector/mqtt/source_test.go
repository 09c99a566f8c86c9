package mqtt

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
	paho3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/twinflow/twinflow/internal/ingress"
	"github.com/twinflow/twinflow/internal/ingress/ingresstest"
	"github.com/twinflow/twinflow/internal/sink"
	"github.com/twinflow/twinflow/internal/sink/sinktest"
	"github.com/twinflow/twinflow/internal/testenv"
)

// testExpiry is the session expiry of the tests' MQTT 5 sources, short so that a session a
// test could not remove does not stay on the shared broker for a day.
const testExpiry = Duration(5 * time.Minute)

// waitLong bounds every wait for something a broker should do.
const waitLong = 20 * time.Second

func sourcePrefix() string { return fmt.Sprintf("sourcetest/%d-%d", time.Now().UnixNano(), seq.Add(1)) }

// newSource returns a source of cfg called name, whose session at the broker is removed when
// the test ends.
func newSource(t testing.TB, cfg SourceConfig, name string) *Source {
	t.Helper()
	if cfg.Version != 3 && cfg.SessionExpiry == 0 {
		cfg.SessionExpiry = testExpiry
	}
	s, err := NewSource(cfg, name, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dropSession(t, s) })
	return s
}

// dropSession removes s's session from its broker: it connects with s's client id and a
// clean session that ends with the connection.
func dropSession(t testing.TB, s *Source) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if s.cfg.Version == 3 {
		opts := paho3.NewClientOptions().AddBroker("tcp://" + s.url.Host).SetClientID(s.cfg.ClientID).
			SetProtocolVersion(4).SetCleanSession(true).SetUsername(s.cfg.Username).SetPassword(s.cfg.Password).
			SetCustomOpenConnectionFn(func(*url.URL, paho3.ClientOptions) (net.Conn, error) { return dial(ctx, s.url, s.tls, nil) })
		c := paho3.NewClient(opts)
		if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Logf("remove session %q: %v", s.cfg.ClientID, tok.Error())
			return
		}
		c.Disconnect(100)
		return
	}
	nc, err := dial(ctx, s.url, s.tls, nil)
	if err != nil {
		t.Logf("remove session %q: %v", s.cfg.ClientID, err)
		return
	}
	c := paho.NewClient(paho.ClientConfig{Conn: packets.NewThreadSafeConn(nc)})
	cp := &paho.Connect{ClientID: s.cfg.ClientID, CleanStart: true, KeepAlive: 30,
		UsernameFlag: s.cfg.Username != "", Username: s.cfg.Username,
		PasswordFlag: s.cfg.Password != "", Password: []byte(s.cfg.Password)}
	if _, err := c.Connect(ctx, cp); err != nil {
		t.Logf("remove session %q: %v", s.cfg.ClientID, err)
		return
	}
	_ = c.Disconnect(&paho.Disconnect{})
}

// testPublisher publishes with MQTT 5 and QoS 1, one message after another.
type testPublisher struct {
	c *paho.Client
}

// newPublisher connects a testPublisher to the broker at u.
func newPublisher(t testing.TB, u string) *testPublisher {
	t.Helper()
	bu, err := parseBrokerURL(u, true)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	nc, err := dial(ctx, bu, nil, nil)
	if err != nil {
		t.Fatalf("connect a publisher to %s: %v", u, err)
	}
	c := paho.NewClient(paho.ClientConfig{Conn: packets.NewThreadSafeConn(nc)})
	if _, err := c.Connect(ctx, &paho.Connect{ClientID: "pub-" + randomHex(), CleanStart: true, KeepAlive: 30}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}) })
	return &testPublisher{c: c}
}

// publish sends body to topic with the user properties props (in order of their names).
func (p *testPublisher) publish(t testing.TB, topic string, body []byte, props map[string]string) {
	t.Helper()
	pb := &paho.Publish{QoS: 1, Topic: topic, Payload: body, Properties: &paho.PublishProperties{}}
	for _, k := range slices.Sorted(maps.Keys(props)) {
		pb.Properties.User = append(pb.Properties.User, paho.UserProperty{Key: k, Value: props[k]})
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if _, err := p.c.Publish(ctx, pb); err != nil {
		t.Fatalf("publish to %q: %v", topic, err)
	}
}

func TestSourceContract(t *testing.T) {
	testenv.Mosquitto(t)
	for _, version := range []int{5, 3} {
		t.Run(fmt.Sprintf("v%d", version), func(t *testing.T) {
			var mu sync.Mutex
			cfgs := map[*testing.T]SourceConfig{}
			prefixes := map[*testing.T]string{}
			pub := newPublisher(t, "tcp://"+broker)
			ingresstest.Run(t, ingresstest.Broker{
				NewSource: func(t *testing.T) ingress.Source {
					mu.Lock()
					defer mu.Unlock()
					cfg, ok := cfgs[t]
					if !ok {
						p := sourcePrefix()
						prefixes[t] = p
						cfg = SourceConfig{URL: "tcp://" + broker, Version: version, Topics: []string{p + "/+"}, ClientID: "tf-test-" + randomHex()}
						cfgs[t] = cfg
					}
					return newSource(t, cfg, "contract")
				},
				Publish: func(t *testing.T, msgs []ingresstest.Outgoing) {
					mu.Lock()
					p := prefixes[t]
					mu.Unlock()
					for _, m := range msgs {
						props := maps.Clone(m.Headers)
						if props == nil {
							props = map[string]string{}
						}
						props["message-id"] = m.ID
						pub.publish(t, p+"/"+m.Device, m.Body, props)
					}
				},
				Durable: true,
				Headers: version == 5,
				IDs:     version == 5,
			})
		})
	}
}

// recorder is a Handler that records what a source hands it and settles each message as
// its policy says (nil policy: with nil).
type recorder struct {
	// policy returns the settlement of message m, the nth (from 0) received; errHold leaves
	// it unsettled.
	policy func(m ingress.Message, n int) error

	mu      sync.Mutex
	msgs    []ingress.Message
	states  []ingress.State
	errs    []error
	changed chan struct{}
}

var errHold = errors.New("hold")

func newRecorder(policy func(m ingress.Message, n int) error) *recorder {
	return &recorder{policy: policy, changed: make(chan struct{}, 1)}
}

func (r *recorder) Handle(ctx context.Context, m ingress.Message, settle ingress.Settle) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	r.mu.Lock()
	n := len(r.msgs)
	m.Body = slices.Clone(m.Body)
	m.Headers = maps.Clone(m.Headers)
	r.msgs = append(r.msgs, m)
	r.mu.Unlock()
	r.signal()
	var err error
	if r.policy != nil {
		err = r.policy(m, n)
	}
	if !errors.Is(err, errHold) {
		settle(err)
	}
	return nil
}

func (r *recorder) State(s ingress.State, err error) {
	r.mu.Lock()
	r.states = append(r.states, s)
	r.errs = append(r.errs, err)
	r.mu.Unlock()
	r.signal()
}

func (r *recorder) signal() {
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

// await waits until cond, called with r locked, is true.
func (r *recorder) await(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(waitLong)
	for {
		r.mu.Lock()
		ok := cond()
		r.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-r.changed:
		case <-deadline:
			r.mu.Lock()
			defer r.mu.Unlock()
			t.Fatalf("%s: not after %v (states %v, errors %v, %d messages)", what, waitLong, r.states, r.errs, len(r.msgs))
		}
	}
}

// messages waits for n messages and returns the first n.
func (r *recorder) messages(t testing.TB, n int) []ingress.Message {
	t.Helper()
	r.await(t, fmt.Sprintf("%d messages", n), func() bool { return len(r.msgs) >= n })
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.msgs[:n])
}

// bodies returns the bodies of the messages received so far.
func (r *recorder) bodies() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return bodies(r.msgs)
}

// state waits until the nth state reported from now on (counting from 1) is s.
func (r *recorder) state(t testing.TB, s ingress.State) {
	t.Helper()
	r.mu.Lock()
	from := len(r.states)
	r.mu.Unlock()
	r.await(t, fmt.Sprintf("state %s", s), func() bool { return slices.Contains(r.states[from:], s) })
}

// running is a source's Run in progress.
type running struct {
	cancel context.CancelFunc
	done   chan error
}

// run starts src.Run with r and waits until it reports Running.
func run(t testing.TB, src *Source, r *recorder) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	rn := &running{cancel: cancel, done: make(chan error, 1)}
	go func() { rn.done <- src.Run(ctx, r) }()
	t.Cleanup(func() { rn.stop(t) })
	r.await(t, "running", func() bool { return slices.Contains(r.states, ingress.Running) })
	return rn
}

// stop cancels the run and returns Run's error.
func (rn *running) stop(t testing.TB) error {
	t.Helper()
	rn.cancel()
	select {
	case err := <-rn.done:
		rn.done <- err
		return err
	case <-time.After(waitLong):
		t.Fatalf("Run did not return %v after cancel", waitLong)
		return nil
	}
}

func bodies(ms []ingress.Message) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = string(m.Body)
	}
	return out
}

// TestSourceRedeliversOnError settles a message with an error once: the source has the
// broker deliver it again, with the one after it, without a restart; afterwards nothing is
// delivered again.
func TestSourceRedeliversOnError(t *testing.T) {
	testenv.Mosquitto(t)
	for _, version := range []int{5, 3} {
		t.Run(fmt.Sprintf("v%d", version), func(t *testing.T) {
			p := sourcePrefix()
			cfg := SourceConfig{URL: "tcp://" + broker, Version: version, Topics: []string{p + "/#"}, ClientID: "tf-test-" + randomHex()}
			src := newSource(t, cfg, "redeliver")
			r := newRecorder(func(m ingress.Message, n int) error {
				if n == 1 {
					return errors.New("store unavailable")
				}
				return nil
			})
			rn := run(t, src, r)
			pub := newPublisher(t, "tcp://"+broker)
			for i := range 3 {
				pub.publish(t, p+"/d1", fmt.Appendf(nil, "m%d", i), nil)
			}
			// m2 arrives before the source drops the connection, or after.
			r.await(t, "m2 after m1 again", func() bool {
				b := bodies(r.msgs)
				return len(b) >= 4 && b[len(b)-1] == "m2" && slices.Contains(b[2:len(b)-1], "m1")
			})
			got := r.bodies()
			if want, want2 := []string{"m0", "m1", "m2", "m1", "m2"}, []string{"m0", "m1", "m1", "m2"}; !slices.Equal(got, want) && !slices.Equal(got, want2) {
				t.Fatalf("received %v, want %v or %v", got, want, want2)
			}
			if err := rn.stop(t); err != nil {
				t.Fatal(err)
			}

			r2 := newRecorder(nil)
			run(t, newSource(t, cfg, "redeliver"), r2)
			pub.publish(t, p+"/d1", []byte("after"), nil)
			if got := bodies(r2.messages(t, 1)); got[0] != "after" {
				t.Errorf("after a restart received %q first, want the new message: settled messages came again", got[0])
			}
		})
	}
}

// TestSourceReconnects cuts the connection to the broker with a proxy: the source reports
// Reconnecting, connects again when it can, reports Running, and receives what was published
// meanwhile.
func TestSourceReconnects(t *testing.T) {
	testenv.Mosquitto(t)
	for _, version := range []int{5, 3} {
		t.Run(fmt.Sprintf("v%d", version), func(t *testing.T) {
			proxy, err := sinktest.NewProxy(broker)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = proxy.Close() }) // after the session is removed through it
			p := sourcePrefix()
			src := newSource(t, SourceConfig{URL: "tcp://" + proxy.Addr(), Version: version, Topics: []string{p + "/+"}, ClientID: "tf-test-" + randomHex()}, "reconnect")
			r := newRecorder(nil)
			run(t, src, r)
			pub := newPublisher(t, "tcp://"+broker)
			pub.publish(t, p+"/d1", []byte("before"), nil)
			r.messages(t, 1)

			proxy.Cut()
			r.state(t, ingress.Reconnecting)
			pub.publish(t, p+"/d1", []byte("during"), nil)
			time.Sleep(300 * time.Millisecond) // a failed attempt or two
			proxy.Restore()
			r.state(t, ingress.Running)
			pub.publish(t, p+"/d1", []byte("after"), nil)
			r.await(t, "the message published after", func() bool { return len(r.msgs) > 0 && string(r.msgs[len(r.msgs)-1].Body) == "after" })
			// The PUBACK of "before" may not have reached the broker before the cut: then it
			// comes again (at least once).
			if got, want := slices.Compact(r.bodies()), []string{"before", "during", "after"}; !slices.Equal(got, want) {
				t.Errorf("received %v, want %v, each once or repeated", got, want)
			}
			r.mu.Lock()
			for i, s := range r.states {
				if s == ingress.Reconnecting && r.errs[i] == nil {
					t.Errorf("state %s without its error", s)
				}
			}
			r.mu.Unlock()
		})
	}
}

// TestSourceIoTHubTopics subscribes as a service to IoT Hub style device-to-cloud topics:
// each device's messages are one Order whatever their property bags, which become headers.
func TestSourceIoTHubTopics(t *testing.T) {
	testenv.Mosquitto(t)
	for _, version := range []int{5, 3} {
		t.Run(fmt.Sprintf("v%d", version), func(t *testing.T) {
			dev1, dev2 := "dev-"+randomHex(), "dev-"+randomHex()
			src := newSource(t, SourceConfig{URL: "tcp://" + broker, Version: version, Topics: []string{"devices/+/messages/events/#"}, ClientID: "tf-test-" + randomHex()}, "iothub")
			r := newRecorder(nil)
			run(t, src, r)
			pub := newPublisher(t, "tcp://"+broker)
			sent := []struct{ topic, body string }{
				{"devices/" + dev1 + "/messages/events/", "1"},
				{"devices/" + dev2 + "/messages/events/", "2"},
				{"devices/" + dev1 + "/messages/events/%24.mid=m-3&%24.ct=application%2Fjson&room=r%201", "3"},
				{"devices/" + dev1 + "/messages/events", "4"},
			}
			for _, s := range sent {
				pub.publish(t, s.topic, []byte(s.body), nil)
			}
			// Other tests' devices may publish too: keep ours.
			var got []ingress.Message
			for n := 1; len(got) < len(sent); n++ {
				m := r.messages(t, n)[n-1]
				if strings.Contains(m.Topic, dev1) || strings.Contains(m.Topic, dev2) {
					got = append(got, m)
				}
			}
			for i, m := range got {
				if m.Topic != sent[i].topic || string(m.Body) != sent[i].body {
					t.Fatalf("message %d: %q on %q, want %q on %q", i, m.Body, m.Topic, sent[i].body, sent[i].topic)
				}
			}
			order1 := "devices/" + dev1 + "/messages/events/"
			for _, i := range []int{0, 2, 3} {
				if got[i].Order != order1 {
					t.Errorf("message %d: Order %q, want %q", i, got[i].Order, order1)
				}
			}
			if got[1].Order == order1 || got[1].Order == "" {
				t.Errorf("the other device's Order is %q", got[1].Order)
			}
			want := map[string]string{"$.mid": "m-3", "$.ct": "application/json", "room": "r 1"}
			if !maps.Equal(got[2].Headers, want) || got[2].ID != "m-3" {
				t.Errorf("property bag: headers %v, ID %q; want %v and ID m-3", got[2].Headers, got[2].ID, want)
			}
		})
	}
}

// TestSourceSharedSubscription runs two sources in one shared subscription group: the broker
// splits the messages between them, each to one.
func TestSourceSharedSubscription(t *testing.T) {
	testenv.Mosquitto(t)
	for _, version := range []int{5, 3} {
		t.Run(fmt.Sprintf("v%d", version), func(t *testing.T) {
			p := sourcePrefix()
			topics := []string{"$share/g" + randomHex() + "/" + p + "/+"}
			var rs []*recorder
			for i := range 2 {
				r := newRecorder(nil)
				run(t, newSource(t, SourceConfig{URL: "tcp://" + broker, Version: version, Topics: topics, ClientID: "tf-test-" + randomHex()}, fmt.Sprint("shared", i)), r)
				rs = append(rs, r)
			}
			pub := newPublisher(t, "tcp://"+broker)
			const n = 40
			for i := range n {
				pub.publish(t, fmt.Sprintf("%s/d%d", p, i%4), fmt.Append(nil, i), nil)
			}
			var all []string
			deadline := time.Now().Add(waitLong)
			for len(all) < n && time.Now().Before(deadline) {
				all = all[:0]
				for _, r := range rs {
					all = append(all, r.bodies()...)
				}
				time.Sleep(20 * time.Millisecond)
			}
			slices.Sort(all)
			var want []string
			for i := range n {
				want = append(want, fmt.Sprint(i))
			}
			slices.Sort(want)
			if !slices.Equal(all, want) {
				t.Fatalf("the group received %v, want each of %v once", all, want)
			}
			for i, r := range rs {
				if len(r.bodies()) == 0 {
					t.Errorf("source %d received none of the %d messages", i, n)
				}
			}
		})
	}
}

// TestSourceFormerSubscription restarts a source's session with other topics: messages of
// the session's former subscription are dropped, not handed over.
func TestSourceFormerSubscription(t *testing.T) {
	testenv.Mosquitto(t)
	p := sourcePrefix()
	cfg := SourceConfig{URL: "tcp://" + broker, Topics: []string{p + "/old/+"}, ClientID: "tf-test-" + randomHex()}
	r := newRecorder(nil)
	if err := run(t, newSource(t, cfg, "former"), r).stop(t); err != nil {
		t.Fatal(err)
	}
	cfg.Topics = []string{p + "/new/+"}
	r2 := newRecorder(nil)
	run(t, newSource(t, cfg, "former"), r2)
	pub := newPublisher(t, "tcp://"+broker)
	pub.publish(t, p+"/old/d1", []byte("old"), nil)
	pub.publish(t, p+"/new/d1", []byte("new"), nil)
	if got := bodies(r2.messages(t, 1)); got[0] != "new" {
		t.Errorf("received %q, want only the message of the configured topics", got)
	}
}

// TestSourceRefused checks that refused credentials fail the source: Run reports Failed and
// returns the error.
func TestSourceRefused(t *testing.T) {
	passwd := passwordFile(t, "tf", "s3cret")
	addr := privateBroker(t, "", "allow_anonymous false\npassword_file "+passwd+"\n")
	for _, version := range []int{5, 3} {
		for _, c := range []struct {
			name   string
			cfg    SourceConfig
			want   string
			failed bool
		}{
			{"good", SourceConfig{Username: "tf", Password: "s3cret", Topics: []string{"allowed/+"}}, "", false},
			// Mosquitto answers a wrong password with "not authorized" too.
			{"bad-password", SourceConfig{Username: "tf", Password: "wrong", Topics: []string{"allowed/+"}}, "not authorized", true},
			{"anonymous", SourceConfig{Topics: []string{"allowed/+"}}, "not authorized", true},
		} {
			t.Run(fmt.Sprintf("v%d/%s", version, c.name), func(t *testing.T) {
				cfg := c.cfg
				cfg.URL, cfg.Version, cfg.ClientID = "tcp://"+addr, version, "tf-test-"+randomHex()
				src := newSource(t, cfg, c.name)
				r := newRecorder(nil)
				ctx, cancel := context.WithTimeout(t.Context(), waitLong)
				defer cancel()
				done := make(chan error, 1)
				go func() { done <- src.Run(ctx, r) }()
				if !c.failed {
					r.await(t, "running", func() bool { return slices.Contains(r.states, ingress.Running) })
					cancel()
					if err := <-done; err != nil {
						t.Fatalf("Run: %v", err)
					}
					return
				}
				err := <-done
				if err == nil || !strings.Contains(strings.ToLower(err.Error()), c.want) {
					t.Fatalf("Run = %v, want an error saying %q", err, c.want)
				}
				r.mu.Lock()
				defer r.mu.Unlock()
				if last := r.states[len(r.states)-1]; last != ingress.Failed || r.errs[len(r.errs)-1] == nil {
					t.Errorf("states %v, want Failed with the error last", r.states)
				}
			})
		}
	}
}

// passwordFile writes a Mosquitto password file with user and password.
func passwordFile(t *testing.T, user, password string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "mosquitto-passwd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	passwd := filepath.Join(dir, "passwd")
	if out, err := exec.Command(testenv.Command(t, "mosquitto_passwd"), "-b", "-c", passwd, user, password).CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_passwd: %v\n%s", err, out)
	}
	if err := os.Chmod(passwd, 0o644); err != nil {
		t.Fatal(err)
	}
	return passwd
}

// TestSourceTLS consumes over TLS from a private broker, with its CA; without it the source
// fails on the certificate.
func TestSourceTLS(t *testing.T) {
	files := sinktest.ServerTLSFiles(t)
	addr := privateBroker(t, "cafile "+files.CAFile+"\ncertfile "+files.CertFile+"\nkeyfile "+files.KeyFile+"\n", "allow_anonymous true\n")
	for _, version := range []int{5, 3} {
		t.Run(fmt.Sprintf("v%d", version), func(t *testing.T) {
			src := newSource(t, SourceConfig{URL: "mqtts://" + addr, Version: version, Topics: []string{"allowed/+"}, ClientID: "tf-test-" + randomHex(), TLS: sink.TLS{CAFile: files.CAFile}}, "tls")
			r := newRecorder(nil)
			run(t, src, r)
			pub := publisherTLS(t, addr, files.CAFile)
			pub.publish(t, "allowed/d1", []byte("secret"), nil)
			if got := bodies(r.messages(t, 1)); got[0] != "secret" {
				t.Errorf("received %q", got)
			}

			unknown, err := NewSource(SourceConfig{URL: "ssl://" + addr, Version: version, Topics: []string{"allowed/+"}}, "tls-unknown", slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(t.Context(), waitLong)
			defer cancel()
			if err := unknown.Run(ctx, newRecorder(nil)); err == nil || !strings.Contains(err.Error(), "certificate") {
				t.Errorf("Run against a certificate the system roots do not know = %v, want a certificate failure", err)
			}
		})
	}
}

// publisherTLS connects a publisher over TLS to addr, trusting caFile.
func publisherTLS(t *testing.T, addr, caFile string) *testPublisher {
	t.Helper()
	tc, err := sink.TLS{CAFile: caFile}.Config(nil)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := parseBrokerURL("tls://"+addr, false)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	nc, err := dial(ctx, u, tc, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := paho.NewClient(paho.ClientConfig{Conn: packets.NewThreadSafeConn(nc)})
	if _, err := c.Connect(ctx, &paho.Connect{ClientID: "pub-" + randomHex(), CleanStart: true, KeepAlive: 30}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}) })
	return &testPublisher{c: c}
}

// TestSourceWebSocket consumes over MQTT over WebSocket from a private broker.
func TestSourceWebSocket(t *testing.T) {
	// Mosquitto 2.0 with libwebsockets 4 starts only beside a plain listener.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_, port, _ := net.SplitHostPort(addr)
	ln.Close()
	privateBroker(t, "listener "+port+" 127.0.0.1\nprotocol websockets\n", "allow_anonymous true\n")
	for _, version := range []int{5, 3} {
		t.Run(fmt.Sprintf("v%d", version), func(t *testing.T) {
			src := newSource(t, SourceConfig{URL: "ws://" + addr + "/mqtt", Version: version, Topics: []string{"allowed/#"}, ClientID: "tf-test-" + randomHex()}, "ws")
			r := newRecorder(nil)
			run(t, src, r)
			pub := newPublisher(t, "ws://"+addr)
			// Larger than a frame of Mosquitto's (4 KB), so that messages span frames and
			// reads; much larger ones Mosquitto's websockets send slowly.
			big := strings.Repeat("x", 10<<10)
			for _, b := range []string{"small", big, "last"} {
				pub.publish(t, "allowed/d1", []byte(b), nil)
			}
			if got := bodies(r.messages(t, 3)); got[0] != "small" || got[1] != big || got[2] != "last" {
				t.Errorf("received %d messages of lengths %d, %d, %d", len(got), len(got[0]), len(got[1]), len(got[2]))
			}
		})
	}
}

// TestSourceAddressUnreachable reports Reconnecting, with the error, while the broker
// cannot be reached, and stops when cancelled.
func TestSourceAddressUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	src, err := NewSource(SourceConfig{URL: "tcp://" + addr, Topics: []string{"a/#"}}, "unreachable", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	r := newRecorder(nil)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, r) }()
	r.await(t, "reconnecting", func() bool { return slices.Contains(r.states, ingress.Reconnecting) })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run after cancel = %v", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if want := []ingress.State{ingress.Starting, ingress.Reconnecting}; !slices.Equal(r.states[:2], want) || r.states[len(r.states)-1] != ingress.Stopped {
		t.Errorf("states %v, want %v ... %s", r.states, want, ingress.Stopped)
	}
	if r.errs[1] == nil || !strings.Contains(r.errs[1].Error(), addr) {
		t.Errorf("Reconnecting error %v, want one naming %s", r.errs[1], addr)
	}
}

// TestSourceSubscriptionRefused fails the source whose subscription the broker refuses.
// Mosquitto grants every well-formed subscription (its ACLs filter deliveries instead), so a
// minimal broker of the test's own refuses it.
func TestSourceSubscriptionRefused(t *testing.T) {
	for _, version := range []int{5, 3} {
		t.Run(fmt.Sprintf("v%d", version), func(t *testing.T) {
			addr := refusingBroker(t, version)
			src, err := NewSource(SourceConfig{URL: "tcp://" + addr, Version: version, Topics: []string{"denied/#"}}, "refused", slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			r := newRecorder(nil)
			ctx, cancel := context.WithTimeout(t.Context(), waitLong)
			defer cancel()
			err = src.Run(ctx, r)
			if err == nil || !strings.Contains(err.Error(), `"denied/#" refused`) {
				t.Fatalf("Run = %v, want the refused subscription", err)
			}
			r.mu.Lock()
			defer r.mu.Unlock()
			if want := []ingress.State{ingress.Starting, ingress.Failed}; !slices.Equal(r.states, want) {
				t.Errorf("states %v, want %v", r.states, want)
			}
		})
	}
}

// refusingBroker serves MQTT (version 3 or 5) on a free loopback port just enough to accept
// connections and refuse every subscription of one topic filter, and returns its address.
func refusingBroker(t *testing.T, version int) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	connack, suback := []byte{0x20, 2, 0, 0}, []byte{0x90, 3, 0, 0, 0x80}
	if version == 5 {
		// No properties; SUBACK reason 0x87, not authorized.
		connack, suback = []byte{0x20, 3, 0, 0, 0}, []byte{0x90, 4, 0, 0, 0, 0x87}
	}
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				for {
					typ, body, err := readPacket(c)
					if err != nil {
						return
					}
					var answer []byte
					switch typ >> 4 {
					case 1: // CONNECT
						answer = connack
					case 8: // SUBSCRIBE: answer with its packet id
						answer = slices.Clone(suback)
						copy(answer[2:4], body[:2])
					case 12: // PINGREQ
						answer = []byte{0xD0, 0}
					default:
						return
					}
					if _, err := c.Write(answer); err != nil {
						return
					}
				}
			})
		}
	})
	return ln.Addr().String()
}

// readPacket reads one MQTT control packet: its first byte and what follows its length.
func readPacket(r io.Reader) (byte, []byte, error) {
	var b [1]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return 0, nil, err
	}
	typ := b[0]
	n, shift := 0, 0
	for {
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return 0, nil, err
		}
		n |= int(b[0]&0x7F) << shift
		if b[0]&0x80 == 0 {
			break
		}
		shift += 7
	}
	body := make([]byte, n)
	_, err := io.ReadFull(r, body)
	return typ, body, err
}

// TestSourceMessageFields checks the fields of an MQTT 5 message: the content type among
// the headers, a Message-Id user property in another case as the ID, the topic as Order.
func TestSourceMessageFields(t *testing.T) {
	testenv.Mosquitto(t)
	p := sourcePrefix()
	r := newRecorder(nil)
	run(t, newSource(t, SourceConfig{URL: "tcp://" + broker, Topics: []string{p + "/#"}, ClientID: "tf-test-" + randomHex()}, "fields"), r)
	pub := newPublisher(t, "tcp://"+broker)
	before := time.Now()
	pb := &paho.Publish{QoS: 1, Topic: p + "/room/1", Payload: []byte(`{"t":21}`), Properties: &paho.PublishProperties{
		ContentType: "application/json",
		User:        paho.UserProperties{{Key: "Message-Id", Value: "id-1"}, {Key: "k", Value: "first"}, {Key: "k", Value: "last"}},
	}}
	if _, err := pub.c.Publish(t.Context(), pb); err != nil {
		t.Fatal(err)
	}
	m := r.messages(t, 1)[0]
	want := map[string]string{"content-type": "application/json", "Message-Id": "id-1", "k": "last"}
	if m.ID != "id-1" || m.Topic != p+"/room/1" || m.Order != m.Topic || !maps.Equal(m.Headers, want) || m.Key != "" {
		t.Errorf("message %+v; want ID id-1, Topic and Order %s/room/1, headers %v", m, p, want)
	}
	if m.Time.Before(before) || time.Since(m.Time) > waitLong {
		t.Errorf("Time %v, want when it arrived", m.Time)
	}
}

// TestSourceQoS0 subscribes with QoS 0: messages arrive, nothing is acknowledged, and one
// settled with an error is not delivered again (at most once).
func TestSourceQoS0(t *testing.T) {
	testenv.Mosquitto(t)
	for _, version := range []int{5, 3} {
		t.Run(fmt.Sprintf("v%d", version), func(t *testing.T) {
			p := sourcePrefix()
			qos := 0
			r := newRecorder(func(m ingress.Message, n int) error {
				if n == 0 {
					return errors.New("store unavailable")
				}
				return nil
			})
			run(t, newSource(t, SourceConfig{URL: "tcp://" + broker, Version: version, QoS: &qos, Topics: []string{p + "/+"}, ClientID: "tf-test-" + randomHex()}, "qos0"), r)
			pub := newPublisher(t, "tcp://"+broker)
			for _, b := range []string{"a", "b", "c"} {
				pub.publish(t, p+"/d1", []byte(b), nil)
			}
			r.messages(t, 3)
			pub.publish(t, p+"/d1", []byte("d"), nil)
			r.messages(t, 4)
			if got := r.bodies(); !slices.Equal(got, []string{"a", "b", "c", "d"}) {
				t.Errorf("received %v, want a b c d, each once", got)
			}
		})
	}
}
