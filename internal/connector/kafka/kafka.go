// Package kafka delivers events to Kafka (and Redpanda, and Event Hubs' Kafka endpoint) in
// Event Hubs' role: an idempotent producer with acks=all, the CloudEvents Kafka binding's
// binary mode (ce_* headers, content-type, data as the value), and the twin id as the record
// key, so every event of one twin lands in one partition, in order.
package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/event/cloudevents"
	"github.com/twinflow/twinflow/internal/netpolicy"
	"github.com/twinflow/twinflow/internal/redact"
	"github.com/twinflow/twinflow/internal/sink"
)

// deliveryTimeout bounds how long a record waits in the producer, so an unreachable cluster
// fails a Send even when its context has no deadline.
const deliveryTimeout = 30 * time.Second

// SinkConfig is the settings of a Kafka endpoint.
type SinkConfig struct {
	// Brokers are the seed brokers, host:port.
	Brokers []string `json:"brokers"`
	// Topic receives every event.
	Topic string `json:"topic"`
	// SASL authenticates the connection, if Mechanism is set.
	SASL SASL `json:"sasl,omitzero"`
	// TLS encrypts the connection if Enabled or any file is set. Event Hubs needs it.
	TLS sink.TLS `json:"tls,omitzero"`
	// ClientID names the producer to the brokers; empty means "twinflow".
	ClientID string `json:"clientId,omitempty"`

	// policy checks every connection (see WithPolicy); nil allows any.
	policy *netpolicy.Policy
}

// WithPolicy returns c with every connection to a broker checked against p on the address it
// dials, and the TLS files read only where p allows.
func (c SinkConfig) WithPolicy(p *netpolicy.Policy) SinkConfig {
	c.policy = p
	return c
}

// Reach returns the brokers c dials and the files it reads.
func (c SinkConfig) Reach() netpolicy.Reach { return c.connection().reach() }

// Validate reports every problem with c, each naming its field.
func (c SinkConfig) Validate() error {
	errs := c.connection().validate()
	switch {
	case c.Topic == "":
		errs = append(errs, errors.New("topic: required"))
	case !validTopic(c.Topic):
		errs = append(errs, fmt.Errorf("topic: %q is not a valid Kafka topic name", c.Topic))
	}
	return errors.Join(errs...)
}

func (c SinkConfig) connection() connection {
	return connection{Brokers: c.Brokers, SASL: c.SASL, TLS: c.TLS, ClientID: c.ClientID, policy: c.policy}
}

// Redacted returns c with the SASL password blanked.
func (c SinkConfig) Redacted() SinkConfig {
	if c.SASL.Password != "" {
		c.SASL.Password = redact.Mask
	}
	return c
}

// Sink produces events to one topic. It implements sink.Publisher.
type Sink struct {
	cfg  SinkConfig
	opts []kgo.Opt

	mu     sync.Mutex  // held by Send, Publish and Close
	client *kgo.Client // nil until the first Send, and after a Send gave up waiting
	closed bool
	sent   batch // Send's batch, reused between Sends
}

var _ sink.Publisher = (*Sink)(nil)

// NewSink validates cfg and prepares the producer. It does not contact the brokers: the
// first Send connects.
func NewSink(cfg SinkConfig, log *slog.Logger) (*Sink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("kafka endpoint: %w", err)
	}
	conn, err := cfg.connection().options(log, "kafka endpoint")
	if err != nil {
		return nil, fmt.Errorf("kafka endpoint: %w", err)
	}
	opts := append(conn,
		kgo.DefaultProduceTopic(cfg.Topic),
		kgo.RequiredAcks(kgo.AllISRAcks()), // with the idempotent producer, franz-go's default
		kgo.ProducerLinger(0),
		kgo.RecordDeliveryTimeout(deliveryTimeout),
	)
	// Fail early on options franz-go refuses.
	client, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("kafka endpoint: %w", err)
	}
	return &Sink{cfg: cfg, opts: opts, client: client}, nil
}

// Send produces events and waits until the brokers acknowledged every one. Records of one
// key keep their order; the idempotent producer keeps its own retries from duplicating or
// reordering them. If ctx ends first, Send closes the producer, failing whatever it still
// buffers (so retries of an unreachable cluster do not pile up), and the next Send or Publish
// starts a new one.
func (s *Sink) Send(ctx context.Context, events []event.Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("kafka: send on a closed sink")
	}
	if len(events) == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := s.connect(); err != nil {
		return err
	}
	s.produce(ctx, &s.sent, events)
	select {
	case <-s.sent.done:
	case <-ctx.Done():
		s.client.Close()
		s.client = nil
		<-s.sent.done // Close fails every buffered record
		return fmt.Errorf("produce %d events to %s: %w", len(events), s.cfg.Topic, ctx.Err())
	}
	return s.sent.result(events, s.cfg.Topic)
}

// Publish implements sink.Publisher: it hands events to the producer and returns an Ack
// waiting until the brokers acknowledged every one. Pipelined batches keep each key's order:
// the producer appends the records of every batch to their partitions in the order they were
// produced, and its idempotence keeps up to five produce requests per broker in flight
// without its retries reordering them (the brokers refuse a sequence out of order). A record
// the producer gives up on fails every record buffered after it in its partition, so no later
// record of its key is written before the batch is published or sent again. An Ack whose
// context ends returns without closing the producer: its records stay in the producer until
// the brokers answer or the delivery timeout fails them.
func (s *Sink) Publish(ctx context.Context, events []event.Event) (sink.Ack, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errors.New("kafka: publish on a closed sink")
	}
	if len(events) == 0 {
		return func(context.Context) error { return nil }, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := s.connect(); err != nil {
		return nil, err
	}
	b := new(batch)
	s.produce(ctx, b, events)
	topic := s.cfg.Topic
	return func(ctx context.Context) error {
		select {
		case <-b.done:
			return b.result(events, topic)
		case <-ctx.Done():
			return fmt.Errorf("wait for the acknowledgement of %d events by %s: %w", len(events), topic, ctx.Err())
		}
	}, nil
}

// connect starts the producer if Send closed it or never had one.
func (s *Sink) connect() error {
	if s.client != nil {
		return nil
	}
	client, err := kgo.NewClient(s.opts...)
	if err != nil {
		return fmt.Errorf("kafka endpoint: %w", err)
	}
	s.client = client
	return nil
}

// produce hands the records of events to the producer; b.done closes once every one
// succeeded or failed.
func (s *Sink) produce(ctx context.Context, b *batch, events []event.Event) {
	b.records = b.records[:0]
	for i := range events {
		b.records = append(b.records, Record(&events[i]))
	}
	b.failed, b.err = 0, nil
	b.pending.Store(int64(len(events)))
	b.done = make(chan struct{})
	promise := b.promise
	for i := range b.records {
		s.client.Produce(ctx, &b.records[i], promise)
	}
}

// batch is the records of one Send or Publish and their outcome.
type batch struct {
	records []kgo.Record
	pending atomic.Int64
	done    chan struct{} // closed when pending drops to zero
	// failed is the index of the first record that failed, and err its failure; the
	// producer calls promises one at a time, and they are read once done is closed.
	failed int
	err    error
}

// promise records the outcome of one of b's records.
func (b *batch) promise(r *kgo.Record, err error) {
	if err != nil {
		i := 0
		for &b.records[i] != r {
			i++
		}
		if b.err == nil || i < b.failed {
			b.failed, b.err = i, err
		}
	}
	if b.pending.Add(-1) == 0 {
		close(b.done)
	}
}

// result returns the classified failure of b's first failed record, nil if none failed.
func (b *batch) result(events []event.Event, topic string) error {
	if b.err == nil {
		return nil
	}
	return classify(fmt.Errorf("produce event %q to %s: %w", events[b.failed].ID, topic, b.err))
}

// Record returns the Kafka record of e in the CloudEvents binary binding: key = twin id,
// value = data, ce_* headers and content-type.
func Record(e *event.Event) kgo.Record {
	attrs := cloudevents.Attributes(e)
	id := sink.TwinID(e)
	// One buffer holds the header values and the key.
	size := len(e.DataContentType) + len(id)
	for _, a := range attrs {
		size += len(a.Value)
	}
	buf := make([]byte, 0, size)
	bytesOf := func(v string) []byte {
		buf = append(buf, v...)
		return buf[len(buf)-len(v) : len(buf) : len(buf)]
	}
	headers := make([]kgo.RecordHeader, 0, len(attrs)+1)
	for _, a := range attrs {
		headers = append(headers, kgo.RecordHeader{Key: headerName(a.Name), Value: bytesOf(a.Value)})
	}
	if e.DataContentType != "" {
		headers = append(headers, kgo.RecordHeader{Key: "content-type", Value: bytesOf(e.DataContentType)})
	}
	var key []byte
	if id != "" {
		key = bytesOf(id)
	}
	return kgo.Record{Key: key, Value: e.Data, Headers: headers}
}

// headerName returns the ce_ header of the CloudEvents attribute name, without building it
// for the attributes twinflow sets.
func headerName(name string) string {
	switch name {
	case "id":
		return "ce_id"
	case "source":
		return "ce_source"
	case "specversion":
		return "ce_specversion"
	case "type":
		return "ce_type"
	case "subject":
		return "ce_subject"
	case "time":
		return "ce_time"
	case "dataschema":
		return "ce_dataschema"
	case "traceparent":
		return "ce_traceparent"
	case "tracestate":
		return "ce_tracestate"
	case "telemetrySourceTime":
		return "ce_telemetrySourceTime"
	}
	return "ce_" + name
}

// classify marks the failures that producing again cannot fix as permanent, and refused
// credentials as sink.ErrUnauthorized too; the brokers' answers are redact.Shown.
func classify(err error) error {
	err = answer(err)
	if errors.Is(err, kerr.SaslAuthenticationFailed) {
		return sink.Permanent(sink.Unauthorized(err))
	}
	for _, permanent := range []error{
		kerr.MessageTooLarge, kerr.RecordListTooLarge, kerr.InvalidRecord, kerr.CorruptMessage,
		kerr.TopicAuthorizationFailed, kerr.ClusterAuthorizationFailed, kerr.InvalidTopicException,
		kerr.SaslAuthenticationFailed, kerr.InvalidRequiredAcks, kerr.UnsupportedForMessageFormat,
	} {
		if errors.Is(err, permanent) {
			return sink.Permanent(err)
		}
	}
	return err
}

// Close closes the producer; Send after Close fails.
func (s *Sink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.closed = true
		if s.client != nil {
			s.client.Close()
		}
	}
	return nil
}
