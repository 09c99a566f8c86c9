package expr

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// cases reads testdata/name: one case a line; blank lines and lines starting with # are kept
// out.
func cases(t *testing.T, name string) []string {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if l := sc.Text(); strings.TrimSpace(l) != "" && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return out
}

// golden compares got with testdata/name, or rewrites it under -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(want) != got {
		t.Errorf("%s differs; run go test -update and review the diff.\ngot:\n%s", name, got)
	}
}

// TestParseGolden prints the tree of every expression in parse.txt, or its error.
func TestParseGolden(t *testing.T) {
	var b strings.Builder
	fns := Builtins()
	for _, src := range cases(t, "parse.txt") {
		n, err := Parse(src)
		if err == nil {
			err = Check(n, fns)
		}
		fmt.Fprintf(&b, "%s\n", src)
		if err != nil {
			fmt.Fprintf(&b, "  error: %v\n", err)
			continue
		}
		fmt.Fprintf(&b, "  %s\n", n)
		// The printed form must read back to the same tree.
		again, err := Parse(n.String())
		if err != nil || again.String() != n.String() {
			t.Errorf("%q: printed form %q does not read back: %v", src, n, err)
		}
	}
	golden(t, "parse.golden", b.String())
}

// docEnv resolves paths into a decoded JSON document.
type docEnv map[string]any

func (d docEnv) Lookup(path []string) (any, bool) {
	var v any = map[string]any(d)
	for _, name := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		if v, ok = m[name]; !ok {
			return nil, false
		}
	}
	return v, true
}

// evalDoc is the document eval.txt's expressions run against.
const evalDoc = `{
	"name": "Room 1", "temp": 21.5, "n": 3, "on": true, "off": false, "nothing": null,
	"tags": {"red": true, "size": "small"}, "list": [1, "a", true, [2], {"x": 1}],
	"it's": "quote", "GROUP": "g", "123key": 5, "empty": ""
}`

// TestEvalGolden evaluates every expression in eval.txt against evalDoc: true, false or
// undefined.
func TestEvalGolden(t *testing.T) {
	var env docEnv
	if err := json.Unmarshal([]byte(evalDoc), &env); err != nil {
		t.Fatal(err)
	}
	fns := Builtins()
	var b strings.Builder
	for _, src := range cases(t, "eval.txt") {
		n, err := Parse(src)
		if err == nil {
			err = Check(n, fns)
		}
		if err != nil {
			t.Errorf("%q: %v", src, err)
			continue
		}
		res := "undefined"
		if v, ok := Eval(n, env, fns); ok {
			raw, _ := json.Marshal(v)
			res = string(raw)
		}
		fmt.Fprintf(&b, "%-60s => %s\n", src, res)
	}
	golden(t, "eval.golden", b.String())
}

// TestRawContainers checks that json.RawMessage values from an Env count as objects and
// arrays.
func TestRawContainers(t *testing.T) {
	env := rawEnv{"o": json.RawMessage(` {"a":1}`), "a": json.RawMessage(`[1,"x",false]`)}
	fns := Builtins()
	for src, want := range map[string]bool{
		"IS_OBJECT(o)":              true,
		"IS_OBJECT(a)":              false,
		"IS_PRIMITIVE(o)":           false,
		"ARRAY_CONTAINS(a, 'x')":    true,
		"ARRAY_CONTAINS(a, false)":  true,
		"ARRAY_CONTAINS(a, 2)":      false,
		"ARRAY_CONTAINS(o, 1)":      false,
		"o = o":                     false,
		"IS_DEFINED(o) AND NOT a=1": true,
	} {
		n, err := Parse(src)
		if err != nil {
			t.Fatal(err)
		}
		if got := Match(n, env, fns); got != want {
			t.Errorf("%s = %v, want %v", src, got, want)
		}
	}
}

type rawEnv map[string]json.RawMessage

func (e rawEnv) Lookup(path []string) (any, bool) {
	v, ok := e[path[0]]
	if !ok || len(path) > 1 {
		return nil, false
	}
	return v, true
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"a = 1", "NOT (x IN ['a', 'b']) OR STARTSWITH(y, 'p')", "[[GROUP]].x != null", "a.b.c >= -1.5e3"} {
		f.Add(s)
	}
	fns := Builtins()
	f.Fuzz(func(t *testing.T, src string) {
		n, err := Parse(src)
		if err != nil {
			return
		}
		_ = Check(n, fns)
		if again, err := Parse(n.String()); err != nil || again.String() != n.String() {
			t.Fatalf("%q prints as %q, which reads back as %v, %v", src, n, again, err)
		}
	})
}
