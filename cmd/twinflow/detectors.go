package main

import (
	"fmt"
	"strconv"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/twinflow/twinflow/internal/client"
)

// newDetectorsCmd is `twinflow detectors`: the resource commands of anomaly detectors, and
// backtest.
func newDetectorsCmd(a *app) *cobra.Command {
	c := newResourceCmd(a, resourceDetectors)
	c.Short = "List, show, apply, delete and backtest anomaly detectors"
	c.Example = `  twinflow detectors list
  twinflow detectors apply -f detectors.yaml
  twinflow detectors backtest rooms --twin room-1 --property Temperature --since 24h`
	c.AddCommand(newBacktestCmd(a))
	return c
}

// newBacktestCmd is `twinflow detectors backtest`.
func newBacktestCmd(a *app) *cobra.Command {
	var twinID, property, since, until string
	var pageSize int
	var progress bool
	c := &cobra.Command{
		Use:   "backtest NAME --twin TWIN --property PROPERTY [--since WHEN] [--until WHEN]",
		Short: "Score a twin's property over its data history with a detector",
		Long: `Score every point data history holds of the property PROPERTY of the twin TWIN with a fresh
model of the detector NAME (POST /detectors/{name}/backtest), following the continuation
token through every page, and print each point with its time, value, score, whether it is an
anomaly, and the kind of test that scored it. --since and --until (or --from and --to) bound
when the changes committed; WHEN is a time (RFC 3339) or a duration before now (90s, 15m,
1h). The server needs data history on.

--output json prints one point a line, as the pages arrive; table and csv print a row per
point once every page is in. A progress counter goes to stderr on a terminal or with
--progress.`,
		Example: `  twinflow detectors backtest rooms --twin room-1 --property Temperature
  twinflow detectors backtest rooms --twin room-1 --property Temperature --since 24h --output csv`,
		Args: cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			format, err := a.format(outputTable, outputJSON, outputCSV)
			if err != nil {
				return err
			}
			if pageSize < 0 {
				return usageErrorf("--page-size %d is negative", pageSize)
			}
			q := client.BacktestQuery{TwinID: twinID, Property: property, PageSize: pageSize}
			if q.From, q.To, err = timeFlags(since, until, time.Now()); err != nil {
				return err
			}
			cl, err := a.client()
			if err != nil {
				return err
			}
			var bar *progressbar.ProgressBar
			if progress || terminal(a.stdout) {
				bar = progressbar.NewOptions(-1,
					progressbar.OptionSetWriter(a.stderr),
					progressbar.OptionSetDescription("scoring "+twinID+" "+property),
					progressbar.OptionShowCount(),
					progressbar.OptionThrottle(0),
				)
			}
			var points []client.ScoredPoint
			err = cl.Backtest(a.ctx, args[0], q, func(page []client.ScoredPoint) error {
				if bar != nil {
					_ = bar.Add(len(page))
				}
				if format != outputJSON {
					points = append(points, page...)
					return nil
				}
				for _, p := range page {
					if err := a.printLine(p); err != nil {
						return err
					}
				}
				return nil
			})
			if bar != nil {
				_ = bar.Finish()
				fmt.Fprintln(a.stderr)
			}
			if err != nil {
				return err
			}
			if format == outputJSON {
				return nil
			}
			cells := make([][]string, len(points))
			for i, p := range points {
				cells[i] = []string{p.Time, number(p.Value), number(p.Score), strconv.FormatBool(p.Anomaly), p.Kind}
			}
			if format == outputCSV {
				return writeCSV(a.stdout, []string{"time", "value", "score", "anomaly", "kind"}, cells)
			}
			for i, p := range points {
				cells[i][2] = strconv.FormatFloat(p.Score, 'f', 4, 64)
				cells[i][3] = yesNo(p.Anomaly)
			}
			return a.printTable([]string{"TIME", "VALUE", "SCORE", "ANOMALY", "KIND"}, cells)
		},
	}
	c.Flags().StringVar(&twinID, "twin", "", "the twin's `id` (required)")
	c.Flags().StringVar(&property, "property", "", "the numeric `property` to score (required)")
	c.Flags().StringVar(&since, "since", "", "the earliest change printed: a time or a duration before now (default: the oldest kept)")
	c.Flags().StringVar(&until, "until", "", "the latest change scored: a time or a duration before now (default: now)")
	c.Flags().IntVar(&pageSize, "page-size", 0, "points per request, max-items-per-page (default: the server's)")
	c.Flags().BoolVar(&progress, "progress", false, "show the progress counter even when stdout is not a terminal")
	_ = c.MarkFlagRequired("twin")
	_ = c.MarkFlagRequired("property")
	c.Flags().SetNormalizeFunc(fromToAliases)
	return c
}

// number renders f in the fewest digits that read back as f.
func number(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

// yesNo renders a flag in a table.
func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
