package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/ingress"
	"github.com/twinflow/twinflow/internal/store"
	"github.com/twinflow/twinflow/internal/twins"
)

var sequence = Mapping{Name: "sequence", Mapper: sequenceMapper{}}

// twinsTrace is the trace of the tests' API writes: none.
var twinsTrace = twins.Trace{}

func TestAppliesEachDeviceInOrder(t *testing.T) {
	e := newEnv(t)
	src := newFakeSource()
	// Small batches and few transactions in flight, so devices queue behind each other.
	r := e.start(Config{MaxBatch: 3, MaxConcurrency: 4}, src, sequence)
	const devices, perDevice = 12, 40
	for i := range perDevice {
		for d := range devices {
			src.send(t, msg(fmt.Sprintf("t%d", d), i, ""))
		}
	}
	settled := src.waitSettled(t, devices*perDevice)
	for body, err := range settled {
		if err != nil {
			t.Errorf("message %s settled with %v", body, err)
		}
	}
	for d := range devices {
		doc := e.twin(fmt.Sprintf("t%d", d))
		if doc["seq"] != float64(perDevice-1) || doc["count"] != float64(perDevice) {
			t.Errorf("twin t%d has seq %v and count %v; want %d and %d", d, doc["seq"], doc["count"], perDevice-1, perDevice)
		}
	}
	if dls := e.deadLetters("plant"); len(dls) != 0 {
		t.Errorf("dead letters %+v; want none", dls)
	}
	st := r.Status()
	if st.Received != devices*perDevice || st.Applied != devices*perDevice || st.DeadLettered != 0 || st.Unsettled != 0 {
		t.Errorf("status = %+v", st)
	}
}

func TestDuplicatesAppliedOnce(t *testing.T) {
	e := newEnv(t)
	src := newFakeSource()
	var outcomes []Outcome
	r := e.start(Config{}, src, sequence)
	submit := func(m ingress.Message) Outcome {
		ch := make(chan Outcome, 1)
		if err := r.Submit(context.Background(), m, func(o Outcome) { ch <- o }); err != nil {
			t.Fatal(err)
		}
		o := <-ch
		outcomes = append(outcomes, o)
		return o
	}
	if o := submit(msg("t1", 0, "m0")); o.Result != Applied || o.Changes != 1 {
		t.Fatalf("first delivery: %+v", o)
	}
	if o := submit(msg("t1", 0, "m0")); o.Result != Duplicate {
		t.Fatalf("second delivery: %+v; want a duplicate", o)
	}
	if doc := e.twin("t1"); doc["count"] != float64(1) {
		t.Errorf("count = %v after a duplicate; want 1", doc["count"])
	}
	// Twice in one batch: both wait behind a held transaction of the same Order.
	hold := make(chan struct{})
	r.SetMappings([]Mapping{sequence, {Name: "hold", Mapper: mapperFunc(func(ctx context.Context, m ingress.Message, _ ingress.TwinReader) ([]ingress.Change, error) {
		if m.ID == "m1" {
			<-hold
		}
		return nil, nil
	})}})
	// The duplicate is followed by a message prepared on top of it, so the batch is prepared
	// again without it.
	results := make(chan Outcome, 4)
	for _, m := range []ingress.Message{msg("t1", 1, "m1"), msg("t1", 2, "m2"), msg("t1", 2, "m2"), msg("t1", 3, "m3")} {
		if err := r.Submit(context.Background(), m, func(o Outcome) { results <- o }); err != nil {
			t.Fatal(err)
		}
	}
	close(hold)
	got := []Result{(<-results).Result, (<-results).Result, (<-results).Result, (<-results).Result}
	if fmt.Sprint(got) != fmt.Sprint([]Result{Applied, Applied, Duplicate, Applied}) {
		t.Errorf("results = %v; want applied, applied, duplicate, applied", got)
	}
	if doc := e.twin("t1"); doc["count"] != float64(4) || doc["seq"] != float64(3) {
		t.Errorf("twin = %v; want count 4 and seq 3", doc)
	}
	// A message without an id is applied each time.
	submit(msg("t2", 0, ""))
	r.SetMappings([]Mapping{{Name: "count", Mapper: mapperFunc(func(ctx context.Context, m ingress.Message, _ ingress.TwinReader) ([]ingress.Change, error) {
		return []ingress.Change{{TwinID: "t2", Patch: []byte(`[{"op":"add","path":"/temperature","value":1}]`)}}, nil
	})}})
	before := len(e.events())
	submit(msg("t2", 0, ""))
	submit(msg("t2", 0, ""))
	if n := len(e.events()) - before; n != 2 {
		t.Errorf("a message without an id made %d events in two deliveries; want 2", n)
	}
	if st := r.Status(); st.Duplicates != 2 {
		t.Errorf("status counts %d duplicates; want 2", st.Duplicates)
	}
}

// TestStaleReadsArePreparedAgain changes a twin between the time a message's mapping read it
// and its commit: the message is prepared again, from the twin as it is.
func TestStaleReadsArePreparedAgain(t *testing.T) {
	e := newEnv(t)
	src := newFakeSource()
	var calls atomic.Int32
	interfering := Mapping{Name: "interfering", Mapper: mapperFunc(func(ctx context.Context, m ingress.Message, twins ingress.TwinReader) ([]ingress.Change, error) {
		changes, err := sequenceMapper{}.Map(ctx, m, twins)
		if calls.Add(1) == 2 {
			// Outside the store's writer, after the read: an API write gets in between.
			_, perr := e.svc.PatchTwin(ctx, "t1", []byte(`[{"op":"replace","path":"/count","value":100}]`), "", twinsTrace)
			if perr != nil {
				t.Errorf("PatchTwin: %v", perr)
			}
		}
		return changes, err
	})}
	e.start(Config{}, src, interfering)
	src.send(t, msg("t1", 0, ""))
	src.waitSettled(t, 1)
	src.send(t, msg("t1", 1, ""))
	src.waitSettled(t, 2)
	if doc := e.twin("t1"); doc["count"] != float64(101) || doc["seq"] != float64(1) {
		t.Errorf("twin = %v; want count 101 (the API's 100, plus one) and seq 1", doc)
	}
	if n := calls.Load(); n != 3 {
		t.Errorf("the mapping ran %d times; want 3 (once, then twice for the message prepared again)", n)
	}
}

func TestPoisonMessagesBecomeDeadLetters(t *testing.T) {
	e := newEnv(t)
	src := newFakeSource()
	r := e.start(Config{MaxMessageBytes: 200}, src, sequence)
	missing := Mapping{Name: "missing", Mapper: mapperFunc(func(ctx context.Context, m ingress.Message, _ ingress.TwinReader) ([]ingress.Change, error) {
		if strings.Contains(string(m.Body), "ghost") {
			return []ingress.Change{{TwinID: "ghost", Patch: []byte(`[{"op":"add","path":"/seq","value":1}]`)}}, nil
		}
		return nil, nil
	})}
	r.SetMappings([]Mapping{sequence, missing})
	bad := []ingress.Message{
		{ID: "bad-json", Body: []byte("not json"), Order: "devices/t1", Time: time.Now()},
		{ID: "huge", Body: []byte(`{"device":"t1","seq":1,"pad":"` + strings.Repeat("x", 300) + `"}`), Order: "devices/t1", Time: time.Now()},
		{ID: "invalid", Body: []byte(`{"device":"t1","seq":1,"temp":"hot"}`), Order: "devices/t1", Time: time.Now()},
		{ID: "ghost", Body: []byte(`{"device":"t1","seq":1,"note":"ghost"}`), Order: "devices/t1", Time: time.Now()},
	}
	src.send(t, msg("t1", 0, "ok0"))
	src.send(t, bad...)
	src.send(t, msg("t1", 1, "ok1"))
	settled := src.waitSettled(t, 6)
	for body, err := range settled {
		if err != nil {
			t.Errorf("message %s settled with %v; want nil for dead letters too", body, err)
		}
	}
	// The messages behind the poison ones were applied.
	if doc := e.twin("t1"); doc["seq"] != float64(1) || doc["count"] != float64(2) {
		t.Errorf("twin t1 = %v; want seq 1, count 2", doc)
	}
	dls := e.deadLetters("plant")
	if len(dls) != len(bad) {
		t.Fatalf("%d dead letters; want %d: %+v", len(dls), len(bad), dls)
	}
	reasons := map[string]string{
		"bad-json": "Mapping sequence: the body is not a reading",
		"huge":     fmt.Sprintf("The message is %d bytes; the limit is 200 bytes.", len(bad[1].Body)),
		"invalid":  "Mapping sequence: the body is not a reading",
		// The sequence mapping's change is not applied either: the message is applied whole
		// or not at all.
		"ghost": "There is no digital twin instance that exists with the ID ghost.",
	}
	for _, d := range dls {
		if want := reasons[d.Message.ID]; !strings.HasPrefix(d.Reason, want) {
			t.Errorf("dead letter of %s: reason %q; want it to start with %q", d.Message.ID, d.Reason, want)
		}
		if d.Attempts != 1 || d.Message.Order != "devices/t1" || d.Source != "plant" {
			t.Errorf("dead letter %+v", d)
		}
	}
	// Delivered again, a dead-lettered message is recognised: no second dead letter.
	src.send(t, bad[0])
	src.waitSettled(t, 7)
	if n := len(e.deadLetters("plant")); n != len(bad) {
		t.Errorf("%d dead letters after a redelivery; want %d", n, len(bad))
	}
	if st := r.Status(); st.DeadLettered != 4 || st.Applied != 2 || st.Duplicates != 1 {
		t.Errorf("status = %+v", st)
	}
}

func TestMappingsApplyInOneTransaction(t *testing.T) {
	e := newEnv(t)
	src := newFakeSource()
	second := Mapping{Name: "second", Mapper: mapperFunc(func(ctx context.Context, m ingress.Message, twins ingress.TwinReader) ([]ingress.Change, error) {
		// The second mapping sees the state before the message, not the first's change.
		if _, ok, _ := twins.Twin("t1"); ok {
			return nil, errors.New("t1 exists before its first message")
		}
		return []ingress.Change{{TwinID: "t1-shadow", CreateModel: "dtmi:test:Thermostat;1"}}, nil
	})}
	e.start(Config{}, src, sequence, second)
	src.send(t, msg("t1", 0, ""))
	src.waitSettled(t, 1)
	if e.twin("t1") == nil || e.twin("t1-shadow") == nil {
		t.Error("the changes of both mappings were not applied")
	}
	if dls := e.deadLetters("plant"); len(dls) != 0 {
		t.Errorf("dead letters %+v", dls)
	}
}

func TestTraceparentReachesTheEvents(t *testing.T) {
	e := newEnv(t)
	src := newFakeSource()
	e.start(Config{}, src, sequence)
	m := msg("t1", 0, "")
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	m.Headers = map[string]string{"traceparent": tp, "tracestate": "a=b"}
	src.send(t, m)
	src.waitSettled(t, 1)
	evs := e.events()
	if len(evs) != 2 {
		t.Fatalf("events = %+v; want the twin's creation and update", evs)
	}
	for _, ev := range evs {
		if ev.TraceParent != tp || ev.TraceState != "a=b" || ev.Depth != 0 {
			t.Errorf("%s event carries %q %q depth %d", ev.Type, ev.TraceParent, ev.TraceState, ev.Depth)
		}
	}
}

func TestPropagationDepth(t *testing.T) {
	e := newEnv(t)
	src := newFakeSource()
	r := e.start(Config{Source: "$events", Propagation: true, MaxDepth: 3}, src, sequence)
	for seq, depth := range []string{"", "2", "3"} {
		m := msg("t1", seq, "")
		m.Headers = map[string]string{DepthHeader: depth}
		src.send(t, m)
	}
	src.waitSettled(t, 3)
	var depths []int
	for _, ev := range e.events() {
		if ev.Type == event.TwinUpdate {
			depths = append(depths, ev.Depth)
		}
	}
	if fmt.Sprint(depths) != "[1 3]" {
		t.Errorf("update depths = %v; want [1 3]", depths)
	}
	dls := e.deadLetters("$events")
	if len(dls) != 1 || !strings.Contains(dls[0].Reason, "at most 3") {
		t.Errorf("dead letters = %+v; want the message at depth 3", dls)
	}
	if st := r.Status(); st.Applied != 2 || st.DeadLettered != 1 {
		t.Errorf("status = %+v", st)
	}
}

func TestRedrive(t *testing.T) {
	e := newEnv(t)
	src := newFakeSource()
	var fail atomic.Bool
	fail.Store(true)
	flaky := Mapping{Name: "flaky", Mapper: mapperFunc(func(ctx context.Context, m ingress.Message, twins ingress.TwinReader) ([]ingress.Change, error) {
		if fail.Load() {
			return nil, errors.New("not yet")
		}
		return sequenceMapper{}.Map(ctx, m, twins)
	})}
	r := e.start(Config{}, src, flaky)
	src.send(t, msg("t1", 0, "m0"))
	src.waitSettled(t, 1)
	dls := e.deadLetters("plant")
	if len(dls) != 1 {
		t.Fatalf("dead letters = %+v; want one", dls)
	}
	// Redriven while it still fails, it is kept again with two attempts.
	o, err := r.Redrive(context.Background(), dls[0])
	if err != nil || o.Result != DeadLettered || o.DeadLetter == dls[0].ID {
		t.Fatalf("Redrive = %+v, %v; want a new dead letter", o, err)
	}
	dls = e.deadLetters("plant")
	if len(dls) != 1 || dls[0].Attempts != 2 || dls[0].Message.ID != "m0" {
		t.Fatalf("dead letters after a failed redrive = %+v", dls)
	}
	// Once it can be applied, a redrive applies it, although its id was recorded.
	fail.Store(false)
	o, err = r.Redrive(context.Background(), dls[0])
	if err != nil || o.Result != Applied || o.Changes != 1 {
		t.Fatalf("Redrive = %+v, %v; want applied", o, err)
	}
	if n := len(e.deadLetters("plant")); n != 0 {
		t.Errorf("%d dead letters after a redrive; want 0", n)
	}
	if doc := e.twin("t1"); doc["seq"] != float64(0) {
		t.Errorf("twin after redrive = %v", doc)
	}
}

func TestBackpressure(t *testing.T) {
	e := newEnv(t)
	src := newFakeSource()
	release := make(chan struct{})
	blocking := Mapping{Name: "block", Mapper: mapperFunc(func(ctx context.Context, m ingress.Message, _ ingress.TwinReader) ([]ingress.Change, error) {
		<-release
		return nil, nil
	})}
	r := e.start(Config{MaxUnsettled: 3}, src, blocking)
	for i := range 3 {
		if err := r.Handle(context.Background(), msg(fmt.Sprint(i), 0, ""), func(error) {}); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := r.Handle(ctx, msg("x", 0, ""), func(error) {})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Handle with a full window = %v; want the context's error", err)
	}
	if st := r.Status(); st.Unsettled != 3 {
		t.Errorf("status counts %d unsettled; want 3", st.Unsettled)
	}
	close(release)
	waitFor(t, "the window empties", func() bool { return r.Status().Unsettled == 0 })
}

// failingStore fails the first failures UpdateIngress calls.
type failingStore struct {
	Store
	failures atomic.Int32
}

func (s *failingStore) UpdateIngress(ctx context.Context, fn func(store.IngressWriter) error) error {
	if s.failures.Add(-1) >= 0 {
		return errors.New("disk on fire")
	}
	return s.Store.UpdateIngress(ctx, fn)
}

func TestStoreFailuresAreRetried(t *testing.T) {
	e := newEnv(t)
	fs := &failingStore{Store: e.st}
	fs.failures.Store(2)
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	r, err := New(Config{Source: "plant", MinBackoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond}, fs, e.svc, m, discard)
	if err != nil {
		t.Fatal(err)
	}
	r.SetMappings([]Mapping{sequence})
	src := newFakeSource()
	src.lag = 7
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx, src) }()
	src.send(t, msg("t1", 0, "m0"))
	settled := src.waitSettled(t, 1)
	for _, err := range settled {
		if err != nil {
			t.Errorf("settled with %v; want nil after the retries", err)
		}
	}
	st := r.Status()
	if st.Failed != 2 || st.Applied != 1 || !strings.Contains(st.LastError, "disk on fire") || st.Lag != 7 || !st.LagKnown {
		t.Errorf("status = %+v", st)
	}
	if v := testutil.ToFloat64(m.failed.WithLabelValues("plant")); v != 2 {
		t.Errorf("failed metric = %v; want 2", v)
	}
	if v := testutil.ToFloat64(m.applied.WithLabelValues("plant")); v != 1 {
		t.Errorf("applied metric = %v; want 1", v)
	}
	if v := testutil.ToFloat64(m.changes.WithLabelValues("sequence")); v != 1 {
		t.Errorf("mapping changes metric = %v; want 1", v)
	}
	if n, err := testutil.GatherAndCount(reg, "twinflow_source_lag_messages"); err != nil || n != 1 {
		t.Errorf("lag gauges = %d, %v; want 1", n, err)
	}

	// Stopping settles what is still failing with an error, for the source to deliver again.
	fs.failures.Store(1 << 20)
	src.send(t, msg("t1", 1, "m1"))
	waitFor(t, "the write fails", func() bool { return r.Status().Failed > 2 })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v", err)
	}
	settled = src.waitSettled(t, 2)
	var body []byte
	body, _ = json.Marshal(reading{Device: "t1", Seq: 1, Temp: ptr(20.1)})
	if err := settled[string(body)]; err == nil {
		t.Errorf("a message not applied when the runner stopped was settled with nil")
	}
	if st := r.Status(); st.State != ingress.Stopped || st.Unsettled != 0 {
		t.Errorf("status after stop = %+v", st)
	}
	if err := r.Submit(context.Background(), msg("t1", 2, ""), func(Outcome) {}); !errors.Is(err, ErrNotRunning) {
		t.Errorf("Submit after stop = %v; want ErrNotRunning", err)
	}
}

func ptr(f float64) *float64 { return &f }

// TestUnavailableMappingInputsAreRetried checks that a mapping failing with
// ingress.ErrUnavailable does not make a dead letter: the message is applied once the
// mapping's inputs are back.
func TestUnavailableMappingInputsAreRetried(t *testing.T) {
	e := newEnv(t)
	src := newFakeSource()
	var failures atomic.Int32
	failures.Store(2)
	flaky := Mapping{Name: "flaky", Mapper: mapperFunc(func(ctx context.Context, m ingress.Message, twins ingress.TwinReader) ([]ingress.Change, error) {
		if failures.Add(-1) >= 0 {
			return nil, fmt.Errorf("graph: %w", ingress.ErrUnavailable)
		}
		return sequenceMapper{}.Map(ctx, m, twins)
	})}
	r := e.start(Config{MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond}, src, flaky)
	src.send(t, msg("t1", 0, "m0"))
	for _, err := range src.waitSettled(t, 1) {
		if err != nil {
			t.Errorf("settled with %v", err)
		}
	}
	if st := r.Status(); st.Applied != 1 || st.DeadLettered != 0 || st.Failed != 2 || !strings.Contains(st.LastError, "mapping flaky") {
		t.Errorf("status = %+v", st)
	}
	if len(e.deadLetters("plant")) != 0 {
		t.Error("an unavailable input made a dead letter")
	}
}
