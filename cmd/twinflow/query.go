package main

import (
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/spf13/cobra"
)

// errEnough stops a paging loop once --max rows are out.
var errEnough = errors.New("enough rows")

// newQueryCmd is `twinflow query`.
func newQueryCmd(a *app) *cobra.Command {
	var maxRows, pageSize int
	c := &cobra.Command{
		Use:   `query "SELECT ..."`,
		Short: "Run an ADT query and print every result row",
		Long: `Run an Azure Digital Twins query and print its rows, every page of them (following the
continuation token), or the first --max.

--output json prints one row a line (JSON Lines), as the rows arrive: the default when stdout
is not a terminal. table (the default on a terminal) and csv print one column per member of
the rows (a nested value as compact JSON), once every row is in.`,
		Example: `  twinflow query "SELECT * FROM DIGITALTWINS"
  twinflow query "SELECT T.\$dtId, T.temperature FROM DIGITALTWINS T WHERE T.temperature > 20" --output csv
  twinflow query "SELECT COUNT() FROM DIGITALTWINS" --output json`,
		Args: cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			format, err := a.format(outputTable, outputJSON, outputCSV)
			if err != nil {
				return err
			}
			if maxRows < 0 {
				return usageErrorf("--max %d is negative", maxRows)
			}
			cl, err := a.client()
			if err != nil {
				return err
			}
			var rows []json.RawMessage
			n := 0
			err = cl.Query(a.ctx, args[0], pageSize, func(page []json.RawMessage) error {
				for _, r := range page {
					if maxRows > 0 && n == maxRows {
						return errEnough
					}
					n++
					if format == outputJSON {
						if err := a.printLine(r); err != nil {
							return err
						}
						continue
					}
					rows = append(rows, r)
				}
				return nil
			})
			if err != nil && !errors.Is(err, errEnough) {
				return err
			}
			if format == outputJSON {
				return nil
			}
			header, cells := tabulate(rows)
			if format == outputCSV {
				return writeCSV(a.stdout, header, cells)
			}
			return a.printTable(header, cells)
		},
	}
	c.Flags().IntVar(&maxRows, "max", 0, "print at most `N` rows (0: all)")
	c.Flags().IntVar(&pageSize, "page-size", 0, "rows per request, max-items-per-page (default: the server's)")
	return c
}

// tabulate turns rows, JSON objects, into a header (every member name, in the order first
// met) and one line of cells per row. A row that is not an object is one "value" column.
func tabulate(rows []json.RawMessage) ([]string, [][]string) {
	var header []string
	objs := make([]map[string]json.RawMessage, len(rows))
	for i, r := range rows {
		var m map[string]json.RawMessage
		if err := json.Unmarshal(r, &m); err != nil || m == nil {
			m = map[string]json.RawMessage{"value": r}
		}
		objs[i] = m
		for _, k := range memberOrder(r, m) {
			if !slices.Contains(header, k) {
				header = append(header, k)
			}
		}
	}
	cells := make([][]string, len(objs))
	for i, m := range objs {
		line := make([]string, len(header))
		for j, k := range header {
			line[j] = cell(m[k])
		}
		cells[i] = line
	}
	return header, cells
}

// memberOrder returns the member names of the object raw in the order they appear (m holds
// the same members; a value that is not an object gives m's keys).
func memberOrder(raw json.RawMessage, m map[string]json.RawMessage) []string {
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	var keys []string
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		for k := range m {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		return keys
	}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			break
		}
		k, _ := t.(string)
		keys = append(keys, k)
		var skip json.RawMessage
		if dec.Decode(&skip) != nil {
			break
		}
	}
	return keys
}

// writeCSV writes header and rows as CSV.
func writeCSV(w io.Writer, header []string, rows [][]string) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(header); err != nil {
		return fmt.Errorf("write CSV: %w", err)
	}
	if err := cw.WriteAll(rows); err != nil {
		return fmt.Errorf("write CSV: %w", err)
	}
	return nil
}
