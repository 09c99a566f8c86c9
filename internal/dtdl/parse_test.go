package dtdl

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
)

func readModel(t testing.TB, name string) []byte {
	t.Helper()
	data, err := os.ReadFile("testdata/models/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func mustParse(t testing.TB, base *ModelSet, docs ...[]byte) *ModelSet {
	t.Helper()
	s, err := Parse(docs, base, Options{})
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return s
}

func TestParseResolvesModel(t *testing.T) {
	s := mustParse(t, nil, readModel(t, "building.json"))
	if got, want := s.IDs(), []string{"dtmi:example:Room;1", "dtmi:example:Space;1", "dtmi:example:Thermostat;1"}; !slices.Equal(got, want) {
		t.Fatalf("IDs() = %v, want %v", got, want)
	}
	room, ok := s.Interface("dtmi:example:Room;1")
	if !ok {
		t.Fatal("Room missing")
	}
	if room.Version != 3 || !slices.Equal(room.Extends, []string{"dtmi:example:Space;1"}) {
		t.Errorf("Room version %d extends %v", room.Version, room.Extends)
	}
	if room.Description["it"] != "Una stanza" || room.Description["en"] != "A room" {
		t.Errorf("Room description = %v", room.Description)
	}

	// Inherited contents are flattened in, and remember where they were declared.
	name := room.Properties["name"]
	if name == nil || name.DefinedIn != "dtmi:example:Space;1" || !name.Writable || name.Schema.Kind != KindString {
		t.Fatalf("inherited property name = %+v", name)
	}
	if name.ID != "dtmi:example:Space:_contents:__name;1" {
		t.Errorf("assigned id = %q", name.ID)
	}
	rel := room.Relationships["contains"]
	if rel == nil || rel.Target != "dtmi:example:Space;1" || rel.MaxMultiplicity != 100 || rel.Properties["since"].Schema.Kind != KindDateTime {
		t.Fatalf("relationship contains = %+v", rel)
	}

	temp := room.Properties["temperature"]
	if temp.Schema.Kind != KindDouble || temp.Unit == "" || !slices.Equal(temp.Types, []string{"Temperature"}) {
		t.Errorf("temperature = %+v", temp)
	}
	if room.Telemetries["occupancy"].Schema.Kind != KindInteger {
		t.Errorf("occupancy schema = %v", room.Telemetries["occupancy"].Schema.Kind)
	}

	mode := room.Properties["mode"].Schema
	if mode.Kind != KindEnum || mode.ValueSchema != KindInteger || len(mode.EnumValues) != 2 {
		t.Fatalf("mode schema = %+v", mode)
	}
	if v, ok := mode.EnumValues[1].Value.(int); !ok || v != 1 || mode.EnumValues[1].Name != "heat" {
		t.Errorf("enum value = %#v", mode.EnumValues[1])
	}
	if mode.ID != "dtmi:example:Room:_contents:__mode:_schema;1" {
		t.Errorf("enum id = %q", mode.ID)
	}

	comp := room.Components["thermostat"]
	thermostat, _ := s.Interface("dtmi:example:Thermostat;1")
	if comp == nil || comp.Schema != thermostat || thermostat.Version != 2 {
		t.Fatalf("component = %+v", comp)
	}
	if thermostat.Telemetries["where"].Schema.Kind != KindPoint {
		t.Errorf("geospatial schema = %v", thermostat.Telemetries["where"].Schema.Kind)
	}

	reboot := room.Commands["reboot"]
	if reboot.Request.Name != "delay" || reboot.Request.Schema.Kind != KindDuration {
		t.Errorf("request = %+v", reboot.Request)
	}
	result := reboot.Response.Schema
	if result.Kind != KindObject || result.ID != "dtmi:example:Result;1" || len(room.Schemas) != 1 || room.Schemas[0] != result {
		t.Fatalf("response schema = %+v", result)
	}
	tags := result.Fields[1].Schema
	if tags.Kind != KindMap || tags.MapKey.Schema.Kind != KindString || tags.MapValue.Schema.Kind != KindArray || tags.MapValue.Schema.ElementSchema.Kind != KindString {
		t.Errorf("map schema = %+v", tags)
	}

	// Standard schemas are shared values.
	if name.Schema != standardSchemas[3][KindString] || thermostat.Properties["setPoint"].Schema != standardSchemas[2][KindDouble] {
		t.Error("standard schemas are not the shared values")
	}
}

func TestModelSetGraph(t *testing.T) {
	base := mustParse(t, nil, readModel(t, "building.json"))
	s := mustParse(t, base, readModel(t, "floor.json"))
	if base.Len() != 3 || s.Len() != 4 {
		t.Fatalf("Len base %d, set %d; want 3 and 4", base.Len(), s.Len())
	}
	if _, ok := base.Interface("dtmi:example:Floor;1"); ok {
		t.Error("Parse changed its base")
	}
	tests := []struct {
		name string
		got  []string
		want []string
	}{
		{"Ancestors(Room)", s.Ancestors("dtmi:example:Room;1"), []string{"dtmi:example:Space;1"}},
		{"Descendants(Space)", s.Descendants("dtmi:example:Space;1"), []string{"dtmi:example:Floor;1", "dtmi:example:Room;1"}},
		{"Dependencies(Room)", s.Dependencies("dtmi:example:Room;1"), []string{"dtmi:example:Space;1", "dtmi:example:Thermostat;1"}},
		{"ReferencedBy(Space)", s.ReferencedBy("dtmi:example:Space;1"), []string{"dtmi:example:Floor;1", "dtmi:example:Room;1"}},
		{"ReferencedBy(Thermostat)", s.ReferencedBy("dtmi:example:Thermostat;1"), []string{"dtmi:example:Room;1"}},
	}
	for _, tt := range tests {
		if !slices.Equal(tt.got, tt.want) {
			t.Errorf("%s = %v, want %v", tt.name, tt.got, tt.want)
		}
	}
	if !s.IsA("dtmi:example:Floor;1", "dtmi:example:Space;1") || s.IsA("dtmi:example:Space;1", "dtmi:example:Floor;1") {
		t.Error("IsA is wrong")
	}

	if _, err := s.Without("dtmi:example:Space;1"); err == nil || !strings.Contains(err.Error(), "dtmi:example:Floor;1, dtmi:example:Room;1") {
		t.Errorf("Without(Space) error = %v, want one naming Floor and Room", err)
	}
	smaller, err := s.Without("dtmi:example:Floor;1")
	if err != nil {
		t.Fatal(err)
	}
	if smaller.Len() != 3 || slices.Contains(smaller.Descendants("dtmi:example:Space;1"), "dtmi:example:Floor;1") {
		t.Errorf("Without(Floor) left %v", smaller.IDs())
	}
	if s.Len() != 4 {
		t.Error("Without changed its receiver")
	}
}

func TestParseBatchIsAllOrNothing(t *testing.T) {
	base := mustParse(t, nil, readModel(t, "building.json"))
	bad := []byte(`{"@context":"dtmi:dtdl:context;3","@id":"dtmi:example:Bad;1","@type":"Interface",
		"extends":"dtmi:example:Missing;1","contents":[{"@type":"Property","name":"x","schema":"dtmi:example:Gone;2"}]}`)
	_, err := Parse([][]byte{readModel(t, "floor.json"), bad}, base, Options{})
	var perr *Error
	if !errors.As(err, &perr) {
		t.Fatalf("err = %v, want *Error", err)
	}
	if want := []string{"dtmi:example:Gone;2", "dtmi:example:Missing;1"}; !slices.Equal(perr.Unresolved, want) {
		t.Errorf("Unresolved = %v, want %v", perr.Unresolved, want)
	}
	if base.Len() != 3 {
		t.Error("failed batch changed the base")
	}
	// Redefining a model of the base is an error.
	if _, err := Parse([][]byte{readModel(t, "floor.json")}, mustParse(t, base, readModel(t, "floor.json")), Options{}); err == nil {
		t.Error("redefinition accepted")
	}
}

func TestParseFailsFastOnDeepOrCyclicModels(t *testing.T) {
	var b strings.Builder
	b.WriteString(`{"@context":"dtmi:dtdl:context;3","@id":"dtmi:ex:a;1","@type":"Interface","contents":[{"@type":"Property","name":"p","schema":`)
	for range 100000 {
		b.WriteString(`{"@type":"Array","elementSchema":`)
	}
	b.WriteString(`"string"`)
	for range 100000 {
		b.WriteString(`}`)
	}
	b.WriteString(`}]}`)
	cyclic := []byte(`[{"@context":"dtmi:dtdl:context;3","@id":"dtmi:ex:a;1","@type":"Interface","extends":"dtmi:ex:b;1"},
		{"@context":"dtmi:dtdl:context;3","@id":"dtmi:ex:b;1","@type":"Interface","extends":"dtmi:ex:a;1"}]`)
	selfSchema := []byte(`{"@context":"dtmi:dtdl:context;3","@id":"dtmi:ex:c;1","@type":"Interface",
		"schemas":[{"@id":"dtmi:ex:o;1","@type":"Object","fields":[{"name":"next","schema":"dtmi:ex:o;1"}]}]}`)
	for name, doc := range map[string][]byte{"deep": []byte(b.String()), "cyclic extends": cyclic, "self-containing schema": selfSchema} {
		if _, err := Parse([][]byte{doc}, nil, Options{}); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestParseDTMI(t *testing.T) {
	tests := []struct {
		in      string
		path    string
		version int
		minor   int
		ok      bool
	}{
		{"dtmi:com:example:Thermostat;1", "com:example:Thermostat", 1, 0, true},
		{"dtmi:com:example:Thermostat;2.5", "com:example:Thermostat", 2, 5, true},
		{"dtmi:noversion", "noversion", 0, 0, true},
		{"dtmi:com:example:Thermostat;0", "", 0, 0, false},
		{"dtmi:com:_x;1", "", 0, 0, false},
		{"dtmi:com:x_;1", "", 0, 0, false},
		{"dtmi:1com;1", "", 0, 0, false},
		{"urn:com:x;1", "", 0, 0, false},
		{"dtmi:a;1234567890", "", 0, 0, false},
	}
	for _, tt := range tests {
		d, err := ParseDTMI(tt.in)
		if (err == nil) != tt.ok {
			t.Errorf("ParseDTMI(%q) error = %v, want ok=%v", tt.in, err, tt.ok)
			continue
		}
		if tt.ok && (d.Path != tt.path || d.Version != tt.version || d.Minor != tt.minor || d.String() != tt.in) {
			t.Errorf("ParseDTMI(%q) = %+v", tt.in, d)
		}
	}
}

// TestParseWideHierarchy parses a lattice in which every Interface extends every Interface of
// the layer below: the number of extends paths grows exponentially with depth, so every walk
// of the hierarchy must visit each Interface once.
func TestParseWideHierarchy(t *testing.T) {
	const layers, width = 10, 20
	var b strings.Builder
	b.WriteString("[")
	for l := range layers {
		for w := range width {
			if l+w > 0 {
				b.WriteString(",")
			}
			fmt.Fprintf(&b, `{"@context":"dtmi:dtdl:context;3","@id":"dtmi:ex:l%d:w%d;1","@type":"Interface","contents":[{"@type":"Property","name":"p%d_%d","schema":"string"}]`, l, w, l, w)
			if l > 0 {
				b.WriteString(`,"extends":[`)
				for p := range width {
					if p > 0 {
						b.WriteString(",")
					}
					fmt.Fprintf(&b, `"dtmi:ex:l%d:w%d;1"`, l-1, p)
				}
				b.WriteString("]")
			}
			b.WriteString("}")
		}
	}
	b.WriteString("]")
	s := mustParse(t, nil, []byte(b.String()))
	top := "dtmi:ex:l9:w0;1"
	if !s.IsA(top, "dtmi:ex:l0:w19;1") || s.IsA("dtmi:ex:l0:w19;1", top) {
		t.Error("IsA is wrong on the lattice")
	}
	if n := len(s.Ancestors(top)); n != (layers-1)*width {
		t.Errorf("%d ancestors, want %d", n, (layers-1)*width)
	}
	if i, _ := s.Interface(top); len(i.Properties) != (layers-1)*width+1 {
		t.Errorf("%d properties, want %d", len(i.Properties), (layers-1)*width+1)
	}
	if _, err := Parse([][]byte{[]byte(`{"@context":"dtmi:dtdl:context;3","@id":"dtmi:ex:more;1","@type":"Interface","extends":"` + top + `"}`)}, s, Options{}); err != nil {
		t.Errorf("extending the lattice from a later batch: %v", err)
	}
}

// TestParseContentsLimit builds a v3 hierarchy whose contents hold just over 100,000 elements
// (five Interfaces of about 20,000 enum values each, chained by extends), each Interface under
// the 1 MiB limit.
func TestParseContentsLimit(t *testing.T) {
	if testing.Short() {
		t.Skip("builds 8 MB of models")
	}
	build := func(perInterface int) []byte {
		var b strings.Builder
		b.WriteString("[")
		for i := range 5 {
			if i > 0 {
				b.WriteString(",")
			}
			fmt.Fprintf(&b, `{"@context":"dtmi:dtdl:context;3","@id":"dtmi:ex:big%d;1","@type":"Interface",`, i)
			if i > 0 {
				fmt.Fprintf(&b, `"extends":"dtmi:ex:big%d;1",`, i-1)
			}
			fmt.Fprintf(&b, `"contents":[{"@type":"Property","name":"p%d","schema":{"@type":"Enum","valueSchema":"integer","enumValues":[`, i)
			for v := range perInterface {
				if v > 0 {
					b.WriteString(",")
				}
				fmt.Fprintf(&b, `{"name":"v%d","enumValue":%d}`, v, v)
			}
			b.WriteString("]}}]}")
		}
		b.WriteString("]")
		return []byte(b.String())
	}
	// Each Interface adds a Property, its Enum and its enum values: perInterface+2 elements.
	if _, err := Parse([][]byte{build(19998)}, nil, Options{}); err != nil {
		t.Fatalf("100,000 elements: %v", err)
	}
	_, err := Parse([][]byte{build(19999)}, nil, Options{})
	if err == nil || !strings.Contains(err.Error(), "the contents hold 100005 elements") {
		t.Fatalf("100,005 elements: err = %v", err)
	}
}

func TestParseEnumValueByReference(t *testing.T) {
	doc := []byte(`{"@context":"dtmi:dtdl:context;3","@id":"dtmi:ex:e;1","@type":"Interface","contents":[
		{"@type":"Property","name":"a","schema":{"@type":"Enum","valueSchema":"integer","enumValues":[{"@id":"dtmi:ex:one;1","name":"one","enumValue":1}]}},
		{"@type":"Property","name":"b","schema":{"@type":"Enum","valueSchema":"integer","enumValues":["dtmi:ex:one;1",{"name":"two","enumValue":2}]}}]}`)
	s, err := Parse([][]byte{doc}, &ModelSet{}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	i, _ := s.Interface("dtmi:ex:e;1")
	vals := i.Properties["b"].Schema.EnumValues
	if len(vals) != 2 || vals[0].Value != 1 || vals[1].Value != 2 || vals[0].ID != "dtmi:ex:one;1" {
		t.Errorf("enum values = %+v, %+v", vals[0], vals[1])
	}
}
