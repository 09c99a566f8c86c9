// Command twinflow is a self-hosted digital-twins server that speaks the Azure Digital Twins
// data-plane API.
//
// Usage:
//
//	twinflow serve [flags]      run the server
//	twinflow keys <command>     create, list and revoke API keys of a data directory
//	twinflow bench <name> ...   measure throughput and restart time
//	twinflow version            print the version
//	twinflow help               print this help
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"syscall"
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

// run executes the command line args and returns the process exit code: 0 on success, 1 when
// the command failed, 2 for a usage error.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	switch args[0] {
	case "serve":
		return serve(ctx, args[1:], getenv, stderr)
	case "keys":
		return runKeys(ctx, args[1:], getenv, stdout, stderr)
	case "bench":
		return runBench(ctx, args[1:], stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "twinflow", version())
		return 0
	case "help", "-h", "-help", "--help":
		usage(stdout)
		return 0
	default:
		fmt.Fprintf(stderr, "twinflow: unknown command %q\n\n", args[0])
		usage(stderr)
		return 2
	}
}

func usage(w io.Writer) {
	fmt.Fprint(w, `twinflow is a self-hosted digital-twins server speaking the Azure Digital Twins API.

Usage:
  twinflow serve [flags]           run the server (twinflow serve -h lists its flags)
  twinflow keys create|list|revoke manage the API keys of a data directory (twinflow keys help)
  twinflow bench patch [flags]     measure PATCH throughput against the SQLite ceiling
  twinflow bench restart [flags]   measure restart time and memory with many twins
  twinflow bench delivery [flags]  measure the latency from PATCH to event at a NATS broker
  twinflow version                 print the version
  twinflow help                    print this help

Every serve flag can also be set through an environment variable named TWINFLOW_ and the
flag's name in upper case with - as _, e.g. TWINFLOW_DATA_DIR; a flag on the command line wins.
`)
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
