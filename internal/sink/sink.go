// Package sink defines the Sink seam: where routed events leave twinflow. Sinks are dumb:
// retries, backoff, Retry-After, dead letters, cursors and metrics live once, in the relay
// (package outbox). Each technology's sink lives in its connector package
// (internal/connector/<tech>) and passes the contract suite in sink/sinktest against the
// real destination.
package sink

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twinflow/twinflow/internal/event"
)

// Sink delivers events to one destination.
//
// Send returns nil only after the destination accepted every event of the batch, in order.
// On error, some prefix of the batch may have been accepted: the relay sends the whole batch
// again, so destinations see duplicates only from batches in flight (at-least-once). Errors are
// retryable unless marked with Permanent; a RetryAfter error asks the relay to wait. Send is
// never called concurrently on one Sink. Close releases the sink's connections; Send after
// Close fails.
type Sink interface {
	Send(ctx context.Context, events []event.Event) error
	Close() error
}

// Publisher is a Sink that can have several batches in flight. Publish hands events to the
// destination, after every batch published or sent before them, and returns without waiting
// for the destination to accept them; the Ack it returns waits for that. The relay publishes
// the next batches while earlier ones are being acknowledged, so the destination's round trip
// does not hold back the events behind them.
//
// Publish is never called concurrently with itself or Send; Acks may be waited for
// concurrently with Publish. An Ack need not be waited for: a batch whose Ack is dropped must
// not hold the sink's resources for longer than its destination takes to answer or time out.
// Errors are classified as for Send.
type Publisher interface {
	Sink
	Publish(ctx context.Context, events []event.Event) (Ack, error)
}

// Ack waits until the destination accepted every event of a published batch and returns nil,
// or returns the first failure, or ctx's error once ctx ends. It must not be called twice, and
// the events it was published with must not change until it returned.
type Ack func(ctx context.Context) error

// PermanentError marks a failure that retrying cannot fix (a rejected message, HTTP 400, 401,
// 404, ...). The relay dead-letters the events instead of retrying.
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string { return "permanent: " + e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// Permanent wraps err as a PermanentError; a nil err stays nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &PermanentError{Err: err}
}

// IsPermanent reports whether err, or an error it wraps, is a PermanentError.
func IsPermanent(err error) bool {
	var p *PermanentError
	return errors.As(err, &p)
}

// RetryAfterError is a retryable failure whose destination said when to try again (HTTP 429 or
// 503 with Retry-After, a broker's flow control).
type RetryAfterError struct {
	Err   error
	After time.Duration
}

func (e *RetryAfterError) Error() string {
	return e.Err.Error() + " (retry after " + e.After.String() + ")"
}
func (e *RetryAfterError) Unwrap() error { return e.Err }

// ErrUnauthorized is wrapped by the errors of sinks whose destination refused their
// credentials: HTTP 401, a failed SASL exchange, AMQP's unauthorized-access. An endpoint with
// a second credential (ADT's secondary key) switches to it on such an error.
var ErrUnauthorized = errors.New("the destination refused the credentials")

// Unauthorized wraps err so that errors.Is(err, ErrUnauthorized) holds; a nil err stays nil.
func Unauthorized(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%w (%w)", err, ErrUnauthorized)
}
