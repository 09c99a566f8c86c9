package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/spf13/cobra"

	"github.com/twinflow/twinflow/internal/client"
)

// defaultServer is the server the client commands talk to without --server or
// TWINFLOW_SERVER: a `twinflow serve` with its defaults.
const defaultServer = "http://127.0.0.1:8080"

// Output formats of the client commands.
const (
	outputTable = "table"
	outputJSON  = "json"
	outputCSV   = "csv"
)

// app is what every command shares: the process's context, environment and output streams,
// and the global flags of the client commands.
type app struct {
	ctx            context.Context
	getenv         func(string) string
	stdout, stderr io.Writer

	server, token, caFile string
	insecure              bool
	output                string
	timeout               time.Duration
}

// addGlobalFlags adds the client's flags to root, for every command below it.
func (a *app) addGlobalFlags(root *cobra.Command) {
	f := root.PersistentFlags()
	f.StringVar(&a.server, "server", "", "`URL` of the twinflow server (default $TWINFLOW_SERVER, else "+defaultServer+")")
	f.StringVar(&a.token, "token", "", "bearer `token` sent as Authorization: an API key or an access token (default $TWINFLOW_TOKEN)")
	f.StringVar(&a.caFile, "ca-file", "", "PEM `file` of the certificate authorities to trust for HTTPS instead of the system's")
	f.BoolVar(&a.insecure, "insecure-skip-verify", false, "do not verify the server's TLS certificate")
	f.StringVar(&a.output, "output", "", "output `format`: table or json, and csv for query, history, backtests and anomalies (default table on a terminal, json otherwise)")
	f.DurationVar(&a.timeout, "timeout", 5*time.Minute, "the longest one request may take (not the event stream)")
	_ = root.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]string{outputTable, outputJSON, outputCSV}, cobra.ShellCompDirectiveNoFileComp))
}

// serverURL is the server the client commands talk to.
func (a *app) serverURL() string {
	if a.server != "" {
		return a.server
	}
	if s := a.getenv("TWINFLOW_SERVER"); s != "" {
		return s
	}
	return defaultServer
}

// client returns a client of the server the flags name. A bad --server or --ca-file is a
// usage error.
func (a *app) client() (*client.Client, error) {
	token := a.token
	if token == "" {
		token = a.getenv("TWINFLOW_TOKEN")
	}
	c, err := client.New(client.Config{Server: a.serverURL(), Token: token, CAFile: a.caFile,
		InsecureSkipVerify: a.insecure, Timeout: a.timeout})
	if err != nil {
		return nil, usageErrorf("%v", err)
	}
	return c, nil
}

// terminal reports whether w is a terminal.
func terminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && (isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd()))
}

// format returns the output format: --output when given (a usage error unless it is one of
// allowed), else table on a terminal and json otherwise.
func (a *app) format(allowed ...string) (string, error) {
	if a.output == "" {
		if terminal(a.stdout) {
			return outputTable, nil
		}
		return outputJSON, nil
	}
	if !slices.Contains(allowed, a.output) {
		return "", usageErrorf("--output %q: want %s", a.output, strings.Join(allowed, ", "))
	}
	return a.output, nil
}

// printJSON writes v as indented JSON.
func (a *app) printJSON(v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode the output: %w", err)
	}
	_, err = fmt.Fprintf(a.stdout, "%s\n", b)
	return err
}

// printLine writes v as one line of compact JSON.
func (a *app) printLine(v any) error {
	return writeLine(a.stdout, v)
}

// writeLine writes v to w as one line of compact JSON; a json.RawMessage is compacted as it
// is, other values are encoded.
func writeLine(w io.Writer, v any) error {
	var b []byte
	var err error
	if raw, ok := v.(json.RawMessage); ok {
		b, err = compact(raw)
	} else {
		b, err = json.Marshal(v)
	}
	if err != nil {
		return fmt.Errorf("encode a JSON line: %w", err)
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// compact returns raw on one line.
func compact(raw json.RawMessage) ([]byte, error) {
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// printTable writes rows under header, aligned in columns.
func (a *app) printTable(header []string, rows [][]string) error {
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

// cell renders a JSON value in a table or CSV cell: strings as themselves, null as empty,
// everything else as compact JSON.
func cell(raw json.RawMessage) string {
	if len(raw) == 0 || string(raw) == "null" {
		return ""
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	b, err := compact(raw)
	if err != nil {
		return string(raw)
	}
	return string(b)
}

// readJSONArg returns the JSON of a flag: the text itself, or with "@" before a path the
// file's content ("@-" reads stdin). It is a usage error unless it is valid JSON.
func readJSONArg(flag, v string, stdin io.Reader) (json.RawMessage, error) {
	b := []byte(v)
	if path, ok := strings.CutPrefix(v, "@"); ok {
		var err error
		if path == "-" {
			b, err = io.ReadAll(stdin)
		} else {
			b, err = os.ReadFile(path)
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", flag, err)
		}
	}
	b = trimBOM(b)
	if !json.Valid(b) {
		return nil, usageErrorf("%s is not valid JSON: %.80q", flag, b)
	}
	return b, nil
}

// trimBOM drops a UTF-8 byte-order mark from the start of b.
func trimBOM(b []byte) []byte {
	if len(b) >= 3 && b[0] == 0xEF && b[1] == 0xBB && b[2] == 0xBF {
		return b[3:]
	}
	return b
}
