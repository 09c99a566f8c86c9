package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	paho "github.com/eclipse/paho.golang/paho"

	"github.com/twinflow/twinflow/internal/sink/sinktest"
	"github.com/twinflow/twinflow/internal/testenv"
	"github.com/twinflow/twinflow/test/process"
)

// counterModel is the model of the storm tests' device twins: the last sequence number a
// device sent, and how many of its messages were applied.
var counterModel = map[string]any{
	"@id":      "dtmi:twinflow:e2e:Counter;1",
	"@type":    "Interface",
	"@context": "dtmi:dtdl:context;3",
	"contents": []any{
		map[string]any{"@type": "Property", "name": "seq", "schema": "integer", "writable": true},
		map[string]any{"@type": "Property", "name": "count", "schema": "integer", "writable": true},
	},
}

// stormPause is the pause between two messages of one storm device. 6 devices at under 50
// messages/s each keep what queues in the broker while the server is away, and the backlog
// while it catches up, well under Mosquitto's default max_queued_messages (1000): beyond it,
// Mosquitto drops messages.
const stormPause = 20 * time.Millisecond

// mqttStorm is a set of devices publishing numbered readings at QoS 1 over MQTT 5, each with
// its own "message-id" user property, to topics of one run.
type mqttStorm struct {
	prefix  string
	devices int
	perDev  int           // messages each device sends, numbered 1..perDev
	every   time.Duration // pause between two messages of one device
	poison  map[int]bool  // sequence numbers after which device 0 sends a message that is not JSON

	sent atomic.Int64 // messages the broker acknowledged
}

// deviceID names device i.
func (s *mqttStorm) deviceID(i int) string { return fmt.Sprintf("%s-dev%d", s.prefix, i) }

// setUp creates the model, one twin per device, an mqtt source on sourceURL and the mapping
// that sets each device's twin: seq from the message, count one more than before.
func (s *mqttStorm) setUp(t *testing.T, c *client, sourceURL string) {
	t.Helper()
	c.must(t, http.MethodPost, "/models", []any{counterModel}, http.StatusCreated)
	for i := range s.devices {
		c.must(t, http.MethodPut, twinPath(s.deviceID(i)), map[string]any{
			"$metadata": map[string]any{"$model": "dtmi:twinflow:e2e:Counter;1"}, "seq": 0, "count": 0,
		}, http.StatusOK)
	}
	c.must(t, http.MethodPut, "/sources/devices", map[string]any{
		"sourceType": "mqtt", "url": sourceURL, "topics": []string{s.prefix + "/devices/+/messages/events/"},
		"clientId": s.prefix, "qos": 1,
	}, http.StatusCreated)
	c.must(t, http.MethodPut, "/mappings/counters", map[string]any{
		"source": "devices", "twinId": `message.topic.split("/")[2]`,
		"patch": map[string]string{"/seq": "int(message.body.seq)", "/count": "int(twin.count) + 1"},
	}, http.StatusCreated)
}

// run publishes every device's messages concurrently, directly to broker, and returns when
// the broker acknowledged all of them. It reports failures with t.Error, so it may run in a
// goroutine of its own.
func (s *mqttStorm) run(t *testing.T, broker string) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, s.devices)
	for i := range s.devices {
		wg.Go(func() {
			if err := s.publishDevice(t.Context(), broker, i); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// publishDevice sends device i's messages in order, each once the one before is acknowledged.
func (s *mqttStorm) publishDevice(ctx context.Context, broker string, i int) error {
	u, err := url.Parse(broker)
	if err != nil {
		return err
	}
	conn, err := net.DialTimeout("tcp", u.Host, 10*time.Second)
	if err != nil {
		return fmt.Errorf("connect device %d: %w", i, err)
	}
	cl := paho.NewClient(paho.ClientConfig{Conn: packets.NewThreadSafeConn(conn)})
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if _, err := cl.Connect(ctx, &paho.Connect{ClientID: s.deviceID(i), CleanStart: true, KeepAlive: 30}); err != nil {
		return fmt.Errorf("connect device %d: %w", i, err)
	}
	defer cl.Disconnect(&paho.Disconnect{})
	topic := s.prefix + "/devices/" + s.deviceID(i) + "/messages/events/"
	publish := func(id string, body []byte) error {
		_, err := cl.Publish(ctx, &paho.Publish{QoS: 1, Topic: topic, Payload: body, Properties: &paho.PublishProperties{
			User: []paho.UserProperty{{Key: "message-id", Value: id}},
		}})
		if err != nil {
			return fmt.Errorf("device %d publish %s: %w", i, id, err)
		}
		s.sent.Add(1)
		return nil
	}
	for seq := 1; seq <= s.perDev; seq++ {
		id := s.deviceID(i) + "-" + strconv.Itoa(seq)
		if err := publish(id, fmt.Appendf(nil, `{"seq": %d}`, seq)); err != nil {
			return err
		}
		if i == 0 && s.poison[seq] {
			if err := publish(id+"-poison", []byte(`{"seq": `)); err != nil {
				return err
			}
		}
		time.Sleep(s.every)
	}
	return nil
}

// counter is a device twin as the storm tests read it.
type counter struct {
	Seq   int `json:"seq"`
	Count int `json:"count"`
}

// awaitApplied waits until every device's twin holds its last sequence number, then checks
// that each message was applied exactly once.
func (s *mqttStorm) awaitApplied(t *testing.T, c *client) {
	t.Helper()
	read := func(i int) counter {
		var doc counter
		if err := json.Unmarshal(c.must(t, http.MethodGet, twinPath(s.deviceID(i)), nil, http.StatusOK).body, &doc); err != nil {
			t.Fatal(err)
		}
		return doc
	}
	deadline := time.Now().Add(60 * time.Second)
	for i := range s.devices {
		for read(i).Seq != s.perDev {
			if time.Now().After(deadline) {
				t.Fatalf("device %d's twin is %+v 60s after the storm; want seq %d", i, read(i), s.perDev)
			}
			time.Sleep(50 * time.Millisecond)
		}
		// The mapping counts each application: a message skipped or applied twice shows.
		if got := read(i); got.Count != s.perDev {
			t.Errorf("device %d's twin counted %d messages; want each of its %d applied once", i, got.Count, s.perDev)
		}
	}
}

// sourceStatus reads the status of the source "devices".
func sourceStatus(t *testing.T, c *client) sourceStatusJSON {
	t.Helper()
	var doc struct {
		Status sourceStatusJSON `json:"status"`
	}
	if err := json.Unmarshal(c.must(t, http.MethodGet, "/sources/devices", nil, http.StatusOK).body, &doc); err != nil {
		t.Fatal(err)
	}
	return doc.Status
}

// sourceStatusJSON is the part of a source's status the tests look at.
type sourceStatusJSON struct {
	State        string `json:"state"`
	Applied      int    `json:"applied"`
	DeadLettered int    `json:"deadLettered"`
	LastError    string `json:"lastError"`
}

// awaitState polls the source "devices" until its state is want.
func awaitState(t *testing.T, c *client, want string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		st := sourceStatus(t, c)
		if st.State == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the source's status is %+v after 30s; want state %q", st, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestMQTTStormSurvivesSIGKILL kills `twinflow serve` with SIGKILL while devices publish at
// QoS 1, restarts it on the same data directory, and checks that every message was applied
// exactly once and in each device's order: the broker keeps what was not acknowledged in the
// source's persistent session, and the message ids recorded with each change turn its
// redeliveries into duplicates.
func TestMQTTStormSurvivesSIGKILL(t *testing.T) {
	broker := testenv.Mosquitto(t)
	dir := t.TempDir()
	bin := process.Build(t)
	args := []string{"--listen", "127.0.0.1:0", "--data-dir", filepath.Join(dir, "data")}
	srv := process.Start(t, bin, args...)
	c := newClient(srv.URL, 4)
	s := &mqttStorm{prefix: fmt.Sprintf("storm-%d", time.Now().UnixNano()), devices: 6, perDev: 300, every: stormPause}
	s.setUp(t, c, broker)

	done := make(chan struct{})
	go func() {
		defer close(done)
		s.run(t, broker)
	}()
	for _, at := range []int64{500, 1200} {
		for s.sent.Load() < at {
			time.Sleep(5 * time.Millisecond)
		}
		srv.Kill()
		srv = process.Start(t, bin, args...)
		c = newClient(srv.URL, 4)
	}
	<-done
	s.awaitApplied(t, c)
	if st := sourceStatus(t, c); st.State != "running" || st.DeadLettered != 0 {
		t.Errorf("the source's status is %+v; want running with no dead letters", st)
	}
}

// TestMQTTBrokerOutageDuringStorm cuts the source's connection to the broker while devices
// publish, with a poison message in the middle of one device's stream: the status says
// "reconnecting" until the broker is back and "running" after, the poison message is a dead
// letter with its reason, and every other message is applied exactly once, in order.
func TestMQTTBrokerOutageDuringStorm(t *testing.T) {
	broker := testenv.Mosquitto(t)
	u, err := url.Parse(broker)
	if err != nil {
		t.Fatal(err)
	}
	proxy, err := sinktest.NewProxy(u.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proxy.Close() })
	srv := process.Start(t, process.Build(t), "--listen", "127.0.0.1:0", "--data-dir", filepath.Join(t.TempDir(), "data"))
	c := newClient(srv.URL, 4)
	s := &mqttStorm{prefix: fmt.Sprintf("outage-%d", time.Now().UnixNano()), devices: 6, perDev: 300, every: stormPause,
		poison: map[int]bool{150: true}}
	s.setUp(t, c, "tcp://"+proxy.Addr())
	awaitState(t, c, "running")

	done := make(chan struct{})
	go func() {
		defer close(done)
		s.run(t, broker)
	}()
	for s.sent.Load() < 600 {
		time.Sleep(5 * time.Millisecond)
	}
	proxy.Cut()
	awaitState(t, c, "reconnecting")
	time.Sleep(time.Second) // messages queue in the broker; a reconnection attempt or two fails
	proxy.Restore()
	awaitState(t, c, "running")
	<-done
	s.awaitApplied(t, c)

	var dead struct {
		Value []struct {
			Reason  string `json:"reason"`
			Message struct {
				ID       string `json:"id"`
				BodyText string `json:"bodyText"`
			} `json:"message"`
		} `json:"value"`
	}
	if err := json.Unmarshal(c.must(t, http.MethodGet, "/sources/devices/deadletters", nil, http.StatusOK).body, &dead); err != nil {
		t.Fatal(err)
	}
	if len(dead.Value) != 1 || dead.Value[0].Message.ID != s.deviceID(0)+"-150-poison" || dead.Value[0].Reason == "" {
		t.Fatalf("dead letters = %+v; want the poison message alone, with its reason", dead.Value)
	}
	if st := sourceStatus(t, c); st.DeadLettered != 1 || st.LastError == "" {
		t.Errorf("the source's status is %+v; want one dead letter and the outage's last error", st)
	}
}
