package bench

import (
	"bufio"
	"bytes"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/twinflow/twinflow/internal/job"
)

// TestImport runs the import benchmark at a tiny size.
func TestImport(t *testing.T) {
	dir := t.TempDir()
	res, err := Import(t.Context(), ImportConfig{
		Dir: dir, Twins: 300, PatchTwins: 20, PatchRate: 200, PatchConns: 2, Baseline: 200 * time.Millisecond, CeilingBatch: 128,
	}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("Import: %v", err)
	}
	if res.JobElapsed <= 0 || res.RowsPerSecond() <= 0 || res.CountedTwins != 320 || res.CountedRelationships != 300 {
		t.Errorf("implausible result %+v", res)
	}
	if res.Alone.Patches == 0 || res.Alone.Failed != 0 || res.During.Failed != 0 {
		t.Errorf("PATCH load alone %+v, during %+v", res.Alone, res.During)
	}
	if c := res.Ceiling; c.Writes != 600 || c.Transactions != 5 {
		t.Errorf("ceiling wrote %d rows in %d transactions; want 600 in 5", c.Writes, c.Transactions)
	}
	var out bytes.Buffer
	if err := res.Table(&out); err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^  import job +[0-9]+ rows/s`).MatchString(out.String()) {
		t.Errorf("table lacks the summary line scripts read:\n%s", out.String())
	}
	for _, want := range []string{"SQLite ceiling", "import / ceiling", "PATCH alone", "PATCH during import"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("the benchmark left %d entries in %s", len(left), dir)
	}
}

// TestImportFile checks that the benchmark's input reads back as an import file: the model,
// then each twin and relationship in order.
func TestImportFile(t *testing.T) {
	path := t.TempDir() + "/in.ndjson"
	size, err := writeImportFile(path, 3)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rd := job.NewReader(bufio.NewReader(f), job.Position{})
	var got []string
	var last job.Line
	for {
		l, err := rd.Next()
		if err != nil {
			break
		}
		got = append(got, l.At.Section)
		last = l
	}
	if strings.Join(got, " ") != "Header Models Twins Twins Twins Relationships Relationships Relationships" {
		t.Errorf("sections of the lines: %v", got)
	}
	if last.At.Offset != size || !strings.Contains(string(last.Data), `"$targetId":"imp-0000000"`) {
		t.Errorf("last line %s at %+v of %d bytes", last.Data, last.At, size)
	}
}
