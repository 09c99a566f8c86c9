package eventroute

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/twinflow/twinflow/internal/event"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// TestFilterGolden compiles every filter of testdata/filters.txt and lists the events of
// testdata/events.json it matches, or its error, comparing with testdata/filters.golden.
func TestFilterGolden(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("testdata", "events.json"))
	if err != nil {
		t.Fatal(err)
	}
	var events []event.Event
	if err := json.Unmarshal(raw, &events); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join("testdata", "filters.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var b strings.Builder
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		src := sc.Text()
		if strings.TrimSpace(src) == "" || strings.HasPrefix(src, "#") {
			continue
		}
		fmt.Fprintf(&b, "%s\n", src)
		filter, err := Compile(src)
		if err != nil {
			if !errors.Is(err, ErrFilterInvalid) {
				t.Errorf("Compile(%q) = %v, want an error wrapping ErrFilterInvalid", src, err)
			}
			fmt.Fprintf(&b, "  error: %v\n", err)
			continue
		}
		var matched []string
		for i := range events {
			if filter.Match(&events[i]) {
				matched = append(matched, events[i].ID)
			}
		}
		fmt.Fprintf(&b, "  matches: %s\n", strings.Join(matched, " "))
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "filters.golden")
	if *update {
		if err := os.WriteFile(golden, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if string(want) != b.String() {
		t.Errorf("filters.golden differs; run go test -update and review the diff.\ngot:\n%s", b.String())
	}
}

func TestCompileRejectsEmpty(t *testing.T) {
	for _, src := range []string{"", "   "} {
		if _, err := Compile(src); !errors.Is(err, ErrFilterInvalid) {
			t.Errorf("Compile(%q) = %v, want ErrFilterInvalid", src, err)
		}
	}
}

// TestMatchInvalidData checks that $body paths over data that is not a JSON object are
// undefined rather than a failure.
func TestMatchInvalidData(t *testing.T) {
	f, err := Compile("$body.x = 1 OR type = 't'")
	if err != nil {
		t.Fatal(err)
	}
	for _, data := range []string{"", "[1]", "not json", "3"} {
		e := event.Event{Type: "t", Data: json.RawMessage(data)}
		if !f.Match(&e) {
			t.Errorf("data %q: the type alone should match", data)
		}
		e.Type = "u"
		if f.Match(&e) {
			t.Errorf("data %q: matched without a defined $body.x", data)
		}
	}
}
