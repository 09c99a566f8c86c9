package dtdl

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

var update = flag.Bool("update", false, "rewrite the golden files of TestErrorGolden and TestUnitOverrideGolden")

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
			checkGolden(t, file, errorText(perr))
		})
	}
}

// errorText renders a parse error for a golden file.
func errorText(perr *Error) string {
	got := perr.Error() + "\n"
	if len(perr.Unresolved) > 0 {
		got += "unresolved: " + strings.Join(perr.Unresolved, ", ") + "\n"
	}
	return got
}

// checkGolden compares got with the .golden file beside file, or rewrites it under -update.
func checkGolden(t *testing.T, file, got string) {
	t.Helper()
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
		t.Errorf("output differs from %s:\ngot:\n%s\nwant:\n%s", golden, got, want)
	}
}

// TestUnitOverrideGolden parses each testdata/units/*.json batch: for every semantic type of
// the QuantitativeTypes extension, one whose Properties override the unit of a Telemetry and
// of a Property (own and inherited, by term and by IRI) and one whose Overrides break the
// rules (see testdata/units/generate.go, which writes them from the extension's
// specification). The .golden file holds the error of an invalid batch; for a valid one, each
// Interface's overriding Properties with their schema, and the verdict of ValidateTwin on a
// twin giving each allowed unit name and a few values that are not: a unit of another unit
// type, an unknown name, a unit name in the wrong case, and a number. Run with -update to
// regenerate the golden files.
func TestUnitOverrideGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/units/*.json")
	if err != nil {
		t.Fatal(err)
	}
	if want := 2 * len(semanticTypesQuant); len(files) != want {
		t.Fatalf("%d batches in testdata/units, want %d: two per semantic type", len(files), want)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			s, err := Parse([][]byte{data}, nil, Options{})
			if err != nil {
				var perr *Error
				if !errors.As(err, &perr) {
					t.Fatalf("Parse error = %v, want *Error", err)
				}
				checkGolden(t, file, errorText(perr))
				return
			}
			checkGolden(t, file, overrideReport(s))
		})
	}
}

// overrideReport describes the overriding Properties of every Interface of s and what
// ValidateTwin says of values for them.
func overrideReport(s *ModelSet) string {
	var b strings.Builder
	b.WriteString("valid\n")
	for _, id := range s.IDs() {
		i, _ := s.Interface(id)
		fmt.Fprintf(&b, "%s\n", id)
		names := make([]string, 0, len(i.Properties))
		for n, p := range i.Properties {
			if p.Overrides != "" {
				names = append(names, n)
			}
		}
		slices.Sort(names)
		for _, n := range names {
			p := i.Properties[n]
			fmt.Fprintf(&b, "  %s (defined in %s) annotates %s, overrides %s\n", n, p.DefinedIn, p.Annotates, p.Overrides)
			fmt.Fprintf(&b, "    schema %s %s, values", p.Schema.Kind, p.Schema.ID)
			var values []any
			for _, ev := range p.Schema.EnumValues {
				fmt.Fprintf(&b, " %v", ev.Value)
				values = append(values, ev.Value)
			}
			b.WriteString("\n")
			other := "radian"
			if p.Schema.ID == quantPrefix+"enum:AngleUnit" {
				other = "kelvin"
			}
			first, _ := values[0].(string)
			r, size := utf8.DecodeRuneInString(first)
			values = append(values, other, "furlong", string(unicode.ToUpper(r))+first[size:], json.Number("1"))
			for _, v := range values {
				shown, _ := json.Marshal(v)
				verdict := "valid"
				if err := i.ValidateTwin(map[string]any{n: v}); err != nil {
					verdict = err.Error()
				}
				fmt.Fprintf(&b, "    %s: %s\n", shown, verdict)
			}
		}
	}
	return b.String()
}
