package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lockcheck/lockcheck/catalog"
	"github.com/lockcheck/lockcheck/harness"
	"github.com/lockcheck/lockcheck/internal/compare"
	"github.com/lockcheck/lockcheck/models"
	"github.com/lockcheck/lockcheck/scenarios"
)

// defaultCompareLockers are the lockers a comparison runs unless told:
// every real algorithm and the correct control, not the planted mutants.
func defaultCompareLockers() []string {
	var names []string
	for _, l := range catalog.Lockers() {
		if !strings.HasPrefix(l.Name, "mutant-") {
			names = append(names, l.Name)
		}
	}
	return names
}

func compareCommand(args []string, stdout, stderr io.Writer) (int, error) {
	fs := flag.NewFlagSet("compare", flag.ContinueOnError)
	fs.SetOutput(stderr)
	lockersFlag := fs.String("lockers", strings.Join(defaultCompareLockers(), ","), "comma-separated `names` of the lockers to compare (verify list shows them)")
	scenariosFlag := fs.String("scenarios", strings.Join(compare.DefaultScenarios, ","), "comma-separated scenarios, each a column (see the list above); the default is the first table's, and "+strings.Join(compare.DataScenarios, ",")+" make the second")
	seedsFlag := fs.String("seeds", "1,2,3", "comma-separated seeds; every cell runs each")
	ttl := fs.Duration("ttl", time.Second, "the lease every locker is scaled to; faults meant to outlast a lease last 2.5 of it")
	duration := fs.Duration("duration", 8*time.Second, "workload phase of each run")
	clients := fs.Int("clients", 8, "simulated clients per run")
	keys := fs.Int("keys", 2, "lock names per run")
	rate := fs.Float64("rate", 20, "cycles each client starts per second on average")
	holdMax := fs.Duration("hold-max", 50*time.Millisecond, "longest time a holder keeps a lock")
	acquireTimeout := fs.Duration("acquire-timeout", 5*time.Second, "deadline of each Lock and Unlock call")
	faultInterval := fs.Duration("fault-interval", time.Second, "mean quiet time between faults")
	recoveryTimeout := fs.Duration("recovery-timeout", 10*time.Second, "how long each client may take to acquire once after the faults are healed")
	checkTimeout := fs.Duration("check-timeout", time.Minute, "time limit of each linearizability search")
	parallel := fs.Int("parallel", 1, "runs at once; more is faster and makes latency figures noisier")
	out := fs.String("out", "results", "directory that receives the comparison's directory")
	markdown := fs.String("markdown", "", "also write the Markdown table to this file")
	redisAddr := fs.String("redis-addr", "", "run Redis lockers against these real servers, host:port[,...] (default: embedded)")
	workerFlag := fs.String("worker", "", "add a row: every client of it runs as this external worker `command` (protocol v1), on -backend; its lease is its own (no -ttl scaling)")
	backendFlag := fs.String("backend", "", "with -worker: the backend the harness starts for the workers, `gcs`, redis, redis-server or none")
	workerName := fs.String("worker-name", scenarios.DefaultWorkerLocker, "the -worker row's name in the table")
	sim := fs.Bool("sim", false, "run every cell in simulation, as verify sim does: in virtual time, the same history on every run of a seed (goroutine clients on the embedded backends; a column of process clients is n/a)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, `Usage: verify compare [flags]

Runs every -lockers × -scenarios cell on every one of -seeds, each run as
'verify run' would (history, result.json and report in its own directory),
and writes the side-by-side table: compare.md and compare.json in
results/compare-<time>/. Every locker is scaled so its lease lasts -ttl,
so faults measured in leases mean the same to each.

Scenarios:
%s
A cell whose faults cannot act on a locker (a network partition of an
in-process lock) is n/a. Exit status: 0 when every judged run is valid,
1 when any is invalid (unsafe, or live clients stuck after the faults
healed: a liveness failure), 2 when any is unknown or failed, 3 bad flags.

Examples:
  verify compare
  verify compare -lockers tus616,fenced -scenarios none,pause -seeds 1,2,3,4,5
  verify compare -parallel 2 -markdown results/compare.md
  verify compare -lockers redis,redsync -scenarios none,pause,crash -worker 'node workers/node/worker.js workers/node/lockers/redlock.js' -backend redis -worker-name node-redlock

Flags:
`, scenarioHelp())
		fs.PrintDefaults()
	}
	if help, err := parseFlagsOnly(fs, args); help || err != nil {
		return exitValid, err
	}
	var specs []harness.LockerSpec
	for _, n := range splitList(*lockersFlag) {
		l, err := catalog.Lookup(n)
		if err != nil {
			return 0, fmt.Errorf("-lockers: %w", err)
		}
		specs = append(specs, l)
	}
	workers := map[string]compare.Worker{}
	argv, err := workerArgv(*workerFlag, *backendFlag, false)
	if err != nil {
		return 0, err
	}
	if argv != nil {
		if slices.ContainsFunc(specs, func(l harness.LockerSpec) bool { return l.Name == *workerName }) {
			return 0, fmt.Errorf("-worker-name %q is also in -lockers; name the worker's row otherwise", *workerName)
		}
		l, err := catalog.Resolve(*workerName, argv, *backendFlag)
		if err != nil {
			return 0, fmt.Errorf("-worker: %w", err)
		}
		specs = append(specs, l)
		workers[l.Name] = compare.Worker{Argv: argv, Backend: *backendFlag}
	}
	columns, err := compare.LookupScenarios(splitList(*scenariosFlag))
	if err != nil {
		return 0, fmt.Errorf("-scenarios: %w", err)
	}
	var seeds []uint64
	for _, s := range splitList(*seedsFlag) {
		n, err := strconv.ParseUint(s, 10, 63)
		if err != nil || n == 0 {
			return 0, fmt.Errorf("-seeds: %q is not a positive integer", s)
		}
		seeds = append(seeds, n)
	}
	runF := &runFlags{redisAddrs: *redisAddr, timeScale: 1}
	redisAddrs, err := runF.redisList()
	if err != nil {
		return 0, err
	}
	dir := filepath.Join(*out, "compare-"+time.Now().UTC().Format("20060102-150405"))
	rateV := *rate
	base := scenarios.Spec{
		Clients: *clients, Keys: *keys, Duration: scenarios.Duration(*duration), Rate: &rateV,
		HoldMax: scenarios.Duration(*holdMax), AcquireTimeout: scenarios.Duration(*acquireTimeout),
		FaultInterval: scenarios.Duration(*faultInterval), RecoveryTimeout: scenarios.Duration(*recoveryTimeout),
		CheckTimeout: scenarios.Duration(*checkTimeout), RedisAddrs: redisAddrs, Sim: *sim,
	}
	if *sim && (*workerFlag != "" || *redisAddr != "") {
		return 0, errors.New("-sim runs the built-in lockers on in-memory backends; drop -worker and -redis-addr")
	}
	// The settings are checked once, on the first cell, before any run.
	plan := compare.Plan{
		Lockers: specs, Scenarios: columns, Seeds: seeds, TTL: *ttl, Base: base, Resolve: resolveLocker,
		Dir: dir, Parallel: *parallel, Workers: workers, ProcessWorker: workerCommand,
		Progress: func(done, total int, r compare.Run) {
			what := string(r.Verdict)
			switch {
			case r.NotApplicable != "":
				what = "n/a"
			case r.Error != "":
				what += " (" + r.Error + ")"
			case r.NoFaultRan:
				what += " (" + models.NoFaultRan + ")"
			case r.Cause != "":
				what += " (" + r.Cause + ")"
			}
			fmt.Fprintf(stderr, "[%d/%d] %s / %s / seed %d: %s, %.1fs\n", done, total, r.Locker, r.Scenario, r.Seed, what, r.Elapsed.Seconds())
		},
	}
	if _, err := plan.Spec(specs[0], columns[0], seeds[0]).Normalize(resolveLocker); err != nil {
		return 0, fmt.Errorf("flags: %w", err)
	}
	longest := *duration
	for _, c := range columns {
		if room := plan.Room(c); room > *duration {
			fmt.Fprintf(stdout, "compare: column %s runs %v, not %v: every seed then has room for each of its faults once\n", c.Name, room, *duration)
			longest = max(longest, room)
		}
	}
	total := len(specs) * len(columns) * len(seeds)
	fmt.Fprintf(stdout, "compare: %d lockers × %d scenarios × %d seeds = %d runs, %d at a time, each at most %v plus recovery; results in %s\n",
		len(specs), len(columns), len(seeds), total, *parallel, longest, dir)

	ctx, stop := interruptible()
	defer stop()
	table, err := compare.Execute(ctx, plan)
	if err != nil {
		return 0, err
	}
	if err := writeTable(table, dir, *markdown); err != nil {
		return 0, err
	}
	if err := table.WriteMarkdown(stdout); err != nil {
		return 0, err
	}
	fmt.Fprintf(stdout, "\ntable in %s and %s\n", filepath.Join(dir, "compare.md"), filepath.Join(dir, "compare.json"))
	if table.Interrupted {
		fmt.Fprintln(stdout, "interrupted: the table holds the runs that finished")
	}
	return exitCodeOfTable(table), nil
}

func scenarioHelp() string {
	var b strings.Builder
	for _, s := range compare.Scenarios() {
		fmt.Fprintf(&b, "  %-11s %s\n", s.Name, s.Summary)
	}
	return b.String()
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func writeTable(t *compare.Table, dir, markdown string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	write := writeRendered
	if err := write(filepath.Join(dir, "compare.md"), t.WriteMarkdown); err != nil {
		return err
	}
	if err := write(filepath.Join(dir, "compare.json"), t.WriteJSON); err != nil {
		return err
	}
	if markdown != "" {
		return write(markdown, t.WriteMarkdown)
	}
	return nil
}

// exitCodeOfTable: invalid wins, then unknown (an error or an unknown
// verdict is never a pass); n/a cells do not count. A liveness failure is
// an invalid run too where it counts (runner.LivenessCounts: every leased
// locker in a comparison, whose recovery window holds two leases): a gate
// that passed a lock whose clients stay stuck after the faults heal would
// pass a lock nobody can use.
func exitCodeOfTable(t *compare.Table) int {
	code := exitValid
	for _, r := range t.Runs {
		switch {
		case r.NotApplicable != "":
		case r.Verdict == models.Invalid, r.Liveness == models.Invalid && r.LivenessCounts:
			return exitInvalid
		case r.Verdict != models.Valid || r.Error != "":
			code = exitUnknown
		}
	}
	if t.Interrupted && code == exitValid {
		code = exitUnknown
	}
	return code
}
