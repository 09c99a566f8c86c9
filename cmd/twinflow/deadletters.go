package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/twinflow/twinflow/internal/client"
)

// newDeadLettersCmd is `twinflow deadletters`.
func newDeadLettersCmd(a *app) *cobra.Command {
	c := &cobra.Command{
		Use:     "deadletters",
		Short:   "List and redrive the dead letters of endpoints and sources",
		Example: "  twinflow deadletters list --endpoint hook",
	}
	var endpoint, source string
	// owner returns the collection and name the flags pick: one of --endpoint and --source.
	owner := func() (client.Collection, string, error) {
		switch {
		case endpoint != "" && source != "":
			return "", "", usageErrorf("--endpoint and --source are exclusive")
		case endpoint != "":
			return client.Endpoints, endpoint, nil
		case source != "":
			return client.Sources, source, nil
		}
		return "", "", usageErrorf("name an endpoint (--endpoint NAME) or a source (--source NAME)")
	}
	list := &cobra.Command{
		Use:   "list --endpoint NAME | --source NAME",
		Short: "List the dead letters of an endpoint or a source, oldest first",
		Example: `  twinflow deadletters list --endpoint hook
  twinflow deadletters list --source devices --output json`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			format, err := a.format(outputTable, outputJSON)
			if err != nil {
				return err
			}
			coll, name, err := owner()
			if err != nil {
				return err
			}
			cl, err := a.client()
			if err != nil {
				return err
			}
			dls, err := cl.ListDeadLetters(a.ctx, coll, name)
			if err != nil {
				return err
			}
			if format == outputJSON {
				for _, d := range dls {
					if err := a.printLine(d); err != nil {
						return err
					}
				}
				return nil
			}
			rows := make([][]string, len(dls))
			for i, d := range dls {
				rows[i] = []string{d.ID, d.Time, fmt.Sprint(d.Attempts), d.Reason}
			}
			return a.printTable([]string{"ID", "TIME", "ATTEMPTS", "REASON"}, rows)
		},
	}
	var all bool
	redrive := &cobra.Command{
		Use:   "redrive --endpoint NAME | --source NAME (ID... | --all)",
		Short: "Send dead letters again",
		Long: `Send the dead letters ID... (or every one, with --all) of an endpoint or a source again.
An endpoint's relay sends each event again between its batches, and a dead letter that is
delivered leaves the list; a source's message is applied again at once, and its new result
is printed.`,
		Example: `  twinflow deadletters redrive --endpoint hook 12 13
  twinflow deadletters redrive --source devices --all`,
		RunE: func(_ *cobra.Command, args []string) error {
			coll, name, err := owner()
			if err != nil {
				return err
			}
			if all == (len(args) > 0) {
				return usageErrorf("give the ids of the dead letters, or --all")
			}
			cl, err := a.client()
			if err != nil {
				return err
			}
			ids := args
			if all {
				dls, err := cl.ListDeadLetters(a.ctx, coll, name)
				if err != nil {
					return err
				}
				for _, d := range dls {
					ids = append(ids, d.ID)
				}
			}
			for _, id := range ids {
				out, err := cl.RedriveDeadLetter(a.ctx, coll, name, id)
				if err != nil {
					return fmt.Errorf("redrive %s: %w", id, err)
				}
				fmt.Fprintf(a.stdout, "%s redriven", id)
				if len(out) > 0 {
					if b, err := compact(out); err == nil {
						fmt.Fprintf(a.stdout, ": %s", b)
					}
				}
				fmt.Fprintln(a.stdout)
			}
			return nil
		},
	}
	for _, cmd := range []*cobra.Command{list, redrive} {
		cmd.Flags().StringVar(&endpoint, "endpoint", "", "the endpoint's `name`")
		cmd.Flags().StringVar(&source, "source", "", "the source's `name`")
	}
	redrive.Flags().BoolVar(&all, "all", false, "redrive every dead letter")
	c.AddCommand(list, redrive)
	return c
}
