package main

import (
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// newHistoryCmd is `twinflow history`.
func newHistoryCmd(a *app) *cobra.Command {
	c := &cobra.Command{
		Use:   "history",
		Short: "Show the data history of twins",
		Example: `  twinflow history show thermostat67 Temperature --since 24h
  twinflow history lifecycle room21`,
	}
	var since, until string
	show := &cobra.Command{
		Use:   "show TWIN PROPERTY --since WHEN [--until WHEN]",
		Short: "Show every change of a twin's property, oldest first",
		Long: `Show every recorded change of the property PROPERTY of the twin TWIN between --since and
--until (GET /digitaltwins/{id}/history). WHEN is a time (RFC 3339, e.g. 2026-12-06T10:00:00Z)
or a duration before now (90s, 15m, 1h, 48h). An unknown twin or property has an empty
history. --output json prints one change a line; table and csv a row per change.`,
		Example: `  twinflow history show thermostat67 Temperature --since 1h
  twinflow history show thermostat67 Temperature --since 2026-12-01T00:00:00Z --until 24h --output csv`,
		Args: cobra.ExactArgs(2),
		RunE: func(_ *cobra.Command, args []string) error {
			format, err := a.format(outputTable, outputJSON, outputCSV)
			if err != nil {
				return err
			}
			now := time.Now()
			from, err := parseWhen("--since", since, now)
			if err != nil {
				return err
			}
			var to time.Time
			if until != "" {
				if to, err = parseWhen("--until", until, now); err != nil {
					return err
				}
			}
			cl, err := a.client()
			if err != nil {
				return err
			}
			rows, err := cl.TwinHistory(a.ctx, args[0], args[1], from, to)
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
			header := []string{"TIME", "VALUE", "ACTION", "SOURCE TIME"}
			cells := make([][]string, len(rows))
			for i, r := range rows {
				src := ""
				if r.SourceTimeStamp != nil {
					src = *r.SourceTimeStamp
				}
				cells[i] = []string{r.TimeStamp, cell(r.Value), r.Action, src}
			}
			if format == outputCSV {
				return writeCSV(a.stdout, []string{"timeStamp", "value", "action", "sourceTimeStamp"}, cells)
			}
			return a.printTable(header, cells)
		},
	}
	show.Flags().StringVar(&since, "since", "", "the earliest change: a time or a duration before now (required)")
	show.Flags().StringVar(&until, "until", "", "the latest change: a time or a duration before now (default: now)")
	_ = show.MarkFlagRequired("since")
	c.AddCommand(show, newLifecycleCmd(a))
	return c
}

// newLifecycleCmd is `twinflow history lifecycle`.
func newLifecycleCmd(a *app) *cobra.Command {
	var since, until string
	c := &cobra.Command{
		Use:   "lifecycle TWIN [--since WHEN] [--until WHEN]",
		Short: "Show when a twin and its relationships were created and deleted",
		Long: `Show the creations and deletions of the twin TWIN and of the relationships it is the source
of, oldest first (GET /digitaltwins/{id}/lifecycle), between --since and --until when given.
WHEN is a time (RFC 3339) or a duration before now (90s, 15m, 1h). The history outlives the
twin; an unknown twin has an empty one. --output json prints one row a line; table and csv a
row per creation or deletion.`,
		Example: `  twinflow history lifecycle room21
  twinflow history lifecycle room21 --since 24h --output csv`,
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
			rows, err := cl.TwinLifecycle(a.ctx, args[0], from, to)
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
				what := r.ModelID
				if r.Kind == "relationship" {
					what = r.RelationshipID + " (" + r.RelationshipName + " -> " + r.TargetID + ")"
				}
				cells[i] = []string{r.TimeStamp, r.Kind, r.Action, what}
			}
			if format == outputCSV {
				return writeCSV(a.stdout, []string{"timeStamp", "kind", "action", "what"}, cells)
			}
			return a.printTable([]string{"TIME", "KIND", "ACTION", "WHAT"}, cells)
		},
	}
	c.Flags().StringVar(&since, "since", "", "the earliest row: a time or a duration before now (default: the oldest kept)")
	c.Flags().StringVar(&until, "until", "", "the latest row: a time or a duration before now (default: now)")
	return c
}

// parseWhen reads the time of flag: RFC 3339, or a Go duration before now.
func parseWhen(flag, v string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	d, err := time.ParseDuration(strings.TrimPrefix(v, "-"))
	if err != nil || d < 0 {
		return time.Time{}, usageErrorf("%s %q: want a time (2026-12-06T10:00:00Z) or a duration before now (1h)", flag, v)
	}
	return now.Add(-d), nil
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
