package mqtt

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
	paho3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/twinflow/twinflow/internal/ingress"
	"github.com/twinflow/twinflow/internal/testenv"
)

// The shape of BenchmarkSource's load.
const (
	benchDevices = 1000
	// benchWindow bounds the messages published and not yet received, below Mosquitto's
	// default max_queued_messages (1000), beyond which it drops QoS 1 messages of a
	// subscriber that falls behind.
	benchWindow = 500
	// benchPublishers publish concurrently, each for its own devices, over one connection.
	// (Over a connection each, Mosquitto reads their PUBLISH packets faster than the
	// subscriber's PUBACKs, one packet per connection in turn, so its count of the
	// subscriber's unacknowledged messages outgrows the window and it drops messages.)
	benchPublishers = 8
)

// BenchmarkSource measures messages per second from publish to Settle through the source,
// whose handler settles every message at once, with QoS 1 messages from 1,000 devices (one
// topic each) published by 8 concurrent publishers, against paho subscribers doing the same
// work directly: the same persistent session and receive maximum, each message acknowledged
// after the callback that received it returned. It also reports the p99 latency from
// publish to Settle (or to the callback).
func BenchmarkSource(b *testing.B) {
	testenv.Mosquitto(b)
	for _, version := range []int{5, 3} {
		b.Run(fmt.Sprintf("source-v%d", version), func(b *testing.B) {
			p := sourcePrefix()
			src := newSource(b, SourceConfig{URL: "tcp://" + broker, Version: version, Topics: []string{p + "/+"}, ClientID: "tf-bench-" + randomHex()}, "bench")
			l := newBenchLoad(p)
			h := &benchHandler{load: l, running: make(chan struct{})}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- src.Run(ctx, h) }()
			defer func() {
				cancel()
				if err := <-done; err != nil {
					b.Error(err)
				}
			}()
			select {
			case <-h.running:
			case <-time.After(waitLong):
				b.Fatal("source not running")
			}
			l.run(b)
		})
		b.Run(fmt.Sprintf("paho-v%d", version), func(b *testing.B) {
			p := sourcePrefix()
			l := newBenchLoad(p)
			if version == 5 {
				subscribePaho5(b, p+"/+", l)
			} else {
				subscribePaho3(b, p+"/+", l)
			}
			l.run(b)
		})
	}
}

// benchLoad publishes b.N messages, each carrying its number, and waits until every one was
// received.
type benchLoad struct {
	prefix string
	window chan struct{}
	sent   []atomic.Int64 // by message number, when it was published, in Unix nanoseconds
	lat    []time.Duration
	got    atomic.Int64
	all    chan struct{}
	mu     sync.Mutex
	n      int
}

func newBenchLoad(prefix string) *benchLoad {
	return &benchLoad{prefix: prefix, window: make(chan struct{}, benchWindow), all: make(chan struct{})}
}

// received records the arrival of the message with body.
func (l *benchLoad) received(body []byte) {
	i := binary.BigEndian.Uint64(body)
	lat := time.Since(time.Unix(0, l.sent[i].Load()))
	l.mu.Lock()
	l.lat = append(l.lat, lat)
	l.mu.Unlock()
	<-l.window
	if l.got.Add(1) == int64(l.n) {
		close(l.all)
	}
}

// run publishes b.N messages and waits for them.
func (l *benchLoad) run(b *testing.B) {
	pub := newPublisher(b, "tcp://"+broker)
	l.n = b.N
	l.sent = make([]atomic.Int64, b.N)
	l.lat = make([]time.Duration, 0, b.N)
	b.ResetTimer()
	var wg sync.WaitGroup
	for g := range benchPublishers {
		wg.Go(func() {
			// Publisher g sends the messages of devices g, g+8, ... in order.
			for i := g; i < b.N; i += benchPublishers {
				l.window <- struct{}{}
				body := binary.BigEndian.AppendUint64(nil, uint64(i))
				l.sent[i].Store(time.Now().UnixNano())
				pb := &paho.Publish{QoS: 1, Topic: fmt.Sprintf("%s/dev-%d", l.prefix, i%benchDevices), Payload: body}
				if _, err := pub.c.Publish(context.Background(), pb); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	select {
	case <-l.all:
	case <-time.After(waitLong):
		b.Fatalf("received %d of %d messages", l.got.Load(), b.N)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	slices.Sort(l.lat)
	b.ReportMetric(float64(l.lat[len(l.lat)*99/100].Microseconds()), "p99-µs")
}

// benchHandler settles every message at once.
type benchHandler struct {
	load    *benchLoad
	running chan struct{}
	once    sync.Once
}

func (h *benchHandler) Handle(_ context.Context, m ingress.Message, settle ingress.Settle) error {
	settle(nil)
	h.load.received(m.Body)
	return nil
}

func (h *benchHandler) State(s ingress.State, err error) {
	if s == ingress.Running {
		h.once.Do(func() { close(h.running) })
	}
}

// subscribePaho5 subscribes to filter with paho.golang as the MQTT 5 source does, but
// acknowledging each message when the callback returns.
func subscribePaho5(b testing.TB, filter string, l *benchLoad) {
	ctx, cancel := context.WithTimeout(b.Context(), 10*time.Second)
	defer cancel()
	nc, err := net.Dial("tcp", broker)
	if err != nil {
		b.Fatal(err)
	}
	c := paho.NewClient(paho.ClientConfig{
		Conn: packets.NewThreadSafeConn(nc),
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			l.received(pr.Packet.Payload)
			return true, nil
		}},
	})
	id := "tf-bench-" + randomHex()
	expiry, inflight := uint32(300), uint16(DefaultMaxInflight)
	if _, err := c.Connect(ctx, &paho.Connect{ClientID: id, KeepAlive: keepAlive,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry, ReceiveMaximum: &inflight}}); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = c.Disconnect(&paho.Disconnect{})
		dropSession(b, &Source{cfg: SourceConfig{ClientID: id, Version: 5}, url: &url.URL{Scheme: "tcp", Host: broker}})
	})
	if _, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: 1}}}); err != nil {
		b.Fatal(err)
	}
}

// subscribePaho3 subscribes to filter with paho.mqtt.golang as the MQTT 3.1.1 source does,
// but acknowledging each message when the callback returns.
func subscribePaho3(b testing.TB, filter string, l *benchLoad) {
	id := "tf-bench-" + randomHex()
	c := paho3.NewClient(paho3.NewClientOptions().AddBroker("tcp://" + broker).SetClientID(id).
		SetProtocolVersion(4).SetCleanSession(false).SetOrderMatters(true).SetAutoReconnect(false).
		SetKeepAlive(keepAlive * time.Second))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		b.Fatalf("connect: %v", tok.Error())
	}
	b.Cleanup(func() {
		c.Disconnect(100)
		dropSession(b, &Source{cfg: SourceConfig{ClientID: id, Version: 3}, url: &url.URL{Scheme: "tcp", Host: broker}})
	})
	tok := c.Subscribe(filter, 1, func(_ paho3.Client, m paho3.Message) { l.received(m.Payload()) })
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		b.Fatalf("subscribe: %v", tok.Error())
	}
}
