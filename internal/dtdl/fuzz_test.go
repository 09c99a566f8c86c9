package dtdl

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse feeds arbitrary documents to Parse, under both options. Parse must not panic, must
// either succeed or return an *Error with at least one problem or unresolved reference, and
// the ModelSet it returns must answer its queries. Seeds are the committed models (among them
// the unit override batches) and, when the conformance corpus is present, the first case of
// every corpus file.
func FuzzParse(f *testing.F) {
	for _, pattern := range []string{"testdata/models/*.json", "testdata/errors/*.json", "testdata/units/*.json"} {
		files, _ := filepath.Glob(pattern)
		for _, file := range files {
			data, err := os.ReadFile(file)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data, false)
		}
	}
	f.Add(chainModels(2, 3), true)
	if dir := findCorpus(); dir != "" {
		files, _ := filepath.Glob(filepath.Join(dir, "v*", "spec", "*.json"))
		for _, file := range files {
			data, err := os.ReadFile(file)
			if err != nil {
				f.Fatal(err)
			}
			var cases []conformanceCase
			if json.Unmarshal(trimBOM(data), &cases) != nil || len(cases) == 0 || len(cases[0].Input) == 0 {
				continue
			}
			f.Add([]byte(cases[0].Input[0]), len(cases[0].Options) > 0 && cases[0].Options[0] == "AllowUndefinedExtensions")
		}
	}
	f.Fuzz(func(t *testing.T, doc []byte, allow bool) {
		s, err := Parse([][]byte{doc}, nil, Options{AllowUndefinedExtensions: allow})
		if err != nil {
			perr, ok := err.(*Error)
			if !ok {
				t.Fatalf("Parse returned %T, want *Error", err)
			}
			if len(perr.Problems) == 0 && len(perr.Unresolved) == 0 {
				t.Fatal("Parse failed without a problem")
			}
			_ = perr.Error()
			return
		}
		for _, id := range s.IDs() {
			i, ok := s.Interface(id)
			if !ok || i.ID != id {
				t.Fatalf("Interface(%q) = %v, %v", id, i, ok)
			}
			for _, a := range s.Ancestors(id) {
				if !s.IsA(id, a) {
					t.Fatalf("%s has ancestor %s but IsA is false", id, a)
				}
			}
			s.Descendants(id)
			s.Dependencies(id)
			s.ReferencedBy(id)
		}
		// A set can be rebuilt on top of itself only by defining new models.
		if s.Len() > 0 {
			if _, err := Parse([][]byte{doc}, s, Options{AllowUndefinedExtensions: allow}); err == nil {
				t.Fatal("re-parsing the same models on top of themselves succeeded")
			}
		}
	})
}
