package endpoint

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/redact"
	"github.com/twinflow/twinflow/internal/sink"
)

// namedConfig is a connector's settings built with one of an endpoint's credentials, with
// the name of the property holding that credential ("accessKey1",
// "connectionStringPrimaryKey", ...).
type namedConfig[C any] struct {
	name string
	cfg  C
}

// credential is one of a failover's credentials: its name and how to build a sink with it.
type credential struct {
	name  string
	build func() (sink.Sink, error)
}

// failover is the sink of an endpoint with more than one credential, as ADT's endpoints
// have two keys or connection strings so that one can be rotated while the other is in use.
// It sends with the first credential until the destination refuses it
// (sink.ErrUnauthorized), then with the next, and so on in turn.
//
// A refusal is returned as a retryable error, so that the relay sends the batch again with
// the next credential, unless every credential has been refused in a row since the last
// accepted batch: then the refusal is returned as it is (permanent, so the batch is
// dead-lettered), and the next batch starts the round again. With one credential a failover
// is its connector's sink, built on the first send.
type failover struct {
	creds  []credential
	logger *slog.Logger

	// s is the sink of credential cur, nil until built. Only Send, Publish and Close use
	// them, and they never run concurrently.
	s   sink.Sink
	cur int

	// mu guards the fields below, which Acks use concurrently with Publish.
	mu sync.Mutex
	// gen counts the sinks built; an outcome counts for the current sink only.
	gen uint64
	// next is the credential to build the next sink with, -1 while the current one is kept.
	next int
	// refused counts the credentials refused in a row since the last accepted batch.
	refused int
}

// newFailover returns a failover over one sink per settings in cfgs, built with newSink
// when first needed.
func newFailover[C any, S sink.Sink](cfgs []namedConfig[C], newSink func(C, *slog.Logger) (S, error), logger *slog.Logger) (*failover, error) {
	if len(cfgs) == 0 {
		return nil, errors.New("an endpoint needs a credential")
	}
	f := &failover{logger: logger, next: -1}
	for _, c := range cfgs {
		f.creds = append(f.creds, credential{name: c.name, build: func() (sink.Sink, error) {
			return newSink(c.cfg, logger)
		}})
	}
	return f, nil
}

var (
	_ sink.Sink      = (*failover)(nil)
	_ sink.Publisher = (*failoverPublisher)(nil)
)

// sink returns the sink to send with and its generation, first switching credentials if an
// earlier outcome asked to.
func (f *failover) sink() (sink.Sink, uint64, error) {
	f.mu.Lock()
	next := f.next
	f.next = -1
	f.mu.Unlock()
	if next >= 0 && next != f.cur {
		if f.s != nil {
			if err := f.s.Close(); err != nil {
				f.logger.Warn("close the sink of a refused credential", slog.String("credential", f.creds[f.cur].name), slog.Any("err", err))
			}
			f.s = nil
		}
		f.cur = next
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.s == nil {
		s, err := f.creds[f.cur].build()
		if err != nil {
			return nil, 0, fmt.Errorf("build the sink of %s: %w", f.creds[f.cur].name, err)
		}
		f.s = s
		f.gen++
	}
	return f.s, f.gen, nil
}

// outcome records the result err of a send by the sink of generation gen, which used
// credential cur, and returns err as the relay should see it (see failover).
func (f *failover) outcome(gen uint64, cur int, err error) error {
	refusal := errors.Is(err, sink.ErrUnauthorized)
	if len(f.creds) == 1 || (err != nil && !refusal) {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err == nil {
		if gen == f.gen {
			f.refused = 0
		}
		return nil
	}
	next := (cur + 1) % len(f.creds)
	if gen != f.gen || f.next >= 0 {
		// The credential's refusal was counted already; send again with the next one.
		return switchError(f.creds[cur].name, f.creds[next].name, err)
	}
	f.next = next
	f.refused++
	if f.refused >= len(f.creds) {
		f.refused = 0
		return err
	}
	f.logger.Warn("the destination refused a credential; switching to the next",
		slog.String("credential", f.creds[cur].name), slog.String("next", f.creds[next].name), slog.Any("err", err))
	return switchError(f.creds[cur].name, f.creds[next].name, err)
}

// switchError is the retryable error that reports the refusal err of credential name.
func switchError(name, next string, err error) error {
	var p *sink.PermanentError
	if errors.As(err, &p) {
		err = p.Err
	}
	// err's message only: wrapping it would carry its PermanentError along. A refusal is the
	// destination's answer, which status may show.
	return redact.Shown(fmt.Errorf("the destination refused %s, sending with %s next: %s", name, next, err.Error()))
}

// Send implements sink.Sink.
func (f *failover) Send(ctx context.Context, events []event.Event) error {
	s, gen, err := f.sink()
	if err != nil {
		return err
	}
	return f.outcome(gen, f.cur, s.Send(ctx, events))
}

// Close implements sink.Sink.
func (f *failover) Close() error {
	if f.s == nil {
		return nil
	}
	return f.s.Close()
}

// failoverPublisher is the failover of sinks that are sink.Publishers.
type failoverPublisher struct{ *failover }

// Publish implements sink.Publisher.
func (f *failoverPublisher) Publish(ctx context.Context, events []event.Event) (sink.Ack, error) {
	s, gen, err := f.sink()
	if err != nil {
		return nil, err
	}
	cur := f.cur
	ack, err := s.(sink.Publisher).Publish(ctx, events)
	if err != nil {
		return nil, f.outcome(gen, cur, err)
	}
	return func(ctx context.Context) error { return f.outcome(gen, cur, ack(ctx)) }, nil
}
