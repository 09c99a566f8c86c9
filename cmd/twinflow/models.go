package main

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/twinflow/twinflow/internal/client"
)

// newModelsCmd is `twinflow models`.
func newModelsCmd(a *app) *cobra.Command {
	c := &cobra.Command{
		Use:     "models",
		Short:   "Upload, list, show, decommission and delete models",
		Example: "  twinflow models upload ./ontology\n  twinflow models list",
	}
	c.AddCommand(newModelsUploadCmd(a))
	c.AddCommand(&cobra.Command{
		Use:     "list",
		Short:   "List the models on the server",
		Example: "  twinflow models list\n  twinflow models list --output json | jq -r .id",
		Args:    cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			format, err := a.format(outputTable, outputJSON)
			if err != nil {
				return err
			}
			cl, err := a.client()
			if err != nil {
				return err
			}
			models, err := cl.ListModels(a.ctx, false)
			if err != nil {
				return err
			}
			if format == outputJSON {
				for _, m := range models {
					if err := a.printLine(m); err != nil {
						return err
					}
				}
				return nil
			}
			rows := make([][]string, len(models))
			for i, m := range models {
				rows[i] = []string{m.ID, m.DisplayName["en"], fmt.Sprint(m.Decommissioned), m.UploadTime}
			}
			return a.printTable([]string{"ID", "DISPLAY NAME", "DECOMMISSIONED", "UPLOADED"}, rows)
		},
	})
	c.AddCommand(&cobra.Command{
		Use:     "show ID",
		Short:   "Show a model with its definition",
		Example: "  twinflow models show 'dtmi:example:Room;1'",
		Args:    cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			m, err := cl.GetModel(a.ctx, args[0])
			if err != nil {
				return err
			}
			return a.printJSON(m)
		},
	})
	c.AddCommand(&cobra.Command{
		Use:     "decommission ID",
		Short:   "Decommission a model: no new twin may use it",
		Example: "  twinflow models decommission 'dtmi:example:Room;1'",
		Args:    cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			return cl.DecommissionModel(a.ctx, args[0])
		},
	})
	c.AddCommand(&cobra.Command{
		Use:     "delete ID",
		Short:   "Delete a model no other model depends on",
		Example: "  twinflow models delete 'dtmi:example:Room;1'",
		Args:    cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			return cl.DeleteModel(a.ctx, args[0])
		},
	})
	return c
}

// newModelsUploadCmd is `twinflow models upload`.
func newModelsUploadCmd(a *app) *cobra.Command {
	var skipExisting, progress bool
	c := &cobra.Command{
		Use:   "upload PATH...",
		Short: "Upload the models of files and folders, in dependency order",
		Long: `Upload the DTDL interfaces of the files and folders given (folders recursively: their
.json and .dtdl files). A file holds one interface or a JSON array of them, in UTF-8 with or
without a byte-order mark.

The interfaces are uploaded in the order of their dependencies: an interface comes after
those of the upload it names (in extends, as a component schema, a relationship target, or
anywhere else by its DTMI), and interfaces that depend on each other are uploaded together.
They go in batches of at most 250 (one POST /models each); a batch is added whole or not at
all. An interface that is already on the server fails the upload (409
ModelIdAlreadyExists) unless --skip-existing leaves out those the server has.

A progress bar is shown on stderr when stdout is a terminal, or with --progress.`,
		Example: `  twinflow models upload ./ontology
  twinflow models upload room.json floor.json --skip-existing`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			files, err := modelPaths(args)
			if err != nil {
				return err
			}
			if len(files) == 0 {
				return fmt.Errorf("no .json or .dtdl file in %s", strings.Join(args, ", "))
			}
			models, err := readModelFiles(files)
			if err != nil {
				return err
			}
			cl, err := a.client()
			if err != nil {
				return err
			}
			skipped := 0
			if skipExisting {
				existing, err := cl.ListModels(a.ctx, false)
				if err != nil {
					return fmt.Errorf("list the server's models: %w", err)
				}
				have := make(map[string]bool, len(existing))
				for _, m := range existing {
					have[m.ID] = true
				}
				n := len(models)
				models = slices.DeleteFunc(models, func(m localModel) bool { return have[m.id] })
				skipped = n - len(models)
			}
			batches, err := uploadBatches(models, maxModelBatch)
			if err != nil {
				return err
			}
			var bar *progressbar.ProgressBar
			if progress || terminal(a.stdout) {
				bar = progressbar.NewOptions(len(models),
					progressbar.OptionSetWriter(a.stderr),
					progressbar.OptionSetDescription("uploading models"),
					progressbar.OptionShowCount(),
					progressbar.OptionSetWidth(30),
					progressbar.OptionThrottle(0),
					progressbar.OptionOnCompletion(func() { fmt.Fprintln(a.stderr) }),
				)
			}
			for i, batch := range batches {
				docs := make([]json.RawMessage, len(batch))
				for k, m := range batch {
					docs[k] = m.raw
				}
				if _, err := cl.AddModels(a.ctx, docs); err != nil {
					if bar != nil {
						fmt.Fprintln(a.stderr)
					}
					return uploadError(err, batch, i, len(batches))
				}
				if bar != nil {
					_ = bar.Add(len(batch))
				}
			}
			msg := fmt.Sprintf("uploaded %d models from %d files in %d batches", len(models), len(files), len(batches))
			if skipExisting {
				msg += fmt.Sprintf(", skipped %d already on the server", skipped)
			}
			fmt.Fprintln(a.stdout, msg)
			return nil
		},
	}
	c.Flags().BoolVar(&skipExisting, "skip-existing", false, "leave out the models the server already has")
	c.Flags().BoolVar(&progress, "progress", false, "show the progress bar even when stdout is not a terminal")
	return c
}

// maxUploadMessage is the longest server message models upload prints: a refused batch's
// message lists every problem of up to 250 interfaces.
const maxUploadMessage = 4000

// uploadError names, in the server's refusal err of batch (number i of n), the files and
// models it is about: those whose ids the message names, else every file of the batch. A
// message longer than maxUploadMessage is cut.
func uploadError(err error, batch []localModel, i, n int) error {
	var named []string
	if e, ok := err.(*client.Error); ok {
		text := e.Error()
		if len(e.Message) > maxUploadMessage {
			cut := *e
			cut.Message = e.Message[:maxUploadMessage] + fmt.Sprintf(" ... (%d more characters)", len(e.Message)-maxUploadMessage)
			cut.Details = nil
			err = &cut
		}
		for _, m := range batch {
			if strings.Contains(text, m.id) {
				named = append(named, m.path+" ("+m.id+")")
			}
		}
		if len(named) > 0 && len(named) <= 5 {
			err = fmt.Errorf("%s: %w", strings.Join(named, ", "), err)
			if e.Code == "ModelAlreadyExists" || e.Code == "ModelIdAlreadyExists" {
				err = fmt.Errorf("%w\n(--skip-existing leaves out the models the server has)", err)
			}
			return err
		}
	}
	var files []string
	for _, m := range batch {
		if !slices.Contains(files, m.path) {
			files = append(files, m.path)
		}
	}
	if len(files) > 5 {
		files = append(files[:5], fmt.Sprintf("and %d more files", len(files)-5))
	}
	return fmt.Errorf("upload batch %d of %d (%s): %w", i+1, n, strings.Join(files, ", "), err)
}
