package source

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/twinflow/twinflow/internal/ingress"
	"github.com/twinflow/twinflow/internal/ingress/runner"
	"github.com/twinflow/twinflow/internal/store"
)

var kinds = map[string]Kind{HTTPType: HTTPKind()}

func TestParse(t *testing.T) {
	tests := []struct {
		name, body string
		want       []string // substrings of the error; none means valid
	}{
		{"http", `{"sourceType":"http"}`, nil},
		{"with limits", `{"sourceType":"http","maxMessageBytes":1000,"dedupWindow":"30m"}`, nil},
		{"not an object", `[1]`, []string{"JSON object"}},
		{"no type", `{}`, []string{"sourceType: required"}},
		{"empty type", `{"sourceType":""}`, []string{"sourceType: required"}},
		{"null type", `{"sourceType":null}`, []string{"sourceType: required"}},
		{"unknown type", `{"sourceType":"carrier-pigeon"}`, []string{`"carrier-pigeon" is not one of http`}},
		{"unknown field", `{"sourceType":"http","url":"x"}`, []string{"url"}},
		{"bad limits", `{"sourceType":"http","maxMessageBytes":-1,"dedupWindow":"soon"}`,
			[]string{"maxMessageBytes: must be a positive integer", "dedupWindow: must be a positive duration"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			def, err := Parse(json.RawMessage(tt.body), kinds)
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				if def.Redacted()["sourceType"] != "http" {
					t.Errorf("Redacted = %v", def.Redacted())
				}
				return
			}
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Parse = %v, want ErrInvalid", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestSources(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	created, err := e.reg.Put(ctx, "plant", json.RawMessage(`{"sourceType":"http"}`))
	if err != nil || !created {
		t.Fatalf("Put = %v, %v; want created", created, err)
	}
	created, err = e.reg.Put(ctx, "plant", json.RawMessage(`{"sourceType":"http","maxMessageBytes":10}`))
	if err != nil || created {
		t.Fatalf("Put again = %v, %v; want replaced", created, err)
	}
	for _, name := range []string{"", "$events", "a b", strings.Repeat("x", 65)} {
		if _, err := e.reg.Put(ctx, name, json.RawMessage(`{"sourceType":"http"}`)); !errors.Is(err, ErrNameInvalid) {
			t.Errorf("Put %q = %v; want ErrNameInvalid", name, err)
		}
	}
	if _, err := e.reg.Put(ctx, "other", json.RawMessage(`{"sourceType":"nope"}`)); !errors.Is(err, ErrInvalid) {
		t.Errorf("Put of an unknown type = %v; want ErrInvalid", err)
	}
	src, err := e.reg.Get(ctx, "plant")
	if err != nil || src.Definition.MaxMessageBytes != 10 || src.Created.IsZero() {
		t.Fatalf("Get = %+v, %v", src, err)
	}
	list, err := e.reg.List(ctx)
	if err != nil || len(list) != 1 || list[0].Name != "plant" {
		t.Fatalf("List = %+v, %v", list, err)
	}
	if _, err := e.reg.Get(ctx, "missing"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get of a missing source = %v", err)
	}
	waitFor(t, "the source runs", func() bool {
		st, err := e.reg.Status(ctx, "plant")
		return err == nil && st.State == ingress.Running
	})

	// The replaced definition's limit applies: a larger message is a dead letter.
	e.putMapping("m", `{"source":"plant","twin":"id","set":{"temperature":"t"},"create":"dtmi:test:Thermostat;1"}`)
	out := e.push("plant", "application/json", `{"id":"t1","t":21.5}`, nil)
	if results(out) != "deadLettered" || !strings.Contains(out[0].Reason, "limit is 10 bytes") {
		t.Fatalf("push = %+v", out)
	}
	st, err := e.reg.Status(ctx, "plant")
	if err != nil || st.Received != 1 || st.DeadLettered != 1 || st.DeadLetters != 1 {
		t.Errorf("Status = %+v, %v", st, err)
	}

	if err := e.reg.Delete(ctx, "plant"); !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), `mapping "m"`) {
		t.Errorf("Delete while a mapping reads it = %v; want ErrInUse naming the mapping", err)
	}
	if err := e.reg.DeleteMapping(ctx, "m"); err != nil {
		t.Fatal(err)
	}
	if err := e.reg.Delete(ctx, "plant"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.reg.Status(ctx, "plant"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Status after delete = %v", err)
	}
	if err := e.reg.Delete(ctx, "plant"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Delete twice = %v", err)
	}
}

func TestMappings(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.putSource("plant", `{"sourceType":"http"}`)
	if _, err := e.reg.PutMapping(ctx, "m", json.RawMessage(`{"source":"nowhere","twin":"id","set":{"temperature":"t"}}`)); !errors.Is(err, ErrNoSuchSource) {
		t.Errorf("PutMapping of a missing source = %v; want ErrNoSuchSource", err)
	}
	if _, err := e.reg.PutMapping(ctx, "m", json.RawMessage(`{"source":"plant"}`)); !errors.Is(err, ErrMappingInvalid) ||
		!strings.Contains(err.Error(), "twin: required") || !strings.Contains(err.Error(), "set: required") {
		t.Errorf("PutMapping that does not compile = %v; want ErrMappingInvalid with every problem", err)
	}
	if _, err := e.reg.PutMapping(ctx, "m", json.RawMessage(`{"twin":"id"}`)); !errors.Is(err, ErrMappingInvalid) {
		t.Errorf("PutMapping without a source = %v; want ErrMappingInvalid", err)
	}
	created, err := e.reg.PutMapping(ctx, "m", json.RawMessage(`{"source":"plant","twin":"id","set":{"temperature":"t"},"create":"dtmi:test:Thermostat;1"}`))
	if err != nil || !created {
		t.Fatalf("PutMapping = %v, %v", created, err)
	}
	if out := e.push("plant", "application/json", `{"id":"t1","t":21.5}`, nil); results(out) != "applied" || out[0].Changes != 1 {
		t.Fatalf("push = %+v", out)
	}
	if doc := e.twin("t1"); doc["temperature"] != 21.5 {
		t.Fatalf("twin = %v", doc)
	}
	// A replaced mapping applies from the next message on.
	created, err = e.reg.PutMapping(ctx, "m", json.RawMessage(`{"source":"plant","twin":"id","set":{"source":"from"}}`))
	if err != nil || created {
		t.Fatalf("PutMapping again = %v, %v", created, err)
	}
	e.push("plant", "application/json", `{"id":"t1","t":30,"from":"api"}`, nil)
	if doc := e.twin("t1"); doc["temperature"] != 21.5 || doc["source"] != "api" {
		t.Fatalf("twin after the replaced mapping = %v", doc)
	}
	mp, err := e.reg.GetMapping(ctx, "m")
	if err != nil || mp.Source != "plant" || !strings.Contains(string(mp.Definition), `"from"`) {
		t.Errorf("GetMapping = %+v, %v", mp, err)
	}
	out, err := e.reg.DryRun(ctx, "m", TestMessage{Body: json.RawMessage(`{"id":"t9","from":"test"}`)})
	changes, _ := out.([]ingress.Change)
	if err != nil || len(changes) != 1 || changes[0].TwinID != "t9" || e.twin("t9") != nil {
		t.Errorf("DryRun = %+v, %v; want a change of t9, not applied", out, err)
	}
	if _, err := e.reg.DryRun(ctx, "m", TestMessage{Body: json.RawMessage(`[1]`)}); err == nil {
		t.Error("DryRun of a message the mapping fails on succeeded")
	}
	if err := e.reg.DeleteMapping(ctx, "m"); err != nil {
		t.Fatal(err)
	}
	if err := e.reg.DeleteMapping(ctx, "m"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("DeleteMapping twice = %v", err)
	}
	// Without mappings a message changes nothing.
	if out := e.push("plant", "application/json", `{"id":"t1","from":"gone"}`, nil); results(out) != "applied" || out[0].Changes != 0 {
		t.Errorf("push without mappings = %+v", out)
	}
}

func TestPush(t *testing.T) {
	e := newEnv(t)
	e.putSource("plant", `{"sourceType":"http"}`)
	e.putMapping("m", `{"source":"plant","twin":"id","set":{"temperature":"t"},"create":"dtmi:test:Thermostat;1"}`)

	h := http.Header{"Message-Id": {"m1"}}
	if out := e.push("plant", "application/json", `{"id":"t1","t":1}`, h); results(out) != "applied" {
		t.Fatalf("push = %+v", out)
	}
	if out := e.push("plant", "application/json", `{"id":"t1","t":2}`, h); results(out) != "duplicate" {
		t.Fatalf("push of the same Message-Id = %+v; want a duplicate", out)
	}
	out := e.push("plant", "application/json", `[{"id":"t2","t":1,"messageId":"a"},{"id":"t2","t":2,"messageId":"a"},{"id":"t2","t":"hot"},"junk"]`, nil)
	if results(out) != "applied,duplicate,deadLettered,deadLettered" {
		t.Fatalf("push of an array = %+v", out)
	}
	if !strings.Contains(out[2].Reason, "Invalid twin specified") || !strings.Contains(out[3].Reason, "not a JSON object") {
		t.Errorf("reasons = %q, %q", out[2].Reason, out[3].Reason)
	}
	out = e.push("plant", NDJSON, "{\"id\":\"t3\",\"t\":1}\n\n{\"id\":\"t3\",\"t\":3}\n", nil)
	if results(out) != "applied,applied" {
		t.Fatalf("push of NDJSON = %+v", out)
	}
	if doc := e.twin("t3"); doc["temperature"] != float64(3) {
		t.Errorf("t3 = %v; want the last message's temperature", doc)
	}
	dls, err := e.reg.DeadLetters(context.Background(), "plant", 0, 0)
	if err != nil || len(dls) != 2 || dls[1].Message.Topic != "plant" || dls[1].Message.Headers["content-type"] != "application/json" {
		t.Fatalf("DeadLetters = %+v, %v", dls, err)
	}

	if _, err := e.reg.Push(context.Background(), "plant", nil, http.Header{}); !errors.Is(err, ErrBadPush) {
		t.Errorf("push of nothing = %v; want ErrBadPush", err)
	}
	if _, err := e.reg.Push(context.Background(), "nope", []byte(`{}`), http.Header{}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("push to a missing source = %v", err)
	}
}

func TestRedrive(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.putSource("plant", `{"sourceType":"http"}`)
	e.putMapping("m", `{"source":"plant","twin":"id","set":{"temperature":"t"}}`)
	out := e.push("plant", "application/json", `{"id":"t1","t":1}`, nil)
	if results(out) != "deadLettered" || !strings.Contains(out[0].Reason, "no digital twin") {
		t.Fatalf("push = %+v", out)
	}
	// The mapping is fixed to create the twin; the dead letter is redriven.
	e.putMapping("m", `{"source":"plant","twin":"id","set":{"temperature":"t"},"create":"dtmi:test:Thermostat;1"}`)
	o, err := e.reg.Redrive(ctx, "plant", out[0].DeadLetter)
	if err != nil || o.Result != runner.Applied {
		t.Fatalf("Redrive = %+v, %v", o, err)
	}
	if doc := e.twin("t1"); doc["temperature"] != float64(1) {
		t.Errorf("twin after redrive = %v", doc)
	}
	if _, err := e.reg.Redrive(ctx, "plant", out[0].DeadLetter); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Redrive of a redriven dead letter = %v", err)
	}
	out = e.push("plant", "application/json", `nope`, nil)
	if err := e.reg.DeleteDeadLetter(ctx, "plant", out[0].DeadLetter); err != nil {
		t.Fatal(err)
	}
	if dls, _ := e.reg.DeadLetters(ctx, "plant", 0, 0); len(dls) != 0 {
		t.Errorf("dead letters after a delete: %+v", dls)
	}
}

func TestEventsRunnerRunsWhileMappingsReadIt(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.putSource("plant", `{"sourceType":"http"}`)
	e.putMapping("device", `{"source":"plant","twin":"id","set":{"temperature":"t"},"create":"dtmi:test:Thermostat;1"}`)
	if st, err := e.reg.Status(ctx, EventsSource); err != nil || st.State != ingress.Stopped {
		t.Fatalf("$events status without mappings = %+v, %v", st, err)
	}
	// Propagation: a twin's Twin.Create creates its shadow, whose id is the event's subject
	// plus "-shadow" (the test mapping reads the twin id from the body; the Twin.Create
	// event's body is the twin, whose $dtId is the subject).
	e.putMapping("shadow", `{"source":"$events","twin":"$dtId","set":{"source":"$dtId"}}`)
	waitFor(t, "propagation runs", func() bool {
		st, err := e.reg.Status(ctx, EventsSource)
		return err == nil && st.State == ingress.Running
	})
	e.push("plant", "application/json", `{"id":"t1","t":1}`, nil)
	waitFor(t, "the change event is propagated", func() bool {
		doc := e.twin("t1")
		return doc != nil && doc["source"] == "t1"
	})
	src, err := e.reg.Get(ctx, EventsSource)
	if err != nil || src.Definition.Redacted()["sourceType"] != EventsSource {
		t.Errorf("Get($events) = %+v, %v", src, err)
	}
	if err := e.reg.DeleteMapping(ctx, "shadow"); err != nil {
		t.Fatal(err)
	}
	if st, _ := e.reg.Status(ctx, EventsSource); st.State != ingress.Stopped {
		t.Errorf("$events status after its last mapping went = %+v", st)
	}
	err = e.st.ViewDelivery(ctx, func(r store.DeliveryReader) error {
		_, err := r.ConsumerCursor(EventsSource)
		return err
	})
	if !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the $events cursor after its last mapping went: %v; want it deleted", err)
	}
}

func TestStateSurvivesRestart(t *testing.T) {
	e := newEnv(t)
	e.putSource("plant", `{"sourceType":"http"}`)
	e.putMapping("m", `{"source":"plant","twin":"id","set":{"temperature":"t"},"create":"dtmi:test:Thermostat;1"}`)
	h := http.Header{"Message-Id": {"once"}}
	e.push("plant", "application/json", `{"id":"t1","t":1}`, h)
	e.stop()
	e.run()
	if out := e.push("plant", "application/json", `{"id":"t1","t":2}`, h); results(out) != "duplicate" {
		t.Errorf("push after restart = %+v; want the id remembered", out)
	}
	if out := e.push("plant", "application/json", `{"id":"t1","t":3}`, nil); results(out) != "applied" {
		t.Errorf("push after restart = %+v; want the mapping loaded", out)
	}
	if doc := e.twin("t1"); doc["temperature"] != float64(3) {
		t.Errorf("twin = %v", doc)
	}
}

func TestReadMessages(t *testing.T) {
	now := time.Now()
	tests := []struct {
		name, contentType, body, messageID string
		bodies, ids                        []string
		err                                string
	}{
		{name: "one", contentType: "application/json", body: `{"a":1,"messageId":"f"}`, bodies: []string{`{"a":1,"messageId":"f"}`}, ids: []string{"f"}},
		{name: "one with header", body: ` {"a":1,"messageId":"f"}`, messageID: "h", bodies: []string{` {"a":1,"messageId":"f"}`}, ids: []string{"h"}},
		{name: "not JSON", contentType: "text/plain", body: "21.5 C", bodies: []string{"21.5 C"}, ids: []string{""}},
		{name: "array", body: ` [{"messageId":"x"}, 2, "s"] `, messageID: "ignored", bodies: []string{`{"messageId":"x"}`, `2`, `"s"`}, ids: []string{"x", "", ""}},
		{name: "ndjson", contentType: "application/x-ndjson; charset=utf-8", body: "{\"messageId\":1}\r\n\n[1]\nnot json\n", bodies: []string{`{"messageId":1}`, `[1]`, `not json`}, ids: []string{"", "", ""}},
		{name: "empty", body: "  ", err: "empty"},
		{name: "empty array", body: "[]", err: "no message"},
		{name: "bad array", body: "[1,", err: "not one"},
		{name: "empty ndjson", contentType: NDJSON, body: "\n\n", err: "no message"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{"Content-Type": {tt.contentType}, "Authorization": {"Bearer x"}, "X-Trace": {"a", "b"}}
			if tt.messageID != "" {
				h.Set("Message-Id", tt.messageID)
			}
			msgs, err := ReadMessages([]byte(tt.body), h, "plant", now)
			if tt.err != "" {
				if !errors.Is(err, ErrBadPush) || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("ReadMessages = %v; want ErrBadPush with %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(msgs) != len(tt.bodies) {
				t.Fatalf("%d messages; want %d", len(msgs), len(tt.bodies))
			}
			for i, m := range msgs {
				if string(m.Body) != tt.bodies[i] || m.ID != tt.ids[i] || m.Topic != "plant" || !m.Time.Equal(now) ||
					m.Headers["x-trace"] != "b" || m.Headers["authorization"] != "" {
					t.Errorf("message %d = %+v; want body %s, id %q", i, m, tt.bodies[i], tt.ids[i])
				}
			}
		})
	}
}

// TestReload has a second registry over the same store, whose Run does not run, stand for
// another node: the first follows its sources and mappings with Reload.
func TestReload(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	other, err := New(e.cfg, e.kinds, e.st, e.svc, compileTest, nil, discard)
	if err != nil {
		t.Fatal(err)
	}
	runnerOf := func(name string) *running {
		e.reg.mu.Lock()
		defer e.reg.mu.Unlock()
		return e.reg.running[name]
	}
	reload := func() {
		t.Helper()
		if err := e.reg.Reload(ctx); err != nil {
			t.Fatalf("Reload: %v", err)
		}
	}

	<-e.reg.Started() // the stored sources are loaded: what follows is news to it
	if _, err := other.Put(ctx, "plant", json.RawMessage(`{"sourceType":"http"}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := other.PutMapping(ctx, "m", json.RawMessage(`{"source":"plant","twin":"id","set":{"temperature":"t"},"create":"dtmi:test:Thermostat;1"}`)); err != nil {
		t.Fatal(err)
	}
	if runnerOf("plant") != nil {
		t.Fatal("the other registry's source runs before the reload")
	}
	reload()
	if out := e.push("plant", "application/json", `{"id":"t1","t":21.5}`, nil); results(out) != "applied" || out[0].Changes != 1 {
		t.Fatalf("push after the reload = %+v", out)
	}

	// Unchanged, the runner is left alone; the registry's own changes are no change either.
	first := runnerOf("plant")
	reload()
	e.putSource("own", `{"sourceType":"http"}`)
	e.putMapping("own", `{"source":"own","twin":"id","set":{"temperature":"t"}}`)
	own := runnerOf("own")
	reload()
	if runnerOf("plant") != first || runnerOf("own") != own {
		t.Error("a reload of unchanged sources restarted a runner")
	}

	// A changed mapping reaches the running source; a changed source restarts.
	if _, err := other.PutMapping(ctx, "m", json.RawMessage(`{"source":"plant","twin":"id","set":{"source":"from"}}`)); err != nil {
		t.Fatal(err)
	}
	reload()
	if runnerOf("plant") != first {
		t.Error("a changed mapping restarted its source")
	}
	e.push("plant", "application/json", `{"id":"t1","t":30,"from":"elsewhere"}`, nil)
	if doc := e.twin("t1"); doc["temperature"] != 21.5 || doc["source"] != "elsewhere" {
		t.Fatalf("twin after the changed mapping = %v", doc)
	}
	if _, err := other.Put(ctx, "plant", json.RawMessage(`{"sourceType":"http","maxMessageBytes":1000}`)); err != nil {
		t.Fatal(err)
	}
	reload()
	if r := runnerOf("plant"); r == nil || r == first {
		t.Error("a changed source did not restart")
	}

	// A mapping of $events starts its runner.
	if _, err := other.PutMapping(ctx, "ev", json.RawMessage(`{"source":"$events","twin":"id","set":{"temperature":"t"}}`)); err != nil {
		t.Fatal(err)
	}
	reload()
	if runnerOf(EventsSource) == nil {
		t.Error("$events does not run after a mapping of it was reloaded")
	}

	// A stored mapping that does not compile fails the reload, and leaves the others.
	err = e.st.UpdateIngress(ctx, func(w store.IngressWriter) error {
		return w.PutMapping(store.Mapping{Name: "bad", Source: "plant", Definition: json.RawMessage(`{"source":"plant"}`), Created: time.Now()})
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.reg.Reload(ctx); err == nil || !strings.Contains(err.Error(), `"bad"`) {
		t.Errorf("Reload with a mapping that does not compile = %v", err)
	}
	e.push("plant", "application/json", `{"id":"t1","from":"still"}`, nil)
	if doc := e.twin("t1"); doc["source"] != "still" {
		t.Fatalf("twin after a failed reload = %v", doc)
	}

	// Deleted elsewhere, mappings leave and sources stop.
	for _, name := range []string{"bad", "m", "ev"} {
		if err := other.DeleteMapping(ctx, name); err != nil {
			t.Fatal(err)
		}
	}
	if err := other.Delete(ctx, "plant"); err != nil {
		t.Fatal(err)
	}
	reload()
	if runnerOf("plant") != nil || runnerOf(EventsSource) != nil || runnerOf("own") != own {
		t.Errorf("after deletes: plant runs %v, $events runs %v, own kept %v", runnerOf("plant") != nil, runnerOf(EventsSource) != nil, runnerOf("own") == own)
	}
	e.reg.mu.Lock()
	_, hasM := e.reg.mappings["m"]
	e.reg.mu.Unlock()
	if hasM {
		t.Error("the deleted mapping is still compiled")
	}
}
