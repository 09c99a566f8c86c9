package nab

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/twinflow/twinflow/internal/anomaly"
)

// Report is a detector's result on a NAB corpus.
type Report struct {
	Files, Rows, Windows int
	Results              []Result      // one per profile of Profiles, in order
	Scoring              time.Duration // time spent scoring all rows, for the cost per row
}

// Run scores every file of the NAB checkout at dir with a fresh detector of cfg per file, in
// timestamp order, and scores the anomaly scores on each of the benchmark's profiles.
func Run(dir string, cfg anomaly.Config) (Report, error) {
	files, err := Load(dir)
	if err != nil {
		return Report{}, err
	}
	rep := Report{Files: len(files)}
	scores := make([][]float64, len(files))
	for i, f := range files {
		d, err := anomaly.New(cfg)
		if err != nil {
			return Report{}, fmt.Errorf("run NAB: %w", err)
		}
		scores[i] = make([]float64, len(f.Values))
		start := time.Now()
		for j := range f.Values {
			scores[i][j] = d.Score(f.Times[j], f.Values[j]).Score
		}
		rep.Scoring += time.Since(start)
		rep.Rows += len(f.Values)
		rep.Windows += len(f.Windows)
	}
	for _, p := range Profiles() {
		res, err := Score(files, scores, p)
		if err != nil {
			return Report{}, err
		}
		rep.Results = append(rep.Results, res)
	}
	return rep, nil
}

// Table writes the report as a table: the normalised score of each profile with the threshold
// the sweep chose and the counts behind it.
func (r Report) Table(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "profile\tscore\tthreshold\traw\tnull\tperfect\tTP rows\tFP rows\tFN windows\t\n")
	for _, res := range r.Results {
		fmt.Fprintf(tw, "%s\t%.1f\t%.4f\t%.2f\t%.2f\t%.0f\t%d\t%d\t%d\t\n", res.Profile.Name, res.Normalized,
			res.Threshold, res.Raw, res.Null, res.Perfect, res.TP, res.FP, res.FN)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	perRow := time.Duration(0)
	if r.Rows > 0 {
		perRow = r.Scoring / time.Duration(r.Rows)
	}
	_, err := fmt.Fprintf(w, "%d files, %d rows, %d windows; scoring took %v (%v a row)\n", r.Files, r.Rows, r.Windows,
		r.Scoring.Round(time.Millisecond), perRow)
	return err
}
