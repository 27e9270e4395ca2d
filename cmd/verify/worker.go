package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/lockcheck/lockcheck/catalog"
	"github.com/lockcheck/lockcheck/harness"
	"github.com/lockcheck/lockcheck/harness/worker"
	"github.com/lockcheck/lockcheck/scenarios"
)

const workerUsage = `Usage: verify worker

Runs one client's locker as a child process of "verify run -clients-as
process". It reads requests from stdin and answers on stdout, one JSON
object per line (protocol version %d, documented in the package doc of
harness/worker), and logs to stderr. It exits when stdin closes or the
harness sends "close".

It is started by the harness, not by people: its backend, proxy and clock
come in the first request.
`

func workerCommand() (worker.Command, error) {
	exe, err := os.Executable()
	if err != nil {
		return worker.Command{}, fmt.Errorf("process clients run this program as their worker, and its path is unknown: %w", err)
	}
	return worker.Command{Path: exe, Args: []string{"worker"}}, nil
}

func workerMain(args []string, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprintf(stderr, workerUsage, worker.Protocol) }
	if help, err := parseFlagsOnly(fs, args); help || err != nil {
		return exitValid, err
	}
	// The harness stops its workers itself; an interrupt meant for it
	// must not end a worker first. The worker is in a process group of
	// its own, so a terminal's Ctrl-C does not reach it anyway.
	signal.Ignore(os.Interrupt, syscall.SIGTERM)
	if err := worker.Serve(context.Background(), stdin, stdout, stderr, catalog.OpenWorker); err != nil {
		return 0, err
	}
	return exitValid, nil
}

// resolveLocker is the command line's resolver: an external worker when
// the spec names one, the built-in catalog otherwise.
func resolveLocker(s scenarios.Spec) (harness.LockerSpec, error) {
	return catalog.Resolve(s.Locker, s.Worker, s.Backend)
}

// splitCommand splits a -worker command line into its words as a POSIX
// shell would for a simple command: blanks separate words, single quotes
// keep everything literally, double quotes keep blanks, a backslash
// escapes the next character. There is no expansion of any kind.
func splitCommand(line string) ([]string, error) {
	var words []string
	var word strings.Builder
	inWord := false
	var quote rune
	escaped := false
	for _, r := range line {
		switch {
		case escaped:
			word.WriteRune(r)
			escaped = false
		case quote == '\'':
			if r == '\'' {
				quote = 0
			} else {
				word.WriteRune(r)
			}
		case quote == '"':
			switch r {
			case '"':
				quote = 0
			case '\\':
				escaped = true
			default:
				word.WriteRune(r)
			}
		case r == '\\':
			escaped, inWord = true, true
		case r == '\'' || r == '"':
			quote, inWord = r, true
		case r == ' ' || r == '\t' || r == '\n':
			if inWord {
				words = append(words, word.String())
				word.Reset()
				inWord = false
			}
		default:
			word.WriteRune(r)
			inWord = true
		}
	}
	switch {
	case quote != 0:
		return nil, fmt.Errorf("%q: the %c quote is never closed", line, quote)
	case escaped:
		return nil, fmt.Errorf("%q: ends with a backslash that escapes nothing", line)
	}
	if inWord {
		words = append(words, word.String())
	}
	if len(words) == 0 {
		return nil, errors.New("empty; give the worker's program and its arguments, e.g. -worker 'node workers/node/worker.js'")
	}
	return words, nil
}

// workerArgv reads -worker and -backend together: the worker's words, or
// nil when neither flag is given. A worker needs its backend named.
func workerArgv(command, backend string, given bool) ([]string, error) {
	if !given && command == "" && backend == "" {
		return nil, nil
	}
	argv, err := splitCommand(command)
	if err != nil {
		return nil, fmt.Errorf("-worker: %w", err)
	}
	if backend == "" {
		return nil, errors.New("-worker: give -backend too, the backend the harness starts for the workers: gcs (the embedded GCS), redis (embedded Redis), redis-server, or none (the worker brings its own)")
	}
	return argv, nil
}
