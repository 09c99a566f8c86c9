package outbox

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"slices"
	"strconv"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/twinflow/twinflow/internal/connector/amqp"
	"github.com/twinflow/twinflow/internal/connector/nats"
	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/sink/sinktest"
	"github.com/twinflow/twinflow/internal/testenv"
)

// natsServer is a private nats-server with JetStream, which the test may stop and restart
// on the same port and storage directory without touching the machine's shared broker.
type natsServer struct {
	t    *testing.T
	bin  string
	port int
	dir  string
	cmd  *exec.Cmd
}

// startNATS starts a private nats-server; the program is a prerequisite (see
// testenv.Command).
func startNATS(t *testing.T) *natsServer {
	t.Helper()
	bin := testenv.Command(t, "nats-server")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	s := &natsServer{t: t, bin: bin, port: port, dir: t.TempDir()}
	s.start()
	t.Cleanup(s.stop)
	return s
}

func (s *natsServer) url() string { return "nats://127.0.0.1:" + strconv.Itoa(s.port) }

func (s *natsServer) start() {
	s.t.Helper()
	s.cmd = exec.Command(s.bin, "-a", "127.0.0.1", "-p", strconv.Itoa(s.port), "-js", "-sd", s.dir)
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", s.port), 100*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("nats-server did not start: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *natsServer) stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
}

// TestBrokerDownAndBack delivers to a private NATS JetStream and to a second endpoint; the
// broker is stopped for a while and restarted. Meanwhile the other endpoint gets everything;
// afterwards the stream holds every event once, in log order.
func TestBrokerDownAndBack(t *testing.T) {
	broker := startNATS(t)
	nc, err := natsgo.Connect(broker.url(), natsgo.MaxReconnects(-1), natsgo.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	_, err = js.CreateStream(ctx, jetstream.StreamConfig{Name: "DOWNANDBACK", Subjects: []string{"downandback.>"}, Storage: jetstream.FileStorage})
	if err != nil {
		t.Fatal(err)
	}

	s := openStore(t, t.TempDir())
	addEndpoint(t, s, "nats")
	addEndpoint(t, s, "live")
	fs, err := nats.NewSink(nats.SinkConfig{URL: broker.url(), Subject: "downandback.{id}", Stream: "DOWNANDBACK"}.WithWindow(Window(0)), discard)
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	live := &fakeSink{}
	backoff := Config{MinBackoff: 10 * time.Millisecond, MaxBackoff: 200 * time.Millisecond}
	natsCfg, liveCfg := backoff, backoff
	natsCfg.Endpoint, liveCfg.Endpoint = "nats", "live"
	r := start(t, natsCfg, s, fs, nil, nil)
	start(t, liveCfg, s, live, nil, nil)

	want := ids("e", 300)
	emit(t, s, event.TwinUpdate, want[:100]...)
	eventually(t, "both endpoints have the first 100", func() bool {
		st, err := r.Status(ctx)
		return err == nil && st.Cursor == 100 && len(live.received()) == 100
	})

	broker.stop()
	for i := 100; i < 200; i += 10 {
		emit(t, s, event.TwinUpdate, want[i:i+10]...)
	}
	eventually(t, "the live endpoint gets the events sent while the broker is down", func() bool {
		return len(live.received()) == 200
	})
	eventually(t, "the NATS relay notices", func() bool {
		st, err := r.Status(ctx)
		return err == nil && st.State == StateRetrying && st.LagEvents > 0
	})
	time.Sleep(300 * time.Millisecond) // a few more failed attempts
	broker.start()
	emit(t, s, event.TwinUpdate, want[200:]...)

	eventually(t, "the NATS relay catches up", func() bool {
		st, err := r.Status(ctx)
		return err == nil && st.Cursor == 300
	})
	cons, err := js.OrderedConsumer(ctx, "DOWNANDBACK", jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for len(got) < len(want) {
		batch, err := cons.Fetch(100, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for m := range batch.Messages() {
			got = append(got, m.Headers().Get(natsgo.MsgIdHdr))
			n++
		}
		if n == 0 {
			break
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("the stream holds %d events; want the %d in log order, each once.\ngot %v", len(got), len(want), got)
	}
	if !slices.Equal(live.received(), want) {
		t.Error("the live endpoint's events differ")
	}
}

// TestRabbitMQOutage delivers to the machine's RabbitMQ through a TCP proxy that the test
// cuts for a while (the shared broker itself keeps running): meanwhile another endpoint gets
// everything, and afterwards the queue holds every event in log order (an event may repeat
// only from the batch in flight at the cut).
func TestRabbitMQOutage(t *testing.T) {
	const broker = testenv.RabbitMQAddr
	conn, err := amqp091.Dial(testenv.RabbitMQ(t))
	if err != nil {
		t.Fatalf("connect to RabbitMQ on %s: %v", broker, err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	queue := fmt.Sprintf("outage-%d", time.Now().UnixNano())
	if _, err := ch.QueueDeclare(queue, false, true, false, false, nil); err != nil {
		t.Fatal(err)
	}
	proxy, err := sinktest.NewProxy(broker)
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()

	s := openStore(t, t.TempDir())
	addEndpoint(t, s, "rabbit")
	addEndpoint(t, s, "live")
	fs, err := amqp.NewSink(amqp.SinkConfig{URL: "amqp://guest:guest@" + proxy.Addr() + "/", RoutingKey: queue}, discard)
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	live := &fakeSink{}
	r := start(t, Config{Endpoint: "rabbit", MinBackoff: 10 * time.Millisecond, MaxBackoff: 200 * time.Millisecond}, s, fs, nil, nil)
	start(t, Config{Endpoint: "live"}, s, live, nil, nil)
	ctx := context.Background()

	want := ids("e", 300)
	emit(t, s, event.TwinUpdate, want[:100]...)
	eventually(t, "both endpoints have the first 100", func() bool {
		st, err := r.Status(ctx)
		return err == nil && st.Cursor == 100 && len(live.received()) == 100
	})
	proxy.Cut()
	for i := 100; i < 200; i += 10 {
		emit(t, s, event.TwinUpdate, want[i:i+10]...)
	}
	eventually(t, "the live endpoint gets the events sent during the outage", func() bool {
		return len(live.received()) == 200
	})
	eventually(t, "the RabbitMQ relay notices", func() bool {
		st, err := r.Status(ctx)
		return err == nil && st.State == StateRetrying
	})
	time.Sleep(300 * time.Millisecond)
	proxy.Restore()
	emit(t, s, event.TwinUpdate, want[200:]...)
	eventually(t, "the RabbitMQ relay catches up", func() bool {
		st, err := r.Status(ctx)
		return err == nil && st.Cursor == 300
	})

	msgs, err := ch.Consume(queue, "", true, true, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	timeout := time.After(10 * time.Second)
collect:
	for {
		select {
		case m := <-msgs:
			got = append(got, m.MessageId)
		case <-time.After(500 * time.Millisecond):
			break collect
		case <-timeout:
			break collect
		}
	}
	// Drop repeats of an event already seen (a batch resent after the cut): what is left must
	// be the log, in order.
	seen := make(map[string]bool)
	var unique []string
	for _, id := range got {
		if !seen[id] {
			seen[id] = true
			unique = append(unique, id)
		}
	}
	if !slices.Equal(unique, want) {
		t.Errorf("the queue holds %d events (%d distinct); want the %d in log order", len(got), len(unique), len(want))
	}
	if len(got)-len(unique) > DefaultMaxBatch {
		t.Errorf("%d repeats; at most a batch in flight may repeat", len(got)-len(unique))
	}
}
