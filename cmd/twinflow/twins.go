package main

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"
)

// newTwinsCmd is `twinflow twins`.
func newTwinsCmd(a *app) *cobra.Command {
	c := &cobra.Command{
		Use:     "twins",
		Short:   "Show, create, patch and delete digital twins",
		Example: "  twinflow twins show room-1",
	}
	c.AddCommand(&cobra.Command{
		Use:     "show ID",
		Short:   "Show a twin",
		Example: "  twinflow twins show room-1",
		Args:    cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			t, err := cl.GetTwin(a.ctx, args[0])
			if err != nil {
				return err
			}
			return a.printJSON(t)
		},
	})

	var model, props, file string
	create := &cobra.Command{
		Use:   "create ID --model DTMI [--properties JSON | -f FILE]",
		Short: "Create or replace a twin",
		Long: `Create the twin ID of the model DTMI, or replace it when it exists, with the property
values of --properties (a JSON object, or @FILE) or of -f FILE (a JSON object; "-" reads
stdin). The twin the server stored is printed.`,
		Example: `  twinflow twins create room-1 --model 'dtmi:example:Room;1' --properties '{"temperature": 21.5}'
  twinflow twins create room-2 --model 'dtmi:example:Room;1' -f room.json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if props != "" && file != "" {
				return usageErrorf("--properties and -f are exclusive")
			}
			doc := map[string]json.RawMessage{}
			src := props
			if file != "" {
				src = "@" + file
			}
			if src != "" {
				raw, err := readJSONArg("the properties", src, cmd.InOrStdin())
				if err != nil {
					return err
				}
				if err := json.Unmarshal(raw, &doc); err != nil || doc == nil {
					return usageErrorf("the properties must be a JSON object")
				}
			}
			meta := map[string]json.RawMessage{}
			if m, ok := doc["$metadata"]; ok {
				if err := json.Unmarshal(m, &meta); err != nil {
					return usageErrorf("$metadata must be a JSON object")
				}
			}
			mb, _ := json.Marshal(model)
			meta["$model"] = mb
			doc["$metadata"], _ = json.Marshal(meta)
			body, err := json.Marshal(doc)
			if err != nil {
				return err
			}
			cl, err := a.client()
			if err != nil {
				return err
			}
			t, err := cl.PutTwin(a.ctx, args[0], body)
			if err != nil {
				return err
			}
			return a.printJSON(t)
		},
	}
	create.Flags().StringVar(&model, "model", "", "the twin's model `DTMI` (required)")
	create.Flags().StringVar(&props, "properties", "", "property values: a JSON `object`, or @FILE")
	create.Flags().StringVarP(&file, "file", "f", "", "read the property values from `FILE` (- for stdin)")
	_ = create.MarkFlagRequired("model")
	c.AddCommand(create)

	var patch, ifMatch string
	patchCmd := &cobra.Command{
		Use:   "patch ID --patch JSON-PATCH [--if-match ETAG]",
		Short: "Apply a JSON Patch to a twin",
		Long: `Apply the JSON Patch (RFC 6902; a JSON array of operations, or @FILE) to the twin ID.
With --if-match the patch applies only while the twin's ETag is ETAG (412
PreconditionFailed otherwise). The twin's new ETag is printed.`,
		Example: `  twinflow twins patch room-1 --patch '[{"op": "replace", "path": "/temperature", "value": 22}]'
  twinflow twins patch room-1 --patch @patch.json --if-match 'W/"6f3b..."'`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			raw, err := readJSONArg("--patch", patch, cmd.InOrStdin())
			if err != nil {
				return err
			}
			cl, err := a.client()
			if err != nil {
				return err
			}
			etag, err := cl.PatchTwin(a.ctx, args[0], raw, ifMatch)
			if err != nil {
				return err
			}
			fmt.Fprintln(a.stdout, etag)
			return nil
		},
	}
	patchCmd.Flags().StringVar(&patch, "patch", "", "the JSON `Patch`, or @FILE (required)")
	patchCmd.Flags().StringVar(&ifMatch, "if-match", "", "apply only while the twin's ETag is `ETAG`")
	_ = patchCmd.MarkFlagRequired("patch")
	c.AddCommand(patchCmd)

	c.AddCommand(&cobra.Command{
		Use:     "delete ID",
		Short:   "Delete a twin that has no relationships",
		Example: "  twinflow twins delete room-1",
		Args:    cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			return cl.DeleteTwin(a.ctx, args[0])
		},
	})
	return c
}

// newRelationshipsCmd is `twinflow relationships`.
func newRelationshipsCmd(a *app) *cobra.Command {
	c := &cobra.Command{
		Use:     "relationships",
		Aliases: []string{"rels"},
		Short:   "List, create and delete relationships",
		Example: "  twinflow relationships list floor-1",
	}
	var incoming bool
	list := &cobra.Command{
		Use:     "list TWIN [--incoming]",
		Short:   "List the relationships from a twin, or to it",
		Example: "  twinflow relationships list floor-1\n  twinflow relationships list room-1 --incoming",
		Args:    cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			format, err := a.format(outputTable, outputJSON)
			if err != nil {
				return err
			}
			cl, err := a.client()
			if err != nil {
				return err
			}
			rels, err := cl.ListRelationships(a.ctx, args[0], incoming)
			if err != nil {
				return err
			}
			if format == outputJSON {
				for _, r := range rels {
					if err := a.printLine(r); err != nil {
						return err
					}
				}
				return nil
			}
			rows := make([][]string, len(rels))
			for i, raw := range rels {
				var r map[string]json.RawMessage
				if err := json.Unmarshal(raw, &r); err != nil {
					return fmt.Errorf("read a relationship: %w", err)
				}
				rows[i] = []string{cell(r["$relationshipId"]), cell(r["$sourceId"]), cell(r["$relationshipName"]), cell(r["$targetId"])}
			}
			return a.printTable([]string{"ID", "SOURCE", "NAME", "TARGET"}, rows)
		},
	}
	list.Flags().BoolVar(&incoming, "incoming", false, "list the relationships to the twin instead")
	c.AddCommand(list)

	var name, props string
	create := &cobra.Command{
		Use:   "create SRC REL_ID TARGET --name NAME [--properties JSON]",
		Short: "Create or replace a relationship",
		Long: `Create the relationship REL_ID from the twin SRC to the twin TARGET, named NAME as its
model's relationship is, with the property values of --properties (a JSON object, or @FILE).`,
		Example: "  twinflow relationships create floor-1 floor-1-room-1 room-1 --name contains",
		Args:    cobra.ExactArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			doc := map[string]json.RawMessage{}
			if props != "" {
				raw, err := readJSONArg("--properties", props, cmd.InOrStdin())
				if err != nil {
					return err
				}
				if err := json.Unmarshal(raw, &doc); err != nil || doc == nil {
					return usageErrorf("--properties must be a JSON object")
				}
			}
			doc["$targetId"], _ = json.Marshal(args[2])
			doc["$relationshipName"], _ = json.Marshal(name)
			body, err := json.Marshal(doc)
			if err != nil {
				return err
			}
			cl, err := a.client()
			if err != nil {
				return err
			}
			r, err := cl.PutRelationship(a.ctx, args[0], args[1], body)
			if err != nil {
				return err
			}
			return a.printJSON(r)
		},
	}
	create.Flags().StringVar(&name, "name", "", "the relationship's `name` in the source's model (required)")
	create.Flags().StringVar(&props, "properties", "", "property values: a JSON `object`, or @FILE")
	_ = create.MarkFlagRequired("name")
	c.AddCommand(create)

	c.AddCommand(&cobra.Command{
		Use:     "delete SRC REL_ID",
		Short:   "Delete a relationship",
		Example: "  twinflow relationships delete floor-1 floor-1-room-1",
		Args:    cobra.ExactArgs(2),
		RunE: func(_ *cobra.Command, args []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			return cl.DeleteRelationship(a.ctx, args[0], args[1])
		},
	})
	return c
}
