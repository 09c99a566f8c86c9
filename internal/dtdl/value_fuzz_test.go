package dtdl

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// FuzzValidate feeds arbitrary JSON to the validators of a rich Interface. They must not panic,
// must return nil or a *ValidationError with at least one problem, sorted by path, and must
// agree with each other: a property valid inside a twin is valid written alone at its path.
func FuzzValidate(f *testing.F) {
	f.Add([]byte(vtFullTwin), "thermostat/setPoint")
	f.Add([]byte(`{"temp": "x", "address": {"zip": 1.5}, "thermostat": 1}`), "address/zip")
	f.Add([]byte(`{"area": {"type": "Polygon", "coordinates": [[[0,0],[1,0],[1,1],[0,0]]]}}`), "area")
	f.Add([]byte(`{"type": "MultiPolygon", "coordinates": [[[[0,0],[1,0],[1,1],[0,0]]]]}`), "location")
	f.Add([]byte(`{"type": "MultiLineString", "coordinates": [[[0, 0], [1, 1]], [[2, 2]]]}`), "routes")
	f.Add([]byte(`[[1, 2], [3e400, "x"], null]`), "matrix/0")
	f.Add([]byte(`"P1Y2M3DT4H5M6.5S"`), "period")
	f.Add([]byte(`"2024-02-29T23:59:59.999+14:00"`), "seen")
	f.Add([]byte(`-9223372036854775808`), "big")
	f.Add([]byte(`{"hq": {"where": {"type": "Point", "coordinates": [1, 2, 3]}}}`), "sites")
	f.Fuzz(func(t *testing.T, data []byte, path string) {
		d := json.NewDecoder(bytes.NewReader(data))
		d.UseNumber()
		var v any
		if err := d.Decode(&v); err != nil {
			return
		}
		for name, p := range vtRoom.Properties {
			checkFuzzError(t, "Validate "+name, p.Schema.Validate(v))
		}
		checkFuzzError(t, "ValidatePath "+path, vtRoom.ValidatePath(strings.Split(path, "/"), v))
		doc, ok := v.(map[string]any)
		if !ok {
			return
		}
		checkFuzzError(t, "ValidateProperties", vtContains.ValidateProperties(doc))
		err := vtRoom.ValidateTwin(doc)
		checkFuzzError(t, "ValidateTwin", err)
		if err != nil {
			return
		}
		for name, pv := range doc {
			if strings.HasPrefix(name, "$") {
				continue
			}
			if err := vtRoom.ValidatePath([]string{name}, pv); err != nil {
				t.Fatalf("twin is valid but ValidatePath([%s]) = %v", name, err)
			}
		}
	})
}

func checkFuzzError(t *testing.T, what string, err error) {
	t.Helper()
	if err == nil {
		return
	}
	verr, ok := err.(*ValidationError)
	if !ok {
		t.Fatalf("%s: error %v (%T) is not a *ValidationError", what, err, err)
	}
	if len(verr.Problems) == 0 || len(verr.Problems) > maxProblems {
		t.Fatalf("%s: %d problems", what, len(verr.Problems))
	}
	for i, p := range verr.Problems {
		if p.Message == "" {
			t.Fatalf("%s: problem at %q without a message", what, p.Path)
		}
		if i > 0 && verr.Problems[i-1].Path > p.Path {
			t.Fatalf("%s: problems not sorted by path: %q before %q", what, verr.Problems[i-1].Path, p.Path)
		}
	}
	if verr.Error() == "" {
		t.Fatalf("%s: empty Error()", what)
	}
}
