package main

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/lockcheck/lockcheck/catalog"
	"github.com/lockcheck/lockcheck/faults"
	"github.com/lockcheck/lockcheck/harness"
	"github.com/lockcheck/lockcheck/history"
	"github.com/lockcheck/lockcheck/internal/suite"
	"github.com/lockcheck/lockcheck/runner"
	"github.com/lockcheck/lockcheck/scenarios"
)

type runFlags struct {
	// json prints the verdict as one JSON object on stdout (-json).
	json            bool
	locker          string
	clients, keys   int
	duration        time.Duration
	rate            float64
	holdMin         time.Duration
	holdMax         time.Duration
	acquireTimeout  time.Duration
	faults          string
	faultInterval   time.Duration
	recoveryTimeout time.Duration
	seed            uint64
	out             string
	checkTimeout    time.Duration
	requireRecovery bool
	quiet           bool
	timeScale       float64
	proxy           bool
	gcsBucket       string
	ttl             time.Duration
	faultDuration   string
	faultCoverage   string
	redisAddrs      string
	clockStep       time.Duration
	clockSpread     time.Duration
	workload        string
	clientsAs       string
	scenario        string
	worker          string
	backend         string
	sim             bool
}

func newRunFlags(stderr io.Writer) (*flag.FlagSet, *runFlags) {
	f := &runFlags{}
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.locker, "locker", "memory-owner", "`name` of the locker under test (verify list shows them)")
	fs.IntVar(&f.clients, "clients", scenarios.DefaultClients, "number of simulated clients, each with its own locker")
	fs.IntVar(&f.keys, "keys", scenarios.DefaultKeys, "number of lock names the clients contend for")
	fs.DurationVar(&f.duration, "duration", scenarios.DefaultDuration, "length of the workload phase (the recovery phase follows)")
	fs.Float64Var(&f.rate, "rate", scenarios.DefaultRate, "cycles each client starts per second on average; 0 = back to back")
	fs.DurationVar(&f.holdMin, "hold-min", 0, "shortest time a holder keeps a lock")
	fs.DurationVar(&f.holdMax, "hold-max", scenarios.DefaultHoldMax, "longest time a holder keeps a lock")
	fs.DurationVar(&f.acquireTimeout, "acquire-timeout", scenarios.DefaultAcquireTimeout, "deadline of each Lock and Unlock call")
	fs.StringVar(&f.faults, "faults", "", "comma-separated `faults` to schedule, e.g. pause,crash (verify list shows them)")
	fs.DurationVar(&f.faultInterval, "fault-interval", scenarios.DefaultFaultInterval, "mean quiet time between faults")
	fs.DurationVar(&f.recoveryTimeout, "recovery-timeout", scenarios.DefaultRecoveryTimeout, "how long each client may take to acquire once after every fault is healed")
	fs.Uint64Var(&f.seed, "seed", 0, "seed for the workload and the fault schedule; 0 picks one and prints it")
	fs.StringVar(&f.out, "out", "results", "directory that receives the run's directory")
	fs.DurationVar(&f.checkTimeout, "check-timeout", scenarios.DefaultCheckTimeout, "time limit of the linearizability search; past it the verdict is unknown")
	fs.BoolVar(&f.requireRecovery, "require-recovery", false, "count clients that never acquire in the recovery phase as a failure (exit 1) whatever the lease; without it liveness counts when the locker has a lease and the recovery window holds two of them")
	fs.BoolVar(&f.quiet, "q", false, "no progress output")
	fs.BoolVar(&f.json, "json", false, "print the verdict and every checker's report as one JSON object on stdout, not the table (what ran goes to stderr)")
	fs.StringVar(&f.gcsBucket, "gcs-bucket", "", "run GCS lockers against this real bucket with application default credentials, under a fresh prefix that is deleted at the end (default: the embedded GCS on loopback)")
	fs.BoolVar(&f.proxy, "proxy", false, "route every client through its own proxy to a networked backend even without network faults (for like-for-like latency)")
	fs.Float64Var(&f.timeScale, "time-scale", 0, "multiply the locker's own durations (TTL, timeouts, intervals) by this, keeping their ratios; 1 runs it as published, 0.1 runs tus616's 12 s TTL as 1.2 s (default: the scale -ttl's default gives)")
	fs.DurationVar(&f.ttl, "ttl", 0, "scale the locker's durations so its lease lasts this long (instead of -time-scale); lockers without a lease run as published (default 1s for a locker with a lease, as in a scenario file)")
	fs.StringVar(&f.faultDuration, "fault-duration", "", "how long each fault lasts, `D` or MIN-MAX (e.g. 3s, 500ms-2s); default: each fault's own range (verify list shows them)")
	fs.StringVar(&f.faultCoverage, "fault-coverage", history.FaultCoverageEach, "`each`: every kind in -faults must run, or the verdict is unknown; any: one kind is enough (an exploration of a mix of faults, each seed trying some); a failed injection is unknown either way")
	fs.DurationVar(&f.clockStep, "clock-step", 0, "how far clock-jump faults move a client's clock (default: three of the locker's leases, or 5s without one)")
	fs.DurationVar(&f.clockSpread, "clock-spread", 0, "set every client's clock off real time for the whole run by a constant from the seed in [-D, +D]")
	fs.StringVar(&f.redisAddrs, "redis-addr", "", "run Redis lockers against these real servers, `host:port[,host:port,...]` (redlock takes three); default: embedded Redis servers on loopback")
	fs.StringVar(&f.workload, "workload", "mutex", "the `workload`, what the critical section does: mutex, register, fenced-register or request-release (verify list says what each is)")
	fs.StringVar(&f.clientsAs, "clients-as", "goroutine", "run each client as a `kind`: goroutine, in this process, or process, a verify worker child that gets real SIGSTOP and SIGKILL (GCS and Redis lockers)")
	fs.StringVar(&f.scenario, "scenario", "", "run this `scenario`: a name verify scenarios lists, or a path to a .json scenario file, on its first seed or on -seed; only -seed, -out and -q go with it")
	fs.StringVar(&f.worker, "worker", "", "run every client as this external worker `command` (protocol v1; quote it: -worker 'node workers/node/worker.js'); -locker then only names it in reports, and -backend says what the harness starts for it")
	fs.BoolVar(&f.sim, "sim", false, "run this one seed in simulation, as verify sim does: the backend and network in memory, in virtual time, the same history every time (goroutine clients on the embedded backends)")
	fs.StringVar(&f.backend, "backend", "", "with -worker: the backend the harness starts for the workers, `gcs`, redis, redis-server or none; without: redis-server runs a Redis locker on real redis-server processes")
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage: verify run [flags]
       verify run -scenario NAME [-seed N]

Runs -clients simulated clients against -locker for -duration, with the
-faults scheduled from -seed, then heals every fault and lets each client
try for -recovery-timeout to acquire once (the recovery phase). Every call is recorded to
results/<run-id>/history.jsonl as it happens, then checked.

Every run records what it ran as scenario.json in its directory at its
first event, so 'verify replay <run dir>' can run it again.

Examples:
  verify run -scenario regression/tus616-pause-stale-delete
  verify run -locker memory-owner -faults pause,crash -seed 7
  verify run -locker mutant-unlock-any -duration 20s -clients 8 -keys 1
  verify run -locker tus616 -time-scale 0.1 -duration 20s -keys 1
  verify run -locker tus616 -time-scale 0.1 -faults partition-holder,server-429 -duration 10s -seed 3
  verify run -locker fenced -ttl 1.2s -faults pause-holder -fault-duration 3s
  verify run -locker lai -ttl 1s -faults clock-jump-forward -clock-step 3s
  verify run -locker redlock -ttl 1s -faults partition-majority -redis-addr 127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003
  verify run -locker gmutex -ttl 1s -workload register -faults pause-holder -fault-duration 2.5s
  verify run -locker fenced -ttl 1s -workload fenced-register -clients-as process -faults pause-holder,crash-holder

Flags:
`)
		fs.PrintDefaults()
	}
	return fs, f
}

func runCommand(args []string, stdout, stderr io.Writer) (int, error) {
	fs, f := newRunFlags(stderr)
	if help, err := parseFlagsOnly(fs, args); help || err != nil {
		return exitValid, err
	}
	set := flagsSet(fs)
	var spec scenarios.Spec
	if f.scenario != "" {
		var given []string
		for n := range set {
			if !scenarioOverrides[n] {
				given = append(given, "-"+n)
			}
		}
		if len(given) > 0 {
			slices.Sort(given)
			return 0, fmt.Errorf("-scenario sets these; drop %s (only -seed, -out and -q go with -scenario)", strings.Join(given, ", "))
		}
		s, err := lookupScenario(f.scenario)
		if err != nil {
			return 0, fmt.Errorf("-scenario: %w", err)
		}
		if spec, err = s.Normalize(resolveLocker); err != nil {
			return 0, err
		}
	} else {
		var err error
		if spec, err = f.spec(set); err != nil {
			return 0, err
		}
		// The one policy for what is left unset: a scenario file's.
		if spec, err = spec.Normalize(resolveLocker); err != nil {
			return 0, fmt.Errorf("flags: %w", err)
		}
	}
	seed := f.seed
	if seed == 0 && f.scenario != "" {
		seed = spec.Seeds[0]
	}
	for seed == 0 {
		var b [8]byte
		rand.Read(b[:])
		seed = binary.LittleEndian.Uint64(b[:]) >> 1 // fits an int64 for tools that read JSON as float or int64
	}
	ctx, stop := interruptible()
	defer stop()
	code, res, err := runSpec(ctx, spec, seed, f.out, f.quiet, f.json, stdout, stderr)
	if f.scenario == "" || res == nil || res.Report == nil {
		return code, err
	}
	return judgeScenario(spec, res, err, f.json, stdout, stderr), nil
}

// judgeScenario compares a named scenario's run with the verdict the
// scenario expects, as verify suite does, and returns suite's exit code
// for it: a scenario that expects invalid passes when the run is
// invalid, and fails (exit 1) when it is valid.
func judgeScenario(spec scenarios.Spec, res *runner.Result, runErr error, asJSON bool, stdout, stderr io.Writer) int {
	o := suite.OutcomeOf(res.Report, res.Verdict, res.LivenessCounts())
	if res.Outcome != nil && res.Outcome.Interrupted {
		runErr = errors.Join(runErr, errors.New("interrupted before the run finished"))
	}
	status, detail := suite.Judge(spec.Expect, o, runErr)
	w := stdout
	if asJSON {
		w = stderr
	}
	fmt.Fprintf(w, "scenario %s: %s (%s; %s)\n", spec.Name, status, detail, spec.Expect.Reason)
	return suite.ExitCode([]suite.Result{{Status: status}})
}

// scenarioOverrides are the flags that may go with -scenario: they say
// which seed and where the results go, not what runs.
var scenarioOverrides = map[string]bool{"scenario": true, "seed": true, "out": true, "q": true}

// runSpec runs one seed of spec into a new directory under out and checks
// it. dir is the run directory, "" when the run never started.
func runSpec(ctx context.Context, spec scenarios.Spec, seed uint64, out string, quiet, asJSON bool, stdout, stderr io.Writer) (code int, res *runner.Result, err error) {
	jsonStdout := stdout
	prog := newProgress(stderr, time.Duration(spec.Duration), quiet)
	job := runner.Job{
		Spec: spec, Resolve: resolveLocker, Seed: seed, Worker: workerCommand,
		Dir:       filepath.Join(out, harness.NewRunID(time.Now(), spec.Locker, seed)),
		Observers: []func(history.Event){prog.observe},
	}
	started := false
	if asJSON {
		// stdout carries the one JSON object; the rest is for people.
		stdout = stderr
	}
	res, err = runner.Run(ctx, job, func(cfg harness.Config) {
		name := ""
		if spec.Name != "" && spec.Name != runSpecName {
			name = " (scenario " + spec.Name + ")"
		}
		fmt.Fprintf(stdout, "run %s%s\n  locker %s, %d clients, %d keys, %v, faults [%s], seed %d\n  %s\n",
			filepath.Base(cfg.Dir), name, cfg.Locker.Name, cfg.Clients, cfg.Workload.Keys, cfg.Duration, strings.Join(spec.Faults, ","), cfg.Seed, cfg.Info().Settings())
		if len(spec.Worker) > 0 {
			fmt.Fprintf(stdout, "  worker %s, backend %s\n", strings.Join(spec.Worker, " "), spec.Backend)
		}
		prog.start()
		started = true
	})
	if started {
		prog.stop()
	}
	if res == nil {
		if spec.Name == runSpecName {
			return 0, nil, fmt.Errorf("flags: %w", err)
		}
		return 0, nil, fmt.Errorf("scenario %s: %w", spec.Name, err)
	}
	if res.Outcome.Interrupted {
		fmt.Fprintln(stdout, "interrupted: faults healed, checking the history recorded so far")
	}
	if len(res.Outcome.Unfinished) > 0 {
		fmt.Fprintf(stdout, "clients %v were still inside a call when the run stopped waiting for them\n", res.Outcome.Unfinished)
	}
	printWarnings(res.Warnings, stderr)
	if res.Report == nil {
		fmt.Fprintf(stdout, "history kept in %s (no verdict: the run could not be judged)\n", res.Dir)
		return 0, res, err
	}
	if asJSON {
		stdout = jsonStdout
	}
	return printVerdict(res, stdout, asJSON), res, err
}

// printWarnings shows a run's diagnostics (a locker that panicked, a
// fault that would not heal): the first ten, and where the rest are.
func printWarnings(warn []string, w io.Writer) {
	for i, msg := range warn {
		if i == 10 {
			fmt.Fprintf(w, "warning: … %d more in result.json and summary.txt\n", len(warn)-10)
			break
		}
		fmt.Fprintf(w, "warning: %s\n", msg)
	}
}

// runSpecName names the spec that verify run's flags make.
const runSpecName = "run"

// spec turns the flags into a scenario, every setting explicit, so the
// run's scenario.json replays it exactly. set holds the flags given.
func (f *runFlags) spec(set map[string]bool) (scenarios.Spec, error) {
	var names []string
	for _, n := range strings.Split(f.faults, ",") {
		if n = strings.TrimSpace(n); n != "" && !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	redisAddrs, err := f.redisList()
	if err != nil {
		return scenarios.Spec{}, err
	}
	if set["ttl"] && set["time-scale"] {
		return scenarios.Spec{}, errors.New("-ttl and -time-scale both set; give one: -ttl picks the time scale that makes the locker's lease that long")
	}
	// A zero given is refused, as a scenario file's is: left unset it
	// would read as "the default".
	for _, v := range []struct {
		name     string
		positive bool
		value    any
	}{
		{"clients", f.clients > 0, f.clients}, {"keys", f.keys > 0, f.keys}, {"duration", f.duration > 0, f.duration},
		{"ttl", f.ttl > 0, f.ttl}, {"time-scale", f.timeScale > 0, f.timeScale}, {"hold-max", f.holdMax > 0, f.holdMax},
		{"acquire-timeout", f.acquireTimeout > 0, f.acquireTimeout}, {"fault-interval", f.faultInterval > 0, f.faultInterval},
		{"recovery-timeout", f.recoveryTimeout > 0, f.recoveryTimeout}, {"check-timeout", f.checkTimeout > 0, f.checkTimeout},
	} {
		if set[v.name] && !v.positive {
			return scenarios.Spec{}, fmt.Errorf("-%s %v: want a positive value, or leave -%s out for its default", v.name, v.value, v.name)
		}
	}
	if set["time-scale"] && f.timeScale > 100 {
		return scenarios.Spec{}, fmt.Errorf("-time-scale %v: time scale must be in (0, 100]", f.timeScale)
	}
	var argv []string
	locker, clientsAs := f.locker, f.clientsAs
	if f.worker != "" || set["worker"] {
		if argv, err = workerArgv(f.worker, f.backend, true); err != nil {
			return scenarios.Spec{}, err
		}
		if !set["locker"] {
			locker = scenarios.DefaultWorkerLocker
		}
		if !set["clients-as"] {
			clientsAs = harness.ClientsAsProcesses
		}
	} else if _, err := catalog.Lookup(f.locker); err != nil {
		return scenarios.Spec{}, fmt.Errorf("-locker: %w", err)
	}
	if _, err := faults.Lookup(names); err != nil {
		return scenarios.Spec{}, fmt.Errorf("-faults: %w", err)
	}
	if _, _, err := scenarios.ParseFaultDuration(f.faultDuration); err != nil {
		return scenarios.Spec{}, fmt.Errorf("-fault-duration: %w", err)
	}
	rate := f.rate
	s := scenarios.Spec{
		Name:            runSpecName,
		Summary:         "verify run with flags",
		Locker:          locker,
		Worker:          argv,
		Backend:         f.backend,
		Workload:        f.workload,
		ClientsAs:       clientsAs,
		Faults:          names,
		Clients:         f.clients,
		Keys:            f.keys,
		Duration:        scenarios.Duration(f.duration),
		TTL:             scenarios.Duration(f.ttl),
		TimeScale:       f.timeScale,
		Rate:            &rate,
		HoldMin:         scenarios.Duration(f.holdMin),
		HoldMax:         scenarios.Duration(f.holdMax),
		AcquireTimeout:  scenarios.Duration(f.acquireTimeout),
		FaultInterval:   scenarios.Duration(f.faultInterval),
		FaultDuration:   f.faultDuration,
		FaultCoverage:   f.faultCoverage,
		ClockStep:       scenarios.Duration(f.clockStep),
		ClockSpread:     scenarios.Duration(f.clockSpread),
		RecoveryTimeout: scenarios.Duration(f.recoveryTimeout),
		Sim:             f.sim,
		Proxy:           f.proxy,
		GCSBucket:       f.gcsBucket,
		RedisAddrs:      redisAddrs,
		CheckTimeout:    scenarios.Duration(f.checkTimeout),
		RequireRecovery: f.requireRecovery,
		Seeds:           []uint64{max(f.seed, 1)},
		Expect:          scenarios.Expect{Verdict: scenarios.ExpectEither, Reason: "an ad hoc run: no verdict is expected"},
	}
	return s, nil
}

func (f *runFlags) redisList() ([]string, error) {
	var addrs []string
	for _, a := range splitList(f.redisAddrs) {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return nil, fmt.Errorf("-redis-addr %q: want host:port: %w", a, err)
		}
		addrs = append(addrs, a)
	}
	return addrs, nil
}

// lookupScenario is a scenario file when name is one on disk (or ends in
// .json), a named scenario otherwise.
func lookupScenario(name string) (scenarios.Spec, error) {
	if st, err := os.Stat(name); (err == nil && !st.IsDir()) || strings.HasSuffix(name, ".json") {
		return scenarios.ReadFile(name)
	}
	return scenarios.Lookup(name)
}
