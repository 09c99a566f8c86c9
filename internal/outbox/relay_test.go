package outbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/sink"
	"github.com/twinflow/twinflow/internal/store"
	"github.com/twinflow/twinflow/internal/store/sqlite"
)

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

func openStore(t *testing.T, dir string) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(sqlite.Config{Dir: dir, NoSync: true}, discard)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func addEndpoint(t *testing.T, s store.Delivery, name string) {
	t.Helper()
	err := s.UpdateDelivery(context.Background(), func(w store.DeliveryWriter) error {
		return w.PutEndpoint(store.Endpoint{Name: name, Config: json.RawMessage(`{}`), Created: time.Now()})
	})
	if err != nil {
		t.Fatal(err)
	}
}

// emit commits one event per id, of type t, in one Update.
func emit(t *testing.T, s store.Store, typ string, ids ...string) {
	t.Helper()
	err := s.Update(context.Background(), func(w store.Writer) error {
		for _, id := range ids {
			e := event.Event{ID: id, Source: "test", SpecVersion: "1.0", Type: typ, Subject: "twin-" + id,
				DataContentType: "application/json", Data: json.RawMessage(`{"id":"` + id + `"}`)}
			if err := w.Emit(e); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func ids(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%d", prefix, i)
	}
	return out
}

// fakeSink records what it accepted. fail, when set, is asked first about every batch.
type fakeSink struct {
	mu    sync.Mutex
	got   []string
	sends int
	fail  func(events []event.Event) error
}

func (f *fakeSink) Send(_ context.Context, events []event.Event) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sends++
	if f.fail != nil {
		if err := f.fail(events); err != nil {
			return err
		}
	}
	for _, e := range events {
		f.got = append(f.got, e.ID)
	}
	return nil
}

func (f *fakeSink) Close() error { return nil }

func (f *fakeSink) setFail(fn func([]event.Event) error) {
	f.mu.Lock()
	f.fail = fn
	f.mu.Unlock()
}

func (f *fakeSink) received() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.got)
}

var _ sink.Sink = (*fakeSink)(nil)

// eventually fails the test unless cond holds within 10 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// start runs a relay until the test ends.
func start(t *testing.T, cfg Config, s Store, fs sink.Sink, match func(*event.Event) bool, m *Metrics) *Relay {
	t.Helper()
	if match == nil {
		match = func(*event.Event) bool { return true }
	}
	r, err := New(cfg, s, fs, match, m, discard)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return r
}

func deadLetters(t *testing.T, s store.Delivery, endpoint string) []store.DeadLetter {
	t.Helper()
	var dls []store.DeadLetter
	err := s.ViewDelivery(context.Background(), func(r store.DeliveryReader) error {
		var err error
		dls, err = r.DeadLetters(endpoint, 0, 0)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return dls
}

func cursor(t *testing.T, s store.Delivery, endpoint string) uint64 {
	t.Helper()
	var c uint64
	err := s.ViewDelivery(context.Background(), func(r store.DeliveryReader) error {
		var err error
		c, err = r.Cursor(endpoint)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestRelayDeliversRoutedEventsInOrder(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	emit(t, s, event.TwinCreate, "before") // committed before the endpoint: not delivered
	addEndpoint(t, s, "ep")
	fs := &fakeSink{}
	onlyCreates := func(e *event.Event) bool { return e.Type == event.TwinCreate }
	start(t, Config{Endpoint: "ep", MaxBatch: 7}, s, fs, onlyCreates, nil)
	want := ids("c", 50)
	for i := 0; i < len(want); i += 10 {
		emit(t, s, event.TwinCreate, want[i:i+10]...)
		emit(t, s, event.Telemetry, "t"+want[i])
	}
	eventually(t, "every create is delivered", func() bool { return len(fs.received()) >= len(want) })
	if got := fs.received(); !slices.Equal(got, want) {
		t.Fatalf("delivered %v, want %v", got, want)
	}
	eventually(t, "the cursor reaches the end of the log", func() bool { return cursor(t, s, "ep") == s.Log().Last() })
}

func TestRelayResumesFromItsCursor(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	addEndpoint(t, s, "ep")
	fs := &fakeSink{}
	r, err := New(Config{Endpoint: "ep"}, s, fs, func(*event.Event) bool { return true }, nil, discard)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	emit(t, s, event.TwinCreate, "a", "b")
	eventually(t, "a and b are delivered", func() bool { return len(fs.received()) == 2 })
	eventually(t, "the relay is past b", func() bool {
		st, err := r.Status(context.Background())
		return err == nil && st.Cursor == 2
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// Stopping stores the progress the background writer had not stored yet.
	if c := cursor(t, s, "ep"); c != 2 {
		t.Fatalf("stored cursor after stop = %d, want 2", c)
	}
	emit(t, s, event.TwinCreate, "c")
	start(t, Config{Endpoint: "ep"}, s, fs, nil, nil)
	eventually(t, "c is delivered", func() bool { return len(fs.received()) == 3 })
	if got := fs.received(); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Errorf("delivered %v, want a b c: each once", got)
	}
}

func TestStatusOfRelayNotRunningIsTheStoredCursor(t *testing.T) {
	s := openStore(t, t.TempDir())
	emit(t, s, event.TwinCreate, "a", "b")
	addEndpoint(t, s, "ep") // a new endpoint starts after the records committed before it
	emit(t, s, event.TwinCreate, "c")
	r, err := New(Config{Endpoint: "ep"}, s, &fakeSink{}, func(*event.Event) bool { return true }, nil, discard)
	if err != nil {
		t.Fatal(err)
	}
	st, err := r.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.State != StateStopped || st.Cursor != 2 || st.LagEvents != 1 {
		t.Errorf("status before Run = %+v, want stopped at cursor 2 with 1 event of lag", st)
	}
}

func TestRelayRetriesTransientFailures(t *testing.T) {
	s := openStore(t, t.TempDir())
	addEndpoint(t, s, "ep")
	failures := 3
	fs := &fakeSink{}
	fs.setFail(func([]event.Event) error {
		if failures > 0 {
			failures--
			return errors.New("connection refused")
		}
		return nil
	})
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	r := start(t, Config{Endpoint: "ep", MinBackoff: time.Millisecond, MaxBackoff: 4 * time.Millisecond}, s, fs, nil, m)
	emit(t, s, event.TwinCreate, ids("e", 5)...)
	eventually(t, "the events are delivered", func() bool { return len(fs.received()) == 5 })
	if got := fs.received(); !slices.Equal(got, ids("e", 5)) {
		t.Errorf("delivered %v", got)
	}
	if n := testutil.ToFloat64(m.failed.WithLabelValues("ep")); n != 3 {
		t.Errorf("failed sends = %v, want 3", n)
	}
	if n := testutil.ToFloat64(m.retried.WithLabelValues("ep")); n != 3 {
		t.Errorf("retries = %v, want 3", n)
	}
	if n := testutil.ToFloat64(m.delivered.WithLabelValues("ep")); n != 5 {
		t.Errorf("delivered = %v, want 5", n)
	}
	eventually(t, "the lag is 0", func() bool {
		st, err := r.Status(context.Background())
		return err == nil && st.LagEvents == 0 && st.State == StateDelivering
	})
	st, _ := r.Status(context.Background())
	if st.LastError != "connection refused" || st.LastErrorTime.IsZero() {
		t.Errorf("status %+v, want the last error kept", st)
	}
	if len(deadLetters(t, s, "ep")) != 0 {
		t.Error("transient failures were dead-lettered")
	}
}

func TestRelayHonoursRetryAfter(t *testing.T) {
	s := openStore(t, t.TempDir())
	addEndpoint(t, s, "ep")
	var failedAt, retriedAt time.Time
	fs := &fakeSink{}
	fs.setFail(func([]event.Event) error {
		if failedAt.IsZero() {
			failedAt = time.Now()
			return &sink.RetryAfterError{Err: errors.New("429 Too Many Requests"), After: 300 * time.Millisecond}
		}
		retriedAt = time.Now()
		return nil
	})
	start(t, Config{Endpoint: "ep", MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond}, s, fs, nil, nil)
	emit(t, s, event.TwinCreate, "a")
	eventually(t, "a is delivered", func() bool { return len(fs.received()) == 1 })
	fs.mu.Lock()
	waited := retriedAt.Sub(failedAt)
	fs.mu.Unlock()
	if waited < 300*time.Millisecond {
		t.Errorf("retried after %v, want at least the 300ms Retry-After", waited)
	}
}

func TestRelayDeadLettersRejectedEventsOnly(t *testing.T) {
	s := openStore(t, t.TempDir())
	addEndpoint(t, s, "ep")
	dir := t.TempDir()
	fs := &fakeSink{}
	fs.setFail(func(events []event.Event) error {
		for _, e := range events {
			if e.ID == "e3" || e.ID == "e6" {
				return sink.Permanent(errors.New("HTTP 400 Bad Request"))
			}
		}
		return nil
	})
	start(t, Config{Endpoint: "ep", MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond, DeadLetterDir: dir}, s, fs, nil, nil)
	emit(t, s, event.TwinCreate, ids("e", 10)...)
	want := slices.DeleteFunc(ids("e", 10), func(id string) bool { return id == "e3" || id == "e6" })
	eventually(t, "the accepted events are delivered", func() bool { return len(fs.received()) == len(want) })
	eventually(t, "the cursor moves past the batch", func() bool { return cursor(t, s, "ep") == 10 })
	if got := fs.received(); !slices.Equal(got, want) {
		t.Errorf("delivered %v, want %v", got, want)
	}
	dls := deadLetters(t, s, "ep")
	if len(dls) != 2 || dls[0].Event.ID != "e3" || dls[1].Event.ID != "e6" {
		t.Fatalf("dead letters %+v, want e3 and e6", dls)
	}
	if dls[0].Attempts != 1 || !strings.Contains(dls[0].Reason, "HTTP 400") || dls[0].Seq != 4 {
		t.Errorf("dead letter %+v: want 1 attempt, the reason and seq 4", dls[0])
	}
	// ADT's layout: <endpoint>/<yyyy>/<mm>/<dd>/<hh>/<event-id>.json.
	at := dls[0].Time.UTC()
	path := filepath.Join(dir, "ep", at.Format("2006"), at.Format("01"), at.Format("02"), at.Format("15"), "e3.json")
	// Files are written once the dead letters are stored, which the cursor may show first.
	var body []byte
	eventually(t, "the dead letter file is written", func() bool {
		var err error
		body, err = os.ReadFile(path)
		return err == nil
	})
	var e event.Event
	if err := json.Unmarshal(body, &e); err != nil || e.ID != "e3" || e.Type != event.TwinCreate || string(e.Data) != `{"id":"e3"}` {
		t.Errorf("dead letter file holds %s", body)
	}
}

func TestRelayExpiresEvents(t *testing.T) {
	s := openStore(t, t.TempDir())
	addEndpoint(t, s, "ep")
	fs := &fakeSink{}
	fs.setFail(func([]event.Event) error { return errors.New("503 Service Unavailable") })
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	start(t, Config{Endpoint: "ep", TTL: 300 * time.Millisecond, MinBackoff: 20 * time.Millisecond, MaxBackoff: 50 * time.Millisecond}, s, fs, nil, m)
	emit(t, s, event.TwinCreate, "a", "b")
	eventually(t, "the events expire", func() bool { return len(deadLetters(t, s, "ep")) == 2 })
	dls := deadLetters(t, s, "ep")
	if !strings.HasPrefix(dls[0].Reason, "expired") || dls[0].Attempts < 2 {
		t.Errorf("dead letter %+v: want expired after several attempts", dls[0])
	}
	eventually(t, "the cursor moves on", func() bool { return cursor(t, s, "ep") == 2 })
	if n := testutil.ToFloat64(m.dead.WithLabelValues("ep")); n != 2 {
		t.Errorf("dead-lettered = %v, want 2", n)
	}
	// The endpoint recovers; later events flow.
	fs.setFail(nil)
	emit(t, s, event.TwinCreate, "c")
	eventually(t, "c is delivered", func() bool { return slices.Equal(fs.received(), []string{"c"}) })
}

// TestRelayExpiresEventsAfterDeliveries checks expiry once the relay has dated earlier
// records and no longer dates every batch.
func TestRelayExpiresEventsAfterDeliveries(t *testing.T) {
	s := openStore(t, t.TempDir())
	addEndpoint(t, s, "ep")
	fs := &fakeSink{}
	start(t, Config{Endpoint: "ep", TTL: 300 * time.Millisecond, MinBackoff: 20 * time.Millisecond, MaxBackoff: 50 * time.Millisecond}, s, fs, nil, nil)
	emit(t, s, event.TwinCreate, "a")
	eventually(t, "a is delivered", func() bool { return slices.Equal(fs.received(), []string{"a"}) })
	time.Sleep(200 * time.Millisecond)
	fs.setFail(func([]event.Event) error { return errors.New("503 Service Unavailable") })
	emit(t, s, event.TwinCreate, "b")
	eventually(t, "b expires", func() bool { return len(deadLetters(t, s, "ep")) == 1 })
	if d := deadLetters(t, s, "ep")[0]; d.Event.ID != "b" || !strings.HasPrefix(d.Reason, "expired") {
		t.Errorf("dead letter %+v, want b expired", d)
	}
	eventually(t, "the cursor moves on", func() bool { return cursor(t, s, "ep") == 2 })
}

func TestRelayMaxAttempts(t *testing.T) {
	s := openStore(t, t.TempDir())
	addEndpoint(t, s, "ep")
	fs := &fakeSink{}
	fs.setFail(func([]event.Event) error { return errors.New("timeout") })
	start(t, Config{Endpoint: "ep", MaxAttempts: 3, MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond}, s, fs, nil, nil)
	emit(t, s, event.TwinCreate, "a")
	eventually(t, "a is dead-lettered", func() bool { return len(deadLetters(t, s, "ep")) == 1 })
	if d := deadLetters(t, s, "ep")[0]; d.Attempts != 3 || !strings.Contains(d.Reason, "3 attempts") {
		t.Errorf("dead letter %+v, want 3 attempts", d)
	}
}

func TestRelayRedrive(t *testing.T) {
	s := openStore(t, t.TempDir())
	addEndpoint(t, s, "ep")
	fs := &fakeSink{}
	fs.setFail(func(events []event.Event) error {
		if events[0].ID == "bad" {
			return sink.Permanent(errors.New("HTTP 404"))
		}
		return nil
	})
	r := start(t, Config{Endpoint: "ep", MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond}, s, fs, nil, nil)
	emit(t, s, event.TwinCreate, "bad")
	eventually(t, "bad is dead-lettered", func() bool { return len(deadLetters(t, s, "ep")) == 1 })
	id := deadLetters(t, s, "ep")[0].ID
	// Still rejected: dead-lettered again with the attempts of both tries.
	r.Redrive(id)
	eventually(t, "the redrive fails again", func() bool {
		dls := deadLetters(t, s, "ep")
		return len(dls) == 1 && dls[0].ID != id
	})
	again := deadLetters(t, s, "ep")[0]
	if again.Attempts != 2 || again.Event.ID != "bad" {
		t.Errorf("dead letter after a failed redrive %+v, want 2 attempts", again)
	}
	fs.setFail(nil)
	r.Redrive(again.ID)
	eventually(t, "the redriven event is delivered", func() bool { return slices.Equal(fs.received(), []string{"bad"}) })
	eventually(t, "the dead letter is gone", func() bool { return len(deadLetters(t, s, "ep")) == 0 })
}

func TestRelayReplay(t *testing.T) {
	s := openStore(t, t.TempDir())
	addEndpoint(t, s, "ep")
	fs := &fakeSink{}
	r := start(t, Config{Endpoint: "ep"}, s, fs, nil, nil)
	emit(t, s, event.TwinCreate, "a", "b", "c")
	eventually(t, "a b c are delivered", func() bool { return len(fs.received()) == 3 })
	r.Rewind(1) // deliver again from seq 2
	eventually(t, "b c are delivered again", func() bool { return len(fs.received()) == 5 })
	emit(t, s, event.TwinCreate, "d")
	eventually(t, "d is delivered", func() bool { return len(fs.received()) == 6 })
	if got := fs.received(); !slices.Equal(got, []string{"a", "b", "c", "b", "c", "d"}) {
		t.Errorf("delivered %v", got)
	}
}

// TestRelayReplayInterruptsRetries checks that a replay asked for while a batch is being
// retried abandons it and starts where asked.
func TestRelayReplayInterruptsRetries(t *testing.T) {
	s := openStore(t, t.TempDir())
	addEndpoint(t, s, "ep")
	fs := &fakeSink{}
	fs.setFail(func(events []event.Event) error {
		if events[0].ID == "b" {
			return errors.New("down")
		}
		return nil
	})
	r := start(t, Config{Endpoint: "ep", MinBackoff: time.Hour, MaxBackoff: time.Hour}, s, fs, nil, nil)
	emit(t, s, event.TwinCreate, "a")
	eventually(t, "a is delivered", func() bool { return len(fs.received()) == 1 })
	emit(t, s, event.TwinCreate, "b")
	eventually(t, "b is retrying", func() bool {
		st, _ := r.Status(context.Background())
		return st.State == StateRetrying
	})
	fs.setFail(nil)
	r.Rewind(0)
	eventually(t, "a and b are delivered from the start", func() bool { return len(fs.received()) == 3 })
	if got := fs.received(); !slices.Equal(got, []string{"a", "a", "b"}) {
		t.Errorf("delivered %v, want a a b", got)
	}
}

// TestDeadEndpointDoesNotSlowAnother runs two relays over one log: one endpoint fails every
// send, the other must still get every event promptly and in order.
func TestDeadEndpointDoesNotSlowAnother(t *testing.T) {
	s := openStore(t, t.TempDir())
	addEndpoint(t, s, "dead")
	addEndpoint(t, s, "live")
	dead, live := &fakeSink{}, &fakeSink{}
	block := make(chan struct{})
	dead.fail = func([]event.Event) error {
		<-block // a send that hangs, as to a black-holed host
		return errors.New("timeout")
	}
	start(t, Config{Endpoint: "live"}, s, live, nil, nil)
	start(t, Config{Endpoint: "dead"}, s, dead, nil, nil)
	t.Cleanup(func() { close(block) })
	want := ids("e", 200)
	for i := 0; i < len(want); i += 20 {
		emit(t, s, event.TwinCreate, want[i:i+20]...)
	}
	eventually(t, "the live endpoint gets everything", func() bool { return len(live.received()) == len(want) })
	if !slices.Equal(live.received(), want) {
		t.Error("the live endpoint's events are out of order")
	}
}

func TestPruner(t *testing.T) {
	s := openStore(t, t.TempDir())
	emit(t, s, event.TwinCreate, ids("old", 5)...)
	addEndpoint(t, s, "ep") // cursor 5
	emit(t, s, event.TwinCreate, ids("new", 5)...)
	now := time.Now().Add(time.Hour)
	p, err := NewPruner(PrunerConfig{Retention: time.Minute, Now: func() time.Time { return now }}, s, discard)
	if err != nil {
		t.Fatal(err)
	}
	n, err := p.Prune(context.Background())
	if err != nil || n != 5 {
		t.Fatalf("Prune = %d, %v; want the 5 records behind the cursor", n, err)
	}
	recs, err := s.Log().Read(context.Background(), 0, 100)
	if err != nil || len(recs) != 5 || recs[0].Seq != 6 {
		t.Fatalf("log after pruning: %d records from %d, %v", len(recs), recs[0].Seq, err)
	}
	// Within the retention nothing goes, even behind the cursor.
	now = time.Now()
	err = s.UpdateDelivery(context.Background(), func(w store.DeliveryWriter) error { return w.SetCursor("ep", 10) })
	if err != nil {
		t.Fatal(err)
	}
	if n, err := p.Prune(context.Background()); err != nil || n != 0 {
		t.Errorf("Prune within the retention = %d, %v; want 0", n, err)
	}
}

// TestRelayReplayDuringRedrive asks for a replay while a redrive waits to send its dead
// letter again: the replay must take effect as soon as the redrive is cut short, before any
// batch after the old cursor goes out, and the redrive must still be done.
func TestRelayReplayDuringRedrive(t *testing.T) {
	s := openStore(t, t.TempDir())
	addEndpoint(t, s, "ep")
	fs := &fakeSink{}
	redriveFailed := make(chan struct{}, 1)
	fs.setFail(func(events []event.Event) error {
		if slices.ContainsFunc(events, func(e event.Event) bool { return e.ID == "bad" }) {
			return sink.Permanent(errors.New("HTTP 400"))
		}
		return nil
	})
	r := start(t, Config{Endpoint: "ep", MinBackoff: time.Hour, MaxBackoff: time.Hour}, s, fs, nil, nil)
	emit(t, s, event.TwinCreate, "a")
	emit(t, s, event.TwinCreate, "bad")
	eventually(t, "bad is dead-lettered", func() bool { return len(deadLetters(t, s, "ep")) == 1 })
	eventually(t, "the cursor is past bad", func() bool { return cursor(t, s, "ep") == 2 })

	// The redrive fails with a retryable error and waits an hour before its next attempt.
	fs.setFail(func(events []event.Event) error {
		if events[0].ID == "bad" {
			select {
			case redriveFailed <- struct{}{}:
			default:
			}
			return errors.New("503 Service Unavailable")
		}
		return nil
	})
	r.Redrive(deadLetters(t, s, "ep")[0].ID)
	<-redriveFailed
	// Committed while the relay works on the redrive: not delivered before the replay.
	emit(t, s, event.TwinCreate, "c")
	fs.setFail(nil)
	r.Rewind(1) // deliver again from bad (seq 2)

	// The redrive is cut short; the replay comes first (with it the redrive, which now
	// succeeds), then the log from seq 2.
	want := []string{"a", "bad", "bad", "c"}
	eventually(t, "the replay and the redrive are done", func() bool {
		return len(fs.received()) >= len(want) && len(deadLetters(t, s, "ep")) == 0
	})
	eventually(t, "the cursor reaches c", func() bool { return cursor(t, s, "ep") == 3 })
	if got := fs.received(); !slices.Equal(got, want) {
		t.Errorf("delivered %v, want %v: the replay first, c once after it", got, want)
	}
}

// TestRelayStatusAfterDeadLetter checks the state once the relay dead-lettered a failing
// batch and moved past it: it is delivering again, with no attempts counted, and the failure
// is still shown as the last error.
func TestRelayStatusAfterDeadLetter(t *testing.T) {
	tests := []struct {
		name        string
		maxAttempts int
		err         error
		reason      string
	}{
		{"rejected", 0, sink.Permanent(errors.New("HTTP 400 Bad Request")), "rejected"},
		{"max attempts", 2, errors.New("503 Service Unavailable"), "gave up after 2 attempts"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openStore(t, t.TempDir())
			addEndpoint(t, s, "ep")
			fs := &fakeSink{}
			fs.setFail(func([]event.Event) error { return tt.err })
			r := start(t, Config{Endpoint: "ep", MaxAttempts: tt.maxAttempts, MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond}, s, fs, nil, nil)
			emit(t, s, event.TwinCreate, "a")
			var st Status
			eventually(t, "the relay moves past a", func() bool {
				var err error
				st, err = r.Status(context.Background())
				// A relay not running yet reports the stored cursor, which the running one
				// may have moved meanwhile.
				return err == nil && st.State != StateStopped && st.Cursor == 1
			})
			if st.State != StateDelivering || st.Attempts != 0 || st.LastError != tt.err.Error() {
				t.Errorf("status past the dead letter = %+v; want delivering, 0 attempts, last error %q", st, tt.err)
			}
			eventually(t, "a is dead-lettered", func() bool { return len(deadLetters(t, s, "ep")) == 1 })
			d := deadLetters(t, s, "ep")[0]
			if !strings.HasPrefix(d.Reason, tt.reason) {
				t.Errorf("dead letter reason %q, want %q", d.Reason, tt.reason)
			}

			// A redrive that fails again dead-letters the event anew; the relay is delivering
			// once that dead letter is stored.
			r.Redrive(d.ID)
			eventually(t, "the redrive fails again", func() bool {
				dls := deadLetters(t, s, "ep")
				return len(dls) == 1 && dls[0].ID != d.ID
			})
			st, err := r.Status(context.Background())
			if err != nil || st.State != StateDelivering || st.Attempts != 0 {
				t.Errorf("status after a failed redrive = %+v, %v; want delivering, 0 attempts", st, err)
			}
		})
	}
}

// TestRelaySkipPastRetryingBatch skips the cursor past a batch being retried: the relay
// abandons it and reports delivering from the new cursor.
func TestRelaySkipPastRetryingBatch(t *testing.T) {
	s := openStore(t, t.TempDir())
	addEndpoint(t, s, "ep")
	fs := &fakeSink{}
	fs.setFail(func([]event.Event) error { return errors.New("503 Service Unavailable") })
	r := start(t, Config{Endpoint: "ep", MinBackoff: time.Hour, MaxBackoff: time.Hour}, s, fs, nil, nil)
	emit(t, s, event.TwinCreate, "a")
	eventually(t, "a is retrying", func() bool {
		st, err := r.Status(context.Background())
		return err == nil && st.State == StateRetrying
	})
	r.Rewind(1)
	var st Status
	eventually(t, "the relay is past a", func() bool {
		var err error
		st, err = r.Status(context.Background())
		return err == nil && st.Cursor == 1
	})
	if st.State != StateDelivering || st.Attempts != 0 {
		t.Errorf("status after skipping the retrying batch = %+v, want delivering with 0 attempts", st)
	}
}

// TestPrunerWaitsForConsumers checks that the pruner keeps every record an in-process
// consumer has not read, however old, and nothing while one is not reading yet.
func TestPrunerWaitsForConsumers(t *testing.T) {
	s := openStore(t, t.TempDir())
	emit(t, s, event.TwinCreate, ids("e", 10)...)
	var index, history uint64 // what two consumers are done with
	now := time.Now().Add(time.Hour)
	p, err := NewPruner(PrunerConfig{
		Retention: time.Minute,
		Now:       func() time.Time { return now },
		Consumers: []func() uint64{func() uint64 { return index }, func() uint64 { return history }},
	}, s, discard)
	if err != nil {
		t.Fatal(err)
	}
	first := func() uint64 {
		recs, err := s.Log().Read(context.Background(), 0, 1)
		if err != nil {
			t.Fatal(err)
		}
		return recs[0].Seq
	}
	index, history = 0, 7
	if n, err := p.Prune(context.Background()); err != nil || n != 0 || first() != 1 {
		t.Errorf("Prune with a consumer not reading yet = %d, %v, first record %d; want nothing pruned", n, err, first())
	}
	index = 4
	if n, err := p.Prune(context.Background()); err != nil || n != 4 || first() != 5 {
		t.Errorf("Prune with consumers at 4 and 7 = %d, %v, first record %d; want 4 pruned, first 5", n, err, first())
	}
	index, history = 10, 10
	if n, err := p.Prune(context.Background()); err != nil || n != 5 || first() != 10 {
		t.Errorf("Prune with consumers at the end = %d, %v, first record %d; want all but the newest", n, err, first())
	}
}

func TestPrunerKeepsWhatConsumersNeed(t *testing.T) {
	s := openStore(t, t.TempDir())
	emit(t, s, event.TwinCreate, ids("a", 6)...)
	addEndpoint(t, s, "ep") // cursor 6
	err := s.UpdateDelivery(context.Background(), func(w store.DeliveryWriter) error { return w.SetConsumerCursor("propagation", 2) })
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Add(time.Hour)
	p, err := NewPruner(PrunerConfig{Retention: time.Minute, Now: func() time.Time { return now }}, s, discard)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := p.Prune(context.Background()); err != nil || n != 2 {
		t.Fatalf("Prune = %d, %v; want the 2 records behind the consumer's cursor", n, err)
	}
	err = s.UpdateDelivery(context.Background(), func(w store.DeliveryWriter) error { return w.DeleteConsumerCursor("propagation") })
	if err != nil {
		t.Fatal(err)
	}
	if n, err := p.Prune(context.Background()); err != nil || n != 3 {
		t.Fatalf("Prune after the consumer went = %d, %v; want the 3 records up to the endpoint's cursor but the newest", n, err)
	}
}

// TestRelayHopLimit checks that events leave with their hop count plus one, and that those
// whose count would pass MaxHops become dead letters without a send, while the log keeps
// every count as it was.
func TestRelayHopLimit(t *testing.T) {
	for _, tc := range []struct {
		name    string
		maxHops int
		hops    []int // of the events emitted, in order
		sent    []int // the hop counts the sink gets
		dead    []int // the hop counts of the dead letters' events
	}{
		{"default limit", 0, []int{0, 7, 8, 2}, []int{1, 8, 3}, []int{9}},
		{"limit 1", 1, []int{0, 1, 5, 0}, []int{1, 1}, []int{2, 6}},
		{"limit 3", 3, []int{2, 3}, []int{3}, []int{4}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openStore(t, t.TempDir())
			addEndpoint(t, s, "ep")
			var (
				mu   sync.Mutex
				sent []int
			)
			fs := &fakeSink{}
			fs.setFail(func(events []event.Event) error {
				mu.Lock()
				defer mu.Unlock()
				for _, e := range events {
					sent = append(sent, e.Hops)
				}
				return nil
			})
			start(t, Config{Endpoint: "ep", MaxHops: tc.maxHops}, s, fs, nil, nil)
			err := s.Update(context.Background(), func(w store.Writer) error {
				for i, h := range tc.hops {
					e := event.Event{ID: fmt.Sprint("e", i), Source: "test", SpecVersion: "1.0", Type: event.Telemetry, Hops: h}
					if err := w.Emit(e); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			eventually(t, "the relay is done with every event", func() bool {
				return cursor(t, s, "ep") == s.Log().Last() && len(deadLetters(t, s, "ep")) == len(tc.dead)
			})
			mu.Lock()
			if !slices.Equal(sent, tc.sent) {
				t.Errorf("sent hop counts %v, want %v", sent, tc.sent)
			}
			mu.Unlock()
			var dead []int
			for _, d := range deadLetters(t, s, "ep") {
				dead = append(dead, d.Event.Hops)
				if !strings.HasPrefix(d.Reason, "hop limit: ") || d.Attempts != 0 {
					t.Errorf("dead letter %+v: want a hop limit reason and no attempt", d)
				}
			}
			if !slices.Equal(dead, tc.dead) {
				t.Errorf("dead letters' hop counts %v, want %v", dead, tc.dead)
			}
			recs, err := s.Log().Read(context.Background(), 0, 100)
			if err != nil {
				t.Fatal(err)
			}
			for i, rec := range recs {
				if rec.Event.Hops != tc.hops[i] {
					t.Errorf("the log's record %d has hops %d, want %d as emitted", rec.Seq, rec.Event.Hops, tc.hops[i])
				}
			}
		})
	}
	if _, err := New(Config{Endpoint: "ep", MaxHops: -1}, nil, &fakeSink{}, nil, nil, discard); err == nil || !strings.Contains(err.Error(), "maxHops") {
		t.Errorf("New with a negative MaxHops = %v, want a maxHops error", err)
	}
}
