package kafka

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/twinflow/twinflow/internal/ingress"
	"github.com/twinflow/twinflow/internal/ingress/ingresstest"
	"github.com/twinflow/twinflow/internal/redact"
	"github.com/twinflow/twinflow/internal/sink"
)

func newSource(t testing.TB, cfg SourceConfig, name string) *Source {
	t.Helper()
	s, err := NewSource(cfg, name, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	// Rebalances in tests take a heartbeat, not the default three seconds.
	s.opts = append(s.opts, kgo.HeartbeatInterval(100*time.Millisecond))
	return s
}

// produce writes msgs to topic, each device's with the device as key (one partition, in
// order), or to the partition named by a device "p<n>" when manual is set.
func produce(t testing.TB, addrs []string, msgs []ingresstest.Outgoing, manual bool) {
	t.Helper()
	opts := []kgo.Opt{kgo.SeedBrokers(addrs...), kgo.DefaultProduceTopic(topic)}
	if manual {
		opts = append(opts, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	recs := make([]*kgo.Record, len(msgs))
	for i, o := range msgs {
		r := &kgo.Record{Key: []byte(o.Device), Value: o.Body}
		if manual {
			fmt.Sscanf(o.Device, "p%d", &r.Partition)
		}
		for k, v := range o.Headers {
			r.Headers = append(r.Headers, kgo.RecordHeader{Key: k, Value: []byte(v)})
		}
		recs[i] = r
	}
	if err := cl.ProduceSync(t.Context(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// records returns n records of partition p: ids "p<p>-<i>", bodies the same.
func records(p, n int) []ingresstest.Outgoing {
	out := make([]ingresstest.Outgoing, n)
	for i := range out {
		id := fmt.Sprintf("p%d-%d", p, i)
		out[i] = ingresstest.Outgoing{Device: fmt.Sprintf("p%d", p), Body: []byte(id)}
	}
	return out
}

func bodies(ms []ingress.Message) []string {
	var out []string
	for _, m := range ms {
		out = append(out, string(m.Body))
	}
	return out
}

func TestSourceContract(t *testing.T) {
	var mu sync.Mutex
	clusters := map[testing.TB]*kfake.Cluster{}
	clusterOf := func(t *testing.T) *kfake.Cluster {
		mu.Lock()
		defer mu.Unlock()
		if c, ok := clusters[t]; ok {
			return c
		}
		c := cluster(t, 3)
		clusters[t] = c
		return c
	}
	ingresstest.Run(t, ingresstest.Broker{
		NewSource: func(t *testing.T) ingress.Source {
			return newSource(t, SourceConfig{Brokers: clusterOf(t).ListenAddrs(), Topics: []string{topic}}, "contract")
		},
		Publish: func(t *testing.T, msgs []ingresstest.Outgoing) { produce(t, clusterOf(t).ListenAddrs(), msgs, false) },
		Durable: true,
		Headers: true,
	})
}

// TestSourceMessage checks the fields of a record's message.
func TestSourceMessage(t *testing.T) {
	c := cluster(t, 2)
	r := ingresstest.Start(t, newSource(t, SourceConfig{Brokers: c.ListenAddrs(), Topics: []string{topic}}, "fields"), nil)
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	at := time.UnixMilli(1700000000123)
	for _, rec := range []*kgo.Record{
		{Topic: topic, Partition: 1, Value: []byte("a")},
		{Topic: topic, Partition: 1, Key: []byte("thermostat-1"), Value: []byte(`{"t":21}`), Timestamp: at,
			Headers: []kgo.RecordHeader{{Key: "traceparent", Value: []byte("00-x")}, {Key: "h", Value: []byte("1")}, {Key: "h", Value: []byte("2")}}},
	} {
		if err := cl.ProduceSync(t.Context(), rec).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	m := r.WaitFor(t, 2)[1]
	want := ingress.Message{ID: topic + "/1/1", Topic: topic, Key: "thermostat-1", Headers: map[string]string{"traceparent": "00-x", "h": "2"},
		Body: []byte(`{"t":21}`), Time: at, Order: topic + "/1"}
	if m.ID != want.ID || m.Topic != want.Topic || m.Key != want.Key || fmt.Sprint(m.Headers) != fmt.Sprint(want.Headers) ||
		string(m.Body) != string(want.Body) || !m.Time.Equal(want.Time) || m.Order != want.Order {
		t.Errorf("message\n%+v\nwant\n%+v", m, want)
	}
	r.Stop(t)
}

// TestSourceCommitsSettledPrefix settles records out of order and checks that the group's
// commit is the end of the settled prefix of each partition, never past an unsettled record.
func TestSourceCommitsSettledPrefix(t *testing.T) {
	c := cluster(t, 2)
	addrs := c.ListenAddrs()
	src := newSource(t, SourceConfig{Brokers: addrs, Topics: []string{topic}}, "prefix")
	r := ingresstest.Start(t, src, func(ingress.Message, int) error { return ingresstest.ErrHold })
	produce(t, addrs, records(0, 5), true)
	got := r.WaitFor(t, 5)
	// Settle 0, 1, 3 and 4: the prefix ends at 2.
	for _, i := range []int{0, 1, 3, 4} {
		r.Settle(t, i, nil)
	}
	if n, ok := src.Lag(); !ok || n != 3 {
		t.Errorf("Lag = %d, %v; want 3 (from the unsettled offset 2 to the high watermark 5)", n, ok)
	}
	waitCommitted(t, addrs, "twinflow-prefix", 0, 2, true)
	r.Settle(t, 2, nil)
	waitCommitted(t, addrs, "twinflow-prefix", 0, 5, false)
	if ids := []string{got[0].ID, got[4].ID}; ids[0] != topic+"/0/0" || ids[1] != topic+"/0/4" {
		t.Errorf("ids %v", ids)
	}
	r.Stop(t)
}

// committed returns the committed offset of group for partition p, -1 if none.
func committed(t testing.TB, addrs []string, group string, p int32) int64 {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	req := kmsg.NewPtrOffsetFetchRequest()
	req.Group = group
	rt := kmsg.NewOffsetFetchRequestTopic()
	rt.Topic, rt.Partitions = topic, []int32{p}
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(t.Context(), cl)
	if err != nil {
		t.Fatal(err)
	}
	for _, tp := range resp.Topics {
		for _, part := range tp.Partitions {
			if part.Partition == p {
				return part.Offset
			}
		}
	}
	return -1
}

// waitCommitted waits until group's committed offset of partition p is want; if stays, it
// checks that it stays there for a commit interval.
func waitCommitted(t testing.TB, addrs []string, group string, p int32, want int64, stays bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for committed(t, addrs, group, p) != want {
		if time.Now().After(deadline) {
			t.Fatalf("committed offset of partition %d is %d, want %d", p, committed(t, addrs, group, p), want)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !stays {
		return
	}
	time.Sleep(commitInterval + pollWait)
	if got := committed(t, addrs, group, p); got != want {
		t.Fatalf("committed offset of partition %d moved to %d, want it to stay %d", p, got, want)
	}
}

// TestSourceErrorRewinds settles a record with an error: after ingress.RedeliveryDelay its
// partition is read again from that record; the other partition goes on.
func TestSourceErrorRewinds(t *testing.T) {
	c := cluster(t, 2)
	addrs := c.ListenAddrs()
	var mu sync.Mutex
	failed := false
	r := ingresstest.Start(t, newSource(t, SourceConfig{Brokers: addrs, Topics: []string{topic}}, "rewind"), func(m ingress.Message, i int) error {
		mu.Lock()
		defer mu.Unlock()
		if string(m.Body) == "p0-1" && !failed {
			failed = true
			return errors.New("store unavailable")
		}
		return nil
	})
	produce(t, addrs, records(0, 3), true)
	r.WaitFor(t, 3)
	produce(t, addrs, records(1, 2), true)
	got := r.WaitFor(t, 7)
	var p0, p1 []string
	for _, m := range got {
		if m.Order == topic+"/0" {
			p0 = append(p0, string(m.Body))
		} else {
			p1 = append(p1, string(m.Body))
		}
	}
	if want := []string{"p0-0", "p0-1", "p0-2", "p0-1", "p0-2"}; !slices.Equal(p0, want) {
		t.Errorf("partition 0 delivered %v, want %v", p0, want)
	}
	if want := []string{"p1-0", "p1-1"}; !slices.Equal(p1, want) {
		t.Errorf("partition 1 delivered %v, want %v", p1, want)
	}
	waitCommitted(t, addrs, "twinflow-rewind", 0, 3, false)
	r.Stop(t)
}

// TestSourceRebalanceCommits runs a second member of the group beside the first, which holds
// part of its records: the partition that moves is committed up to its settled prefix before
// it moves, so the second member starts at the first record the first one did not settle.
func TestSourceRebalanceCommits(t *testing.T) {
	c := cluster(t, 2)
	addrs := c.ListenAddrs()
	cfg := SourceConfig{Brokers: addrs, Topics: []string{topic}}
	// The first member settles the first 3 records of each partition and holds the rest.
	var mu sync.Mutex
	seen := map[string]int{}
	r1 := ingresstest.Start(t, newSource(t, cfg, "rebalance"), func(m ingress.Message, i int) error {
		mu.Lock()
		defer mu.Unlock()
		seen[m.Order]++
		if seen[m.Order] <= 3 {
			return nil
		}
		return ingresstest.ErrHold
	})
	produce(t, addrs, append(records(0, 5), records(1, 5)...), true)
	r1.WaitFor(t, 10)

	r2 := ingresstest.Start(t, newSource(t, cfg, "rebalance"), nil)
	got := r2.WaitFor(t, 2)
	order := got[0].Order
	time.Sleep(300 * time.Millisecond)
	got = r2.Received()
	p := order[len(order)-1:]
	if want := []string{"p" + p + "-3", "p" + p + "-4"}; !slices.Equal(bodies(got), want) {
		t.Errorf("second member received %v, want %v: the settled records of the partition that moved came again, or held ones were lost", bodies(got), want)
	}
	r2.Stop(t)
	r1.Stop(t)
}

// TestSourceFails checks the failures retrying cannot fix: a topic that does not exist and a
// refused login.
func TestSourceFails(t *testing.T) {
	c := cluster(t, 1)
	r := ingresstest.Go(t, newSource(t, SourceConfig{Brokers: c.ListenAddrs(), Topics: []string{topic, "no-such-topic"}}, "fails"), nil)
	if err := r.Wait(t); err == nil || !strings.Contains(err.Error(), `topic "no-such-topic" does not exist`) || !redact.IsShown(err) {
		t.Errorf("Run on a missing topic = %v", err)
	}
	if s := r.LastState(); s != ingress.Failed {
		t.Errorf("last state %q, want failed", s)
	}

	c = cluster(t, 1, kfake.EnableSASL(), kfake.Superuser(Plain, "tf", "pw"))
	// kfake closes the connection on a refused login; Kafka answers SASL_AUTHENTICATION_FAILED.
	// refuse is read by the cluster's goroutine while the test changes it.
	var refuse atomic.Bool
	refuse.Store(true)
	c.ControlKey(int16(kmsg.SASLAuthenticate), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if !refuse.Load() {
			return nil, nil, false
		}
		resp := req.ResponseKind().(*kmsg.SASLAuthenticateResponse)
		resp.ErrorCode = kerr.SaslAuthenticationFailed.Code
		return resp, nil, true
	})
	r = ingresstest.Go(t, newSource(t, SourceConfig{Brokers: c.ListenAddrs(), Topics: []string{topic}, SASL: SASL{Mechanism: Plain, User: "tf", Password: "wrong"}}, "fails"), nil)
	if err := r.Wait(t); !permanent(err) || strings.Contains(err.Error(), "wrong") || !redact.IsShown(err) {
		t.Errorf("Run with a wrong password = %v, want a permanent error without the password", err)
	}
	if s := r.LastState(); s != ingress.Failed {
		t.Errorf("last state %q, want failed", s)
	}
	refuse.Store(false)
	ok := ingresstest.Start(t, newSource(t, SourceConfig{Brokers: c.ListenAddrs(), Topics: []string{topic}, SASL: SASL{Mechanism: Plain, User: "tf", Password: "pw"}}, "fails"), nil)
	ok.Stop(t)
}

// TestSourceBrokerRestart stops the cluster under a running source and starts it again on
// the same port and data: the source reports Reconnecting, then Running, and delivers what is
// produced after the restart.
func TestSourceBrokerRestart(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	dir := t.TempDir()
	start := func() *kfake.Cluster {
		c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(port), kfake.DataDir(dir), kfake.SeedTopics(1, topic))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	c := start()
	addrs := c.ListenAddrs()
	r := ingresstest.Start(t, newSource(t, SourceConfig{Brokers: addrs, Topics: []string{topic}}, "restart"), nil)
	produce(t, addrs, records(0, 2), true)
	r.WaitFor(t, 2)
	waitCommitted(t, addrs, "twinflow-restart", 0, 2, false)
	c.Close()
	from := r.WaitState(t, ingress.Reconnecting, 0)
	c = start()
	defer c.Close()
	r.WaitState(t, ingress.Running, from+1)
	produce(t, addrs, records(0, 3)[2:], true)
	got := r.WaitFor(t, 3)
	if b := bodies(got); b[2] != "p0-2" {
		t.Errorf("received %v, want p0-2 third", b)
	}
	r.Stop(t)
}

func TestSourceValidate(t *testing.T) {
	tests := []struct {
		cfg  SourceConfig
		want []string
	}{
		{SourceConfig{Brokers: []string{"h:9092"}, Topics: []string{"t"}}, nil},
		{SourceConfig{Brokers: []string{"ns.servicebus.windows.net:9093"}, Topics: []string{"hub", "b"}, Group: "$Default", Start: StartLatest,
			TLS: sink.TLS{Enabled: true}, SASL: SASL{Mechanism: Plain, User: "$ConnectionString", Password: "Endpoint=sb://..."}}, nil},
		{SourceConfig{}, []string{"brokers:", "topics: at least one"}},
		{SourceConfig{Brokers: []string{"nohost"}, Topics: []string{"a/b"}, Group: strings.Repeat("g", 256), Start: "middle", SASL: SASL{Mechanism: "GSSAPI"}},
			[]string{"brokers[0]:", "topics[0]:", "group:", "start:", "sasl.mechanism:"}},
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
	if r := (SourceConfig{SASL: SASL{Password: "p"}}).Redacted(); r.SASL.Password == "p" {
		t.Error("Redacted kept the password")
	}
}
