package main

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

// iface is an interface with the id, extending ext (if set) and naming refs elsewhere.
func iface(id, ext string, refs ...string) string {
	doc := map[string]any{"@id": id, "@type": "Interface", "@context": "dtmi:dtdl:context;3"}
	if ext != "" {
		doc["extends"] = ext
	}
	var contents []any
	for i, r := range refs {
		contents = append(contents, map[string]any{"@type": "Relationship", "name": fmt.Sprintf("r%d", i), "target": r})
	}
	if contents != nil {
		doc["contents"] = contents
	}
	b, _ := json.Marshal(doc)
	return string(b)
}

func TestParseModels(t *testing.T) {
	tests := []struct {
		name    string
		content string
		ids     []string
		refs    [][]string
		wantErr string
	}{
		{name: "one", content: iface("dtmi:a;1", "dtmi:b;1"), ids: []string{"dtmi:a;1"}, refs: [][]string{{"dtmi:b;1"}}},
		{name: "array", content: "[" + iface("dtmi:a;1", "") + "," + iface("dtmi:b;1", "", "dtmi:a;1") + "]",
			ids: []string{"dtmi:a;1", "dtmi:b;1"}, refs: [][]string{nil, {"dtmi:a;1"}}},
		{
			name: "own schemas are not references, component schemas are",
			content: `{"@id": "dtmi:a;1", "@type": "Interface", "@context": ["dtmi:dtdl:context;3", "dtmi:dtdl:extension:historization;1"],
			  "schemas": [{"@id": "dtmi:a:Mode;1", "@type": "Enum", "valueSchema": "string", "enumValues": []}],
			  "contents": [{"@type": "Property", "name": "mode", "schema": "dtmi:a:Mode;1"},
			    {"@type": "Component", "name": "c", "schema": "dtmi:c;1"},
			    {"@type": "Property", "name": "other", "schema": "dtmi:b:Shared;1"}]}`,
			ids: []string{"dtmi:a;1"}, refs: [][]string{{"dtmi:b:Shared;1", "dtmi:c;1"}},
		},
		{name: "syntax", content: "{\n\"@id\": \"dtmi:a;1\",\n  x\n}", wantErr: "not valid JSON at line 3, column 3"},
		{name: "no id", content: `{"@type": "Interface", "@context": "dtmi:dtdl:context;3"}`, wantErr: `no "@id"`},
		{name: "not a dtmi", content: `{"@id": "urn:a", "@type": "Interface", "@context": "dtmi:dtdl:context;3"}`, wantErr: "not a DTMI"},
		{name: "not an interface", content: `{"@id": "dtmi:a;1", "@type": "Property", "@context": "dtmi:dtdl:context;3"}`, wantErr: `the model dtmi:a;1: its "@type" is Property`},
		{name: "no context", content: `{"@id": "dtmi:a;1", "@type": "Interface"}`, wantErr: `no "@context"`},
		{name: "second of two", content: "[" + iface("dtmi:a;1", "") + `, {"@type": "Interface"}]`, wantErr: "model 2 of 2"},
		{name: "empty array", content: "[]", wantErr: "empty array"},
		{name: "a number", content: "42", wantErr: "must be a JSON object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ms, err := parseModels("f.json", []byte(tt.content))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.HasPrefix(err.Error(), "f.json: ") {
					t.Fatalf("error %v, want f.json: ...%s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for i, m := range ms {
				if m.id != tt.ids[i] || m.path != "f.json" || !reflect.DeepEqual(m.refs, tt.refs[i]) {
					t.Errorf("model %d = %s refs %q, want %s refs %q", i, m.id, m.refs, tt.ids[i], tt.refs[i])
				}
			}
		})
	}
}

// TestUploadBatches checks the order and the cuts of the batches.
func TestUploadBatches(t *testing.T) {
	parse := func(docs ...string) []localModel {
		var out []localModel
		for _, d := range docs {
			m, err := parseModel(json.RawMessage(d))
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, m)
		}
		return out
	}
	ids := func(batches [][]localModel) [][]string {
		var out [][]string
		for _, b := range batches {
			var s []string
			for _, m := range b {
				s = append(s, strings.TrimSuffix(strings.TrimPrefix(m.id, "dtmi:"), ";1"))
			}
			out = append(out, s)
		}
		return out
	}
	tests := []struct {
		name    string
		models  []localModel
		size    int
		want    [][]string
		wantErr string
	}{
		{name: "reverse chain", size: 250,
			models: parse(iface("dtmi:c;1", "dtmi:b;1"), iface("dtmi:b;1", "dtmi:a;1"), iface("dtmi:a;1", "")),
			want:   [][]string{{"a", "b", "c"}}},
		{name: "chain cut in batches of 2", size: 2,
			models: parse(iface("dtmi:c;1", "dtmi:b;1"), iface("dtmi:b;1", "dtmi:a;1"), iface("dtmi:a;1", "")),
			want:   [][]string{{"a", "b"}, {"c"}}},
		{name: "a cycle stays in one batch", size: 2,
			models: parse(iface("dtmi:x;1", ""), iface("dtmi:a;1", "", "dtmi:b;1"), iface("dtmi:b;1", "", "dtmi:a;1")),
			want:   [][]string{{"x"}, {"a", "b"}}},
		{name: "references outside the set are not ordered", size: 250,
			models: parse(iface("dtmi:a;1", "dtmi:server;1"), iface("dtmi:b;1", "dtmi:a;1")),
			want:   [][]string{{"a", "b"}}},
		{name: "a reference to a schema inside another model", size: 1,
			models: parse(`{"@id": "dtmi:u;1", "@type": "Interface", "@context": "dtmi:dtdl:context;3", "contents": [{"@type": "Property", "name": "m", "schema": "dtmi:d:Mode;1"}]}`,
				`{"@id": "dtmi:d;1", "@type": "Interface", "@context": "dtmi:dtdl:context;3", "schemas": [{"@id": "dtmi:d:Mode;1", "@type": "Enum", "valueSchema": "string", "enumValues": []}]}`),
			want: [][]string{{"d"}, {"u"}}},
		{name: "a cycle too large", size: 2,
			models:  parse(iface("dtmi:a;1", "", "dtmi:b;1"), iface("dtmi:b;1", "", "dtmi:c;1"), iface("dtmi:c;1", "", "dtmi:a;1")),
			wantErr: "3 models depend on each other, more than the 2 one upload takes: dtmi:a;1, dtmi:b;1, dtmi:c;1"},
		{name: "nothing", size: 250},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := uploadBatches(tt.models, tt.size)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("error %v, want %s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(ids(got), tt.want) {
				t.Errorf("batches %q, want %q", ids(got), tt.want)
			}
		})
	}
}

// TestStronglyConnectedDeep checks that a chain far longer than any stack would allow for
// recursion comes out in dependency order.
func TestStronglyConnectedDeep(t *testing.T) {
	const n = 200_000
	deps := make([][]int, n)
	for i := range n - 1 {
		deps[i] = []int{i + 1}
	}
	comps := stronglyConnected(deps)
	if len(comps) != n || comps[0][0] != n-1 || comps[n-1][0] != 0 {
		t.Fatalf("%d components, first %v, last %v", len(comps), comps[0], comps[len(comps)-1])
	}
}

func TestTabulate(t *testing.T) {
	rows := []json.RawMessage{
		json.RawMessage(`{"$dtId": "a", "t": 1, "m": {"x": [1, 2]}}`),
		json.RawMessage(`{"$dtId": "b", "n": null, "s": "x,y"}`),
		json.RawMessage(`7`),
	}
	header, cells := tabulate(rows)
	wantHeader := []string{"$dtId", "t", "m", "n", "s", "value"}
	want := [][]string{{"a", "1", `{"x":[1,2]}`, "", "", ""}, {"b", "", "", "", "x,y", ""}, {"", "", "", "", "", "7"}}
	if !reflect.DeepEqual(header, wantHeader) || !reflect.DeepEqual(cells, want) {
		t.Errorf("tabulate = %q %q, want %q %q", header, cells, wantHeader, want)
	}
}

func TestParseWhen(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		in   string
		want time.Time
		err  bool
	}{
		{in: "1h", want: now.Add(-time.Hour)},
		{in: "-90s", want: now.Add(-90 * time.Second)},
		{in: "2026-12-01T00:00:00Z", want: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)},
		{in: "2026-12-01T01:00:00.5+01:00", want: time.Date(2026, 12, 1, 0, 0, 0, 5e8, time.UTC)},
		{in: "yesterday", err: true},
		{in: "", err: true},
	} {
		got, err := parseWhen("--since", tt.in, now)
		if (err != nil) != tt.err || (!tt.err && !got.Equal(tt.want)) {
			t.Errorf("parseWhen(%q) = %v, %v; want %v (error %v)", tt.in, got, err, tt.want, tt.err)
		}
	}
}
