package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/lockcheck/lockcheck/harness"
	"github.com/lockcheck/lockcheck/harness/worker"
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
	if err := worker.Serve(context.Background(), stdin, stdout, stderr, harness.OpenWorker); err != nil {
		return 0, err
	}
	return exitValid, nil
}
