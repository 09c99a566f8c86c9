package outbox

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/sink"
)

// publishingSink is a fakeSink that is an sink.Publisher: a published batch is accepted, or
// fails, when its Ack is waited for. hold, when not nil, blocks every Ack until it is closed.
type publishingSink struct {
	*fakeSink
	published atomic.Int64 // batches
	events    atomic.Int64 // in the batches published
	hold      chan struct{}
}

var _ sink.Publisher = (*publishingSink)(nil)

func (p *publishingSink) Publish(_ context.Context, events []event.Event) (sink.Ack, error) {
	p.published.Add(1)
	p.events.Add(int64(len(events)))
	events = slices.Clone(events)
	return func(ctx context.Context) error {
		if p.hold != nil {
			select {
			case <-p.hold:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return p.fakeSink.Send(ctx, events)
	}, nil
}

// TestPipelinedRelayPublishesAheadOfAcknowledgements checks that batches are published while
// the first is still unacknowledged, and delivered in order.
func TestPipelinedRelayPublishesAheadOfAcknowledgements(t *testing.T) {
	s := openStore(t, t.TempDir())
	addEndpoint(t, s, "ep")
	ps := &publishingSink{fakeSink: &fakeSink{}, hold: make(chan struct{})}
	start(t, Config{Endpoint: "ep", MaxBatch: 3}, s, ps, nil, nil)
	want := ids("e", 30)
	for i := 0; i < len(want); i += 3 {
		emit(t, s, event.TwinCreate, want[i:i+3]...)
	}
	eventually(t, "several batches are published", func() bool { return ps.published.Load() >= 2 })
	if got := ps.received(); len(got) != 0 {
		t.Fatalf("accepted %v before any acknowledgement", got)
	}
	close(ps.hold)
	eventually(t, "every event is accepted", func() bool { return len(ps.received()) >= len(want) })
	if got := ps.received(); !slices.Equal(got, want) {
		t.Fatalf("accepted %v, want %v", got, want)
	}
	eventually(t, "the cursor reaches the end of the log", func() bool { return cursor(t, s, "ep") == s.Log().Last() })
}

// TestPipelinedRelayBoundsEventsInFlight checks that no more than publishWindow times
// MaxBatch published events await acknowledgement.
func TestPipelinedRelayBoundsEventsInFlight(t *testing.T) {
	s := openStore(t, t.TempDir())
	addEndpoint(t, s, "ep")
	ps := &publishingSink{fakeSink: &fakeSink{}, hold: make(chan struct{})}
	const maxBatch = 2
	start(t, Config{Endpoint: "ep", MaxBatch: maxBatch}, s, ps, nil, nil)
	for i := range 6 {
		emit(t, s, event.TwinCreate, ids(string(rune('a'+i)), 2)...)
	}
	window := int64(publishWindow * maxBatch)
	eventually(t, "the window fills", func() bool { return ps.events.Load() >= window })
	time.Sleep(50 * time.Millisecond)
	if n := ps.events.Load(); n > window {
		t.Errorf("%d events published with none acknowledged, want at most %d", n, window)
	}
	close(ps.hold)
	eventually(t, "every event is accepted", func() bool { return len(ps.received()) == 12 })
}

// TestPipelinedRelayRetriesAFailedBatch checks that a batch whose acknowledgement fails is
// sent again, then the batches published after it, in order.
func TestPipelinedRelayRetriesAFailedBatch(t *testing.T) {
	s := openStore(t, t.TempDir())
	addEndpoint(t, s, "ep")
	failures := 1
	ps := &publishingSink{fakeSink: &fakeSink{}, hold: make(chan struct{})}
	ps.setFail(func(events []event.Event) error {
		if failures > 0 && slices.ContainsFunc(events, func(e event.Event) bool { return e.ID == "e4" }) {
			failures--
			return errors.New("connection reset")
		}
		return nil
	})
	m, err := NewMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	start(t, Config{Endpoint: "ep", MaxBatch: 3, MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond}, s, ps, nil, m)
	want := ids("e", 12)
	for i := 0; i < len(want); i += 3 {
		emit(t, s, event.TwinCreate, want[i:i+3]...)
	}
	eventually(t, "several batches are published", func() bool { return ps.published.Load() >= 2 })
	close(ps.hold)
	eventually(t, "every event is accepted", func() bool { return len(ps.received()) >= len(want) })
	if got := ps.received(); !slices.Equal(got, want) {
		t.Fatalf("accepted %v, want %v", got, want)
	}
	if n := testutil.ToFloat64(m.failed.WithLabelValues("ep")); n != 1 {
		t.Errorf("failed sends = %v, want 1", n)
	}
	eventually(t, "the cursor reaches the end of the log", func() bool { return cursor(t, s, "ep") == s.Log().Last() })
}

// TestPipelinedRelayDeadLettersRejectedEvents checks that a published batch rejected
// permanently is sent event by event and only the rejected event is dead-lettered.
func TestPipelinedRelayDeadLettersRejectedEvents(t *testing.T) {
	s := openStore(t, t.TempDir())
	addEndpoint(t, s, "ep")
	ps := &publishingSink{fakeSink: &fakeSink{}}
	ps.setFail(func(events []event.Event) error {
		if slices.ContainsFunc(events, func(e event.Event) bool { return e.ID == "e2" }) {
			return sink.Permanent(errors.New("message too large"))
		}
		return nil
	})
	start(t, Config{Endpoint: "ep", MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond}, s, ps, nil, nil)
	emit(t, s, event.TwinCreate, ids("e", 5)...)
	emit(t, s, event.TwinCreate, "f")
	want := []string{"e0", "e1", "e3", "e4", "f"}
	eventually(t, "the accepted events are delivered", func() bool { return len(ps.received()) == len(want) })
	if got := ps.received(); !slices.Equal(got, want) {
		t.Errorf("accepted %v, want %v", got, want)
	}
	eventually(t, "the cursor moves past both batches", func() bool { return cursor(t, s, "ep") == 6 })
	if dls := deadLetters(t, s, "ep"); len(dls) != 1 || dls[0].Event.ID != "e2" || dls[0].Attempts != 1 {
		t.Errorf("dead letters %+v, want e2 after 1 attempt", dls)
	}
}

// TestPipelinedRelayExpiresEvents checks that events failing past their TTL are
// dead-lettered, and later events are published again.
func TestPipelinedRelayExpiresEvents(t *testing.T) {
	s := openStore(t, t.TempDir())
	addEndpoint(t, s, "ep")
	ps := &publishingSink{fakeSink: &fakeSink{}}
	ps.setFail(func([]event.Event) error { return errors.New("503 Service Unavailable") })
	start(t, Config{Endpoint: "ep", TTL: 300 * time.Millisecond, MinBackoff: 20 * time.Millisecond, MaxBackoff: 50 * time.Millisecond}, s, ps, nil, nil)
	emit(t, s, event.TwinCreate, "a", "b")
	eventually(t, "the events expire", func() bool { return len(deadLetters(t, s, "ep")) == 2 })
	if d := deadLetters(t, s, "ep")[0]; !strings.HasPrefix(d.Reason, "expired") || d.Attempts < 2 {
		t.Errorf("dead letter %+v: want expired after several attempts", d)
	}
	ps.setFail(nil)
	published := ps.published.Load()
	emit(t, s, event.TwinCreate, "c")
	eventually(t, "c is delivered", func() bool { return slices.Equal(ps.received(), []string{"c"}) })
	if ps.published.Load() == published {
		t.Error("c was sent, not published: the relay did not go back to publishing")
	}
}
