package dtdl

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files of TestErrorGolden")

// TestErrorGolden parses each testdata/errors/*.json model (all invalid) and compares the
// error text with the .golden file beside it. Run with -update to regenerate the golden files.
func TestErrorGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/errors/*.json")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no error models in testdata/errors")
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			_, err = Parse([][]byte{data}, nil, Options{})
			var perr *Error
			if !errors.As(err, &perr) {
				t.Fatalf("Parse error = %v, want *Error", err)
			}
			got := perr.Error() + "\n"
			if len(perr.Unresolved) > 0 {
				got += "unresolved: " + strings.Join(perr.Unresolved, ", ") + "\n"
			}
			golden := strings.TrimSuffix(file, ".json") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("error text differs from %s:\ngot:\n%s\nwant:\n%s", golden, got, want)
			}
		})
	}
}
