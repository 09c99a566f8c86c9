package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/twinflow/twinflow/internal/client"
)

// newEventsCmd is `twinflow events`.
func newEventsCmd(a *app) *cobra.Command {
	c := &cobra.Command{
		Use:     "events",
		Short:   "Watch the server's change events",
		Example: "  twinflow events tail",
	}
	var filter, from string
	tail := &cobra.Command{
		Use:   "tail [--filter ROUTE-FILTER]",
		Short: "Print the change events as they happen, until interrupted",
		Long: `Print the server's change events (twin and relationship lifecycle and updates, telemetry,
model lifecycle) as they happen, from GET /events, until Ctrl-C. --filter takes an event
route filter (ADT's filter language) and prints only the events it matches; --from resumes
after the event with that id (the change log sequence number) while the server still has it.

On a terminal each event is a line "TIME TYPE SUBJECT"; otherwise (or with --output json)
it is the CloudEvent, one JSON object a line.`,
		Example: `  twinflow events tail
  twinflow events tail --filter "type = 'Microsoft.DigitalTwins.Twin.Update'" --output json`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			format, err := a.format(outputTable, outputJSON)
			if err != nil {
				return err
			}
			cl, err := a.client()
			if err != nil {
				return err
			}
			err = cl.StreamEvents(a.ctx, filter, from, func(ev client.Event) error {
				if format == outputJSON {
					return a.printLine(ev.Data)
				}
				var ce struct{ Time, Type, Subject string }
				if err := json.Unmarshal(ev.Data, &ce); err != nil {
					return fmt.Errorf("read the event %s: %w", ev.ID, err)
				}
				if ce.Type == "" {
					ce.Type = ev.Type
				}
				_, err := fmt.Fprintf(a.stdout, "%s  %s  %s\n", ce.Time, ce.Type, ce.Subject)
				return err
			})
			switch {
			case errors.Is(err, context.Canceled):
				return nil // interrupted: the normal end
			case errors.Is(err, io.EOF):
				return errors.New("the server ended the event stream")
			}
			return err
		},
	}
	tail.Flags().StringVar(&filter, "filter", "", "an event route `filter`; only the events it matches are printed")
	tail.Flags().StringVar(&from, "from", "", "resume after the event with this `id`")
	c.AddCommand(tail)
	return c
}
