package query

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/twinflow/twinflow/internal/graph"
	"github.com/twinflow/twinflow/internal/twins"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// TestGolden runs every query of testdata/queries.txt against the fixture graph and compares
// the plan and all result rows, or the error, with testdata/queries.golden. Lines starting
// with # are copied as section titles.
func TestGolden(t *testing.T) {
	f := newFixture(t, false)
	golden(t, "queries.golden", runQueries(t, f.index))
}

// TestGoldenFromSnapshot runs the queries of TestGolden against an index loaded from a
// snapshot of the fixture's index: it must answer every one as the index built from the
// store does.
func TestGoldenFromSnapshot(t *testing.T) {
	if *update {
		t.Skip("TestGolden writes the golden file")
	}
	f := newFixture(t, false)
	path := filepath.Join(t.TempDir(), "index.snapshot")
	if _, err := f.index.SaveSnapshot(path); err != nil {
		t.Fatal(err)
	}
	idx, err := graph.OpenSnapshot(context.Background(), path, graph.Config{}, f.store, f.twins.Models, nil)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "queries.golden", runQueries(t, idx))
}

// runQueries runs every query of testdata/queries.txt against idx and returns the plan and
// all result rows, or the error, of each.
func runQueries(t *testing.T, idx *graph.Index) string {
	t.Helper()
	in, err := os.Open(filepath.Join("testdata", "queries.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	var out strings.Builder
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		line := sc.Text()
		// A line ending in " \\" continues on the next one, to test positions past line 1.
		for strings.HasSuffix(line, " \\") && sc.Scan() {
			line = strings.TrimSuffix(line, "\\") + "\n" + sc.Text()
		}
		switch {
		case strings.TrimSpace(line) == "":
			continue
		case strings.HasPrefix(line, "#"):
			fmt.Fprintf(&out, "\n%s\n", line)
			continue
		}
		fmt.Fprintf(&out, "> %s\n", strings.ReplaceAll(line, "\n", "\n> "))
		p, err := Prepare(line)
		if err != nil {
			fmt.Fprintf(&out, "error: %v\n", err)
			continue
		}
		fmt.Fprintf(&out, "plan: %s\n", p.Plan())
		for _, row := range runAll(t, idx, p, 1000) {
			fmt.Fprintf(&out, "%s\n", stable(string(row)))
		}
	}
	return out.String()
}

// runAll returns every row of p, reading pages of pageSize.
func runAll(t testing.TB, idx *graph.Index, p *Prepared, pageSize int) []json.RawMessage {
	t.Helper()
	var rows []json.RawMessage
	cur := Cursor{}
	for pages := 0; ; pages++ {
		if pages > 1000 {
			t.Fatalf("%s: paging does not end", p.Query().Text)
		}
		var page Page
		if err := idx.Read(context.Background(), func(r *graph.Reader) error {
			var err error
			page, err = p.Run(context.Background(), r, cur, pageSize)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if len(page.Rows) > pageSize {
			t.Fatalf("%s: page of %d rows, want at most %d", p.Query().Text, len(page.Rows), pageSize)
		}
		rows = append(rows, page.Rows...)
		if page.Next == nil {
			return rows
		}
		if len(page.Rows) == 0 {
			t.Fatalf("%s: empty page with a continuation", p.Query().Text)
		}
		cur = *page.Next
	}
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

// TestPaging checks that every page size yields the same rows as one big page, for each kind
// of query: scans, model index, anchors, JOIN, MATCH, relationships and TOP.
func TestPaging(t *testing.T) {
	f := newFixture(t, false)
	for _, q := range []string{
		"SELECT * FROM DIGITALTWINS",
		"SELECT T.$dtId FROM DIGITALTWINS T WHERE IS_OF_MODEL(T, 'dtmi:example:Space;1')",
		"SELECT T.$dtId FROM DIGITALTWINS T WHERE T.$dtId IN ['room3', 'room1', 'floor1', 'nope']",
		"SELECT B.$dtId AS b, F.$dtId AS f, R.$dtId AS r FROM DIGITALTWINS B JOIN F RELATED B.contains JOIN R RELATED F.contains WHERE B.$dtId = 'building1'",
		"SELECT a.$dtId AS a, b.$dtId AS b FROM DIGITALTWINS MATCH (a)-[*..3]-(b) WHERE a.$dtId = 'room1'",
		"SELECT * FROM RELATIONSHIPS",
		"SELECT TOP(4) T.$dtId FROM DIGITALTWINS T",
	} {
		p, err := Prepare(q)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		all := runAll(t, f.index, p, 1000)
		if len(all) < 3 {
			t.Fatalf("%s: only %d rows; the test needs several", q, len(all))
		}
		for size := 1; size <= len(all); size++ {
			got := runAll(t, f.index, p, size)
			if fmt.Sprint(got) != fmt.Sprint(all) {
				t.Errorf("%s with pages of %d:\n got %s\nwant %s", q, size, got, all)
			}
		}
	}
}

// FuzzParse checks that no query text panics the lexer, parser, checker or, for queries that
// prepare, the evaluator over the fixture graph.
func FuzzParse(f *testing.F) {
	in, err := os.ReadFile(filepath.Join("testdata", "queries.txt"))
	if err != nil {
		f.Fatal(err)
	}
	for _, line := range strings.Split(string(in), "\n") {
		if !strings.HasPrefix(line, "#") {
			f.Add(line)
		}
	}
	fx := newFixture(f, false)
	f.Fuzz(func(t *testing.T, text string) {
		p, err := Prepare(text)
		if err != nil {
			if _, ok := err.(*Error); !ok {
				t.Fatalf("%q: error %T is not a *query.Error", text, err)
			}
			return
		}
		_ = fx.index.Read(context.Background(), func(r *graph.Reader) error {
			for cur, pages := (Cursor{}), 0; pages < 20; pages++ {
				page, err := p.Run(context.Background(), r, cur, 3)
				if err != nil {
					t.Fatal(err)
				}
				if page.Next == nil {
					break
				}
				cur = *page.Next
			}
			return nil
		})
	})
}

// TestLimits checks each of ADT's limits at its value (accepted) and one past it (refused).
func TestLimits(t *testing.T) {
	conds := func(n int) string {
		parts := make([]string, n)
		for i := range parts {
			parts[i] = fmt.Sprintf("x = %d", i)
		}
		return strings.Join(parts, " AND ")
	}
	list := func(n int) string {
		parts := make([]string, n)
		for i := range parts {
			parts[i] = fmt.Sprintf("'t%d'", i)
		}
		return strings.Join(parts, ", ")
	}
	joins := func(n int) string {
		s := "SELECT J0 FROM DIGITALTWINS J0"
		for i := 1; i <= n; i++ {
			s += fmt.Sprintf(" JOIN J%d RELATED J%d.r", i, i-1)
		}
		return s + " WHERE J0.$dtId = 'a'"
	}
	pad := func(n int) string {
		q := "SELECT * FROM DIGITALTWINS WHERE name = ''"
		return q[:len(q)-1] + strings.Repeat("é", n-len([]rune(q))) + "'"
	}
	for _, tc := range []struct {
		name      string
		ok, over  string
		overError string
	}{
		{"AND/OR", "SELECT * FROM DIGITALTWINS WHERE " + conds(MaxLogical+1), "SELECT * FROM DIGITALTWINS WHERE " + conds(MaxLogical+2),
			"more than 50 AND/OR operators"},
		{"IN items", "SELECT * FROM DIGITALTWINS WHERE $dtId IN [" + list(MaxInItems) + "]", "SELECT * FROM DIGITALTWINS WHERE $dtId NIN [" + list(MaxInItems+1) + "]",
			"an IN list has 51 items; at most 50 are allowed"},
		{"JOINs", joins(MaxJoins), joins(MaxJoins + 1), "the query has 6 JOINs; at most 5 are allowed"},
		{"hops", "SELECT a FROM DIGITALTWINS MATCH (a)-[*4..6]->(b)-[*..4]-(c) WHERE a.$dtId = 'x'",
			"SELECT a FROM DIGITALTWINS MATCH (a)-[*4..6]->(b)-[*..5]-(c) WHERE a.$dtId = 'x'", "more than 10 hops"},
		{"characters", pad(MaxLength), pad(MaxLength + 1), "Position=0, Message=the query is 8001 characters long; at most 8000 are allowed"},
	} {
		if _, err := Prepare(tc.ok); err != nil {
			t.Errorf("%s at the limit refused: %v", tc.name, err)
		}
		_, err := Prepare(tc.over)
		if err == nil || !strings.Contains(err.Error(), tc.overError) {
			t.Errorf("%s past the limit: got %v, want an error containing %q", tc.name, err, tc.overError)
		}
	}
}

// TestRunStopsWithContext checks that a run over many candidates gives up once its context
// ends.
func TestRunStopsWithContext(t *testing.T) {
	f := newFixture(t, false)
	ctx := context.Background()
	for i := range 5000 {
		body := fmt.Sprintf(`{"$metadata":{"$model":"dtmi:example:Sensor;1"},"value":%d}`, i)
		if _, err := f.twins.PutTwin(ctx, fmt.Sprintf("extra%d", i), []byte(body), "", twins.Trace{}); err != nil {
			t.Fatal(err)
		}
	}
	p, err := Prepare("SELECT COUNT() FROM DIGITALTWINS WHERE value >= 0")
	if err != nil {
		t.Fatal(err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	err = f.index.Read(ctx, func(r *graph.Reader) error {
		_, err := p.Run(cancelled, r, Cursor{}, 10)
		return err
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Run with an ended context: %v, want context.Canceled", err)
	}
	err = f.index.Read(ctx, func(r *graph.Reader) error {
		page, err := p.Run(ctx, r, Cursor{}, 10)
		if err == nil && string(page.Rows[0]) != `{"COUNT":5002}` {
			t.Errorf("count %s, want 5002", page.Rows[0])
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestRunAllocations checks that what Run allocates does not grow with the candidates it
// examines: a COUNT() over thousands of twins allocates about what one over a few does.
func TestRunAllocations(t *testing.T) {
	f := newFixture(t, false)
	ctx := context.Background()
	const extra = 2000
	for i := range extra {
		body := fmt.Sprintf(`{"$metadata":{"$model":"dtmi:example:Sensor;1"},"value":%d}`, i)
		if _, err := f.twins.PutTwin(ctx, fmt.Sprintf("extra%d", i), []byte(body), "", twins.Trace{}); err != nil {
			t.Fatal(err)
		}
	}
	p, err := Prepare("SELECT COUNT() FROM DIGITALTWINS WHERE value >= 0")
	if err != nil {
		t.Fatal(err)
	}
	var runErr error
	allocs := testing.AllocsPerRun(20, func() {
		runErr = f.index.Read(ctx, func(r *graph.Reader) error {
			page, err := p.Run(ctx, r, Cursor{}, 10)
			if err == nil && string(page.Rows[0]) != fmt.Sprintf(`{"COUNT":%d}`, extra+2) {
				err = fmt.Errorf("count %s, want %d", page.Rows[0], extra+2)
			}
			return err
		})
	})
	if runErr != nil {
		t.Fatal(runErr)
	}
	if allocs > extra/10 {
		t.Errorf("a COUNT() over %d twins allocated %.0f times, want far fewer than one per twin", extra, allocs)
	}
}

// TestCountByModel checks that a COUNT() the model index's lists answer alone counts what
// the same query counts row by row, with the same candidates examined.
func TestCountByModel(t *testing.T) {
	f := newFixture(t, false)
	ctx := context.Background()
	for _, cond := range []string{
		"IS_OF_MODEL('dtmi:example:Space;1')",
		"IS_OF_MODEL('dtmi:example:Room;1')",
		"IS_OF_MODEL('dtmi:example:Room;2')",
		"IS_OF_MODEL('dtmi:example:Room;1', exact)",
		"IS_OF_MODEL(T, 'dtmi:example:Sensor;1')",
		"IS_OF_MODEL('dtmi:example:Missing;1')",
	} {
		byList, err := Prepare("SELECT COUNT() FROM DIGITALTWINS T WHERE " + cond)
		if err != nil {
			t.Fatal(err)
		}
		// A test no index answers makes Run visit every row.
		byRow, err := Prepare("SELECT COUNT() FROM DIGITALTWINS T WHERE " + cond + " AND T.$dtId != ''")
		if err != nil {
			t.Fatal(err)
		}
		err = f.index.Read(ctx, func(r *graph.Reader) error {
			if !newExec(byList.plan, r).countsByModel() || newExec(byRow.plan, r).countsByModel() {
				t.Errorf("%s: the lists answer with no residual %v, with one %v; want only without",
					cond, newExec(byList.plan, r).countsByModel(), newExec(byRow.plan, r).countsByModel())
			}
			got, err := byList.Run(ctx, r, Cursor{}, 10)
			if err != nil {
				return err
			}
			want, err := byRow.Run(ctx, r, Cursor{}, 10)
			if err != nil {
				return err
			}
			if string(got.Rows[0]) != string(want.Rows[0]) || got.Examined != want.Examined || got.Next != nil {
				t.Errorf("%s: counted %s examining %d, row by row %s examining %d", cond, got.Rows[0], got.Examined, want.Rows[0], want.Examined)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}
