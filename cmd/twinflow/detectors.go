package main

import (
	"fmt"
	"strconv"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

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

// newAnomaliesCmd is `twinflow anomalies`.
func newAnomaliesCmd(a *app) *cobra.Command {
	var detector, since, until string
	c := &cobra.Command{
		Use:   "anomalies TWIN [--detector NAME] [--since WHEN] [--until WHEN]",
		Short: "Show the anomalies detectors raised on a twin's properties",
		Long: `Show the anomalies detectors raised on the properties of the twin TWIN, in the order they were
raised, from data history (GET /digitaltwins/{id}/anomalies): those of the detector NAME
with --detector, and with --since and --until (or --from and --to) those whose point's time
falls between them. WHEN is a time (RFC 3339) or a duration before now (90s, 15m, 1h).
--output json prints one anomaly a line; table and csv a row per anomaly.`,
		Example: `  twinflow anomalies room-1
  twinflow anomalies room-1 --detector rooms --since 24h --output csv`,
		Args: cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			format, err := a.format(outputTable, outputJSON, outputCSV)
			if err != nil {
				return err
			}
			from, to, err := timeFlags(since, until, time.Now())
			if err != nil {
				return err
			}
			cl, err := a.client()
			if err != nil {
				return err
			}
			rows, err := cl.TwinAnomalies(a.ctx, args[0], detector, from, to)
			if err != nil {
				return err
			}
			if format == outputJSON {
				for _, r := range rows {
					if err := a.printLine(r); err != nil {
						return err
					}
				}
				return nil
			}
			cells := make([][]string, len(rows))
			for i, r := range rows {
				cells[i] = []string{r.TimeStamp, r.Property, number(r.Value), number(r.Score), r.Kind, r.Detector}
			}
			if format == outputCSV {
				return writeCSV(a.stdout, []string{"timeStamp", "property", "value", "score", "kind", "detector"}, cells)
			}
			for i, r := range rows {
				cells[i][3] = strconv.FormatFloat(r.Score, 'f', 4, 64)
			}
			return a.printTable([]string{"TIME", "PROPERTY", "VALUE", "SCORE", "KIND", "DETECTOR"}, cells)
		},
	}
	c.Flags().StringVar(&detector, "detector", "", "only the anomalies of the detector `NAME`")
	c.Flags().StringVar(&since, "since", "", "the earliest point: a time or a duration before now (default: the oldest kept)")
	c.Flags().StringVar(&until, "until", "", "the latest point: a time or a duration before now (default: now)")
	c.Flags().SetNormalizeFunc(fromToAliases)
	return c
}

// fromToAliases lets --from and --to, the API's names, stand for --since and --until.
func fromToAliases(_ *pflag.FlagSet, name string) pflag.NormalizedName {
	switch name {
	case "from":
		name = "since"
	case "to":
		name = "until"
	}
	return pflag.NormalizedName(name)
}

// timeFlags reads the optional --since and --until (see parseWhen); an empty one is the
// zero time, no bound.
func timeFlags(since, until string, now time.Time) (from, to time.Time, err error) {
	if since != "" {
		if from, err = parseWhen("--since", since, now); err != nil {
			return time.Time{}, time.Time{}, err
		}
	}
	if until != "" {
		if to, err = parseWhen("--until", until, now); err != nil {
			return time.Time{}, time.Time{}, err
		}
	}
	return from, to, nil
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
