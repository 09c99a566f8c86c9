package nab

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twinflow/twinflow/internal/anomaly"
)

// file is a hand-made file of 100 rows with one window at rows 50–59; the probationary period is
// its first 15 rows.
func file() File {
	f := File{Name: "test/a.csv", Windows: [][2]int{{50, 59}}}
	for i := range 100 {
		f.Times = append(f.Times, time.Date(2026, 1, 1, 0, 5*i, 0, 0, time.UTC))
		f.Values = append(f.Values, 0)
	}
	return f
}

func sig(x float64) float64 { return 1 / (1 + math.Exp(-x)) }

// TestScoreByTheBenchmarksRules checks hand-made cases whose values follow from the benchmark's
// rules: a window's weight is (2·sigmoid(−5x) − 1)/(2·sigmoid(5) − 1) at relative position
// x = −(end − i + 1)/width, a false positive after a window costs −(2·sigmoid(−5y) − 1)·fpWeight at
// y = (i − end)/(width − 1), one before any window fpWeight, and normalisation maps the null
// detector's total (−fnWeight per window) to 0 and tpWeight per window to 100.
func TestScoreByTheBenchmarksRules(t *testing.T) {
	maxTP := 2*sig(5) - 1
	std, lowFN := Profiles()[0], Profiles()[2]
	for _, c := range []struct {
		name       string
		detect     map[int]float64 // row → score; other rows 0
		profile    Profile
		raw, normd float64
	}{
		{"detected at the window's start", map[int]float64{50: 1}, std, 1, 100},
		{"detected at the window's last row", map[int]float64{59: 1}, std, (2*sig(0.5) - 1) / maxTP, 100 * ((2*sig(0.5)-1)/maxTP + 1) / 2},
		{"only the earliest detection counts", map[int]float64{55: 1, 50: 0.9}, std, 1, 100},
		{"a false positive one window width after", map[int]float64{50: 1, 68: 1}, std, 1 + 0.11*(2*sig(-5)-1), 100 * (1 + 0.11*(2*sig(-5)-1) + 1) / 2},
		{"a false positive before any window", map[int]float64{50: 1, 20: 1}, std, 1 - 0.11, 100 * (1 - 0.11 + 1) / 2},
		{"the threshold leaves out the false positive", map[int]float64{50: 1, 20: 0.5}, std, 1, 100},
		{"detections in the probationary period are not scored", map[int]float64{5: 1}, std, -1, 0},
		{"missed on the low-FN profile", nil, lowFN, -2, 0},
		{"detected on the low-FN profile", map[int]float64{50: 1}, lowFN, 1, 100},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := file()
			scores := make([]float64, 100)
			for i, s := range c.detect {
				scores[i] = s
			}
			res, err := Score([]File{f}, [][]float64{scores}, c.profile)
			if err != nil {
				t.Fatal(err)
			}
			if math.Abs(res.Raw-c.raw) > 1e-9 || math.Abs(res.Normalized-c.normd) > 1e-9 {
				t.Errorf("raw %.6f, normalized %.4f; want %.6f, %.4f", res.Raw, res.Normalized, c.raw, c.normd)
			}
		})
	}
}

func TestScoreChecksLengths(t *testing.T) {
	if _, err := Score([]File{file()}, [][]float64{make([]float64, 3)}, Profiles()[0]); err == nil {
		t.Error("no error for a short score series")
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(dir, "labels"), 0o755))
	must(os.MkdirAll(filepath.Join(dir, "data", "x"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "labels", "combined_windows.json"), []byte(`{
		"x/a.csv": [["2026-01-01 00:10:00.000000", "2026-01-01 00:20:00.000000"]],
		"x/missing.csv": []
	}`), 0o644))
	must(os.WriteFile(filepath.Join(dir, "data", "x", "a.csv"), []byte("timestamp,value\n"+
		"2026-01-01 00:00:00,1\n2026-01-01 00:05:00,2\n2026-01-01 00:10:00,3\n2026-01-01 00:15:00,4\n"+
		"2026-01-01 00:20:00,5\n2026-01-01 00:25:00,6\n"), 0o644))
	files, err := Load(dir)
	must(err)
	if len(files) != 1 || files[0].Name != "x/a.csv" || len(files[0].Values) != 6 || files[0].Values[5] != 6 {
		t.Fatalf("loaded %+v", files)
	}
	if got := files[0].Windows; len(got) != 1 || got[0] != [2]int{2, 4} {
		t.Errorf("windows %v, want [[2 4]]", got)
	}
	if _, err := Load(t.TempDir()); err == nil {
		t.Error("no error for a directory without labels")
	}
}

// TestRun runs the detector on a NAB-shaped checkout of two files of 1,000 noisy rows each,
// every file with a spike of 10σ inside its one window, and checks that each profile scores it
// as detected without false positives: the normalised score of a perfect detection that is
// late by the rows it takes to see the spike.
func TestRun(t *testing.T) {
	dir := t.TempDir()
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(dir, "labels"), 0o755))
	must(os.MkdirAll(filepath.Join(dir, "data", "x"), 0o755))
	rng := rand.New(rand.NewPCG(1, 2))
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	stamp := func(i int) string { return start.Add(time.Duration(i) * 5 * time.Minute).Format("2006-01-02 15:04:05") }
	windows := map[string][][2]string{}
	for _, name := range []string{"a", "b"} {
		var b strings.Builder
		b.WriteString("timestamp,value\n")
		for i := range 1000 {
			v := 50 + rng.NormFloat64()
			if i == 700 {
				v += 10
			}
			fmt.Fprintf(&b, "%s,%.4f\n", stamp(i), v)
		}
		must(os.WriteFile(filepath.Join(dir, "data", "x", name+".csv"), []byte(b.String()), 0o644))
		windows["x/"+name+".csv"] = [][2]string{{stamp(650) + ".000000", stamp(750) + ".000000"}}
	}
	labels, err := json.Marshal(windows)
	must(err)
	must(os.WriteFile(filepath.Join(dir, "labels", "combined_windows.json"), labels, 0o644))

	rep, err := Run(dir, anomaly.Config{})
	must(err)
	if rep.Files != 2 || rep.Rows != 2000 || rep.Windows != 2 || len(rep.Results) != len(Profiles()) {
		t.Fatalf("report %+v; want 2 files, 2000 rows, 2 windows, a result per profile", rep)
	}
	for _, res := range rep.Results {
		if res.FN != 0 || res.FP != 0 || res.Normalized < 50 {
			t.Errorf("%s: normalised %.1f, %d false positive rows, %d windows missed; want the spikes found and nothing else",
				res.Profile.Name, res.Normalized, res.FP, res.FN)
		}
	}
	var table strings.Builder
	must(rep.Table(&table))
	if !strings.Contains(table.String(), "standard") || !strings.Contains(table.String(), "2 files, 2000 rows, 2 windows") {
		t.Errorf("table:\n%s", table.String())
	}
}

// TestScoreSweepsOneThresholdOverTheCorpus checks that the threshold is chosen for the corpus as
// a whole: file b's false positive at 0.95 is kept because lowering the threshold to 0.8 detects
// both windows at their starts, for 2 − 0.11 against the null detector's −2.
func TestScoreSweepsOneThresholdOverTheCorpus(t *testing.T) {
	a, b := file(), file()
	b.Name = "test/b.csv"
	sa, sb := make([]float64, 100), make([]float64, 100)
	sa[50], sb[20], sb[50] = 0.9, 0.95, 0.8
	res, err := Score([]File{a, b}, [][]float64{sa, sb}, Profiles()[0])
	if err != nil {
		t.Fatal(err)
	}
	if res.Threshold != 0.8 || math.Abs(res.Raw-1.89) > 1e-9 || math.Abs(res.Normalized-100*3.89/4) > 1e-9 || res.FP != 1 || res.FN != 0 {
		t.Errorf("got %+v; want threshold 0.8, raw 1.89, normalized %.4f, 1 FP row, no FN window", res, 100*3.89/4)
	}
}

func TestScoreNeedsWindows(t *testing.T) {
	f := file()
	f.Windows = nil
	if _, err := Score([]File{f}, [][]float64{make([]float64, 100)}, Profiles()[0]); err == nil {
		t.Error("no error for a corpus without windows")
	}
}
