package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/ingress"
	"github.com/twinflow/twinflow/internal/store"
	"github.com/twinflow/twinflow/internal/store/sqlite"
	"github.com/twinflow/twinflow/internal/twins"
)

var discard = slog.New(slog.DiscardHandler)

// openStore opens a durable SQLite store in a fresh directory, closed when the test ends.
func openStore(t *testing.T) *sqlite.Store {
	t.Helper()
	st, err := sqlite.Open(sqlite.Config{Dir: t.TempDir()}, discard)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := st.Close(); err != nil && !errors.Is(err, store.ErrClosed) {
			t.Errorf("close store: %v", err)
		}
	})
	return st
}

// thermostat is the model of the tests' twins.
const thermostat = `[{"@context":"dtmi:dtdl:context;3","@id":"dtmi:test:Thermostat;1","@type":"Interface",
 "contents":[
  {"@type":"Property","name":"temperature","schema":"double","writable":true},
  {"@type":"Property","name":"seq","schema":"integer","writable":true},
  {"@type":"Property","name":"count","schema":"integer","writable":true}]}]`

// env is a runner's world: a durable store with the thermostat model and the twin service.
type env struct {
	t   *testing.T
	st  *sqlite.Store
	svc *twins.Service
}

func newEnv(t *testing.T) *env {
	t.Helper()
	st := openStore(t)
	svc, err := twins.New(twins.Config{ServiceID: "tf.test"}, st, discard)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.AddModels(context.Background(), []byte(thermostat)); err != nil {
		t.Fatal(err)
	}
	return &env{t: t, st: st, svc: svc}
}

// twin returns twin id's document decoded, nil when it is missing.
func (e *env) twin(id string) map[string]any {
	e.t.Helper()
	tw, err := e.svc.Twin(context.Background(), id)
	if err != nil {
		return nil
	}
	var doc map[string]any
	if err := json.Unmarshal(tw.Doc, &doc); err != nil {
		e.t.Fatal(err)
	}
	return doc
}

// events returns every event in the log.
func (e *env) events() []event.Event {
	e.t.Helper()
	last := e.st.Log().Last()
	if last == 0 {
		return nil
	}
	var out []event.Event
	for after := uint64(0); after < last; {
		recs, err := e.st.Log().Read(context.Background(), after, 1000)
		if err != nil {
			e.t.Fatal(err)
		}
		for _, r := range recs {
			out = append(out, r.Event)
			after = r.Seq
		}
	}
	return out
}

// deadLetters returns the source's dead letters.
func (e *env) deadLetters(source string) []store.SourceDeadLetter {
	e.t.Helper()
	var dls []store.SourceDeadLetter
	err := e.st.ViewIngress(context.Background(), func(r store.IngressReader) error {
		var err error
		dls, err = r.SourceDeadLetters(source, 0, 0)
		return err
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return dls
}

// reading is the JSON body of the tests' device messages.
type reading struct {
	Device string   `json:"device"`
	Seq    int      `json:"seq"`
	Temp   *float64 `json:"temp,omitempty"`
}

// msg returns device's message number seq with a JSON body; id is its Message.ID.
func msg(device string, seq int, id string) ingress.Message {
	temp := 20 + float64(seq)/10
	body, _ := json.Marshal(reading{Device: device, Seq: seq, Temp: &temp})
	return ingress.Message{ID: id, Topic: "devices/" + device, Body: body, Time: time.Now(), Order: "devices/" + device}
}

// sequenceMapper is a read-modify mapping: it creates the device's twin when missing, and sets
// seq to the message's and count to the twin's count plus one. A message whose seq does not
// follow the twin's is an error, so a message applied out of order becomes a dead letter.
type sequenceMapper struct{}

func (sequenceMapper) Map(_ context.Context, m ingress.Message, twins ingress.TwinReader) ([]ingress.Change, error) {
	var r reading
	if err := json.Unmarshal(m.Body, &r); err != nil || r.Device == "" {
		return nil, fmt.Errorf("the body is not a reading: %q", m.Body)
	}
	count := 0
	doc, ok, err := twins.Twin(r.Device)
	if err != nil {
		return nil, err
	}
	if ok {
		var cur struct {
			Seq   *int `json:"seq"`
			Count int  `json:"count"`
		}
		if err := json.Unmarshal(doc, &cur); err != nil {
			return nil, err
		}
		if cur.Seq != nil && r.Seq != *cur.Seq+1 {
			return nil, fmt.Errorf("message %d of %s follows message %d", r.Seq, r.Device, *cur.Seq)
		}
		count = cur.Count
	}
	patch := fmt.Sprintf(`[{"op":"add","path":"/seq","value":%d},{"op":"add","path":"/count","value":%d}]`, r.Seq, count+1)
	if r.Temp != nil {
		patch = fmt.Sprintf(`[{"op":"add","path":"/seq","value":%d},{"op":"add","path":"/count","value":%d},{"op":"add","path":"/temperature","value":%g}]`, r.Seq, count+1, *r.Temp)
	}
	return []ingress.Change{{TwinID: r.Device, CreateModel: "dtmi:test:Thermostat;1", Patch: []byte(patch)}}, nil
}

// mapperFunc adapts a function to ingress.Mapper.
type mapperFunc func(ctx context.Context, m ingress.Message, twins ingress.TwinReader) ([]ingress.Change, error)

func (f mapperFunc) Map(ctx context.Context, m ingress.Message, twins ingress.TwinReader) ([]ingress.Change, error) {
	return f(ctx, m, twins)
}

// fakeSource is an in-memory ingress.Source: it hands over what Send gives it, in order, and
// records how each message was settled.
type fakeSource struct {
	in  chan ingress.Message
	lag int64

	mu      sync.Mutex
	settled map[string]error // by body
	count   int
	changed chan struct{}
}

func newFakeSource() *fakeSource {
	return &fakeSource{in: make(chan ingress.Message), settled: make(map[string]error), changed: make(chan struct{}, 1), lag: -1}
}

// Run implements ingress.Source.
func (s *fakeSource) Run(ctx context.Context, h ingress.Handler) error {
	h.State(ingress.Running, nil)
	for {
		select {
		case <-ctx.Done():
			h.State(ingress.Stopped, nil)
			return nil
		case m := <-s.in:
			body := string(m.Body)
			err := h.Handle(ctx, m, func(err error) {
				s.mu.Lock()
				s.settled[body] = err
				s.count++
				s.mu.Unlock()
				select {
				case s.changed <- struct{}{}:
				default:
				}
			})
			if err != nil {
				h.State(ingress.Stopped, nil)
				return nil
			}
		}
	}
}

// Lag implements ingress.Lagger when lag is not negative.
func (s *fakeSource) Lag() (int64, bool) { return s.lag, s.lag >= 0 }

// send hands msgs to the running source.
func (s *fakeSource) send(t *testing.T, msgs ...ingress.Message) {
	t.Helper()
	for _, m := range msgs {
		select {
		case s.in <- m:
		case <-time.After(10 * time.Second):
			t.Fatal("the source's handler did not take a message in 10s")
		}
	}
}

// waitSettled waits until n messages were settled and returns the settlements.
func (s *fakeSource) waitSettled(t *testing.T, n int) map[string]error {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		s.mu.Lock()
		if s.count >= n {
			out := make(map[string]error, len(s.settled))
			for k, v := range s.settled {
				out[k] = v
			}
			s.mu.Unlock()
			return out
		}
		got := s.count
		s.mu.Unlock()
		select {
		case <-s.changed:
		case <-deadline:
			t.Fatalf("%d messages settled after 20s, want %d", got, n)
		}
	}
}

// start runs a runner of source over src until the test ends.
func (e *env) start(cfg Config, src ingress.Source, mappings ...Mapping) *Runner {
	e.t.Helper()
	if cfg.Source == "" {
		cfg.Source = "plant"
	}
	r, err := New(cfg, e.st, e.svc, nil, discard)
	if err != nil {
		e.t.Fatal(err)
	}
	r.SetMappings(mappings)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx, src) }()
	e.t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			e.t.Errorf("Run: %v", err)
		}
	})
	waitFor(e.t, "the source runs", func() bool { return r.Status().State == ingress.Running })
	return r
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
