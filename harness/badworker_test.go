package harness_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/lockcheck/lockcheck/catalog"
	"github.com/lockcheck/lockcheck/harness"
	"github.com/lockcheck/lockcheck/harness/worker"
	"github.com/lockcheck/lockcheck/history"
)

// badWorkerEnv makes the test binary a worker that breaks the protocol in
// the way its value names.
const badWorkerEnv = "LOCKCHECK_HARNESS_TEST_BAD_WORKER"

func badWorker(mode string) {
	in := bufio.NewReader(os.Stdin)
	switch mode {
	case "garbage":
		in.ReadString('\n')
		fmt.Println("hello there, I am not JSON")
	case "protocol-2":
		in.ReadString('\n')
		fmt.Println(`{"id":0,"ok":true,"protocol":2,"pid":1}`)
	case "exit":
		fmt.Fprintln(os.Stderr, "worker: cannot find my lock library")
		os.Exit(7)
	case "exit-mid-run":
		// A real worker that dies after a few requests, as a crashing
		// library would.
		r, w := io.Pipe()
		go func() {
			for i := 0; ; i++ {
				line, err := in.ReadString('\n')
				if err != nil {
					w.Close()
					return
				}
				if i == 12 {
					fmt.Fprintln(os.Stderr, "worker: segmentation fault in the lock library")
					os.Exit(5)
				}
				io.WriteString(w, line)
			}
		}()
		worker.Serve(context.Background(), r, os.Stdout, os.Stderr, catalog.OpenWorker)
		os.Exit(0)
	}
	io.Copy(io.Discard, in)
	os.Exit(0)
}

// A worker that breaks the protocol fails the run with an error naming
// the worker, the client and what it did; the history is kept.
func TestAMisbehavingWorkerFailsTheRunAndKeepsTheHistory(t *testing.T) {
	t.Parallel()
	spec, err := catalog.Lookup("fenced")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ mode, want string }{
		{"garbage", `line 1 of its output is not a protocol message (invalid character 'h' looking for beginning of value): "hello there, I am not JSON"`},
		{"protocol-2", "the worker answered hello with protocol 2, not 1"},
		{"exit", "the worker exited (exit status 7) before it answered hello; its stderr ended with:\n\tworker: cannot find my lock library"},
		{"exit-mid-run", "exited by itself (exit status 5) while the run went on; its stderr ended with:\n\tworker: segmentation fault in the lock library"},
	} {
		t.Run(c.mode, func(t *testing.T) {
			cfg := harness.TestConfig(t)
			cfg.Locker, cfg.ClientsAs, cfg.TimeScale = spec, harness.ClientsAsProcesses, 0.05
			cfg.Clients, cfg.Duration = 2, 2*time.Second
			cfg.Worker = worker.Command{Path: os.Args[0], Env: append(os.Environ(), badWorkerEnv+"="+c.mode, "GORACE=atexit_sleep_ms=0")}
			out, err := harness.Run(context.Background(), cfg)
			if !errors.Is(err, harness.ErrWorker) || !errors.Is(err, worker.ErrProtocol) {
				t.Fatalf("error %v, want one wrapping ErrWorker and ErrProtocol", err)
			}
			for _, want := range []string{c.want, "client 0", os.Args[0]} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error does not say %q:\n%v", want, err)
				}
			}
			if out == nil {
				t.Fatal("no outcome: the history must be kept")
			}
			if _, err := history.ReadFile(out.HistoryPath); err != nil {
				t.Errorf("history: %v", err)
			}
		})
	}
}
