package dtdl

import (
	"encoding/json"
	"testing"
)

// benchPatch is a JSON Patch's worth of writes: 20 paths with values as the API decodes them.
func benchPatch(b *testing.B) (paths [][]string, values []any) {
	ops := []struct {
		path  []string
		value string
	}{
		{[]string{"temp"}, `21.5`},
		{[]string{"ratio"}, `0.25`},
		{[]string{"count"}, `17`},
		{[]string{"big"}, `9000000000`},
		{[]string{"name"}, `"Meeting room 4"`},
		{[]string{"on"}, `true`},
		{[]string{"mode"}, `"off"`},
		{[]string{"level"}, `3`},
		{[]string{"seen"}, `"2024-02-29T12:00:00.123Z"`},
		{[]string{"period"}, `"PT15M"`},
		{[]string{"address"}, `{"city": "Oslo", "zip": 150}`},
		{[]string{"address", "city"}, `"Bergen"`},
		{[]string{"tags", "red"}, `4`},
		{[]string{"readings", "-"}, `19.25`},
		{[]string{"location"}, `{"type": "Point", "coordinates": [10.7, 59.9]}`},
		{[]string{"thermostat", "setPoint"}, `20.5`},
		{[]string{"thermostat", "mode"}, `"on"`},
		{[]string{"backup", "setPoint"}, `18`},
		{[]string{"born"}, `"2024-02-29"`},
		{[]string{"opens"}, `"08:30:00"`},
	}
	for _, op := range ops {
		paths = append(paths, op.path)
		values = append(values, vtDecode(b, op.value))
	}
	return paths, values
}

// BenchmarkValidatePatch20 validates the 20 writes of one patch with ValidatePath; one op is
// the whole patch.
func BenchmarkValidatePatch20(b *testing.B) {
	paths, values := benchPatch(b)
	b.ReportAllocs()
	for b.Loop() {
		for i, p := range paths {
			if err := vtRoom.ValidatePath(p, values[i]); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkValidateTwin validates a whole twin document, as a PUT does.
func BenchmarkValidateTwin(b *testing.B) {
	doc := vtDecode(b, vtFullTwin).(map[string]any)
	b.ReportAllocs()
	for b.Loop() {
		if err := vtRoom.ValidateTwin(doc); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkValidateInvalid measures the error path: one bad value, reported with its path.
func BenchmarkValidateInvalid(b *testing.B) {
	path := []string{"thermostat", "setPoint"}
	v := json.Number("1e999")
	b.ReportAllocs()
	for b.Loop() {
		if err := vtRoom.ValidatePath(path, v); err == nil {
			b.Fatal("want an error")
		}
	}
}
