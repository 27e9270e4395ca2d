// Command verify runs lock algorithms through faults, records every call,
// and checks the history: mutual exclusion as the clients saw it,
// linearizability against an owner-aware lock model, and liveness.
//
// Exit codes: 0 valid, 1 invalid, 2 unknown, 3 could not run.

// randseednop=0 lets a simulation seed math/rand's global source, which
// libraries draw their retry jitter from (runner.seedLibraryRand).
//
//go:debug randseednop=0
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	goredis "github.com/redis/go-redis/v9"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// Exit codes, one per verdict, and one for "the question was never asked".
const (
	exitValid    = 0
	exitInvalid  = 1
	exitUnknown  = 2
	exitCouldNot = 3
)

const usage = `verify: a correctness and chaos harness for distributed locks.

Usage:
  verify run   [flags]                 run a locker through faults and check it
  verify check [flags] <run dir | history.jsonl>
                                       re-check a saved run or history
  verify run -scenario NAME [-seed N]  run a named scenario
  verify run -worker 'CMD ARGS' -backend gcs|redis|none
                                       every client as an external worker, any language
  verify sim [flags] -seeds 1-10000    the locker in virtual time, seed after seed, until a violation
  verify fuzz [flags] -fuzztime 5m     coverage-guided search (go test -fuzz) for a fault schedule that breaks the locker
  verify shrink [flags] <run dir>      reduce a failing simulated run to a small one that still fails
  verify replay [flags] <run dir>      run a saved run's scenario and seed again
  verify scenarios [-suite NAME]       list named scenarios and their expected verdicts
  verify compare [flags]               run lockers × fault scenarios × seeds, side by side
  verify suite [flags] <quick|nightly|regression> | -dir DIR
                                       run a suite of scenarios, each judged against its expected verdict
  verify report <results dir>          an HTML index of every run under a directory
  verify list [-json]                  list lockers, faults and workloads
  verify version [-json]               this build's version and its dependencies
  verify worker                        one process client (started by verify run -clients-as process)
  verify help <command>                flags of one command

Examples:
  verify run                                     quick run of the default locker
  verify run -locker memory-owner -faults pause,crash -duration 20s -seed 7
  verify run -locker mutant-double-grant -clients 8 -keys 1
  verify check results/20261124-101500.000-memory-owner-s7
  verify replay results/20261124-101500.000-memory-owner-s7
  verify run -scenario regression/tus616-pause-stale-delete
  verify compare -lockers tus616,fenced -scenarios none,pause,crash
  verify list

Every run writes results/<run-id>/: history.jsonl (every call, streamed),
result.json (verdicts, counterexamples, latency), summary.txt,
history.html (the linearizability search, drawn by porcupine) and
report.html (all of it on one self-contained page).

A verdict is valid, invalid or unknown, and unknown is never a pass: the
verdict line names its cause (a checker out of time, a run that granted no
lock, a requested fault that never ran or failed to start, a history that
ends before its planned end). An interrupted run is unknown unless what it
recorded was already invalid.

Exit codes: 0 valid, 1 invalid, 2 unknown, 3 could not run (bad flags,
unreadable history, setup failure).
`

func main() {
	// go-redis logs its pool's dial failures to stderr from any client,
	// and a run that refuses or cuts connections on purpose (fail-fast,
	// partition) would interleave them with the progress and the verdict;
	// the calls that failed are in the history, with their errors.
	goredis.SetLogger(silentRedis{})
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

type silentRedis struct{}

func (silentRedis) Printf(context.Context, string, ...any) {}

// isHelp reports whether arg asks for help: the general usage, not a
// command's flags (help of help is the usage, not a loop).
func isHelp(arg string) bool {
	switch arg {
	case "help", "-h", "-help", "--help":
		return true
	}
	return false
}

// errUsage is a mistake in the command line; usage has been printed.
var errUsage = errors.New("usage")

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitCouldNot
	}
	var code int
	var err error
	switch cmd, rest := args[0], args[1:]; cmd {
	case "run":
		code, err = runCommand(rest, stdout, stderr)
	case "check":
		code, err = checkCommand(rest, stdout, stderr)
	case "replay":
		code, err = replayCommand(rest, stdout, stderr)
	case "scenarios":
		code, err = scenariosCommand(rest, stdout, stderr)
	case "compare":
		code, err = compareCommand(rest, stdout, stderr)
	case "sim":
		code, err = simCommand(rest, stdout, stderr)
	case "fuzz":
		code, err = fuzzCommand(rest, stdout, stderr)
	case "shrink":
		code, err = shrinkCommand(rest, stdout, stderr)
	case "suite":
		code, err = suiteCommand(rest, stdout, stderr)
	case "report":
		code, err = reportCommand(rest, stdout, stderr)
	case "list":
		code, err = listCommand(rest, stdout, stderr)
	case "version", "-version", "--version":
		code, err = versionCommand(rest, stdout, stderr)
	case "worker":
		code, err = workerMain(rest, os.Stdin, stdout, stderr)
	case simLaneCommand:
		code, err = simLaneMain(os.Stdin, stdout)
	case "help", "-h", "-help", "--help":
		if len(rest) == 1 && !isHelp(rest[0]) {
			return run([]string{rest[0], "-h"}, stdout, stderr)
		}
		if len(rest) > 1 || (len(rest) == 1 && !isHelp(rest[0])) {
			fmt.Fprintf(stderr, "verify help: want at most one command, got %q\n\n%s", rest, usage)
			return exitCouldNot
		}
		fmt.Fprint(stdout, usage)
		return exitValid
	default:
		fmt.Fprintf(stderr, "verify: unknown command %q\n\n%s", cmd, usage)
		return exitCouldNot
	}
	if err != nil {
		if !errors.Is(err, errUsage) {
			fmt.Fprintf(stderr, "verify %s: %v\n", args[0], err)
		}
		return exitCouldNot
	}
	return code
}

// flagsSet names the flags given on the command line, for settings whose
// default depends on whether they were given.
func flagsSet(fs *flag.FlagSet) map[string]bool {
	set := map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	return set
}

// parseFlagsOnly parses a command line made of flags alone. help is true
// when -h was answered; a bad flag has been reported with the usage
// (errUsage); a positional argument is refused, naming the command's help.
func parseFlagsOnly(fs *flag.FlagSet, args []string) (help bool, err error) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return true, nil
		}
		return false, errUsage
	}
	if fs.NArg() > 0 {
		return false, fmt.Errorf("unexpected arguments %q; every setting is a flag (see verify help %s)", fs.Args(), fs.Name())
	}
	return false, nil
}

// writeRendered creates path and renders into it.
func writeRendered(path string, render func(io.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := render(f); err != nil {
		f.Close()
		return fmt.Errorf("%s: %w", path, err)
	}
	return f.Close()
}

// parseFlagsAndOne parses flags followed by exactly one argument, what it
// names: a run directory, a results directory.
func parseFlagsAndOne(fs *flag.FlagSet, args []string, what string) (arg string, help bool, err error) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return "", true, nil
		}
		return "", false, errUsage
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return "", false, fmt.Errorf("want exactly one %s, got %d arguments", what, fs.NArg())
	}
	return fs.Arg(0), false, nil
}

// interruptible is a context that ends on the first SIGINT or SIGTERM, so
// the command heals its faults and writes what it has; a second one kills
// the process the ordinary way, and the history on disk is complete up to
// that moment either way. Call stop when the command is done.
func interruptible() (ctx context.Context, stop context.CancelFunc) {
	ctx, stop = signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop()
	}()
	return ctx, stop
}
