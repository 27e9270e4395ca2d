package harness_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lockcheck/lockcheck/catalog"
	"github.com/lockcheck/lockcheck/faults"
	"github.com/lockcheck/lockcheck/harness"
	"github.com/lockcheck/lockcheck/harness/worker"
	"github.com/lockcheck/lockcheck/history"
)

// workerEnv makes the test binary a `verify worker` (see TestMain), so the
// harness's process clients can be tested without building the command.
const workerEnv = "LOCKCHECK_HARNESS_TEST_WORKER"

func TestMain(m *testing.M) {
	if mode := os.Getenv(badWorkerEnv); mode != "" {
		badWorker(mode)
	}
	if os.Getenv(workerEnv) == "1" {
		if err := worker.Serve(context.Background(), os.Stdin, os.Stdout, os.Stderr, catalog.OpenWorker); err != nil {
			os.Stderr.WriteString(err.Error() + "\n")
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func testWorker() worker.Command {
	return worker.Command{Path: os.Args[0], Env: append(os.Environ(), workerEnv+"=1", "GORACE=atexit_sleep_ms=0")}
}

func processConfig(t *testing.T, locker string, faultNames ...string) harness.Config {
	t.Helper()
	spec, err := catalog.Lookup(locker)
	if err != nil {
		t.Fatal(err)
	}
	cfg := harness.TestConfig(t, faultNames...)
	cfg.Locker, cfg.ClientsAs, cfg.Worker = spec, harness.ClientsAsProcesses, testWorker()
	cfg.TimeScale = float64(500*time.Millisecond) / float64(spec.TTL)
	cfg.Duration = 3 * time.Second
	cfg.FaultInterval = 300 * time.Millisecond
	cfg.FaultMin, cfg.FaultMax = 600*time.Millisecond, 600*time.Millisecond
	cfg.RecoveryTimeout = 5 * time.Second
	return cfg
}

// seedPlanning finds a seed whose plan, with cfg's fault bounds, has a
// fault of kind early enough to be followed by a restart.
func seedPlanning(t *testing.T, cfg harness.Config, kind string) uint64 {
	t.Helper()
	for seed := uint64(1); seed < 1000; seed++ {
		plan := faults.Plan(seed, cfg.Faults, faults.PlanOptions{Clients: cfg.Clients, Window: cfg.Duration, Interval: cfg.FaultInterval, MinDuration: cfg.FaultMin, MaxDuration: cfg.FaultMax})
		for _, p := range plan {
			if p.Kind.Name == kind && p.At < cfg.Duration/2 {
				return seed
			}
		}
	}
	t.Fatalf("no seed below 1000 plans %s in the first half of the run", kind)
	return 0
}

// pidsOf lists the worker processes a history names, and checks that a
// restart came back under a new one.
func pidsOf(t *testing.T, h *history.History) []int {
	t.Helper()
	var pids []int
	seen := map[int]bool{}
	for _, e := range h.Events {
		if e.F != history.Crash && e.F != history.Restart {
			continue
		}
		var ref history.ClientRef
		harness.MustUnmarshal(t, e.Value, &ref)
		if ref.PID <= 0 {
			t.Fatalf("event %d: %s of a process client without its pid", e.Index, e.F)
		}
		if e.F == history.Restart && seen[ref.PID] {
			t.Fatalf("event %d: client %d restarted under pid %d, which it had before", e.Index, ref.Client, ref.PID)
		}
		if !seen[ref.PID] {
			seen[ref.PID] = true
			pids = append(pids, ref.PID)
		}
	}
	return pids
}

// gone fails unless no process pid exists any more: killed and reaped,
// not left a zombie.
func gone(t *testing.T, pids []int) {
	t.Helper()
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("worker process %d still exists after the run (signal 0: %v)", pid, err)
		}
	}
}

func TestProcessClientsArePausedKilledAndReaped(t *testing.T) {
	t.Parallel()
	cfg := processConfig(t, "redis", "pause-holder", "crash-holder")
	cfg.Workload.Name = history.WorkloadRegister
	cfg.Seed = seedPlanning(t, cfg, "crash-holder")
	out, h := harness.RunAndRead(t, cfg)
	if h.Header.Run.ClientsAs != harness.ClientsAsProcesses {
		t.Fatalf("history says clients ran as %q", h.Header.Run.ClientsAs)
	}
	pids := pidsOf(t, h)
	if len(pids) < 2 {
		t.Fatalf("crash and restart name %d worker processes, want the killed one and its successor: %v", len(pids), pids)
	}
	gone(t, out.WorkerPIDs)
	tally := harness.TallyRegister(t, h)
	written := 0
	for _, n := range tally.Acked {
		written += n
	}
	if written == 0 || len(tally.Finals) != cfg.Workload.Keys {
		t.Fatalf("%d increments, finals %v: the worker processes did no work on their registers", written, tally.Finals)
	}
	if out.Interrupted {
		t.Fatal("run interrupted")
	}
}

func TestInterruptedProcessRunStopsItsChildren(t *testing.T) {
	t.Parallel()
	cfg := processConfig(t, "redis", "pause")
	cfg.Duration = time.Minute
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Interrupt as soon as a fault has begun, with a client stopped.
	cfg.Observers = []func(history.Event){func(e history.Event) {
		if e.F == history.FaultStart {
			cancel()
		}
	}}
	out, err := harness.Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !out.Interrupted {
		t.Fatal("the run did not notice the interrupt")
	}
	h, err := history.ReadFile(out.HistoryPath)
	if err != nil {
		t.Fatal(err)
	}
	stops := 0
	for _, e := range h.Events {
		if e.F == history.FaultStop {
			stops++
		}
	}
	if stops == 0 {
		t.Fatal("the interrupted run did not heal its fault")
	}
	if len(out.WorkerPIDs) != cfg.Clients {
		t.Fatalf("outcome names %d worker processes, want %d", len(out.WorkerPIDs), cfg.Clients)
	}
	gone(t, out.WorkerPIDs)
}

func TestProcessClientsNeedANetworkedBackend(t *testing.T) {
	t.Parallel()
	cfg := harness.TestConfig(t)
	cfg.ClientsAs, cfg.Worker = harness.ClientsAsProcesses, testWorker()
	_, err := harness.Run(context.Background(), cfg)
	if !errors.Is(err, harness.ErrFaultNotApplicable) || !strings.Contains(err.Error(), "process clients") {
		t.Fatalf("error %v, want a refusal naming process clients", err)
	}
}

// TestProcessClientsRunOnTheirMachineClock: lai judges expiry on its own
// clock, so workers whose clocks are many leases apart take each other's
// live locks as stale. That can only show if each worker's clock is set
// where its machine's stands.
func TestProcessClientsRunOnTheirMachineClock(t *testing.T) {
	t.Parallel()
	cfg := processConfig(t, "lai")
	cfg.Workload = harness.Workload{Name: history.WorkloadMutex, Keys: 1, Rate: 20, HoldMin: 100 * time.Millisecond, HoldMax: 250 * time.Millisecond, AcquireTimeout: 2 * time.Second}
	cfg.ClockSpread = 20 * 500 * time.Millisecond
	_, h := harness.RunAndRead(t, cfg)
	clocked := map[int]struct{}{}
	for _, e := range h.Events {
		if e.F == history.Clock {
			var c history.ClockChange
			harness.MustUnmarshal(t, e.Value, &c)
			clocked[c.Client] = struct{}{}
		}
	}
	if len(clocked) != cfg.Clients {
		t.Fatalf("clock events for %d clients, want %d", len(clocked), cfg.Clients)
	}
	if overlaps := overlappingSections(h); overlaps == 0 {
		t.Fatal("no two critical sections overlapped: the workers did not run on their skewed clocks")
	}
}

// overlappingSections counts acquisitions of a key while another process
// held it, from acquire ok to release invoke: enough for one key and no
// lost notices, which lai does not give.
func overlappingSections(h *history.History) int {
	holders := map[history.Process]bool{}
	n := 0
	for _, e := range h.Events {
		switch {
		case e.F == history.Acquire && e.Type == history.OK:
			if len(holders) > 0 {
				n++
			}
			holders[e.Process] = true
		case e.F == history.Release && e.Type == history.Invoke:
			delete(holders, e.Process)
		case e.F == history.Crash:
			var ref history.ClientRef
			if json.Unmarshal(e.Value, &ref) == nil {
				delete(holders, ref.Process)
			}
		}
	}
	return n
}

// TestEachWorkerDialsThroughItsOwnProxy: a partition of one process client
// stops that client's calls and nobody else's, which can only be if each
// worker reaches the backend through its own proxy.
func TestEachWorkerDialsThroughItsOwnProxy(t *testing.T) {
	t.Parallel()
	cfg := processConfig(t, "redis", "partition")
	cfg.FaultMin, cfg.FaultMax = 1500*time.Millisecond, 1500*time.Millisecond
	cfg.Workload.AcquireTimeout = 300 * time.Millisecond
	cfg.Seed = seedPlanning(t, cfg, "partition")
	_, h := harness.RunAndRead(t, cfg)
	var cut history.Fault
	var from, to int64
	for _, e := range h.Events {
		if e.F == history.FaultStart && from == 0 {
			harness.MustUnmarshal(t, e.Value, &cut)
			from = e.Time
		}
		if e.F == history.FaultStop && from != 0 && to == 0 {
			to = e.Time
		}
	}
	if from == 0 || to == 0 || len(cut.Clients) != 1 {
		t.Fatalf("no single-client partition started and healed (fault %+v)", cut)
	}
	invoked := map[history.Process]int64{}
	cutDone, othersDone := 0, 0
	for _, e := range h.Events {
		if e.F != history.Acquire {
			continue
		}
		if e.Type == history.Invoke {
			invoked[e.Process] = e.Time
			continue
		}
		if e.Type != history.OK || invoked[e.Process] < from || e.Time > to {
			continue
		}
		if e.Client == cut.Clients[0] {
			cutDone++
		} else {
			othersDone++
		}
	}
	if cutDone > 0 || othersDone == 0 {
		t.Fatalf("inside the partition of client %d: it acquired %d times, the others %d; want 0 and some", cut.Clients[0], cutDone, othersDone)
	}
}
