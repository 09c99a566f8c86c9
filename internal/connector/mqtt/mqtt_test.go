package mqtt

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	paho3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/event/cloudevents"
	"github.com/twinflow/twinflow/internal/sink"
	"github.com/twinflow/twinflow/internal/sink/sinktest"
	"github.com/twinflow/twinflow/internal/testenv"
)

// broker is the Mosquitto server running on this machine, a prerequisite checked by
// testenv.Mosquitto.
const broker = testenv.MosquittoAddr

var seq atomic.Int64

func prefix() string { return fmt.Sprintf("sinktest/%d-%d", time.Now().UnixNano(), seq.Add(1)) }

// message is what a receiver got: the topic and the decoded event.
type message struct {
	topic string
	event event.Event
	err   error
}

type receiver struct {
	msgs   chan message
	topics chan string
}

func (r *receiver) Receive(ctx context.Context, n int) ([]event.Event, error) {
	out := make([]event.Event, 0, n)
	for len(out) < n {
		select {
		case m := <-r.msgs:
			if m.err != nil {
				return out, m.err
			}
			r.topics <- m.topic
			out = append(out, m.event)
		case <-ctx.Done():
			return out, ctx.Err()
		}
	}
	return out, nil
}

// newReceiver5 subscribes with MQTT 5 to filter and decodes binary-mode messages.
func newReceiver5(t testing.TB, filter string) *receiver {
	t.Helper()
	testenv.Mosquitto(t)
	r := &receiver{msgs: make(chan message, 10000), topics: make(chan string, 10000)}
	conn, err := net.Dial("tcp", broker)
	if err != nil {
		t.Fatalf("connect to Mosquitto on %s: %v", broker, err)
	}
	c := paho.NewClient(paho.ClientConfig{Conn: conn, OnPublishReceived: []func(paho.PublishReceived) (bool, error){
		func(pr paho.PublishReceived) (bool, error) {
			p := pr.Packet
			e, err := cloudevents.FromAttributes(p.Properties.User.Get, p.Properties.ContentType, p.Payload)
			r.msgs <- message{topic: p.Topic, event: e, err: err}
			return true, nil
		}}})
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if _, err := c.Connect(ctx, &paho.Connect{ClientID: "rcv-" + randomHex(), CleanStart: true, KeepAlive: 30}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}) })
	if _, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	return r
}

// newReceiver3 subscribes with MQTT 3.1.1 to filter and decodes structured messages.
func newReceiver3(t testing.TB, filter string) *receiver {
	t.Helper()
	testenv.Mosquitto(t)
	r := &receiver{msgs: make(chan message, 10000), topics: make(chan string, 10000)}
	c := paho3.NewClient(paho3.NewClientOptions().AddBroker("tcp://" + broker).SetClientID("rcv-" + randomHex()).SetOrderMatters(true))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect to Mosquitto: %v", tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	tok := c.Subscribe(filter, 1, func(_ paho3.Client, m paho3.Message) {
		var e event.Event
		err := json.Unmarshal(m.Payload(), &e)
		r.msgs <- message{topic: m.Topic(), event: e, err: err}
	})
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	return r
}

func newSink(t testing.TB, cfg SinkConfig) *Sink {
	s, err := NewSink(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestContract(t *testing.T) {
	testenv.Mosquitto(t)
	for _, version := range []int{5, 3} {
		rcv := newReceiver5
		if version == 3 {
			rcv = newReceiver3
		}
		// MQTT 3.1.1 cannot refuse a publish: the broker acknowledges and drops it.
		var reject func(t *testing.T) sink.Sink
		if version == 5 {
			reject = func(t *testing.T) sink.Sink {
				return newSink(t, SinkConfig{URL: "tcp://" + privateBroker(t, "", "allow_anonymous true\n"), Topic: "denied/{twinId}"})
			}
		}
		t.Run(fmt.Sprintf("v%d", version), func(t *testing.T) {
			sinktest.Run(t, sinktest.Harness{
				Reject: reject,
				New: func(t *testing.T) (sink.Sink, sinktest.Receiver) {
					p := prefix()
					r := rcv(t, p+"/#")
					return newSink(t, SinkConfig{URL: "tcp://" + broker, Version: version, Topic: p + "/{type}/{subject}"}), r
				},
				Proxied: func(t *testing.T, proxy func(string) string) (sink.Sink, sinktest.Receiver) {
					p := prefix()
					r := rcv(t, p+"/#")
					return newSink(t, SinkConfig{URL: "tcp://" + proxy(broker), Version: version, Topic: p + "/{twinId}"}), r
				},
				// Mosquitto drops QoS 1 messages beyond 1,000 queued for a subscriber.
				LargeBatch: 900,
			})
		})
	}
}

// privateBroker starts a Mosquitto of the test's own on a free port that lets clients
// (anonymous, or user "tf") publish only below "allowed/", with the extra listener and
// global settings, and returns its address. The program is a prerequisite (see
// testenv.Command).
func privateBroker(t *testing.T, listener, global string) string {
	t.Helper()
	bin := testenv.Command(t, "mosquitto")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_, port, _ := net.SplitHostPort(addr)
	ln.Close()
	// Started as root, mosquitto drops to its own user, which must be able to read the files.
	dir, err := os.MkdirTemp("", "mosquitto")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	acl := filepath.Join(dir, "acl")
	conf := filepath.Join(dir, "mosquitto.conf")
	if err := os.WriteFile(acl, []byte("topic readwrite allowed/#\nuser tf\ntopic readwrite allowed/#\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(conf, []byte("listener "+port+" 127.0.0.1\n"+listener+global+"persistence false\nacl_file "+acl+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd := exec.Command(bin, "-c", conf)
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start a private mosquitto: %v", err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return addr
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			_ = cmd.Wait() // before reading stderr, which the process's copier writes
			t.Fatalf("private mosquitto does not listen on %s: %v\n%s", addr, err, stderr.String())
		}
	}
}

// TestNotAuthorized checks that an MQTT 5 PUBACK refusing the publish (0x87, not
// authorized) is a permanent failure.
func TestNotAuthorized(t *testing.T) {
	addr := privateBroker(t, "", "allow_anonymous true\n")
	ok := newSink(t, SinkConfig{URL: "tcp://" + addr, Topic: "allowed/{twinId}"})
	defer ok.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := ok.Send(ctx, sinktest.Events("allowed", 2)); err != nil {
		t.Fatalf("Send to an allowed topic: %v", err)
	}
	denied := newSink(t, SinkConfig{URL: "tcp://" + addr, Topic: "denied/{twinId}"})
	defer denied.Close()
	err := denied.Send(ctx, sinktest.Events("denied", 2))
	if !sink.IsPermanent(err) {
		t.Fatalf("Send to a denied topic = %v, want a permanent error", err)
	}
}

// TestPassword publishes to a private broker that requires a user and password.
func TestPassword(t *testing.T) {
	dir, err := os.MkdirTemp("", "mosquitto-passwd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	passwd := filepath.Join(dir, "passwd")
	if out, err := exec.Command(testenv.Command(t, "mosquitto_passwd"), "-b", "-c", passwd, "tf", "s3cret").CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_passwd: %v\n%s", err, out)
	}
	if err := os.Chmod(passwd, 0o644); err != nil {
		t.Fatal(err)
	}
	addr := privateBroker(t, "", "allow_anonymous false\npassword_file "+passwd+"\n")
	for _, version := range []int{5, 3} {
		t.Run(fmt.Sprintf("v%d", version), func(t *testing.T) {
			for _, c := range []struct {
				password string
				good     bool
			}{{"s3cret", true}, {"wrong", false}} {
				s := newSink(t, SinkConfig{URL: "tcp://" + addr, Version: version, Topic: "allowed/{twinId}", Username: "tf", Password: c.password})
				ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
				err := s.Send(ctx, sinktest.Events("passwd", 2))
				cancel()
				s.Close()
				if (err == nil) != c.good {
					t.Errorf("Send with password %q = %v, want success %v", c.password, err, c.good)
				}
			}
		})
	}
}

// TestTLS publishes over TLS to a private broker, with and without its CA.
func TestTLS(t *testing.T) {
	files := sinktest.ServerTLSFiles(t)
	addr := privateBroker(t, "cafile "+files.CAFile+"\ncertfile "+files.CertFile+"\nkeyfile "+files.KeyFile+"\n", "allow_anonymous true\n")
	for _, version := range []int{5, 3} {
		t.Run(fmt.Sprintf("v%d", version), func(t *testing.T) {
			ok := newSink(t, SinkConfig{URL: "mqtts://" + addr, Version: version, Topic: "allowed/{twinId}", TLS: sink.TLS{CAFile: files.CAFile}})
			defer ok.Close()
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			if err := ok.Send(ctx, sinktest.Events("tls", 2)); err != nil {
				t.Fatalf("Send over TLS with the CA: %v", err)
			}
			unknown := newSink(t, SinkConfig{URL: "ssl://" + addr, Version: version, Topic: "allowed/{twinId}"})
			defer unknown.Close()
			ctx, cancel = context.WithTimeout(t.Context(), time.Second)
			defer cancel()
			if err := unknown.Send(ctx, sinktest.Events("tls-unknown", 1)); err == nil {
				t.Fatal("Send to a broker whose certificate the system roots do not know succeeded")
			}
		})
	}
}

func TestTopics(t *testing.T) {
	p := prefix()
	r := newReceiver5(t, p+"/#")
	s := newSink(t, SinkConfig{URL: "mqtt://" + broker, Topic: p + "/{type}/{subject}"})
	defer s.Close()
	events := sinktest.Events("topic", 3)
	events[0].Subject = "room+1#"
	if err := s.Send(t.Context(), events); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if _, err := r.Receive(ctx, 3); err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{
		p + "/Microsoft.DigitalTwins.Twin.Update/room_1_",
		p + "/Microsoft.DigitalTwins.Relationship.Create/twin-1/relationships/rel-1",
		p + "/microsoft.iot.telemetry/thermostat",
	} {
		if got := <-r.topics; got != want {
			t.Errorf("event %d topic %q, want %q", i, got, want)
		}
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		cfg  SinkConfig
		want []string
	}{
		{SinkConfig{URL: "tcp://h:1883"}, nil},
		{SinkConfig{URL: "mqtts://h", Version: 3, Topic: "a/{twinId}", Username: "u", Password: "p"}, nil},
		{SinkConfig{}, []string{"url: required"}},
		{SinkConfig{URL: "http://h", Topic: "a/+/{id}", Version: 4}, []string{"url:", "topic:", "version:"}},
		{SinkConfig{URL: "tcp://h", Topic: "{bad}"}, []string{"topic:"}},
		{SinkConfig{URL: "tcp://h", Version: 3, Password: "p"}, []string{"password:"}},
	}
	for _, tt := range tests {
		err := tt.cfg.Validate()
		if (err == nil) != (len(tt.want) == 0) {
			t.Errorf("Validate(%+v) = %v, want %v", tt.cfg, err, tt.want)
			continue
		}
		for _, w := range tt.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("Validate(%+v) = %v, want it to mention %q", tt.cfg, err, w)
			}
		}
	}
	if r := (SinkConfig{Password: "p"}).Redacted(); r.Password == "p" {
		t.Error("Redacted kept the password")
	}
}

func TestBrokerURL(t *testing.T) {
	for in, want := range map[string]string{
		"tcp://h":        "tcp://h:1883",
		"mqtt://h:1884":  "tcp://h:1884",
		"ssl://h":        "tls://h:8883",
		"mqtts://h:8884": "tls://h:8884",
	} {
		u, err := brokerURL(in)
		if err != nil || u.String() != want {
			t.Errorf("brokerURL(%q) = %v, %v; want %s", in, u, err, want)
		}
	}
}
