package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/event/cloudevents"
	"github.com/twinflow/twinflow/internal/sink"
	"github.com/twinflow/twinflow/internal/sink/sinktest"
)

const topic = "twin-events"

func cluster(t testing.TB, partitions int32, opts ...kfake.Opt) *kfake.Cluster {
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1), kfake.SeedTopics(partitions, topic)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// receiver consumes the topic from its start.
type receiver struct {
	client *kgo.Client
	buf    []*kgo.Record
}

func newReceiver(t testing.TB, addrs []string, opts ...kgo.Opt) *receiver {
	client, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addrs...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(100 * time.Millisecond)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(client.Close)
	return &receiver{client: client}
}

func (r *receiver) records(ctx context.Context, n int) ([]*kgo.Record, error) {
	for len(r.buf) < n {
		fetches := r.client.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if errs := fetches.Errors(); len(errs) > 0 {
			return nil, errs[0].Err
		}
		r.buf = append(r.buf, fetches.Records()...)
	}
	out := r.buf[:n:n]
	r.buf = r.buf[n:]
	return out, nil
}

func (r *receiver) Receive(ctx context.Context, n int) ([]event.Event, error) {
	recs, err := r.records(ctx, n)
	if err != nil {
		return nil, err
	}
	out := make([]event.Event, len(recs))
	for i, rec := range recs {
		get := func(name string) string {
			for _, h := range rec.Headers {
				if h.Key == name {
					return string(h.Value)
				}
			}
			return ""
		}
		e, err := cloudevents.FromAttributes(func(name string) string { return get("ce_" + name) }, get("content-type"), rec.Value)
		if err != nil {
			return nil, err
		}
		if key := sink.TwinID(&e); string(rec.Key) != key {
			return nil, fmt.Errorf("event %s has key %q, want the twin id %q", e.ID, rec.Key, key)
		}
		out[i] = e
	}
	return out, nil
}

func newSink(t testing.TB, cfg SinkConfig) *Sink {
	s, err := NewSink(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestContract(t *testing.T) {
	sinktest.Run(t, sinktest.Harness{
		New: func(t *testing.T) (sink.Sink, sinktest.Receiver) {
			c := cluster(t, 1)
			return newSink(t, SinkConfig{Brokers: c.ListenAddrs(), Topic: topic}), newReceiver(t, c.ListenAddrs())
		},
		Reject: func(t *testing.T) sink.Sink {
			c := cluster(t, 1, kfake.BrokerConfigs(map[string]string{"message.max.bytes": "64"}))
			return newSink(t, SinkConfig{Brokers: c.ListenAddrs(), Topic: topic})
		},
	})
}

// TestBrokerRestart stops the cluster, checks that Send fails retryably, starts it again on
// the same port and data directory, and checks that the same sink delivers again.
func TestBrokerRestart(t *testing.T) {
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
	s := newSink(t, SinkConfig{Brokers: addrs, Topic: topic})
	defer s.Close()
	before := sinktest.Events("before", 5)
	if err := s.Send(t.Context(), before); err != nil {
		t.Fatal(err)
	}
	c.Close()

	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	err = s.Send(ctx, sinktest.Events("during", 2))
	cancel()
	if err == nil || sink.IsPermanent(err) {
		t.Fatalf("Send while the cluster is down = %v, want a retryable error", err)
	}

	c = start()
	defer c.Close()
	after := sinktest.Events("after", 5)
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
		err := s.Send(ctx, after)
		cancel()
		if err == nil {
			break
		}
		if sink.IsPermanent(err) || time.Now().After(deadline) {
			t.Fatalf("Send after the restart: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	r := newReceiver(t, addrs)
	ctx, cancel = context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	got, err := r.Receive(ctx, len(before))
	if err != nil {
		t.Fatal(err)
	}
	for i := range before {
		if d := sinktest.Equal(got[i], before[i]); d != "" {
			t.Errorf("event %d:%s", i, d)
		}
	}
	// The failed Send may have delivered "during" events; "after" must follow in order.
	var ids []string
	for len(ids) == 0 || ids[len(ids)-1] != after[len(after)-1].ID {
		got, err := r.Receive(ctx, 1)
		if err != nil {
			t.Fatalf("receive after the restart (have %v): %v", ids, err)
		}
		if strings.HasPrefix(got[0].ID, "after-") {
			ids = append(ids, got[0].ID)
		}
	}
	for i, id := range ids {
		if id != after[i].ID {
			t.Fatalf("after the restart got %v, want the after events in order", ids)
		}
	}
}

// TestKeyKeepsTwinOrder sends to four partitions and checks that each twin's events share a
// partition, in order.
func TestKeyKeepsTwinOrder(t *testing.T) {
	c := cluster(t, 4)
	s := newSink(t, SinkConfig{Brokers: c.ListenAddrs(), Topic: topic})
	defer s.Close()
	events := sinktest.Events("keyed", 70)
	if err := s.Send(t.Context(), events); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	recs, err := newReceiver(t, c.ListenAddrs()).records(ctx, len(events))
	if err != nil {
		t.Fatal(err)
	}
	partition := map[string]int32{}
	last := map[string]int{}
	used := map[int32]bool{}
	for _, r := range recs {
		key := string(r.Key)
		if p, ok := partition[key]; ok && p != r.Partition {
			t.Errorf("twin %s in partitions %d and %d", key, p, r.Partition)
		}
		partition[key] = r.Partition
		used[r.Partition] = true
		var id string
		for _, h := range r.Headers {
			if h.Key == "ce_id" {
				id = string(h.Value)
			}
		}
		n, _ := strconv.Atoi(strings.TrimPrefix(id, "keyed-"))
		if prev, ok := last[key]; ok && n < prev {
			t.Errorf("twin %s: event %d after %d", key, n, prev)
		}
		last[key] = n
	}
	if len(partition) != 7 || len(used) < 2 {
		t.Errorf("%d twins over %d partitions, want 7 twins spread over several", len(partition), len(used))
	}
}

func TestSASL(t *testing.T) {
	for _, mech := range []string{Plain, ScramSHA256, ScramSHA512} {
		t.Run(mech, func(t *testing.T) {
			c := cluster(t, 1, kfake.EnableSASL(), kfake.Superuser(mech, "tf", "pw"))
			s := newSink(t, SinkConfig{Brokers: c.ListenAddrs(), Topic: topic, SASL: SASL{Mechanism: mech, User: "tf", Password: "pw"}})
			defer s.Close()
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			if err := s.Send(ctx, sinktest.Events("sasl", 2)); err != nil {
				t.Fatalf("Send with the right password: %v", err)
			}
			// franz-go keeps retrying a refused login, so the failure shows as the deadline.
			bad := newSink(t, SinkConfig{Brokers: c.ListenAddrs(), Topic: topic, SASL: SASL{Mechanism: mech, User: "tf", Password: "wrong"}})
			defer bad.Close()
			ctx, cancel = context.WithTimeout(t.Context(), time.Second)
			defer cancel()
			if err := bad.Send(ctx, sinktest.Events("sasl-bad", 1)); err == nil {
				t.Fatal("Send with a wrong password = nil, want an error")
			}
		})
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		cfg  SinkConfig
		want []string
	}{
		{SinkConfig{Brokers: []string{"h:9092"}, Topic: "t.x-1"}, nil},
		{SinkConfig{Brokers: []string{"ns.servicebus.windows.net:9093"}, Topic: "hub", TLS: sink.TLS{Enabled: true},
			SASL: SASL{Mechanism: Plain, User: "$ConnectionString", Password: "Endpoint=sb://..."}}, nil},
		{SinkConfig{}, []string{"brokers:", "topic: required"}},
		{SinkConfig{Brokers: []string{"nohost"}, Topic: "a/b", SASL: SASL{Mechanism: "GSSAPI"}}, []string{"brokers[0]:", "topic:", "sasl.mechanism:"}},
		{SinkConfig{Brokers: []string{"h:1"}, Topic: "t", SASL: SASL{Mechanism: Plain}}, []string{"sasl.user:"}},
		{SinkConfig{Brokers: []string{"h:1"}, Topic: "t", SASL: SASL{User: "u"}}, []string{"sasl.mechanism:"}},
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
	if r := (SinkConfig{SASL: SASL{Password: "p"}}).Redacted(); r.SASL.Password == "p" {
		t.Error("Redacted kept the password")
	}
}

func TestTLS(t *testing.T) {
	caFile, server := sinktest.ServerTLS(t)
	c := cluster(t, 1, kfake.TLS(server))
	s := newSink(t, SinkConfig{Brokers: c.ListenAddrs(), Topic: topic, TLS: sink.TLS{CAFile: caFile}})
	defer s.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	events := sinktest.Events("tls", 3)
	if err := s.Send(ctx, events); err != nil {
		t.Fatalf("Send over TLS: %v", err)
	}
	tc, err := (sink.TLS{CAFile: caFile}).Config(nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := newReceiver(t, c.ListenAddrs(), kgo.DialTLSConfig(tc)).Receive(ctx, len(events))
	if err != nil {
		t.Fatal(err)
	}
	for i := range events {
		if d := sinktest.Equal(got[i], events[i]); d != "" {
			t.Errorf("event %d:%s", i, d)
		}
	}
}

// TestPublish holds the brokers' answers to produce requests, publishes batches back to
// back, checks that the first is not acknowledged while the answers are held, then releases
// them and checks that the others are acknowledged and each twin's events arrive in order.
// It is Kafka's own: the contract suite holds answers back only through Harness.Proxied,
// which a Kafka client bypasses (it connects to the addresses the brokers advertise), and
// it reads one partition, while here four partitions keep each twin's order across
// pipelined batches.
func TestPublish(t *testing.T) {
	c := cluster(t, 4)
	release := make(chan struct{})
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		c.SleepControl(func() { <-release })
		return nil, nil, false
	})
	s := newSink(t, SinkConfig{Brokers: c.ListenAddrs(), Topic: topic})
	defer s.Close()
	events := sinktest.Events("publish", 90)
	var acks []sink.Ack
	for b := range slices.Chunk(events, 20) {
		ack, err := s.Publish(t.Context(), b)
		if err != nil {
			t.Fatal(err)
		}
		acks = append(acks, ack)
	}
	held, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	err := acks[0](held)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("first Ack while the brokers hold their answers = %v, want the deadline", err)
	}
	close(release)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	// The first batch's records stay in the producer though its Ack gave up.
	for i, ack := range acks[1:] {
		if err := ack(ctx); err != nil {
			t.Fatalf("batch %d: %v", i+1, err)
		}
	}
	recs, err := newReceiver(t, c.ListenAddrs()).records(ctx, len(events))
	if err != nil {
		t.Fatal(err)
	}
	last := map[string]int{}
	for _, r := range recs {
		var id string
		for _, h := range r.Headers {
			if h.Key == "ce_id" {
				id = string(h.Value)
			}
		}
		n, _ := strconv.Atoi(strings.TrimPrefix(id, "publish-"))
		if prev, ok := last[string(r.Key)]; ok && n < prev {
			t.Errorf("twin %s: event %d after %d", r.Key, n, prev)
		}
		last[string(r.Key)] = n
	}
}

// TestPublishRejectedCause checks that the Ack of a batch the brokers refuse fails with the
// brokers' error code (kerr.MessageTooLarge), as Send does. The contract suite checks only
// that both fail permanently.
func TestPublishRejectedCause(t *testing.T) {
	c := cluster(t, 1, kfake.BrokerConfigs(map[string]string{"message.max.bytes": "64"}))
	s := newSink(t, SinkConfig{Brokers: c.ListenAddrs(), Topic: topic})
	defer s.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	sendErr := s.Send(ctx, sinktest.Events("rejected", 3))
	if !errors.Is(sendErr, kerr.MessageTooLarge) {
		t.Fatalf("Send = %v, want %v", sendErr, kerr.MessageTooLarge)
	}
	ack, err := s.Publish(ctx, sinktest.Events("rejected", 3))
	if err != nil {
		t.Fatal(err)
	}
	if err := ack(ctx); !errors.Is(err, kerr.MessageTooLarge) {
		t.Errorf("Ack = %v, want %v as Send gives (%v)", err, kerr.MessageTooLarge, sendErr)
	}
}

// TestClassifyRefusedLogin checks that a refused SASL login is permanent and
// sink.ErrUnauthorized. franz-go retries a refused login until the record delivery timeout
// (30 s), then fails the records with the timeout wrapping the broker's
// SASL_AUTHENTICATION_FAILED, the error built here. (A live refusal would make the test
// wait out that timeout; kfake, besides, closes the connection on a bad password instead of
// answering with that code unless a control function answers for it.)
func TestClassifyRefusedLogin(t *testing.T) {
	refused := fmt.Errorf("%w, last err: %w", kgo.ErrRecordTimeout, kerr.SaslAuthenticationFailed)
	err := classify(fmt.Errorf("produce event %q to %s: %w", "e-1", topic, refused))
	if !sink.IsPermanent(err) || !errors.Is(err, sink.ErrUnauthorized) {
		t.Errorf("classify(refused login) = %v: permanent %v, unauthorized %v", err, sink.IsPermanent(err), errors.Is(err, sink.ErrUnauthorized))
	}
	if err := classify(kerr.MessageTooLarge); errors.Is(err, sink.ErrUnauthorized) || !sink.IsPermanent(err) {
		t.Errorf("classify(MessageTooLarge) = %v, want permanent and not unauthorized", err)
	}
}
