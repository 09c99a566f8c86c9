package main

import (
	"strconv"
	"time"

	"github.com/spf13/cobra"
)

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
