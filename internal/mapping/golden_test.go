package mapping

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twinflow/twinflow/internal/dtdl"
	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/ingress"
)

var update = flag.Bool("update", false, "rewrite the expected sections of testdata/*.txtar")

// TestGolden runs the cases of testdata/*.txtar. Each case is an archive of files:
//
//   - mapping.json: the Definition;
//   - config.json (optional): {"costLimit", "maxMessageBytes", "estimateSize"};
//   - models.json (optional): DTDL models, for createTwin;
//   - twins.json (optional): {"<id>": <document>, ...}, the twins the TwinReader holds;
//   - relationships.json (optional): [["<source>", "<name>", "<target>"], ...], the graph;
//   - message.json (optional): {"topic", "key", "headers", "time", "body": <JSON value>};
//   - body (optional): the raw body, replacing message.json's (a final newline is dropped);
//   - event.json (optional): a change event, mapped through EventMessage instead;
//
// and the expected outcome, exactly one of: compile-error (Compile's error), eval-error
// (DryRun's error) or result (DryRun's Result as indented JSON). go test -update rewrites
// the outcome.
func TestGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/*.txtar")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no testdata/*.txtar")
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".txtar"), func(t *testing.T) {
			runGolden(t, file)
		})
	}
}

func runGolden(t *testing.T, file string) {
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	comment, sections := parseTxtar(data)
	sec := func(name string) ([]byte, bool) {
		for _, s := range sections {
			if s.name == name {
				return s.data, true
			}
		}
		return nil, false
	}
	var def Definition
	if raw, ok := sec("mapping.json"); !ok {
		t.Fatal("no mapping.json")
	} else if err := strictUnmarshal(raw, &def); err != nil {
		t.Fatalf("mapping.json: %v", err)
	}
	var cfg Config
	if raw, ok := sec("config.json"); ok {
		var c struct {
			CostLimit       uint64 `json:"costLimit"`
			MaxMessageBytes int    `json:"maxMessageBytes"`
			EstimateSize    int    `json:"estimateSize"`
		}
		if err := strictUnmarshal(raw, &c); err != nil {
			t.Fatalf("config.json: %v", err)
		}
		cfg = Config{CostLimit: c.CostLimit, MaxMessageBytes: c.MaxMessageBytes, EstimateSize: c.EstimateSize}
	}
	deps := Deps{Graph: graphOf(t, sec)}
	if raw, ok := sec("models.json"); ok {
		var docs []json.RawMessage
		if err := json.Unmarshal(raw, &docs); err != nil {
			t.Fatalf("models.json: %v", err)
		}
		set, err := dtdl.Parse(rawDocs(docs), nil, dtdl.Options{})
		if err != nil {
			t.Fatalf("models.json: %v", err)
		}
		deps.Models = set
	}
	twins := twinsOf(t, sec)
	msg := messageOf(t, sec)

	var outcome, got string
	m, err := Compile(def, cfg, deps)
	if err != nil {
		outcome, got = "compile-error", err.Error()+"\n"
	} else {
		res, err := m.DryRun(context.Background(), msg, twins)
		if err != nil {
			outcome, got = "eval-error", err.Error()+"\n"
		} else {
			enc, err := json.MarshalIndent(res, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			outcome, got = "result", string(enc)+"\n"
			checkMapAgrees(t, m, msg, twins, res)
		}
		if _, err := m.Map(context.Background(), msg, twins); (err == nil) != (outcome == "result") {
			t.Errorf("Map's error %v disagrees with DryRun's outcome %s", err, outcome)
		}
	}

	expected := []string{"compile-error", "eval-error", "result"}
	if *update {
		kept := slices.DeleteFunc(slices.Clone(sections), func(s section) bool { return slices.Contains(expected, s.name) })
		kept = append(kept, section{name: outcome, data: []byte(got)})
		if err := os.WriteFile(file, formatTxtar(comment, kept), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	for _, name := range expected {
		want, ok := sec(name)
		switch {
		case name == outcome && !ok:
			t.Errorf("got %s:\n%s\nbut the case expects another outcome", outcome, got)
		case name == outcome && string(want) != got:
			t.Errorf("%s:\n got: %s\nwant: %s", name, got, want)
		case name != outcome && ok:
			t.Errorf("want %s:\n%s\ngot %s:\n%s", name, want, outcome, got)
		}
	}
}

// checkMapAgrees checks that Map returns the changes DryRun reported.
func checkMapAgrees(t *testing.T, m *Mapping, msg ingress.Message, twins ingress.TwinReader, res Result) {
	t.Helper()
	changes, err := m.Map(context.Background(), msg, twins)
	if err != nil {
		t.Fatalf("Map: %v", err)
	}
	if len(changes) != len(res.Changes) {
		t.Fatalf("Map returned %d changes, DryRun %d", len(changes), len(res.Changes))
	}
	for i, c := range changes {
		r := res.Changes[i]
		if c.TwinID != r.TwinID || c.CreateModel != r.CreateModel || !bytes.Equal(c.Patch, r.Patch) || !bytes.Equal(c.Telemetry, r.Telemetry) {
			t.Errorf("Map change %d = %+v, DryRun %+v", i, c, r)
		}
	}
}

func strictUnmarshal(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

func rawDocs(docs []json.RawMessage) [][]byte {
	out := make([][]byte, len(docs))
	for i, d := range docs {
		out[i] = d
	}
	return out
}

// twinsOf returns the case's twins.
func twinsOf(t *testing.T, sec func(string) ([]byte, bool)) twinMap {
	twins := twinMap{}
	if raw, ok := sec("twins.json"); ok {
		var docs map[string]json.RawMessage
		if err := json.Unmarshal(raw, &docs); err != nil {
			t.Fatalf("twins.json: %v", err)
		}
		for id, d := range docs {
			twins[id] = d
		}
	}
	return twins
}

// graphOf returns the case's graph.
func graphOf(t *testing.T, sec func(string) ([]byte, bool)) Graph {
	g := &relGraph{}
	if raw, ok := sec("relationships.json"); ok {
		if err := json.Unmarshal(raw, &g.rels); err != nil {
			t.Fatalf("relationships.json: %v", err)
		}
	}
	return g
}

// messageOf returns the case's message.
func messageOf(t *testing.T, sec func(string) ([]byte, bool)) ingress.Message {
	if raw, ok := sec("event.json"); ok {
		var e event.Event
		if err := strictUnmarshal(raw, &e); err != nil {
			t.Fatalf("event.json: %v", err)
		}
		return ingress.EventMessage(e)
	}
	var m struct {
		Topic   string            `json:"topic"`
		Key     string            `json:"key"`
		Headers map[string]string `json:"headers"`
		Time    time.Time         `json:"time"`
		Body    json.RawMessage   `json:"body"`
	}
	if raw, ok := sec("message.json"); ok {
		if err := strictUnmarshal(raw, &m); err != nil {
			t.Fatalf("message.json: %v", err)
		}
	}
	msg := ingress.Message{Topic: m.Topic, Key: m.Key, Headers: m.Headers, Time: m.Time, Body: m.Body}
	if raw, ok := sec("body"); ok {
		msg.Body = bytes.TrimSuffix(raw, []byte("\n"))
	}
	return msg
}

// twinMap is an ingress.TwinReader over documents by id.
type twinMap map[string][]byte

func (m twinMap) Twin(id string) ([]byte, bool, error) {
	d, ok := m[id]
	return d, ok, nil
}

// relGraph is a Graph over a list of relationships.
type relGraph struct {
	rels [][3]string // source, name, target
}

func (g *relGraph) Incoming(_ context.Context, id, name string) ([]string, error) {
	var out []string
	for _, r := range g.rels {
		if r[2] == id && r[1] == name {
			out = append(out, r[0])
		}
	}
	return out, nil
}

func (g *relGraph) Outgoing(_ context.Context, id, name string) ([]string, error) {
	var out []string
	for _, r := range g.rels {
		if r[0] == id && r[1] == name {
			out = append(out, r[2])
		}
	}
	return out, nil
}

// section is one file of a txtar archive.
type section struct {
	name string
	data []byte
}

// parseTxtar parses the txtar format: a comment, then files each introduced by a line
// "-- name --".
func parseTxtar(data []byte) (comment []byte, sections []section) {
	for _, line := range bytes.SplitAfter(data, []byte("\n")) {
		s := strings.TrimRight(string(line), "\r\n")
		switch {
		case strings.HasPrefix(s, "-- ") && strings.HasSuffix(s, " --") && len(s) > 6:
			sections = append(sections, section{name: strings.TrimSpace(s[3 : len(s)-3])})
		case len(sections) == 0:
			comment = append(comment, line...)
		default:
			last := &sections[len(sections)-1]
			last.data = append(last.data, line...)
		}
	}
	return comment, sections
}

// formatTxtar writes an archive in the txtar format.
func formatTxtar(comment []byte, sections []section) []byte {
	var b bytes.Buffer
	b.Write(comment)
	for _, s := range sections {
		fmt.Fprintf(&b, "-- %s --\n", s.name)
		b.Write(s.data)
		if len(s.data) > 0 && s.data[len(s.data)-1] != '\n' {
			b.WriteByte('\n')
		}
	}
	return b.Bytes()
}
