package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/twinflow/twinflow/internal/client"
)

// resourceKind describes a collection of named resources the CLI manages alike.
type resourceKind struct {
	noun       string            // the command: endpoints, routes, sources, mappings
	coll       client.Collection // its API collection
	singular   string            // for messages and help
	configKey  string            // its section of the config file
	nameMember string            // the member of a listed item holding its name
	columns    []string          // the members a table shows after the name; "a.b" is member b of member a
	example    string            // an apply example's file content
}

// The resource kinds.
var (
	resourceEndpoints = resourceKind{noun: "endpoints", coll: client.Endpoints, singular: "endpoint", configKey: "endpoints",
		nameMember: "name", columns: []string{"endpointType", "url"},
		example: "hook:\n  endpointType: webhook\n  url: https://example.com/events"}
	resourceRoutes = resourceKind{noun: "routes", coll: client.EventRoutes, singular: "event route", configKey: "routes",
		nameMember: "id", columns: []string{"endpointName", "filter"},
		example: "everything:\n  endpointName: hook\n  filter: \"true\""}
	resourceSources = resourceKind{noun: "sources", coll: client.Sources, singular: "source", configKey: "sources",
		nameMember: "name", columns: []string{"sourceType", "url"},
		example: "devices:\n  sourceType: mqtt\n  url: tcp://broker:1883\n  topics: [devices/+/messages/events/]"}
	resourceMappings = resourceKind{noun: "mappings", coll: client.Mappings, singular: "mapping", configKey: "mappings",
		nameMember: "name", columns: []string{"source", "twinId"},
		example: "thermostats:\n  source: devices\n  twinId: message.topic.split(\"/\")[1]\n  patch:\n    /Temperature: message.body.Temperature"}
	resourceDetectors = resourceKind{noun: "detectors", coll: client.Detectors, singular: "detector", configKey: "detectors",
		nameMember: "name", columns: []string{"method", "status.state", "status.twins", "status.points", "status.anomalies", "status.lagRecords", "status.lagSeconds"},
		example: "rooms:\n  twins: SELECT * FROM DIGITALTWINS WHERE IS_OF_MODEL('dtmi:example:Room;1')\n  properties: [Temperature]\n  sensitivity: 0.5"}
)

// newResourceCmd is `twinflow endpoints|routes|sources|mappings`.
func newResourceCmd(a *app, k resourceKind) *cobra.Command {
	c := &cobra.Command{
		Use:     k.noun,
		Short:   fmt.Sprintf("List, show, apply and delete %ss", k.singular),
		Example: fmt.Sprintf("  twinflow %s list\n  twinflow %s apply -f %s.yaml", k.noun, k.noun, k.noun),
	}
	c.AddCommand(&cobra.Command{
		Use:     "list",
		Short:   fmt.Sprintf("List the %ss", k.singular),
		Example: fmt.Sprintf("  twinflow %s list", k.noun),
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
			items, err := cl.ListResources(a.ctx, k.coll)
			if err != nil {
				return err
			}
			if format == outputJSON {
				for _, it := range items {
					if err := a.printLine(it); err != nil {
						return err
					}
				}
				return nil
			}
			header := append([]string{"NAME"}, k.columns...)
			rows := make([][]string, len(items))
			for i, it := range items {
				var m map[string]json.RawMessage
				if err := json.Unmarshal(it, &m); err != nil {
					return fmt.Errorf("read a listed %s: %w", k.singular, err)
				}
				row := []string{cell(m[k.nameMember])}
				for _, col := range k.columns {
					row = append(row, cell(member(m, col)))
				}
				rows[i] = row
			}
			return a.printTable(header, rows)
		},
	})
	c.AddCommand(&cobra.Command{
		Use:     "show NAME",
		Aliases: []string{"get"},
		Short:   fmt.Sprintf("Show a %s", k.singular),
		Example: fmt.Sprintf("  twinflow %s show NAME", k.noun),
		Args:    cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			r, err := cl.GetResource(a.ctx, k.coll, args[0])
			if err != nil {
				return err
			}
			return a.printJSON(r)
		},
	})
	var file string
	apply := &cobra.Command{
		Use:     "apply -f FILE [NAME]",
		Aliases: []string{"put"},
		Short:   fmt.Sprintf("Create or replace %ss from a YAML or JSON file", k.singular),
		Long: fmt.Sprintf(`Create or replace %[1]ss from FILE, YAML or JSON ("-" reads stdin). The file maps
each name to the body its PUT takes, as the %[2]s section of the config file does; a whole
config file is read for its %[2]s section. With NAME the file is the body of that one %[1]s.
They are applied in the order of their names; the first the server refuses stops the rest.`, k.singular, k.configKey),
		Example: fmt.Sprintf("  cat > %s.yaml <<'EOF'\n%s\nEOF\n  twinflow %s apply -f %s.yaml", k.noun, indent(k.example), k.noun, k.noun),
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if file == "" {
				return usageErrorf("apply needs -f FILE")
			}
			bodies, err := readResourceFile(cmd, file, k, args)
			if err != nil {
				return err
			}
			cl, err := a.client()
			if err != nil {
				return err
			}
			names := make([]string, 0, len(bodies))
			for n := range bodies {
				names = append(names, n)
			}
			sort.Strings(names)
			for _, n := range names {
				if _, err := cl.PutResource(a.ctx, k.coll, n, bodies[n]); err != nil {
					return fmt.Errorf("%s %s: %w", k.singular, n, err)
				}
				fmt.Fprintf(a.stdout, "%s %s applied\n", k.singular, n)
			}
			return nil
		},
	}
	apply.Flags().StringVarP(&file, "file", "f", "", "the YAML or JSON `FILE` (- for stdin)")
	c.AddCommand(apply)
	c.AddCommand(&cobra.Command{
		Use:     "delete NAME",
		Short:   fmt.Sprintf("Delete a %s", k.singular),
		Example: fmt.Sprintf("  twinflow %s delete NAME", k.noun),
		Args:    cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			return cl.DeleteResource(a.ctx, k.coll, args[0])
		},
	})
	return c
}

// member returns the member path of the object m: a name, or names joined by dots for a
// member of a member ("status.state"); nil when there is none.
func member(m map[string]json.RawMessage, path string) json.RawMessage {
	name, rest, nested := strings.Cut(path, ".")
	v := m[name]
	if !nested {
		return v
	}
	var inner map[string]json.RawMessage
	if json.Unmarshal(v, &inner) != nil {
		return nil
	}
	return member(inner, rest)
}

// indent indents each line of s by four spaces.
func indent(s string) string {
	out := "    "
	for _, r := range s {
		out += string(r)
		if r == '\n' {
			out += "    "
		}
	}
	return out
}

// readResourceFile reads the bodies of the resources in file (YAML, of which JSON is a
// part) by name: the file maps names to bodies, or is a config file with k's section, or,
// when args names one resource, is its body.
func readResourceFile(cmd *cobra.Command, file string, k resourceKind, args []string) (map[string]json.RawMessage, error) {
	var b []byte
	var err error
	if file == "-" {
		b, err = io.ReadAll(cmd.InOrStdin())
	} else {
		b, err = os.ReadFile(file)
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", file, err)
	}
	var doc any
	if err := yaml.Unmarshal(trimBOM(b), &doc); err != nil {
		return nil, usageErrorf("%s is neither YAML nor JSON: %v", file, err)
	}
	m, ok := doc.(map[string]any)
	if !ok {
		return nil, usageErrorf("%s must hold an object (a map of names to %ss)", file, k.singular)
	}
	if len(args) == 1 {
		body, err := json.Marshal(m)
		if err != nil {
			return nil, usageErrorf("%s: %v", file, err)
		}
		return map[string]json.RawMessage{args[0]: body}, nil
	}
	if section, ok := m[k.configKey].(map[string]any); ok && slices.ContainsFunc([]string{"server", "endpoints", "routes", "sources", "mappings", "detectors", "history", "jobs", "delivery", "ingress", "limits"}, func(key string) bool {
		_, has := m[key]
		return has
	}) {
		m = section
	}
	out := make(map[string]json.RawMessage, len(m))
	for name, v := range m {
		if _, ok := v.(map[string]any); !ok {
			return nil, usageErrorf("%s: %s is not an object; the file maps each %s's name to its body (or give NAME for a file that is one body)", file, name, k.singular)
		}
		body, err := json.Marshal(v)
		if err != nil {
			return nil, usageErrorf("%s: %s: %v", file, name, err)
		}
		out[name] = body
	}
	if len(out) == 0 {
		return nil, usageErrorf("%s names no %s", file, k.singular)
	}
	return out, nil
}
