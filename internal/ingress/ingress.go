// Package ingress defines the Source seam: where messages from the user's brokers and HTTP
// pushes enter twinflow, to be turned into twin changes by mappings.
//
// A Source is dumb, like a sink: it connects, subscribes, hands every message it receives to a
// Handler in the order it received them, and settles each message at the broker once the
// Handler says so. Mapping, de-duplication, dead letters, retries of failed writes, metrics and
// status live once, in the Handler (the ingress runner). Each technology's source lives in its
// connector package (internal/connector/<tech>) and passes the contract suite in
// ingress/ingresstest against the real broker.
//
// # At least once
//
// A message is settled at its broker (MQTT PUBACK, Kafka offset commit, JetStream ack, AMQP
// accept or basic.ack) only after the Handler called its Settle with nil, which it does once
// every change the message causes is committed, or once the message is kept as a dead letter.
// A message whose Settle gets an error, or that is never settled before the source stops, is
// delivered again, by the broker or by the source. So a crash anywhere loses nothing; it can
// only repeat messages, which the Handler recognises by Message.ID.
package ingress

import (
	"context"
	"errors"
	"strconv"
	"time"
)

// Message is one message a Source received. A Handler must not modify it.
type Message struct {
	// ID identifies the message for de-duplication, unique within its Source: the MQTT 5
	// or AMQP message id, JetStream's Nats-Msg-Id header, Kafka's
	// "<topic>/<partition>/<offset>", the HTTP source's Message-Id. Empty when the message
	// carries none: it is then applied every time it is delivered.
	ID string
	// Topic is where the message arrived: the MQTT topic, NATS subject, Kafka topic, AMQP
	// address (1.0) or routing key (0-9-1), or the HTTP source's name.
	Topic string
	// Key is the Kafka record key, empty for other kinds.
	Key string
	// Headers are the message's headers: MQTT 5 user properties, Kafka record headers, NATS
	// headers, AMQP application properties (as strings), HTTP request headers (lower-case
	// names). A name that occurs more than once keeps its last value. Nil when there are none.
	Headers map[string]string
	// Body is the payload as received.
	Body []byte
	// Time is when the message was produced, where the broker tells it (Kafka timestamp,
	// JetStream's stored time, AMQP creation time), else when the source received it.
	Time time.Time
	// Order names the sequence the message belongs to: messages with the same Order must be
	// applied in the order they were handed over (they come from one device, partition or
	// topic); messages with different Orders may be applied concurrently. MQTT and NATS use
	// the topic or subject, Kafka "<topic>/<partition>", AMQP the address or queue, HTTP the
	// request.
	Order string
}

// Settle tells the Source what became of a message it handed over. nil: the message's changes
// are committed (or it is kept as a dead letter), so the source acknowledges it at the broker.
// An error: it could not be handled now (the store is failing, twinflow is stopping), so the
// source must let the broker deliver it again (or deliver it again itself). Settle is called
// exactly once per message, from any goroutine, possibly after Run returned (it is then a
// no-op), and must not block.
type Settle func(err error)

// Handler receives a Source's messages.
type Handler interface {
	// Handle takes m, in the order the source received its messages, and returns as soon as
	// it has accepted it; it calls settle later. It blocks while the handler has too many
	// unsettled messages, which is the source's backpressure, and returns ctx's error if ctx
	// ends first (m is then not accepted and settle is never called). Handle is not called
	// concurrently by one Source.
	Handle(ctx context.Context, m Message, settle Settle) error
	// State records the source's connection state, with the error that caused it (nil for
	// Running and Stopped). A source reports Running once it is subscribed and messages can
	// flow, Reconnecting when it lost its broker and is trying again (with backoff), and
	// Failed when it gave up on an error that retrying cannot fix (bad credentials, a topic
	// that does not exist); Run then returns that error.
	State(s State, err error)
}

// State is a source's connection state.
type State string

// The states of a source.
const (
	// Starting: connecting and subscribing for the first time.
	Starting State = "starting"
	// Running: connected and subscribed; messages flow.
	Running State = "running"
	// Reconnecting: the connection was lost; the source is connecting again with backoff.
	Reconnecting State = "reconnecting"
	// Stopped: Run returned because its context ended.
	Stopped State = "stopped"
	// Failed: Run returned because of an error retrying cannot fix.
	Failed State = "failed"
)

// Source consumes one subscription of one broker, or one HTTP push point.
//
// Run connects and subscribes, reports Running, and passes each message to h.Handle until
// ctx ends; then it returns nil after settling at the broker every message whose Settle was
// called with nil before Run returned (so a source started again with the same configuration
// does not see them again), and leaving the others to be delivered again. It reconnects with
// backoff when the broker goes away, reporting Reconnecting, and returns an error only for a
// failure that retrying cannot fix, after reporting Failed. Run is called once per Source.
type Source interface {
	Run(ctx context.Context, h Handler) error
}

// Lagger is a Source that knows how many messages wait for it at the broker (Kafka consumer
// group lag, JetStream pending messages); the runner reports it in the source's status.
type Lagger interface {
	Source
	// Lag returns the number of messages waiting, and false when it is not known yet.
	Lag() (int64, bool)
}

// Change is one twin change a message causes, as a mapping computes it.
type Change struct {
	// TwinID is the twin changed.
	TwinID string
	// Patch is a JSON Patch (RFC 6902) of the twin, in ADT's form, whose add operations create
	// missing parent objects (add-or-replace), so a property need not be initialised first.
	// Empty for a change that only sends telemetry.
	Patch []byte
	// Telemetry, when not nil, is a JSON object sent as the twin's telemetry after the patch.
	Telemetry []byte
	// CreateModel, when not empty, is the model of the twin to create first if it is missing.
	CreateModel string
}

// TwinReader reads a twin's current document for a mapping's read-modify rules. Inside the
// write that applies a message it sees every change committed before it, and the changes of
// earlier messages of the same Order.
type TwinReader interface {
	// Twin returns twin id's JSON document, and false when there is no such twin.
	Twin(id string) (doc []byte, ok bool, err error)
}

// Mapper turns a message into the twin changes it causes (package mapping implements it with
// CEL rules). An error is the message's fault (bad JSON, a rule that fails on it): the message
// becomes a dead letter with the error as its reason, unless it wraps ErrUnavailable. A
// message a rule's condition does not select yields no changes and no error.
type Mapper interface {
	Map(ctx context.Context, m Message, twins TwinReader) ([]Change, error)
}

// ErrUnavailable is wrapped by a Mapper's errors that are not the message's fault: the
// TwinReader or another read failed, or ctx ended. The Handler handles the message again
// later instead of keeping it as a dead letter.
var ErrUnavailable = errors.New("ingress: mapping inputs unavailable")

// DedupID returns the id under which a message with id and hop count hops (see
// event.Event.Hops) is recorded for de-duplication: id itself for a message that never came
// back from twinflow, else id with the count. A message delivered again (by its broker, or by
// a sender retrying) carries the same count and is a duplicate; the same id with a higher
// count is the message coming back around a loop, which is applied again so that the hop
// limit, not the de-duplication, stops the loop: with a dead letter that shows it.
func DedupID(id string, hops int) string {
	if hops == 0 {
		return id
	}
	return id + "\n" + strconv.Itoa(hops)
}
