// Command twinflow is a self-hosted digital-twins server that speaks the Azure Digital Twins
// data-plane API, and the command-line client of such a server.
//
// Usage:
//
//	twinflow serve [flags]            run the server
//	twinflow keys <command>           create, list and revoke API keys of a data directory
//	twinflow bench <name> ...         measure throughput, restart time and model uploads
//	twinflow version                  print the version
//	twinflow <noun> <verb> [flags]    talk to a server: models, twins, relationships, query,
//	                                  import, export, endpoints, routes, sources, mappings,
//	                                  detectors, anomalies, deadletters, history, events
//	twinflow completion bash|zsh|fish shell completion
//
// Exit codes: 0 ok, 1 the request failed or the server answered an error, 2 usage error,
// 3 the server could not be reached.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/twinflow/twinflow/internal/client"
)

// Exit codes a script can rely on.
const (
	exitOK          = 0
	exitFailed      = 1 // a request failed, the server answered an error, or local work failed
	exitUsage       = 2 // the command line is wrong
	exitUnreachable = 3 // the server could not be reached
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// The first signal starts a graceful shutdown; restoring the default handling then lets a
	// second one end the process at once.
	context.AfterFunc(ctx, stop)
	raiseProcs(os.Getenv)
	code := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// raiseProcs doubles GOMAXPROCS, unless the GOMAXPROCS environment variable sets it. The
// store's writer, fsync and checkpoint goroutines spend much of their time in file system
// calls that wait in the kernel (an fdatasync, and the writes queued behind it) while their
// thread keeps its P; with only as many Ps as cores, cores then sit idle while request
// goroutines wait to run. On a 2-core machine twice the Ps raised acknowledged PATCHes by
// about a tenth (twinflow bench patch). Setting GOMAXPROCS turns off the runtime's own
// updates of it, which follow the CPU limit of the process.
func raiseProcs(getenv func(string) string) {
	if getenv("GOMAXPROCS") != "" {
		return
	}
	runtime.GOMAXPROCS(2 * runtime.GOMAXPROCS(0))
}

// exitError is a failed command and the exit code it ends the process with. Its message has
// been printed when silent is set.
type exitError struct {
	code   int
	err    error
	silent bool
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// usageErrorf is a usage error: the command line is wrong.
func usageErrorf(format string, a ...any) error {
	return &exitError{code: exitUsage, err: fmt.Errorf(format, a...)}
}

// exitCode ends a command that printed its own output with the exit code code.
func exitCode(code int) error {
	if code == 0 {
		return nil
	}
	return &exitError{code: code, err: fmt.Errorf("exit %d", code), silent: true}
}

// classify gives err, which a command's RunE returned, its exit code: an *exitError keeps
// its own, a server that could not be reached is 3, everything else 1.
func classify(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := errors.AsType[*exitError](err); ok {
		return err
	}
	if _, ok := errors.AsType[*client.UnreachableError](err); ok {
		return &exitError{code: exitUnreachable, err: err}
	}
	return &exitError{code: exitFailed, err: err}
}

// run executes the command line args and returns the process exit code (see the exit
// constants). Errors are printed to stderr as "twinflow: <error>".
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	root := newRootCmd(ctx, getenv, stdout, stderr)
	root.SetArgs(args)
	cmd, err := root.ExecuteC()
	if err == nil {
		return exitOK
	}
	e, ok := errors.AsType[*exitError](err)
	if !ok {
		// What cobra refuses itself: unknown commands and flags, wrong arguments.
		e = &exitError{code: exitUsage, err: err}
	}
	if !e.silent {
		fmt.Fprintf(stderr, "twinflow: %v\n", e.err)
		if e.code == exitUsage && cmd != nil {
			fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", cmd.CommandPath())
		}
	}
	return e.code
}

// newRootCmd builds the whole command tree. Every command's RunE error goes through classify,
// and the flag errors of every command are usage errors.
func newRootCmd(ctx context.Context, getenv func(string) string, stdout, stderr io.Writer) *cobra.Command {
	a := &app{ctx: ctx, getenv: getenv, stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:   "twinflow",
		Short: "A self-hosted digital-twins server speaking the Azure Digital Twins API, and its client",
		Long: `twinflow is a self-hosted digital-twins server speaking the Azure Digital Twins API.

"twinflow serve" runs the server. The other commands are its client: they talk to a server
over its REST API (--server, TWINFLOW_SERVER; default ` + defaultServer + `), with a bearer
token when it needs one (--token, TWINFLOW_TOKEN: an API key or an OIDC access token).

Exit codes: 0 ok; 1 the request failed (the server's ADT error code and message are printed);
2 usage error; 3 the server could not be reached.`,
		Example: `  twinflow serve --data-dir ./twinflow-data
  twinflow keys create --role owner
  twinflow models upload ./ontology
  twinflow twins show room-1
  twinflow query "SELECT * FROM DIGITALTWINS T WHERE T.temperature > 20" --output table`,
		SilenceErrors: true,
		SilenceUsage:  true,
		Version:       version(),
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetVersionTemplate("twinflow {{.Version}}\n")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageErrorf("%v", err) })
	a.addGlobalFlags(root)
	root.AddCommand(
		newServeCmd(a), newKeysCmd(a), newBenchCmd(a), newVersionCmd(a),
		newModelsCmd(a), newTwinsCmd(a), newRelationshipsCmd(a), newQueryCmd(a),
		newImportCmd(a), newExportCmd(a),
		newResourceCmd(a, resourceEndpoints), newResourceCmd(a, resourceRoutes),
		newResourceCmd(a, resourceSources), newResourceCmd(a, resourceMappings),
		newDetectorsCmd(a), newAnomaliesCmd(a),
		newDeadLettersCmd(a), newHistoryCmd(a), newEventsCmd(a),
	)
	walk(root, func(c *cobra.Command) {
		switch {
		case c.RunE != nil:
			runE := c.RunE
			c.RunE = func(c *cobra.Command, args []string) error { return classify(runE(c, args)) }
		case c.Run == nil && c.HasSubCommands():
			// A group: "twinflow models" alone, or with an unknown verb, is a usage error.
			c.Args = func(c *cobra.Command, args []string) error {
				if len(args) > 0 {
					return usageErrorf("unknown command %q for %q", args[0], c.CommandPath())
				}
				return nil
			}
			c.RunE = func(c *cobra.Command, _ []string) error {
				c.SetOut(stderr)
				_ = c.Usage()
				return &exitError{code: exitUsage, err: fmt.Errorf("%s needs a command", c.CommandPath()), silent: true}
			}
		}
	})
	return root
}

// walk calls fn with c and every command below it.
func walk(c *cobra.Command, fn func(*cobra.Command)) {
	fn(c)
	for _, sub := range c.Commands() {
		walk(sub, fn)
	}
}

// newVersionCmd is `twinflow version`.
func newVersionCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:     "version",
		Short:   "Print the version",
		Example: "  twinflow version",
		Args:    cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			fmt.Fprintln(a.stdout, "twinflow", version())
			return nil
		},
	}
}

// version reports the module version and, for builds from a checkout, the VCS revision.
func version() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "(unknown)"
	}
	v := info.Main.Version
	var rev, modified string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				modified = "+dirty"
			}
		}
	}
	if rev != "" {
		if len(rev) > 12 {
			rev = rev[:12]
		}
		v += " (" + rev + modified + ")"
	}
	return v + " " + info.GoVersion
}
