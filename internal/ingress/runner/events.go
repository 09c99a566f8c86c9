package runner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/ingress"
	"github.com/twinflow/twinflow/internal/store"
)

// EventsSource is the name of the source whose messages are twinflow's own change events:
// mappings of it propagate changes from twin to twin.
const EventsSource = ingress.EventsSource

// Defaults for EventSourceConfig's zero values.
const (
	// DefaultCursorInterval is the least time between two writes of the event source's
	// cursor.
	DefaultCursorInterval = 100 * time.Millisecond
	// eventReadBatch is the most change log records read at once.
	eventReadBatch = 256
)

// EventSourceConfig configures an EventSource.
type EventSourceConfig struct {
	// Consumer names the source's durable cursor in the store; default EventsSource.
	Consumer string
	// CursorInterval is the least time between two writes of the cursor. Default
	// DefaultCursorInterval.
	CursorInterval time.Duration
	// Message turns an event into the message its mappings see; nil means EventMessage. The
	// source adds the headers the runner needs whatever it returns (see EventSource).
	Message func(event.Event) ingress.Message
}

// EventStore is what an EventSource needs of the store: the change log and a consumer
// cursor.
type EventStore interface {
	store.Delivery
	Log() store.Log
}

// EventSource is the ingress.Source of the change log: it hands each event committed after its
// cursor to the handler as a message, and moves its durable cursor (a log consumer cursor,
// which also holds back the log's pruning) past every event settled with nil, together with
// every event before it. A new cursor starts at the newest event, so only events committed
// after the source first ran are handed over. After a restart the source hands over again the
// events it had not moved its cursor past, which the runner recognises by their ids.
//
// Each message is EventSourceConfig.Message's, to which the source adds the headers
// traceparent and tracestate (where the event has them), so the changes a mapping makes of
// the event continue its trace, DepthHeader, the event's propagation depth, and
// event.HopsAttribute, its hop count when not 0, which the changes made of it keep.
type EventSource struct {
	cfg    EventSourceConfig
	st     EventStore
	logger *slog.Logger

	// mu guards the fields below.
	mu sync.Mutex
	// cursor is the newest seq that it and every seq before it were settled with nil;
	// settled holds the seqs after it settled with nil, failed those settled with an error.
	cursor  uint64
	settled map[uint64]bool
	failed  bool
	stored  uint64
	wake    chan struct{}
}

var _ ingress.Lagger = (*EventSource)(nil)

// NewEventSource returns the source of st's change log.
func NewEventSource(cfg EventSourceConfig, st EventStore, logger *slog.Logger) (*EventSource, error) {
	if cfg.CursorInterval < 0 {
		return nil, fmt.Errorf("event source config: cursorInterval %v is negative", cfg.CursorInterval)
	}
	if cfg.Consumer == "" {
		cfg.Consumer = EventsSource
	}
	if cfg.CursorInterval == 0 {
		cfg.CursorInterval = DefaultCursorInterval
	}
	if cfg.Message == nil {
		cfg.Message = ingress.EventMessage
	}
	return &EventSource{cfg: cfg, st: st, logger: logger, settled: make(map[uint64]bool), wake: make(chan struct{}, 1)}, nil
}

// Open creates the source's cursor at the newest event when there is none, so that every
// event committed after Open returns is handed over by Run. Run does the same itself;
// Open lets the caller fix that moment before Run's goroutine starts.
func (s *EventSource) Open(ctx context.Context) error {
	if _, err := s.load(ctx); err != nil {
		return fmt.Errorf("open the cursor of %s: %w", s.cfg.Consumer, err)
	}
	return nil
}

// Run implements ingress.Source. It fails only when its cursor cannot be read or created.
func (s *EventSource) Run(ctx context.Context, h ingress.Handler) error {
	h.State(ingress.Starting, nil)
	cursor, err := s.load(ctx)
	if err != nil {
		err = fmt.Errorf("load the cursor of %s: %w", s.cfg.Consumer, err)
		h.State(ingress.Failed, err)
		return err
	}
	s.mu.Lock()
	s.cursor, s.stored, s.failed = cursor, cursor, false
	clear(s.settled)
	s.mu.Unlock()
	h.State(ingress.Running, nil)

	var wg sync.WaitGroup
	wg.Go(func() { s.storeCursor(ctx) })
	defer func() {
		wg.Wait()
		// What was settled before the source stopped is not handed over again.
		if err := s.flush(context.WithoutCancel(ctx)); err != nil {
			s.logger.Error("store the cursor of "+s.cfg.Consumer, slog.Any("err", err))
		}
		h.State(ingress.Stopped, nil)
	}()
	after := cursor
	for {
		recs, err := s.st.Log().Read(ctx, after, eventReadBatch)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			// The log is the store's: it fails only when the store closes.
			h.State(ingress.Reconnecting, err)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(time.Second):
			}
			continue
		}
		for _, rec := range recs {
			seq := rec.Seq
			if err := h.Handle(ctx, s.message(rec.Event), func(err error) { s.settle(seq, err) }); err != nil {
				return nil
			}
			after = seq
		}
	}
}

// load returns the stored cursor, creating it at the newest record when there is none.
func (s *EventSource) load(ctx context.Context) (uint64, error) {
	var cursor uint64
	err := s.st.ViewDelivery(ctx, func(r store.DeliveryReader) error {
		var err error
		cursor, err = r.ConsumerCursor(s.cfg.Consumer)
		return err
	})
	if !errors.Is(err, store.ErrNotFound) {
		return cursor, err
	}
	err = s.st.UpdateDelivery(ctx, func(w store.DeliveryWriter) error {
		// Last read inside the write: no record can commit between the read and the cursor.
		cursor = s.st.Log().Last()
		return w.SetConsumerCursor(s.cfg.Consumer, cursor)
	})
	return cursor, err
}

// settle records how the message of record seq was settled.
func (s *EventSource) settle(seq uint64, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		// The cursor stays before seq until the source runs again.
		s.failed = true
		return
	}
	s.settled[seq] = true
	moved := false
	for !s.failed && s.settled[s.cursor+1] {
		delete(s.settled, s.cursor+1)
		s.cursor++
		moved = true
	}
	if moved {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

// storeCursor writes the cursor when it moved, at most once per CursorInterval, until ctx
// ends.
func (s *EventSource) storeCursor(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
		}
		if err := s.flush(ctx); err != nil && ctx.Err() == nil {
			s.logger.Error("store the cursor of "+s.cfg.Consumer, slog.Any("err", err))
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(s.cfg.CursorInterval):
		}
	}
}

// flush writes the cursor if it moved since it was last written.
func (s *EventSource) flush(ctx context.Context) error {
	s.mu.Lock()
	cursor, stored := s.cursor, s.stored
	s.mu.Unlock()
	if cursor == stored {
		return nil
	}
	err := s.st.UpdateDelivery(ctx, func(w store.DeliveryWriter) error {
		return w.SetConsumerCursor(s.cfg.Consumer, cursor)
	})
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.stored = max(s.stored, cursor)
	s.mu.Unlock()
	return nil
}

// Lag implements ingress.Lagger: the change log records after the cursor.
func (s *EventSource) Lag() (int64, bool) {
	s.mu.Lock()
	cursor := s.cursor
	s.mu.Unlock()
	last := s.st.Log().Last()
	if last < cursor {
		return 0, true
	}
	return int64(last - cursor), true
}

// message returns the message of event e: Config.Message's with the headers the runner needs.
func (s *EventSource) message(e event.Event) ingress.Message {
	m := s.cfg.Message(e)
	headers := make(map[string]string, len(m.Headers)+3)
	for k, v := range m.Headers {
		headers[k] = v
	}
	if e.TraceParent != "" {
		headers["traceparent"] = e.TraceParent
		if e.TraceState != "" {
			headers["tracestate"] = e.TraceState
		}
	}
	headers[DepthHeader] = strconv.Itoa(e.Depth)
	if e.Hops > 0 {
		headers[event.HopsAttribute] = strconv.Itoa(e.Hops)
	}
	m.Headers = headers
	return m
}
