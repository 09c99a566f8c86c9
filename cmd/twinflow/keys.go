package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/twinflow/twinflow/internal/auth"
	"github.com/twinflow/twinflow/internal/config"
	"github.com/twinflow/twinflow/internal/store"
	"github.com/twinflow/twinflow/internal/store/postgres"
	"github.com/twinflow/twinflow/internal/store/sqlite"
)

// keysUsage is the help of `twinflow keys`.
const keysUsage = `Usage:
  twinflow keys create --role reader|owner|admin [--name NAME] [--expires DURATION] [--data-dir DIR | --store DSN]
  twinflow keys list [--data-dir DIR | --store DSN]
  twinflow keys revoke [--data-dir DIR | --store DSN] ID

Manage the API keys of the data directory (created if missing) while no server runs on it;
a running server's keys are managed through its API (POST /keys, GET /keys, DELETE /keys/{id}).
create prints the new key on stdout, and nothing else: it is shown this once. The data
directory defaults to TWINFLOW_DATA_DIR, else ` + config.DefaultDataDir + `; with --store (or TWINFLOW_STORE)
the keys are those of the PostgreSQL store, which its servers may share while they run.

Examples:
  twinflow keys create --role owner --name deploy --expires 720h > owner.key
  twinflow keys list --data-dir /var/lib/twinflow
  twinflow keys revoke 4f1c2a9e0b7d3c65
`

// runKeys runs `twinflow keys args...` and returns the process exit code.
func runKeys(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, keysUsage)
		return 2
	}
	fs := flag.NewFlagSet("twinflow keys "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(fs.Output(), keysUsage) }
	dataDir := config.DefaultDataDir
	if d := getenv(envName("data-dir")); d != "" {
		dataDir = d
	}
	fs.StringVar(&dataDir, "data-dir", dataDir, "`directory` holding the store")
	dsn := getenv(envName("store"))
	fs.StringVar(&dsn, "store", dsn, "the PostgreSQL `database` holding the store (postgres://...), instead of the data directory")
	var (
		role, name string
		expires    time.Duration
	)
	switch args[0] {
	case "create":
		fs.StringVar(&role, "role", "", "the key's `role`: reader, owner or admin")
		fs.StringVar(&name, "name", "", "the key's `name`, for people and the log")
		fs.DurationVar(&expires, "expires", 0, "how long the key is accepted (default: for ever)")
	case "list", "revoke":
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, keysUsage)
		return 0
	default:
		fmt.Fprintf(stderr, "twinflow keys: unknown command %q\n\n%s", args[0], keysUsage)
		return 2
	}
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	usageErr := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "twinflow keys %s: %s\n", args[0], fmt.Sprintf(format, a...))
		return 2
	}
	want := 0
	if args[0] == "revoke" {
		want = 1
	}
	if fs.NArg() != want {
		return usageErr("want %d argument(s), got %q", want, strings.Join(fs.Args(), " "))
	}
	var r auth.Role
	if args[0] == "create" {
		var err error
		if r, err = auth.ParseRole(role); err != nil {
			return usageErr("--role: %v", err)
		}
		if expires < 0 {
			return usageErr("--expires: %v is negative", expires)
		}
	}

	st, err := openKeyStore(dataDir, dsn, slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		fmt.Fprintf(stderr, "twinflow keys %s: %v (a running server's keys are managed through its API)\n", args[0], err)
		return 1
	}
	keys := auth.NewKeys(st, nil)
	switch args[0] {
	case "create":
		var until time.Time
		if expires > 0 {
			until = keys.Now().Add(expires)
		}
		var text string
		if text, _, err = keys.Create(ctx, name, r, until); err == nil {
			fmt.Fprintln(stdout, text)
		}
	case "list":
		err = listKeys(ctx, keys, stdout)
	case "revoke":
		err = keys.Revoke(ctx, fs.Arg(0))
	}
	if cerr := st.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("close the store: %w", cerr)
	}
	if err != nil {
		fmt.Fprintf(stderr, "twinflow keys %s: %v\n", args[0], err)
		return 1
	}
	return 0
}

// keyStore is a store of API keys that can be closed.
type keyStore interface {
	store.Keys
	Close() error
}

// openKeyStore opens the store that keeps the API keys: the PostgreSQL store at dsn when it
// is set (with its default schema, as serve's), else the embedded store in dataDir.
func openKeyStore(dataDir, dsn string, logger *slog.Logger) (keyStore, error) {
	if dsn != "" {
		return postgres.New(postgres.Config{DSN: dsn}, logger)
	}
	return sqlite.Open(sqlite.Config{Dir: dataDir}, logger)
}

// listKeys writes a table of every key to w.
func listKeys(ctx context.Context, keys *auth.Keys, w io.Writer) error {
	list, err := keys.List(ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tROLE\tNAME\tCREATED\tEXPIRES")
	now := keys.Now()
	for _, k := range list {
		exp := "never"
		if !k.Expires.IsZero() {
			exp = k.Expires.UTC().Format(time.RFC3339)
			if k.Expired(now) {
				exp += " (expired)"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", k.ID, k.Role, k.Name, k.Created.UTC().Format(time.RFC3339), exp)
	}
	return tw.Flush()
}

// newKeysCmd is `twinflow keys`, whose own parser reads its verb and flags.
func newKeysCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "keys create|list|revoke [flags]",
		Short: "Manage the API keys of a data directory (twinflow keys help)",
		Example: `  twinflow keys create --role owner --name ingest --data-dir ./twinflow-data
  twinflow keys list --data-dir ./twinflow-data`,
		DisableFlagParsing: true,
		RunE: func(_ *cobra.Command, args []string) error {
			return exitCode(runKeys(a.ctx, args, a.getenv, a.stdout, a.stderr))
		},
	}
}
