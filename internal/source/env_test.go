package source

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twinflow/twinflow/internal/ingress"
	"github.com/twinflow/twinflow/internal/ingress/runner"
	"github.com/twinflow/twinflow/internal/store/sqlite"
	"github.com/twinflow/twinflow/internal/twins"
)

var discard = slog.New(slog.DiscardHandler)

// thermostat is the model of the tests' twins.
const thermostat = `[{"@context":"dtmi:dtdl:context;3","@id":"dtmi:test:Thermostat;1","@type":"Interface",
 "contents":[{"@type":"Property","name":"temperature","schema":"double","writable":true},
  {"@type":"Property","name":"source","schema":"string","writable":true}]}]`

// testDefinition is the mapping language of the tests: the twin is the body's member named
// by twin, each property of set gets the body's member it names, and create names the model
// of twins to create.
type testDefinition struct {
	Source string            `json:"source"`
	Twin   string            `json:"twin"`
	Set    map[string]string `json:"set"`
	Create string            `json:"create"`
}

// testMapping is a compiled testDefinition.
type testMapping struct{ def testDefinition }

// compileTest is the tests' Compiler.
func compileTest(raw json.RawMessage) (Compiled, error) {
	var def testDefinition
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&def); err != nil {
		return nil, err
	}
	var errs []error
	if def.Twin == "" {
		errs = append(errs, errors.New("twin: required"))
	}
	if len(def.Set) == 0 {
		errs = append(errs, errors.New("set: required"))
	}
	return testMapping{def}, errors.Join(errs...)
}

// Map implements ingress.Mapper.
func (t testMapping) Map(_ context.Context, m ingress.Message, _ ingress.TwinReader) ([]ingress.Change, error) {
	var body map[string]any
	if err := json.Unmarshal(m.Body, &body); err != nil {
		return nil, fmt.Errorf("the body is not a JSON object: %v", err)
	}
	id, ok := body[t.def.Twin].(string)
	if !ok {
		return nil, fmt.Errorf("the body has no string %s", t.def.Twin)
	}
	var ops []map[string]any
	for _, prop := range slices.Sorted(func(yield func(string) bool) {
		for k := range t.def.Set {
			if !yield(k) {
				return
			}
		}
	}) {
		if v, ok := body[t.def.Set[prop]]; ok {
			ops = append(ops, map[string]any{"op": "add", "path": "/" + prop, "value": v})
		}
	}
	patch, _ := json.Marshal(ops)
	return []ingress.Change{{TwinID: id, CreateModel: t.def.Create, Patch: patch}}, nil
}

// DryRun implements Compiled.
func (t testMapping) DryRun(ctx context.Context, m ingress.Message, twins ingress.TwinReader) (any, error) {
	return t.Map(ctx, m, twins)
}

// env is a registry's world: a durable store with the thermostat model and the twin service.
type env struct {
	t   *testing.T
	st  *sqlite.Store
	svc *twins.Service
	reg *Registry
	// stop stops the registry's Run and waits for it.
	stop func()
	// cfg, kinds and logger are the registry's (see newEnvWith).
	cfg    Config
	kinds  map[string]Kind
	logger *slog.Logger
}

func newEnv(t *testing.T) *env {
	t.Helper()
	return newEnvWith(t, Config{}, map[string]Kind{HTTPType: HTTPKind()}, discard)
}

// newEnvWith is newEnv with a registry of cfg (whose Runner backs off a millisecond),
// kinds and logger.
func newEnvWith(t *testing.T, cfg Config, kinds map[string]Kind, logger *slog.Logger) *env {
	t.Helper()
	dir := t.TempDir()
	st, err := sqlite.Open(sqlite.Config{Dir: dir}, discard)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	svc, err := twins.New(twins.Config{ServiceID: "tf.test"}, st, discard)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.AddModels(context.Background(), []byte(thermostat)); err != nil {
		t.Fatal(err)
	}
	cfg.Runner.MinBackoff, cfg.Runner.MaxBackoff = time.Millisecond, time.Millisecond
	e := &env{t: t, st: st, svc: svc, cfg: cfg, kinds: kinds, logger: logger}
	e.run()
	return e
}

// run starts a new registry over the env's store.
func (e *env) run() {
	e.t.Helper()
	reg, err := New(e.cfg, e.kinds, e.st, e.svc, compileTest, nil, e.logger)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- reg.Run(ctx) }()
	stopped := false
	e.reg = reg
	e.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			e.t.Errorf("Run: %v", err)
		}
	}
	e.t.Cleanup(e.stop)
}

// putSource puts source name and fails the test on error.
func (e *env) putSource(name, def string) {
	e.t.Helper()
	if _, err := e.reg.Put(context.Background(), name, json.RawMessage(def)); err != nil {
		e.t.Fatalf("Put %s: %v", name, err)
	}
}

// putMapping puts mapping name and fails the test on error.
func (e *env) putMapping(name, def string) {
	e.t.Helper()
	if _, err := e.reg.PutMapping(context.Background(), name, json.RawMessage(def)); err != nil {
		e.t.Fatalf("PutMapping %s: %v", name, err)
	}
}

// push pushes body to source name, waiting for it to run, and returns the results.
func (e *env) push(name, contentType, body string, header http.Header) []runner.Outcome {
	e.t.Helper()
	if header == nil {
		header = http.Header{}
	}
	header.Set("Content-Type", contentType)
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, err := e.reg.Push(context.Background(), name, []byte(body), header)
		if errors.Is(err, ErrNotRunning) && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
			continue
		}
		if err != nil {
			e.t.Fatalf("Push: %v", err)
		}
		return out
	}
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

func results(out []runner.Outcome) string {
	var s []string
	for _, o := range out {
		s = append(s, string(o.Result))
	}
	return strings.Join(s, ",")
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
