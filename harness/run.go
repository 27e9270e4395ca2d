// Package harness runs a scenario: it starts the backend a locker needs,
// one simulated client per slot, the workload and the fault schedule, and
// records every call into a history that the checkers read afterwards.
//
// Data flows one way: configuration in, history out. The harness never
// judges a history; the models package does.
package harness

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lockcheck/lockcheck/faults"
	"github.com/lockcheck/lockcheck/faults/serverfault"
	"github.com/lockcheck/lockcheck/harness/worker"
	"github.com/lockcheck/lockcheck/history"
	"github.com/lockcheck/lockcheck/lockers"
)

// Workload shapes what each client does: pick a key, acquire, hold, release,
// think, repeat.
type Workload struct {
	// Name is one of history.Workload*: what the critical section does.
	Name string
	Keys int
	// Rate is each client's mean number of cycles started per second; 0
	// means back to back.
	Rate float64
	// HoldMin and HoldMax bound how long a holder keeps a lock.
	HoldMin, HoldMax time.Duration
	// AcquireTimeout bounds each Lock and Unlock call.
	AcquireTimeout time.Duration
}

// Config is one run.
type Config struct {
	Locker   LockerSpec
	Clients  int
	Duration time.Duration
	Workload Workload
	Faults   []faults.Kind
	// FaultPlan, when not empty, is the schedule to play in place of one
	// drawn from the seed (faults.Plan): a shrunk counterexample's exact
	// faults. Played one at a time, in order.
	FaultPlan []faults.Planned
	// FaultInterval is the mean quiet time between faults.
	FaultInterval time.Duration
	// FaultCoverage is history.FaultCoverageEach ("" too) or
	// history.FaultCoverageAny: how many requested kinds must run.
	FaultCoverage string
	// FaultMin and FaultMax, when positive, bound how long each fault
	// lasts instead of its kind's own bounds.
	FaultMin, FaultMax time.Duration
	// ClockStep is how far a clock jump moves a client's clock; zero
	// means three of the locker's (scaled) leases, or 5 s for a locker
	// without one.
	ClockStep time.Duration
	// ClockSpread, when positive, sets every client's clock off real time
	// for the whole run by a constant drawn from the seed in
	// [-ClockSpread, +ClockSpread]: machines whose clocks disagree.
	ClockSpread time.Duration
	// Proxy puts a proxy per client between it and a networked backend
	// even when no network fault is scheduled, so runs with and without
	// network faults pay the same hop.
	Proxy bool
	// RecoveryTimeout bounds each client's one acquisition in the
	// recovery phase.
	RecoveryTimeout time.Duration
	Seed            uint64
	// TimeScale scales the locker's own durations; see Params.
	TimeScale float64
	// GCSBucket runs GCS lockers against a real bucket; see Params.
	GCSBucket string
	// RedisAddrs runs Redis lockers against these servers; see Params.
	RedisAddrs []string
	// Backend is a backend name a locker's Setup may honour (Params.
	// Backend): "" for the locker's default, BackendRedisServer for
	// redis-server processes in place of embedded Redis; an external
	// worker's backend (BackendGCS, BackendRedis, BackendNone).
	Backend string
	// InMemory runs the backend in this process with no socket (the
	// simulation): the whole run can then go inside a testing/synctest
	// bubble, in virtual time. Goroutine clients only.
	InMemory bool
	// ClientsAs is ClientsAsGoroutines (the default when empty) or
	// ClientsAsProcesses.
	ClientsAs string
	// Worker starts one worker process; needed with ClientsAsProcesses.
	Worker worker.Command
	// Dir is where the run's files go; it must not exist yet.
	Dir string
	// Observers see every event as it is recorded (live progress).
	Observers []func(history.Event)
	// Log receives the run's diagnostics; nil discards them.
	Log lockers.Logger
}

// DrawFaultPlan is the fault schedule c's seed draws: the one a run
// without a FaultPlan plays.
func (c Config) DrawFaultPlan() []faults.Planned {
	return faults.Plan(c.Seed, c.Faults, c.PlanOptions())
}

// PlanOptions are the bounds c puts on a fault schedule: the window, the
// quiet time between faults, how long each kind may last.
func (c Config) PlanOptions() faults.PlanOptions {
	return faults.PlanOptions{
		Clients: c.Clients, Window: c.Duration, Interval: c.FaultInterval,
		MinDuration: c.FaultMin, MaxDuration: c.FaultMax, Lease: c.lease(),
	}
}

// Validate reports the first problem with c, naming what to fix.
func (c Config) Validate() error {
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	check(c.Locker.Name != "" && c.Locker.Setup != nil, "no locker chosen")
	check(c.Clients >= 1 && c.Clients <= history.MaxClients, "clients must be between 1 and %d, got %d", history.MaxClients, c.Clients)
	check(c.Workload.Keys >= 1 && c.Workload.Keys <= history.MaxKeys, "keys must be between 1 and %d, got %d", history.MaxKeys, c.Workload.Keys)
	check(c.Duration > 0 && c.Duration <= 24*time.Hour, "duration must be positive and at most 24h, got %v", c.Duration)
	check(c.Workload.Rate >= 0, "rate must not be negative, got %v", c.Workload.Rate)
	check(c.Workload.HoldMin >= 0 && c.Workload.HoldMax >= c.Workload.HoldMin, "hold range %v..%v is empty or negative", c.Workload.HoldMin, c.Workload.HoldMax)
	check(c.Workload.AcquireTimeout > 0, "acquire timeout must be positive, got %v", c.Workload.AcquireTimeout)
	check(c.RecoveryTimeout > 0, "recovery timeout must be positive, got %v", c.RecoveryTimeout)
	check(len(c.Faults) == 0 || c.FaultInterval > 0, "fault interval must be positive when faults are on, got %v", c.FaultInterval)
	check(c.TimeScale > 0 && c.TimeScale <= 100, "time scale must be in (0, 100], got %v", c.TimeScale)
	check(c.FaultMin >= 0 && (c.FaultMax == 0 || c.FaultMax >= c.FaultMin), "fault duration range %v..%v is empty or negative", c.FaultMin, c.FaultMax)
	for i, p := range c.FaultPlan {
		inRange := len(p.Clients) > 0
		for _, cl := range p.Clients {
			inRange = inRange && cl >= 0 && cl < c.Clients
		}
		check(p.Kind.Inject != nil && inRange && p.At >= 0 && p.Duration > 0 && p.At+p.Duration <= c.Duration,
			"fault plan entry %d (%s at %v for %v on %v) must name a fault, clients 0..%d, and end by the run's end %v", i, p.Kind.Name, p.At, p.Duration, p.Clients, c.Clients-1, c.Duration)
	}
	check(c.FaultCoverage == "" || c.FaultCoverage == history.FaultCoverageEach || c.FaultCoverage == history.FaultCoverageAny, "fault coverage must be %q or %q, got %q", history.FaultCoverageEach, history.FaultCoverageAny, c.FaultCoverage)
	check(c.ClockStep >= 0 && c.ClockSpread >= 0, "clock step %v and clock spread %v must not be negative", c.ClockStep, c.ClockSpread)
	check(slices.Contains(Workloads(), c.Workload.Name), "unknown workload %q; known workloads: %s", c.Workload.Name, strings.Join(Workloads(), ", "))
	check(c.ClientsAs == "" || c.ClientsAs == ClientsAsGoroutines || c.ClientsAs == ClientsAsProcesses, "clients-as must be %q or %q, got %q", ClientsAsGoroutines, ClientsAsProcesses, c.ClientsAs)
	check(c.ClientsAs != ClientsAsProcesses || c.Worker.Path != "", "process clients need the worker command to start")
	check(c.Dir != "", "no output directory")
	check(!c.InMemory || !c.processes(), "a simulated run has no processes: its clients are goroutines in virtual time")
	return errors.Join(errs...)
}

// How clients run: as goroutines in the harness, or each as a `verify
// worker` child process that gets real signals.
const (
	ClientsAsGoroutines = "goroutine"
	ClientsAsProcesses  = "process"
)

// Backend names, as scenarios and flags give them.
const (
	BackendRedisServer = "redis-server"
	BackendGCS         = "gcs"
	BackendRedis       = "redis"
	BackendNone        = "none"
)

// Workloads lists the workload names a run accepts.
func Workloads() []string {
	return []string{history.WorkloadMutex, history.WorkloadRegister, history.WorkloadFencedRegister, history.WorkloadRequestRelease}
}

func (c Config) processes() bool { return c.ClientsAs == ClientsAsProcesses }

// Info is the run as its history's header describes it: what ran, and
// the settings that decide what it tested.
func (c Config) Info() history.RunInfo {
	info := history.RunInfo{
		ID:              filepath.Base(c.Dir),
		Locker:          c.Locker.Name,
		Workload:        c.Workload.Name,
		Seed:            c.Seed,
		Clients:         c.Clients,
		Keys:            c.Workload.Keys,
		Duration:        history.Duration(c.Duration),
		Faults:          faultNames(c.Faults),
		Fencing:         c.Locker.Fencing,
		LostNotice:      c.Locker.LostNotice,
		TimeScale:       c.TimeScale,
		ClientsAs:       cmp.Or(c.ClientsAs, ClientsAsGoroutines),
		Lease:           history.Duration(c.lease()),
		FaultMin:        history.Duration(c.FaultMin),
		FaultMax:        history.Duration(c.FaultMax),
		RecoveryTimeout: history.Duration(c.RecoveryTimeout),
	}
	if len(c.Faults) > 0 {
		info.FaultInterval = history.Duration(c.FaultInterval)
		info.FaultCoverage = cmp.Or(c.FaultCoverage, history.FaultCoverageEach)
	}
	return info
}

// lease is the locker's lease as this run scales it; 0 without one.
func (c Config) lease() time.Duration {
	return time.Duration(float64(c.Locker.TTL) * c.TimeScale)
}

// clockStep is ClockStep, or its default: three leases.
func (c Config) clockStep() time.Duration {
	switch {
	case c.ClockStep > 0:
		return c.ClockStep
	case c.Locker.TTL > 0:
		return 3 * c.lease()
	}
	return 5 * time.Second
}

// recordClock puts where c's clock stands into the history.
func (r *run) recordClock(c *client) {
	skew, rate := c.machine.State()
	r.rec.record(nemesisEvent(history.Clock, history.ClockChange{Client: c.slot, Skew: history.Duration(skew), Drift: rate}))
}

// ErrFaultNotApplicable refuses a run whose faults need something the
// locker's backend does not have (a network, an HTTP front, several
// servers). Nothing is written for a refused run.
var ErrFaultNotApplicable = faults.ErrNotApplicable

// Outcome is what a run left behind.
type Outcome struct {
	Dir         string
	HistoryPath string
	Header      history.Header
	// Interrupted is set when ctx ended before the run finished: the
	// history holds what happened until then, faults healed, and no
	// recovery phase.
	Interrupted bool
	// Unfinished lists clients whose last call had not returned when the
	// harness stopped waiting for them.
	Unfinished []int
	// WorkerPIDs are the operating-system processes of process clients,
	// every incarnation's, in the order they started; all are reaped by
	// the time Run returns.
	WorkerPIDs []int
}

type run struct {
	cfg       Config
	rec       *Recorder
	recording atomic.Bool // rec is set; server faults may be recorded
	inst      *Instance
	// stopWork is closed when the workload phase ends.
	stopWork chan struct{}
	// workerPIDs are every worker process started, under mu.
	workerPIDs []int
	// procs are every worker process started, with their clients, under
	// mu.
	procs []workerProc
	// gates are every incarnation's gate, under mu.
	gates []*gate
	// startFailure is why a client's first worker would not start: the
	// run then ends before its workload.
	startFailure error
	newLocker    func(lockers.Env) (lockers.Locker, error)
	log          lockers.Logger
	processes    atomic.Int64
	clients      []*client
	target       faults.Target

	// plane is the per-client proxy plane (a proxy per client per
	// backend), nil when clients reach the backends directly (or they
	// are in-process).
	plane      Plane
	mu         sync.Mutex
	transports []*http.Transport
	// closers are the lockers that hold resources (connection pools,
	// subscriptions), closed when the run is over, dead incarnations'
	// included.
	closers []io.Closer
	// ctx is the parent of every incarnation's context; it ends when the
	// run is over, so no client outlives its run.
	ctx context.Context
}

func (r *run) newProcess() history.Process {
	return history.Process(r.processes.Add(1) - 1)
}

// NewRunID names a run after its start time, locker and seed, so a
// directory listing reads as a log.
func NewRunID(start time.Time, locker string, seed uint64) string {
	return fmt.Sprintf("%s-%s-s%d", start.UTC().Format("20060102-150405.000"), locker, seed)
}

// claimRunDir makes the run's directory: dir, or dir-2, dir-3, … when a
// run of the same name already has it (two runs of one locker and seed
// started in the same millisecond, by parallel tests or by two processes
// writing to one results directory). Mkdir is the claim, so two claimants
// never share one.
func claimRunDir(dir string) (string, error) {
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return "", fmt.Errorf("results directory: %w", err)
	}
	const tries = 100
	for i := 1; i <= tries; i++ {
		d := dir
		if i > 1 {
			d = fmt.Sprintf("%s-%d", dir, i)
		}
		err := os.Mkdir(d, 0o755)
		if err == nil {
			return d, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return "", fmt.Errorf("run directory: %w", err)
		}
	}
	return "", fmt.Errorf("run directory: %s and %d numbered variants of it exist already; choose another output directory", dir, tries-1)
}

// Run executes cfg. The history is written as the run goes, so whatever
// happens it holds every event recorded before. An error means the run
// could not be set up or its history could not be written.
func Run(ctx context.Context, cfg Config) (*Outcome, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	// The directory is claimed first, so the run's ID (the backend's
	// prefix too) is its final name; a run refused before it starts
	// removes it again, leaving nothing behind.
	dir, err := claimRunDir(cfg.Dir)
	if err != nil {
		return nil, err
	}
	cfg.Dir = dir
	started := false
	defer func() {
		if !started {
			_ = os.Remove(dir) // empty unless the run began
		}
	}()
	r := &run{cfg: cfg}
	server := serverfault.New(serverfault.Options{Seed: cfg.Seed ^ 0x5e7fa17, OnEvent: r.recordServerFault})
	setupCtx, cancelSetup := context.WithTimeout(ctx, time.Minute)
	inst, err := cfg.Locker.Setup(setupCtx, Params{TimeScale: cfg.TimeScale, ServerFront: server.Wrap, OnWrite: r.recordWrite, GCSBucket: cfg.GCSBucket, RedisAddrs: cfg.RedisAddrs, Backend: cfg.Backend, RunID: filepath.Base(cfg.Dir),
		InMemory: cfg.InMemory, Clients: cfg.Clients, Seed: cfg.Seed})
	cancelSetup()
	if err != nil {
		return nil, fmt.Errorf("locker %s: setup: %w", cfg.Locker.Name, err)
	}
	defer inst.Close()
	if cfg.registers() && inst.Register == nil {
		return nil, fmt.Errorf("locker %s has no store for the %s workload; choose the mutex workload", cfg.Locker.Name, cfg.Workload.Name)
	}
	if inst.New == nil && !cfg.processes() {
		return nil, fmt.Errorf("locker %s runs only as worker processes (an external worker); run its clients as processes", cfg.Locker.Name)
	}
	if cfg.processes() && !inst.Attach.Networked() && cfg.Backend != BackendNone {
		return nil, fmt.Errorf("%w: process clients need a backend another process can reach, and locker %s keeps its state inside the harness; choose a GCS or Redis locker, or goroutine clients", ErrFaultNotApplicable, cfg.Locker.Name)
	}
	target := faults.Target{ClockStep: cfg.clockStep(), LateBy: 3 * cmp.Or(cfg.lease(), time.Second)}
	if inst.ServerFront {
		target.Server = server
	}
	if err := r.attachNetwork(ctx, inst, &target); err != nil {
		return nil, err
	}
	defer r.closeNetwork()
	for _, k := range cfg.Faults {
		if err := k.Applicable(target, len(inst.Upstreams), cfg.Locker.Name); err != nil {
			return nil, err
		}
	}

	out := &Outcome{Dir: cfg.Dir, HistoryPath: filepath.Join(cfg.Dir, "history.jsonl")}
	f, err := os.OpenFile(out.HistoryPath, os.O_CREATE|os.O_EXCL|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	started = true
	defer f.Close()

	start := time.Now()
	out.Header = history.Header{Start: start, Run: cfg.Info()}
	w, err := history.NewWriter(f, out.Header)
	if err != nil {
		return nil, err
	}
	log := cfg.Log
	if log == nil {
		log = discard{}
	}
	r.rec = newRecorder(w, start, cfg.Observers, cfg.InMemory)
	r.recording.Store(true)
	r.inst = inst
	r.newLocker = inst.New
	r.log = log
	r.target = target
	defer r.closeTransports()
	r.execute(ctx, out)
	// Before the outcome is read: every worker process is reaped by then.
	r.closeLockers()
	if cfg.InMemory {
		r.buryTheDead()
	}
	r.mu.Lock()
	out.WorkerPIDs = r.workerPIDs
	r.mu.Unlock()
	workerErr := r.startFailure
	if workerErr == nil {
		workerErr = r.workerFailures()
	}
	if err := r.rec.Err(); err != nil {
		return out, errors.Join(err, workerErr)
	}
	return out, errors.Join(workerErr, f.Sync())
}

func (r *run) execute(ctx context.Context, out *Outcome) {
	var stopClients context.CancelFunc
	r.ctx, stopClients = context.WithCancel(context.Background())
	defer stopClients() // ends every incarnation's context, last of all
	r.stopWork = make(chan struct{})
	for slot := range r.cfg.Clients {
		r.clients = append(r.clients, &client{slot: slot, run: r, machine: newMachineClock()})
	}
	if spread := r.cfg.ClockSpread; spread > 0 {
		// Each machine keeps its own constant offset all run long.
		rng := rand.New(rand.NewPCG(r.cfg.Seed, 0xc10c))
		for _, c := range r.clients {
			c.machine.Shift(time.Duration(rng.Int64N(int64(2*spread)+1)) - spread)
			r.recordClock(c)
		}
	}
	for _, c := range r.clients {
		if err := c.start(); err != nil {
			r.log.Logf("%v", err)
			if r.cfg.processes() {
				// A worker that will not start will not start for the
				// next client either: say so now, not after a run of
				// clients that never called.
				r.startFailure = fmt.Errorf("%w: %s: %w", ErrWorker, r.cfg.Worker, err)
				return
			}
			out.Unfinished = append(out.Unfinished, c.slot)
			continue
		}
	}
	stopWork := r.stopWork
	for _, c := range r.clients {
		if inc := c.current(); inc != nil {
			go func() {
				r.stagger(c.slot)
				c.work(inc, stopWork)
			}()
		}
	}

	nem := &nemesis{run: r, stopWork: stopWork, rng: rand.New(rand.NewPCG(r.cfg.Seed, 0x401de5))}
	plan := r.cfg.FaultPlan
	if len(plan) == 0 {
		plan = r.cfg.DrawFaultPlan()
	}
	nemDone := make(chan struct{})
	nemCtx, stopNemesis := context.WithCancel(ctx)
	go func() { defer close(nemDone); nem.play(nemCtx, plan) }()

	select {
	case <-time.After(r.cfg.Duration):
	case <-ctx.Done():
		out.Interrupted = true
	}
	stopNemesis()
	<-nemDone
	nem.healAll()
	close(stopWork)
	out.Unfinished = append(out.Unfinished, r.waitForClients(ctx)...)
	if out.Interrupted || ctx.Err() != nil {
		r.interrupted(out)
		return
	}
	if r.recover(ctx) && len(out.Unfinished) == 0 {
		r.readFinals(ctx)
	} else if r.registers() {
		r.log.Logf("a client was still inside a call when the run ended; the registers' final values would not be final, so none is recorded")
	}
	if ctx.Err() != nil {
		r.interrupted(out)
	}
}

// interrupted records that the run was cut short: the history then says
// so itself, and whoever checks it later knows its verdict covers only
// part of the run.
func (r *run) interrupted(out *Outcome) {
	out.Interrupted = true
	r.rec.record(nemesisEvent(history.Interrupted, nil))
}

func (r *run) registers() bool { return r.cfg.registers() }

func (r *run) keepGate(g *gate) {
	r.mu.Lock()
	r.gates = append(r.gates, g)
	r.mu.Unlock()
}

// simDrain is how long a simulated run waits, in virtual time, for the
// goroutines of its dead clients to end once they are buried.
const simDrain = time.Minute

// buryTheDead ends a simulated run: its history is complete, and a
// testing/synctest bubble ends only when every goroutine in it has
// returned, so the dead clients' goroutines are let run to their end.
func (r *run) buryTheDead() {
	r.mu.Lock()
	gates := r.gates
	r.mu.Unlock()
	for _, g := range gates {
		g.bury()
	}
	time.Sleep(simDrain)
}

// stagger sets clients that start together a microsecond apart, in slot
// order, in a simulated run: in virtual time they would start at one
// instant, and their order would be the Go scheduler's, not the seed's.
// A live run starts them as they come.
func (r *run) stagger(slot int) {
	if r.cfg.InMemory {
		time.Sleep(time.Duration(slot+1) * time.Microsecond)
	}
}

// registers says the workload's critical sections work on a register.
func (c Config) registers() bool {
	return c.Workload.Name == history.WorkloadRegister || c.Workload.Name == history.WorkloadFencedRegister
}

// readFinals records each register's value once every client is done, for
// the lost-update check. Read by the harness itself, on a connection no
// fault touches. A register that cannot be read gets no final event, and
// the check then says it could not tell.
func (r *run) readFinals(ctx context.Context) {
	if !r.registers() {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, finalReadsWithin)
	defer cancel()
	var d net.Dialer
	env := lockers.Env{Clock: lockers.SystemClock{}, HTTP: &http.Client{}, Dial: d.DialContext, Identity: "harness", Log: r.log}
	if r.inst.Links != nil {
		// The harness's own path, which no fault touches.
		link := r.inst.Links(HarnessLink)
		env.HTTP, env.Dial = &http.Client{Transport: link.HTTP}, link.Dial
	}
	store, err := r.inst.Register(ctx, env, r.cfg.Workload.Name == history.WorkloadFencedRegister)
	if err != nil {
		r.log.Logf("final values: %v", err)
		return
	}
	if c, ok := store.(io.Closer); ok {
		defer c.Close()
	}
	for i := range r.cfg.Workload.Keys {
		key := keyName(i)
		v, err := store.Final(ctx, key)
		if err != nil {
			r.log.Logf("final value of %s: %v", key, err)
			continue
		}
		e := nemesisEvent(history.Final, nil)
		e.Key, e.Value = key, jsonInt(v)
		r.rec.record(e)
	}
}

// finalReadsWithin bounds reading every register's final value.
const finalReadsWithin = 30 * time.Second

// waitForClients waits for every live client to finish its current cycle,
// for at most as long as a cycle can legitimately take.
func (r *run) waitForClients(ctx context.Context) []int {
	w := r.cfg.Workload
	limit := time.After(2*w.AcquireTimeout + w.HoldMax + 5*time.Second)
	var unfinished []int
	for _, c := range r.clients {
		inc := c.current()
		if inc == nil {
			continue
		}
		select {
		case <-inc.exited:
		case <-limit:
			unfinished = append(unfinished, c.slot)
			r.log.Logf("client %d: still inside a call when the run stopped waiting", c.slot)
		case <-ctx.Done():
			return append(unfinished, c.slot)
		}
	}
	return unfinished
}

// recoveryRetryPause spaces a client's tries in the recovery phase, and
// maxRecoveryTries bounds them.
const (
	recoveryRetryPause = 50 * time.Millisecond
	maxRecoveryTries   = 1000
)

// recover runs the recovery phase: with every fault healed, each client
// tries until it has acquired once (on keys spread over the key space) and
// released, or RecoveryTimeout has passed. A locker whose Lock fails fast
// on a stale connection is retried, as its user would; one that stays
// wedged is stuck. It reports whether every client came back from the
// phase (false: some are still inside a call).
func (r *run) recover(ctx context.Context) bool {
	r.rec.record(nemesisEvent(history.Recovery, nil))
	var wg sync.WaitGroup
	for _, c := range r.clients {
		inc := c.current()
		if inc == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.stagger(c.slot)
			deadline := time.Now().Add(r.cfg.RecoveryTimeout)
			for range maxRecoveryTries {
				left := time.Until(deadline)
				if left <= 0 || c.cycle(inc, keyName(c.slot%r.cfg.Workload.Keys), left, r.cfg.Workload.HoldMin) || inc.gate.isDead() {
					return
				}
				select {
				case <-time.After(min(recoveryRetryPause, left)):
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-ctx.Done():
	case <-time.After(2*r.cfg.RecoveryTimeout + r.cfg.Workload.HoldMin + 5*time.Second):
		r.log.Logf("recovery phase: some clients still inside a call when the run stopped waiting")
	}
	return false
}

func faultNames(kinds []faults.Kind) []string {
	names := []string{}
	for _, k := range kinds {
		names = append(names, k.Name)
	}
	return names
}

func nemesisEvent(f string, value any) history.Event {
	e := history.Event{Process: history.Nemesis, Client: -1, Type: history.Info, F: f}
	if value != nil {
		e.Value, _ = json.Marshal(value)
	}
	return e
}

type discard struct{}

func (discard) Logf(string, ...any) {}
