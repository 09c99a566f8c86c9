// Package nab scores an anomaly detector on the Numenta Anomaly Benchmark (NAB) corpus, read from
// a checkout of the benchmark's repository, with the benchmark's own scoring rules re-implemented:
// each labelled anomaly window rewards its earliest detection by a scaled sigmoid of its position in
// the window (1 at the window's start, 0 at its end), every detection outside a window costs the
// profile's false-positive weight, less the closer it follows the end of the previous window, every
// window without a detection costs the false-negative weight, and the first 15% of each file (at
// most 750 rows) is a probationary period that is not scored. For each application profile
// (standard, reward_low_FP_rate, reward_low_FN_rate) the threshold on the anomaly score that
// maximises the corpus total is chosen by a sweep over every score the detector gave, and the total
// is normalised to 0 for the null detector (which never detects) and 100 for the perfect one (which
// detects every window at its start).
//
// The corpus is not part of this repository; Load reads it from a directory holding the
// benchmark's data/ and labels/combined_windows.json.
package nab

import (
	"cmp"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Profile is an application profile: the weights of true positives, false positives and false
// negatives.
type Profile struct {
	Name       string
	TP, FP, FN float64
}

// Profiles are the benchmark's three application profiles (its config/profiles.json).
func Profiles() []Profile {
	return []Profile{
		{Name: "standard", TP: 1, FP: 0.11, FN: 1},
		{Name: "reward_low_FP_rate", TP: 1, FP: 0.22, FN: 1},
		{Name: "reward_low_FN_rate", TP: 1, FP: 0.11, FN: 2},
	}
}

// File is one data file of the corpus with its labelled anomaly windows.
type File struct {
	Name    string // relative to data/, e.g. "realKnownCause/nyc_taxi.csv"
	Times   []time.Time
	Values  []float64
	Windows [][2]int // first and last row index of each window, in order
}

const (
	probationaryPercent = 0.15
	timeLayout          = "2006-01-02 15:04:05"
)

// Load reads the data files of the NAB checkout at dir that have labels, in name order. A data
// file listed in the labels but missing from data/ is skipped, so that a partial copy of the corpus
// can be scored; Load fails when none is found.
func Load(dir string) ([]File, error) {
	raw, err := os.ReadFile(filepath.Join(dir, "labels", "combined_windows.json"))
	if err != nil {
		return nil, fmt.Errorf("load NAB labels: %w", err)
	}
	var labels map[string][][2]string
	if err := json.Unmarshal(raw, &labels); err != nil {
		return nil, fmt.Errorf("load NAB labels: %w", err)
	}
	names := make([]string, 0, len(labels))
	for name := range labels {
		names = append(names, name)
	}
	slices.Sort(names)
	var files []File
	for _, name := range names {
		f, err := loadFile(filepath.Join(dir, "data", filepath.FromSlash(name)))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("load NAB file %s: %w", name, err)
		}
		f.Name = name
		for _, w := range labels[name] {
			start, err1 := time.Parse(timeLayout, strings.TrimSuffix(w[0], ".000000"))
			end, err2 := time.Parse(timeLayout, strings.TrimSuffix(w[1], ".000000"))
			if err := errors.Join(err1, err2); err != nil {
				return nil, fmt.Errorf("load NAB labels of %s: %w", name, err)
			}
			first, _ := slices.BinarySearchFunc(f.Times, start, func(t, s time.Time) int { return t.Compare(s) })
			last, found := slices.BinarySearchFunc(f.Times, end, func(t, e time.Time) int { return t.Compare(e) })
			if !found {
				last--
			}
			if first <= last {
				f.Windows = append(f.Windows, [2]int{first, last})
			}
		}
		files = append(files, f)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("load NAB corpus: no labelled data file under %s", filepath.Join(dir, "data"))
	}
	return files, nil
}

func loadFile(path string) (File, error) {
	fh, err := os.Open(path)
	if err != nil {
		return File{}, err
	}
	defer fh.Close()
	rows, err := csv.NewReader(fh).ReadAll()
	if err != nil {
		return File{}, err
	}
	var f File
	for i, row := range rows {
		if i == 0 || len(row) < 2 {
			continue // the header
		}
		t, err := time.Parse(timeLayout, row[0])
		if err != nil {
			return File{}, fmt.Errorf("row %d: %w", i+1, err)
		}
		v, err := strconv.ParseFloat(row[1], 64)
		if err != nil {
			return File{}, fmt.Errorf("row %d: %w", i+1, err)
		}
		f.Times = append(f.Times, t)
		f.Values = append(f.Values, v)
	}
	return f, nil
}

// scaledSigmoid is the benchmark's weight of a detection at a relative position: −1 at the start of
// its window, 0 at the end, positive after it (−1 from 3 on).
func scaledSigmoid(x float64) float64 {
	if x >= 3 {
		return -1
	}
	return 2/(1+math.Exp(5*x)) - 1
}

// point is one scored row: the detector's score, the row's weight if it is detected, and its window
// (−1 outside any).
type point struct {
	score  float64
	weight float64
	window int
}

// Result is a detector's score on one profile.
type Result struct {
	Profile    Profile
	Threshold  float64 // the best threshold: rows scoring at least this are detections
	Raw        float64 // the corpus total at that threshold
	Null       float64 // the null detector's best total
	Perfect    float64 // the perfect detector's total
	Normalized float64 // 100·(Raw − Null)/(Perfect − Null)
	TP, FP     int     // detected rows inside and outside windows at the threshold
	FN         int     // windows without a detection
}

// Score scores a detector's anomaly scores (scores[i][j] for row j of files[i], each in [0, 1]) on
// a profile.
func Score(files []File, scores [][]float64, p Profile) (Result, error) {
	if len(scores) != len(files) {
		return Result{}, fmt.Errorf("score NAB: %d score series for %d files", len(scores), len(files))
	}
	null := make([][]float64, len(files))
	windows := 0
	for i, f := range files {
		if len(scores[i]) != len(f.Values) {
			return Result{}, fmt.Errorf("score NAB file %s: %d scores for %d rows", f.Name, len(scores[i]), len(f.Values))
		}
		null[i] = make([]float64, len(f.Values))
		windows += len(f.Windows)
	}
	if windows == 0 {
		return Result{}, errors.New("score NAB: no labelled anomaly window in the files, so no normalised score")
	}
	res := sweep(files, scores, p)
	nullRes := sweep(files, null, p)
	res.Profile = p
	res.Null = nullRes.Raw
	res.Perfect = float64(windows) * p.TP
	res.Normalized = 100 * (res.Raw - res.Null) / (res.Perfect - res.Null)
	return res, nil
}

// sweep computes each row's weight as the benchmark's sweeper does, then the corpus total for every
// threshold from the highest score down, and returns the best.
func sweep(files []File, scores [][]float64, p Profile) Result {
	maxTP := scaledSigmoid(-1)
	var pts []point
	windowBase := 0
	for fi, f := range files {
		n := len(f.Values)
		probation := int(math.Min(math.Floor(probationaryPercent*float64(n)), probationaryPercent*5000))
		wi := 0
		prevEnd, prevWidth := -1, 0
		for i := range n {
			w := -1
			var weight float64
			if wi < len(f.Windows) && i >= f.Windows[wi][0] && i <= f.Windows[wi][1] {
				start, end := f.Windows[wi][0], f.Windows[wi][1]
				width := float64(end - start + 1)
				weight = scaledSigmoid(-float64(end-i+1)/width) * p.TP / maxTP
				w = windowBase + wi
			} else {
				pos := 3.0
				if prevEnd >= 0 && prevWidth > 1 {
					pos = math.Abs(float64(prevEnd-i)) / float64(prevWidth-1)
				}
				weight = scaledSigmoid(pos) * p.FP
			}
			if i >= probation {
				pts = append(pts, point{score: scores[fi][i], weight: weight, window: w})
			}
			if wi < len(f.Windows) && i == f.Windows[wi][1] {
				prevEnd, prevWidth = i, f.Windows[wi][1]-f.Windows[wi][0]+1
				wi++
			}
		}
		windowBase += len(f.Windows)
	}
	slices.SortStableFunc(pts, func(a, b point) int { return cmp.Compare(b.score, a.score) })

	// Every window starts as a false negative; each row at or above the threshold adds its
	// false-positive weight or raises its window's part to its weight.
	parts := make(map[int]float64)
	for _, pt := range pts {
		if pt.window >= 0 {
			parts[pt.window] = -p.FN
		}
	}
	sum := 0.0
	for range parts {
		sum -= p.FN
	}
	best := Result{Threshold: 1.1, Raw: sum, FN: len(parts)}
	detected := map[int]bool{}
	tp, fps := 0, 0
	for i := 0; i < len(pts); {
		th := pts[i].score
		for ; i < len(pts) && pts[i].score == th; i++ {
			pt := pts[i]
			if pt.window < 0 {
				sum += pt.weight
				fps++
				continue
			}
			if pt.weight > parts[pt.window] {
				sum += pt.weight - parts[pt.window]
				parts[pt.window] = pt.weight
			}
			tp++
			detected[pt.window] = true
		}
		if sum > best.Raw {
			best = Result{Threshold: th, Raw: sum, TP: tp, FP: fps, FN: len(parts) - len(detected)}
		}
	}
	return best
}
