package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/twinflow/twinflow/internal/anomaly"
	"github.com/twinflow/twinflow/internal/anomaly/nab"
	"github.com/twinflow/twinflow/internal/bench"
)

const benchUsage = `Usage: twinflow bench patch [flags]     PATCH throughput over HTTP against the SQLite ceiling
       twinflow bench restart [flags]   restart time and memory with many twins stored
       twinflow bench delivery [flags]  latency from PATCH acknowledged to event at a NATS broker
       twinflow bench import [flags]    an import job of 1,000,000 twins and relationships against the SQLite ceiling
       twinflow bench ingest [flags]    messages from 1,000 devices through MQTT, Kafka and HTTP sources against HTTP PATCH
       twinflow bench history [flags]   data history: its cost and lag under PATCH load, its writer against the ceiling, its queries
       twinflow bench upload [flags]    models upload of a generated ontology of 3,700 interfaces to a local server
       twinflow bench mixed [flags]     1,000,000 twins under ingest, two routes, history and queries at once, with a soak
       twinflow bench anomaly -nab DIR  the anomaly detector on the Numenta Anomaly Benchmark checked out at DIR

Run "twinflow bench <name> -h" for the flags of each.

Examples:
  twinflow bench patch -duration 10s
  twinflow bench history
  twinflow bench upload -models 3700
  twinflow bench mixed -twins 100000 -duration 2m -sample 20s
`

// benchExamples are the examples of each benchmark's help.
var benchExamples = map[string]string{
	"patch":    "twinflow bench patch -twins 10000 -clients 64 -duration 10s\n  twinflow bench patch -store postgres://postgres@127.0.0.1:5432/test -nodes 3 -duration 10s",
	"restart":  "twinflow bench restart -dir /var/tmp",
	"delivery": "twinflow bench delivery -duration 10s",
	"import":   "twinflow bench import -dir /var/tmp -keep",
	"ingest":   "twinflow bench ingest -kinds mqtt,http -duration 10s",
	"history":  "twinflow bench history -cpuprofile history.prof",
	"upload":   "twinflow bench upload -models 3700 -seed 7",
	"mixed":    "twinflow bench mixed -twins 100000 -duration 2m -sample 20s\n  twinflow bench mixed -duration 30m -sample 1m -retention 5m   # the soak",
	"anomaly":  "twinflow bench anomaly -nab ~/NAB",
}

// runBench runs `twinflow bench <name>` and prints its result table to stdout; progress is logged
// to stderr.
func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, benchUsage)
		return 2
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, benchUsage)
		return 0
	}
	if args[0] == "patch-load" {
		// The load generator of bench patch, which runs it in a process of its own.
		if err := bench.RunPatchLoad(ctx, args[1:], stdout); err != nil {
			fmt.Fprintf(stderr, "twinflow bench patch-load: %v\n", err)
			return 1
		}
		return 0
	}
	var (
		run func(logger *slog.Logger) error
		fs  = flag.NewFlagSet("twinflow bench "+args[0], flag.ContinueOnError)
	)
	fs.SetOutput(stderr)
	dir := fs.String("dir", os.TempDir(), "`directory` for the temporary data directories")
	keep := fs.Bool("keep", false, "keep the data directories")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to `file`")
	// show prints a benchmark's result table under its name, unless it failed.
	show := func(res interface{ Table(io.Writer) error }, err error) error {
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, "twinflow bench "+args[0])
		return res.Table(stdout)
	}
	switch args[0] {
	case "patch":
		var cfg bench.PatchConfig
		cfg.LoadFlags(fs)
		fs.DurationVar(&cfg.CeilingDuration, "ceiling-duration", 0, "how long to measure the store's ceiling and the HTTP floor, each (default -duration)")
		fs.StringVar(&cfg.Store, "store", "", "run on this PostgreSQL `database` (postgres://...), in a schema of the run's own, against PostgreSQL's ceiling")
		fs.IntVar(&cfg.Nodes, "nodes", 1, "servers sharing the -store database, the clients spread over them")
		fs.BoolVar(&cfg.Detector, "detector", false, "run the load again with an anomaly detector scoring every twin's numeric properties, and once more without, and compare")
		run = func(logger *slog.Logger) error {
			load, err := patchLoadCommand()
			if err != nil {
				return err
			}
			cfg.Dir, cfg.Keep, cfg.LoadCommand = *dir, *keep, load
			return show(bench.Patch(ctx, cfg, logger))
		}
	case "delivery":
		var cfg bench.DeliveryConfig
		fs.IntVar(&cfg.Twins, "twins", 10_000, "number of twins")
		fs.IntVar(&cfg.Rate, "rate", bench.DefaultDeliveryRate, "patches sent per second, answered or not")
		fs.DurationVar(&cfg.Duration, "duration", bench.DefaultDeliveryDuration, "how long patches are sent")
		fs.IntVar(&cfg.Conns, "conns", bench.DefaultDeliveryConns, "keep-alive connections, one request in flight on each")
		fs.StringVar(&cfg.NATS, "nats", bench.DefaultDeliveryNATS, "`URL` of the NATS JetStream server the events go to")
		run = func(logger *slog.Logger) error {
			cfg.Dir, cfg.Keep = *dir, *keep
			return show(bench.Delivery(ctx, cfg, logger))
		}
	case "import":
		var cfg bench.ImportConfig
		fs.IntVar(&cfg.Twins, "twins", 1_000_000, "number of twins imported, each with a relationship")
		fs.IntVar(&cfg.PatchTwins, "patch-twins", 10_000, "number of twins the PATCH load patches")
		fs.IntVar(&cfg.PatchRate, "patch-rate", 500, "PATCHes sent per second, answered or not")
		fs.IntVar(&cfg.PatchConns, "patch-conns", 16, "keep-alive connections of the PATCH load, one request in flight on each")
		fs.DurationVar(&cfg.Baseline, "baseline", 10*time.Second, "how long the PATCH load runs alone before the import")
		fs.IntVar(&cfg.CeilingBatch, "ceiling-batch", 10_000, "rows per transaction of the SQLite ceiling")
		run = func(logger *slog.Logger) error {
			cfg.Dir, cfg.Keep = *dir, *keep
			return show(bench.Import(ctx, cfg, logger))
		}
	case "ingest":
		var cfg bench.IngestConfig
		kinds := fs.String("kinds", "mqtt,kafka,http", "comma-separated source `kinds` measured, in order")
		fs.IntVar(&cfg.Devices, "devices", 1000, "number of devices, each with a twin")
		fs.DurationVar(&cfg.Duration, "duration", bench.DefaultIngestDuration, "how long messages are published as fast as committed, per kind, and the HTTP PATCH baseline runs")
		fs.IntVar(&cfg.Rate, "rate", bench.DefaultIngestRate, "messages per second of the paced run")
		fs.DurationVar(&cfg.PacedDuration, "paced-duration", bench.DefaultIngestDuration, "how long the paced run publishes, per kind")
		fs.IntVar(&cfg.Window, "window", 500, "messages published and not yet committed, at most, when publishing as fast as committed")
		fs.IntVar(&cfg.Batch, "batch", 50, "messages per NDJSON request of the http kind")
		fs.IntVar(&cfg.Clients, "clients", 64, "keep-alive clients of the HTTP PATCH baseline")
		fs.StringVar(&cfg.MQTT, "mqtt", bench.DefaultIngestMQTT, "`URL` of the MQTT broker")
		run = func(logger *slog.Logger) error {
			load, err := patchLoadCommand()
			if err != nil {
				return err
			}
			cfg.Dir, cfg.Keep, cfg.Kinds = *dir, *keep, strings.Split(*kinds, ",")
			cfg.LoadCommand = load
			return show(bench.Ingest(ctx, cfg, logger))
		}
	case "history":
		var cfg bench.HistoryConfig
		fs.IntVar(&cfg.Twins, "twins", 10_000, "number of twins the PATCH load patches")
		fs.IntVar(&cfg.Clients, "clients", 64, "keep-alive clients of the PATCH load")
		fs.DurationVar(&cfg.Duration, "duration", bench.DefaultHistoryDuration, "how long the PATCH load runs, with history off and then on")
		fs.IntVar(&cfg.WriterRecords, "writer-records", bench.DefaultHistoryWriterRecords, "change log records the history writer catches up on alone")
		fs.IntVar(&cfg.QueryTwins, "query-twins", bench.DefaultHistoryQueryTwins, "twins whose history POST /history/query aggregates")
		fs.IntVar(&cfg.QueryDays, "query-days", bench.DefaultHistoryQueryDays, "days of one value a minute of each of those twins")
		fs.IntVar(&cfg.Queries, "queries", bench.DefaultHistoryQueries, "times each query is timed")
		fs.IntVar(&cfg.AsOfTwins, "asof-twins", bench.DefaultHistoryAsOfTwins, "twins whose last two hours of history queries with asOf rebuild")
		run = func(logger *slog.Logger) error {
			load, err := patchLoadCommand()
			if err != nil {
				return err
			}
			cfg.Dir, cfg.Keep = *dir, *keep
			cfg.LoadCommand = load
			return show(bench.History(ctx, cfg, logger))
		}
	case "upload":
		var cfg bench.UploadConfig
		fs.IntVar(&cfg.Models, "models", 3700, "number of interfaces generated and uploaded")
		fs.Uint64Var(&cfg.Seed, "seed", 1, "seed of the generated ontology")
		run = func(logger *slog.Logger) error {
			bin, err := twinflowBinary()
			if err != nil {
				return err
			}
			cfg.Binary, cfg.Dir, cfg.Keep = bin, *dir, *keep
			return show(bench.Upload(ctx, cfg, logger))
		}
	case "mixed":
		var cfg bench.MixedConfig
		fs.IntVar(&cfg.Twins, "twins", bench.DefaultMixedTwins, "number of twins, each with a relationship to the next")
		fs.IntVar(&cfg.Rate, "rate", 0, "messages per second through the source (default half the PATCHes/s of a calibration run of bench patch's load)")
		fs.DurationVar(&cfg.Calibration, "calibration", bench.DefaultMixedCalibration, "how long the calibration run patches")
		fs.IntVar(&cfg.Clients, "clients", bench.DefaultMixedClients, "concurrent query clients")
		fs.DurationVar(&cfg.Idle, "idle", bench.DefaultMixedIdle, "how long the query clients run on the idle server, before the load")
		fs.DurationVar(&cfg.Duration, "duration", bench.DefaultMixedDuration, "how long the load and the query clients run together")
		fs.DurationVar(&cfg.Sample, "sample", bench.DefaultMixedSample, "interval of the soak samples")
		fs.DurationVar(&cfg.Retention, "retention", 0, "keep the change log, history and message ids this long instead of their defaults (168h, 720h, 1h)")
		fs.IntVar(&cfg.PageSize, "page-size", bench.DefaultMixedPageSize, "max-items-per-page of the filtered query")
		fs.StringVar(&cfg.NATS, "nats", bench.DefaultDeliveryNATS, "`URL` of the NATS JetStream server one route delivers to")
		fs.StringVar(&cfg.WebhookMode, "webhook-mode", bench.DefaultMixedWebhookMode, "`mode` of the webhook endpoint: structured, binary or batched")
		run = func(logger *slog.Logger) error {
			load, err := patchLoadCommand()
			if err != nil {
				return err
			}
			cfg.Dir, cfg.Keep = *dir, *keep
			cfg.LoadCommand = load
			return show(bench.Mixed(ctx, cfg, logger))
		}
	case "restart":
		var cfg bench.RestartConfig
		fs.IntVar(&cfg.Twins, "twins", 1_000_000, "number of twins stored before the restart")
		fs.IntVar(&cfg.Relationships, "relationships", 0, "number of relationships stored with the twins, twin i to twin i+1 (0: as many as twins; negative: none)")
		fs.IntVar(&cfg.Batch, "batch", 10_000, "twins or relationships per store transaction while loading")
		fs.IntVar(&cfg.Writes, "writes", 20_000, "PATCHes before the server is killed, half of them after a snapshot written in the background")
		run = func(logger *slog.Logger) error {
			bin, err := twinflowBinary()
			if err != nil {
				return err
			}
			cfg.Binary, cfg.Dir, cfg.Keep = bin, *dir, *keep
			return show(bench.Restart(ctx, cfg, logger))
		}
	case "anomaly":
		nabDir := fs.String("nab", "", "`directory` of a NAB checkout (its data/ and labels/combined_windows.json)")
		method := fs.String("method", string(anomaly.MethodAuto), "detector method: auto, residual or change")
		run = func(logger *slog.Logger) error {
			if *nabDir == "" {
				return errors.New("-nab is required")
			}
			return show(nab.Run(*nabDir, anomaly.Config{Method: anomaly.Method(*method)}))
		}
	default:
		fmt.Fprintf(stderr, "twinflow bench: unknown benchmark %q\n\n%s", args[0], benchUsage)
		return 2
	}
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: twinflow bench %s [flags]\n\nExample:\n  %s\n\nFlags:\n", args[0], benchExamples[args[0]])
		fs.PrintDefaults()
	}
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	logger := newLogger(stderr, "text", slog.LevelInfo)
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fmt.Fprintf(stderr, "twinflow bench: %v\n", err)
			return 1
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintf(stderr, "twinflow bench: start CPU profile: %v\n", err)
			return 1
		}
		defer pprof.StopCPUProfile()
	}
	if err := run(logger.With(slog.String("bench", args[0]))); err != nil {
		fmt.Fprintf(stderr, "twinflow bench %s: %v\n", args[0], err)
		return 1
	}
	return 0
}

// patchLoadCommand returns how a benchmark runs `twinflow bench patch-load` in a process of its
// own: this binary, with the load generator's arguments.
func patchLoadCommand() (func(ctx context.Context, args []string) *exec.Cmd, error) {
	bin, err := twinflowBinary()
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context, args []string) *exec.Cmd {
		return exec.CommandContext(ctx, bin, append([]string{"bench", "patch-load"}, args...)...)
	}, nil
}

// twinflowBinary returns the path of this binary, which benchmarks run as servers and load
// generators.
func twinflowBinary() (string, error) {
	bin, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("locate the twinflow binary: %w", err)
	}
	return bin, nil
}

// newBenchCmd is `twinflow bench`, whose own parser reads the benchmark's name and flags.
func newBenchCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:                "bench patch|restart|delivery|import|ingest|history|upload|mixed|anomaly [flags]",
		Short:              "Measure throughput, restart time and model uploads (twinflow bench -h)",
		Example:            "  twinflow bench upload --models 3700\n  twinflow bench patch --duration 10s",
		DisableFlagParsing: true,
		RunE: func(_ *cobra.Command, args []string) error {
			return exitCode(runBench(a.ctx, args, a.stdout, a.stderr))
		},
	}
}
