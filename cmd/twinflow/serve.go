package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"

	"github.com/twinflow/twinflow/internal/config"
	"github.com/twinflow/twinflow/internal/server"
)

// envPrefix starts the environment variable that stands in for each serve flag.
const envPrefix = "TWINFLOW_"

// serveOptions is everything `twinflow serve` is told on its command line and environment.
type serveOptions struct {
	server     server.Config
	configFile string
	logLevel   slog.Level
	logFormat  string
}

// parseServe parses the serve flags in args. A flag missing from args takes its value from the
// environment variable envName(flag) when getenv returns a non-empty string for it, else from
// the server settings of the config file when it sets them, else its default. Output for -h
// and flag errors goes to out.
//
// The flags are parsed twice when there is a config file: once to find it (-config, or its
// variable), and once more over the settings it holds, which stand in for the flags' defaults.
func parseServe(args []string, getenv func(string) string, out io.Writer) (serveOptions, error) {
	o, problems, err := parseServeOver(config.Config{}, args, getenv, out)
	if err != nil || o.configFile == "" {
		return o, errors.Join(err, problems)
	}
	file, err := config.Load(o.configFile)
	if err != nil {
		return o, err
	}
	o, problems, err = parseServeOver(file, args, getenv, out)
	return o, errors.Join(err, problems)
}

// parseServeOver parses args and the environment as parseServe does, over the settings of
// base (a config file's, or none): each flag's default is base's setting when it has one, and
// base's other settings are kept as they are. It returns the parse error of args (or
// flag.ErrHelp) apart from the problems with the values they and the environment hold.
func parseServeOver(base config.Config, args []string, getenv func(string) string, out io.Writer) (o serveOptions, problems, err error) {
	o.server.Config = base
	fs := flag.NewFlagSet("twinflow serve", flag.ContinueOnError)
	fs.SetOutput(out)
	srv := &o.server.Server
	fs.StringVar(&srv.Listen, "listen", cmp.Or(base.Server.Listen, config.DefaultListen),
		"TCP `address` to serve on; port 0 picks a free one")
	fs.StringVar(&srv.DataDir, "data-dir", cmp.Or(base.Server.DataDir, config.DefaultDataDir),
		"`directory` holding the embedded store")
	fs.StringVar(&srv.TLSCertFile, "tls-cert", base.Server.TLSCertFile,
		"PEM certificate chain `file`; with -tls-key, serve HTTPS")
	fs.StringVar(&srv.TLSKeyFile, "tls-key", base.Server.TLSKeyFile, "PEM private key `file` for -tls-cert")
	fs.StringVar(&srv.ServiceID, "service-id", base.Server.ServiceID,
		"instance `name` events carry as their source (default: from the bound address,\n"+
			"localhost:PORT on loopback, the host name and port when listening on all addresses)")
	fs.DurationVar(&srv.ShutdownTimeout, "shutdown-timeout", cmp.Or(base.Server.ShutdownTimeout, config.DefaultShutdownTimeout),
		"how long in-flight requests may take to finish at shutdown")
	fs.Var((*listFlag)(&srv.AllowedHosts), "allowed-hosts",
		"comma-separated host `names` (host, or host:port) requests may name in Host besides\n"+
			"localhost, 127.0.0.1, [::1], the listen address and the service id; * allows any")
	fs.IntVar(&srv.MaxHeaderBytes, "max-header-bytes", cmp.Or(base.Server.MaxHeaderBytes, config.DefaultMaxHeaderBytes),
		"largest request line and header fields, in `bytes`; larger requests get 431")
	fs.DurationVar(&srv.BodyReadTimeout, "body-read-timeout", cmp.Or(base.Server.BodyReadTimeout, config.DefaultBodyReadTimeout),
		"how long a request body may take to arrive; slower ones get 408")
	fs.StringVar(&srv.Auth.Mode, "auth", cmp.Or(base.Server.Auth.Mode, config.AuthAuto),
		"authentication: `mode` auto (required unless listening on loopback), required or off")
	fs.BoolVar(&srv.Insecure, "insecure", base.Server.Insecure,
		"listen on an address other than loopback without TLS or without authentication")
	fs.Int64Var(&srv.DiskReserveBytes, "disk-reserve-bytes", cmp.Or(base.Server.DiskReserveBytes, config.DefaultDiskReserveBytes),
		"disk space, in `bytes`, kept in DATA_DIR for deletes when the disk fills up")
	fs.StringVar(&o.configFile, "config", "",
		"YAML config `file` declaring server settings, limits, jobs settings, endpoints, routes,\n"+
			"sources and mappings")
	fs.StringVar(&o.server.Jobs.Dir, "jobs-dir", base.Jobs.Dir,
		"`directory` import jobs read input from and write output logs to as file: URLs\n"+
			"(default: jobs.dir of the config file, else DATA_DIR/jobs)")
	fs.StringVar(&o.server.History.Mode, "history", base.History.Mode,
		"data history, kept in DATA_DIR/history.db: `on` or off (default: history.mode of the\n"+
			"config file, else on)")
	fs.StringVar(&o.server.Store.DSN, "store", base.Store.DSN,
		"keep twins, models, the change log and flow state in this PostgreSQL `database`\n"+
			"(postgres://user:pass@host/db), which several nodes may share, instead of DATA_DIR\n"+
			"(default: store.dsn of the config file)")
	fs.StringVar(&o.server.History.DSN, "history-dsn", base.History.DSN,
		"keep data history in this PostgreSQL `database` (postgres://user:pass@host/db) instead\n"+
			"of DATA_DIR/history.db (default: history.dsn of the config file)")
	fs.TextVar(&o.logLevel, "log-level", slog.LevelInfo, "log `level`: debug, info, warn or error")
	fs.StringVar(&o.logFormat, "log-format", "text", "log `format`: text or json")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: twinflow serve [flags]\n\n"+
			"Every flag can also be set through the environment: -data-dir as %sDATA_DIR and so on.\n"+
			"A flag given on the command line wins over the environment.\n\n"+
			"Examples:\n"+
			"  twinflow serve\n"+
			"  twinflow serve -config twinflow.yaml -data-dir /var/lib/twinflow\n"+
			"  twinflow serve -listen :8443 -tls-cert cert.pem -tls-key key.pem -auth required\n"+
			"  twinflow serve -history-dsn postgres://twinflow@db:5432/twins\n\nFlags:\n", envPrefix)
		fs.PrintDefaults()
	}

	if err := fs.Parse(args); err != nil {
		return o, nil, err
	}
	if fs.NArg() > 0 {
		return o, nil, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	set := make(map[string]bool)
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] {
			return
		}
		if v := getenv(envName(f.Name)); v != "" {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", envName(f.Name), err))
			}
			set[f.Name] = true
		}
	})
	if o.logFormat != "text" && o.logFormat != "json" {
		errs = append(errs, fmt.Errorf("log format %q: want text or json", o.logFormat))
	}
	if err := o.server.Validate(); err != nil {
		errs = append(errs, err)
	}
	return o, errors.Join(errs...), nil
}

// listFlag is a flag holding a comma-separated list; each use replaces the list.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

// Set sets the list to the comma-separated items of v, without blanks around them.
func (l *listFlag) Set(v string) error {
	*l = nil
	for item := range strings.SplitSeq(v, ",") {
		*l = append(*l, strings.TrimSpace(item))
	}
	return nil
}

// envName returns the environment variable for a flag: "data-dir" is TWINFLOW_DATA_DIR.
func envName(flagName string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// newLogger returns a logger writing to w in the given format ("text" or "json") at level.
func newLogger(w io.Writer, format string, level slog.Level) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// serve runs `twinflow serve` until ctx ends.
func serve(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) int {
	o, err := parseServe(args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "twinflow serve:", err)
		return 2
	}
	logger := newLogger(stderr, o.logFormat, o.logLevel)
	if limit := o.server.Server.MemoryLimitBytes; limit > 0 {
		debug.SetMemoryLimit(limit)
	}
	srv, err := server.New(o.server, logger)
	if err != nil {
		logger.Error("cannot start", slog.Any("error", err))
		return 1
	}
	if err := srv.Run(ctx); err != nil {
		logger.Error("stopped with an error", slog.Any("error", err))
		return 1
	}
	return 0
}

// newServeCmd is `twinflow serve`. Its flags are parsed by parseServe, as they always were
// (single or double dash, environment variables, the config file), not by cobra.
func newServeCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "serve [flags]",
		Short: "Run the server (twinflow serve -h lists its flags)",
		Example: `  twinflow serve --data-dir ./twinflow-data
  TWINFLOW_LISTEN=127.0.0.1:9090 twinflow serve --config twinflow.yaml`,
		DisableFlagParsing: true,
		RunE: func(_ *cobra.Command, args []string) error {
			return exitCode(serve(a.ctx, args, a.getenv, a.stderr))
		},
	}
}
