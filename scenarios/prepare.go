package scenarios

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/lockcheck/lockcheck/faults"
	"github.com/lockcheck/lockcheck/harness"
	"github.com/lockcheck/lockcheck/harness/worker"
	"github.com/lockcheck/lockcheck/history"
)

// Defaults filled by Normalize: those of the comparison tables, so a
// scenario that names only a locker and faults runs as a table cell did.
const (
	DefaultClients         = 8
	DefaultKeys            = 2
	DefaultDuration        = 8 * time.Second
	DefaultRate            = 20.0
	DefaultHoldMax         = 50 * time.Millisecond
	DefaultAcquireTimeout  = 5 * time.Second
	DefaultFaultInterval   = time.Second
	DefaultRecoveryTimeout = 10 * time.Second
	DefaultCheckTimeout    = time.Minute
	// DefaultTTL is the lease a locker with one is scaled to when the
	// spec gives neither ttl nor time_scale. Published leases run from 5 s
	// to 300 s; at 1 s every lease locker sees the same fault durations
	// (the tables' "2.5 leases" is 2.5s), and an 8 s run holds many
	// leases. Lockers without a lease run as published.
	DefaultTTL = time.Second
)

// Backends a spec can name. BackendRedisServer runs a Redis locker
// against redis-server processes started for the run (three for redlock,
// one for the other Redis lockers) instead of the embedded miniredis. An
// external worker names the backend the harness starts for it: the
// embedded GCS, embedded Redis, a redis-server, or none (the worker
// brings its own, and no network or server fault can reach it).
const (
	BackendRedisServer = harness.BackendRedisServer
	BackendGCS         = harness.BackendGCS
	BackendRedis       = harness.BackendRedis
	BackendNone        = harness.BackendNone
)

// workerBackends are the backends an external worker may name.
var workerBackends = []string{BackendGCS, BackendRedis, BackendRedisServer, BackendNone}

// Resolve finds the locker a spec runs: a built-in one by name, or the
// external worker the spec names, on its backend. The command line's
// resolver knows the built-in catalog; the Go API's knows the caller's
// own locker. It is given a spec whose defaults may not be filled yet.
type Resolve func(s Spec) (harness.LockerSpec, error)

// DefaultWorkerLocker names an external worker's locker in reports when
// the spec gives no name.
const DefaultWorkerLocker = "worker"

// RecordFile is the name of the spec a run directory records: the spec
// that made it, with seeds = [the seed used].
const RecordFile = "scenario.json"

// MaxAttempts bounds Spec.Attempts: a defect that a live scenario shows on
// fewer than one run in five is a scenario to make more certain.
const MaxAttempts = 5

// Normalize fills s's defaults (see the Default constants) and validates
// it, naming the scenario and the field to fix. resolve finds its locker.
func (s Spec) Normalize(resolve Resolve) (Spec, error) {
	name := s.Name
	if name == "" {
		name = "(unnamed)"
	}
	var zero Duration
	fill := func(d *Duration, v time.Duration) {
		if *d == zero {
			*d = Duration(v)
		}
	}
	if s.Workload == "" {
		s.Workload = history.WorkloadMutex
	}
	if s.Sim && s.ClientsAs == harness.ClientsAsProcesses {
		errs := fmt.Errorf("scenario %s: clients_as: a simulated run's clients are goroutines in virtual time, not processes", name)
		return s, errs
	}
	if len(s.Worker) > 0 {
		if s.Locker == "" {
			s.Locker = DefaultWorkerLocker
		}
		if s.ClientsAs == "" {
			s.ClientsAs = harness.ClientsAsProcesses
		}
	}
	if s.ClientsAs == "" {
		s.ClientsAs = harness.ClientsAsGoroutines
	}
	if strings.TrimSpace(s.Expect.Verdict) == "" && strings.TrimSpace(s.Expect.Reason) == "" {
		// A spec written for one run, not for a suite: a lock must keep
		// its promise, so anything but valid is a finding.
		s.Expect = Expect{Verdict: ExpectValid, Reason: DefaultExpectReason}
	}
	if s.Clients == 0 {
		s.Clients = DefaultClients
	}
	if len(s.Seeds) == 0 {
		s.Seeds = []uint64{1}
	}
	if s.Keys == 0 {
		s.Keys = DefaultKeys
	}
	fill(&s.Duration, DefaultDuration)
	if s.Rate == nil {
		r := DefaultRate
		s.Rate = &r
	}
	fill(&s.HoldMax, DefaultHoldMax)
	fill(&s.AcquireTimeout, DefaultAcquireTimeout)
	fill(&s.FaultInterval, DefaultFaultInterval)
	fill(&s.RecoveryTimeout, DefaultRecoveryTimeout)
	fill(&s.CheckTimeout, DefaultCheckTimeout)
	if l, err := resolve(s); err == nil && l.TTL > 0 && s.TTL == 0 && s.TimeScale == 0 {
		s.TTL = Duration(DefaultTTL)
	}
	if err := s.Validate(resolve); err != nil {
		return s, fmt.Errorf("scenario %s: %w", name, err)
	}
	return s, nil
}

// Validate reports every problem of a spec whose defaults are filled,
// each naming its field. resolve finds its locker.
func (s Spec) Validate(resolve Resolve) error {
	var errs []error
	add := func(field string, err error) {
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", field, err))
		}
	}
	if _, err := resolve(s); err != nil {
		field := "locker"
		if len(s.Worker) > 0 {
			field = "worker"
		}
		add(field, err)
	}
	switch {
	case len(s.Worker) > 0:
		if strings.TrimSpace(s.Worker[0]) == "" {
			add("worker", errors.New("the command is empty; give the program to run first, e.g. [\"node\", \"workers/node/worker.js\"]"))
		}
		if !slices.Contains(workerBackends, s.Backend) {
			add("backend", fmt.Errorf("%q: an external worker needs the backend the harness starts for it, one of %s", s.Backend, strings.Join(workerBackends, ", ")))
		}
		if s.ClientsAs != harness.ClientsAsProcesses {
			add("clients_as", fmt.Errorf("%q: an external worker runs every client as a process; drop clients_as or give %q", s.ClientsAs, harness.ClientsAsProcesses))
		}
		if s.TTL != 0 {
			add("ttl", errors.New("an external worker's lease is unknown to the harness, so no ttl can be scaled to; give time_scale, which the worker gets in its hello"))
		}
		if s.GCSBucket != "" || len(s.RedisAddrs) > 0 {
			add("backend", errors.New("an external worker runs on the backend the harness starts (gcs, redis, redis-server or none); drop gcs_bucket and redis_addrs"))
		}
	case s.Sim && (s.Backend != "" || s.GCSBucket != "" || len(s.RedisAddrs) > 0):
		add("sim", errors.New("a simulated run keeps its backend in memory; drop backend, gcs_bucket and redis_addrs"))
	case s.Backend == "":
	case s.Backend == BackendRedisServer:
		if _, ok := redisServers[s.Locker]; !ok {
			add("backend", fmt.Errorf("%q runs Redis lockers only (%s), not %s", s.Backend, strings.Join(redisLockers(), ", "), s.Locker))
		}
		if len(s.RedisAddrs) > 0 {
			add("backend", fmt.Errorf("%q starts its own servers; drop redis_addrs", s.Backend))
		}
	case slices.Contains(workerBackends, s.Backend):
		add("backend", fmt.Errorf("%q is for an external worker (worker, or -worker on the command line); a built-in locker runs on its own backend: drop backend, or give %q for a Redis locker", s.Backend, BackendRedisServer))
	default:
		add("backend", fmt.Errorf("unknown backend %q; want \"\" (the locker's embedded one) or %q", s.Backend, BackendRedisServer))
	}
	if !slices.Contains(harness.Workloads(), s.Workload) {
		add("workload", fmt.Errorf("unknown workload %q; known workloads: %s", s.Workload, strings.Join(harness.Workloads(), ", ")))
	}
	if _, err := faults.Lookup(s.Faults); err != nil {
		add("faults", err)
	}
	if _, _, err := ParseFaultDuration(s.FaultDuration); err != nil {
		add("fault_duration", err)
	}
	if c := s.FaultCoverage; c != "" && c != history.FaultCoverageEach && c != history.FaultCoverageAny {
		add("fault_coverage", fmt.Errorf("%q: want %q (every kind must run) or %q (one is enough)", c, history.FaultCoverageEach, history.FaultCoverageAny))
	}
	add("fault_plan", s.validatePlan())
	if s.TTL < 0 {
		add("ttl", fmt.Errorf("%v: want a positive duration", time.Duration(s.TTL)))
	}
	if s.TTL != 0 && s.TimeScale != 0 && s.TimeScale != 1 {
		add("ttl", errors.New("ttl and time_scale both set; give one: ttl picks the time scale that makes the locker's lease that long"))
	}
	if s.TimeScale < 0 || s.TimeScale > 100 {
		add("time_scale", fmt.Errorf("%v: want (0, 100], or 0 for the default", s.TimeScale))
	}
	for _, a := range s.RedisAddrs {
		if _, _, err := net.SplitHostPort(a); err != nil {
			add("redis_addrs", fmt.Errorf("%q: want host:port: %w", a, err))
		}
	}
	if s.CheckTimeout <= 0 {
		add("check_timeout", fmt.Errorf("%v: want a positive duration", time.Duration(s.CheckTimeout)))
	}
	if len(s.Seeds) == 0 {
		add("seeds", errors.New("none; give at least one nonzero seed, e.g. [1]"))
	}
	for i, seed := range s.Seeds {
		if seed == 0 || seed > 1<<63-1 {
			add("seeds", fmt.Errorf("%d: want 1..2^63-1 (0 means \"pick one\" on the command line, not a seed)", seed))
		}
		if slices.Contains(s.Seeds[:i], seed) {
			// A seed fixes the run, and a run's directory is named after it.
			add("seeds", fmt.Errorf("%d is listed twice; each seed runs once (run the suite again to repeat it)", seed))
		}
	}
	switch {
	case s.Attempts < 0 || s.Attempts > MaxAttempts:
		add("attempts", fmt.Errorf("%d: want 1..%d, or 0 for one", s.Attempts, MaxAttempts))
	case s.Attempts > 1 && s.Sim:
		add("attempts", errors.New("a simulated run repeats its history exactly, so another attempt cannot differ; drop attempts"))
	case s.Attempts > 1 && s.Expect.Verdict != ExpectInvalid:
		add("attempts", fmt.Errorf("only a scenario expected invalid may take attempts (one violation is enough to fail one expected %s); drop attempts", s.Expect.Verdict))
	}
	switch s.Expect.Verdict {
	case ExpectValid, ExpectInvalid, ExpectEither:
	default:
		add("expect.verdict", fmt.Errorf("%q: want %q, %q or %q", s.Expect.Verdict, ExpectValid, ExpectInvalid, ExpectEither))
	}
	if strings.TrimSpace(s.Expect.Reason) == "" {
		add("expect.reason", errors.New("empty; say why the verdict is expected (the step of the algorithm, or the measurement)"))
	}
	// The numeric ranges are the harness's; checking them here names
	// the scenario before any run starts.
	if len(errs) == 0 {
		cfg, err := s.config(resolve, s.seedOr(1), "-", nil)
		if err == nil {
			err = cfg.Validate()
		}
		add("settings", err)
	}
	return errors.Join(errs...)
}

// validatePlan checks a FaultPlan against the rest of the spec.
func (s Spec) validatePlan() error {
	var errs []error
	var prevEnd Duration
	for i, f := range s.FaultPlan {
		bad := func(format string, args ...any) {
			errs = append(errs, fmt.Errorf("[%d] (%s at %v): %s", i, f.Kind, time.Duration(f.At), fmt.Sprintf(format, args...)))
		}
		if !slices.Contains(s.Faults, f.Kind) {
			bad("kind %q is not in faults %v; list every kind the plan uses there", f.Kind, s.Faults)
		}
		if f.Client < 0 || f.Client >= s.Clients {
			bad("client %d: want 0..%d (clients is %d)", f.Client, s.Clients-1, s.Clients)
		}
		if f.At < 0 || f.Duration <= 0 {
			bad("at %v, duration %v: want at >= 0 and a positive duration", time.Duration(f.At), time.Duration(f.Duration))
		}
		if f.At+f.Duration > s.Duration {
			bad("ends at %v, after the run's duration %v", time.Duration(f.At+f.Duration), time.Duration(s.Duration))
		}
		if f.At < prevEnd {
			bad("starts before the fault before it ends (%v); faults are played one at a time, in order", time.Duration(prevEnd))
		}
		prevEnd = f.At + f.Duration
	}
	return errors.Join(errs...)
}

func (s Spec) seedOr(d uint64) uint64 {
	if len(s.Seeds) > 0 && s.Seeds[0] != 0 {
		return s.Seeds[0]
	}
	return d
}

// redisServers is how many independent servers each Redis locker talks
// to, for BackendRedisServer.
var redisServers = map[string]int{"redis": 1, "redislock": 1, "redsync": 1, "redlock": 3}

func redisLockers() []string {
	var out []string
	for n := range redisServers {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// Prepare builds the harness configuration of one run of s (normalized or
// validated) with seed, into the run directory dir (which harness.Run
// creates). resolve finds its locker; worker is called only for process
// clients of a built-in locker. The configuration records s, with seeds =
// [seed], as dir/scenario.json as soon as the run records its first event,
// so a run that crashes or is interrupted still says what it was.
func Prepare(s Spec, resolve Resolve, seed uint64, dir string, worker func() (worker.Command, error)) (harness.Config, error) {
	if seed == 0 {
		return harness.Config{}, errors.New("seed 0: want a nonzero seed (pick one before preparing)")
	}
	cfg, err := s.config(resolve, seed, dir, worker)
	if err != nil {
		return harness.Config{}, err
	}
	if err := cfg.Validate(); err != nil {
		return harness.Config{}, err
	}
	rec := s
	rec.Seeds = []uint64{seed}
	var once sync.Once
	cfg.Observers = append(cfg.Observers, func(history.Event) {
		// An error here shows again, and is returned, when the caller
		// calls WriteRecord after the run.
		once.Do(func() { WriteRecord(dir, rec) })
	})
	return cfg, nil
}

// config converts s to a harness configuration without starting anything.
func (s Spec) config(resolve Resolve, seed uint64, dir string, worker func() (worker.Command, error)) (harness.Config, error) {
	locker, err := resolve(s)
	if err != nil {
		return harness.Config{}, fmt.Errorf("locker: %w", err)
	}
	kinds, err := faults.Lookup(s.Faults)
	if err != nil {
		return harness.Config{}, fmt.Errorf("faults: %w", err)
	}
	faultMin, faultMax, err := ParseFaultDuration(s.FaultDuration)
	if err != nil {
		return harness.Config{}, fmt.Errorf("fault_duration: %w", err)
	}
	timeScale := s.TimeScale
	if timeScale == 0 {
		timeScale = 1
	}
	if s.TTL > 0 && locker.TTL > 0 {
		timeScale = float64(s.TTL) / float64(locker.TTL)
	}
	var plan []faults.Planned
	for i, f := range s.FaultPlan {
		k, err := faults.Lookup([]string{f.Kind})
		if err != nil {
			return harness.Config{}, fmt.Errorf("fault_plan: %w", err)
		}
		plan = append(plan, faults.Planned{ID: i + 1, Kind: k[0], Clients: []int{f.Client}, At: time.Duration(f.At), Duration: time.Duration(f.Duration)})
	}
	rate := DefaultRate
	if s.Rate != nil {
		rate = *s.Rate
	}
	cfg := harness.Config{
		Locker:   locker,
		Clients:  s.Clients,
		Duration: time.Duration(s.Duration),
		Workload: harness.Workload{
			Name: s.Workload, Keys: s.Keys, Rate: rate,
			HoldMin: time.Duration(s.HoldMin), HoldMax: time.Duration(s.HoldMax), AcquireTimeout: time.Duration(s.AcquireTimeout),
		},
		Faults:          kinds,
		FaultPlan:       plan,
		FaultInterval:   time.Duration(s.FaultInterval),
		RecoveryTimeout: time.Duration(s.RecoveryTimeout),
		Seed:            seed,
		TimeScale:       timeScale,
		FaultMin:        faultMin,
		FaultMax:        faultMax,
		FaultCoverage:   s.FaultCoverage,
		RedisAddrs:      slices.Clone(s.RedisAddrs),
		ClockStep:       time.Duration(s.ClockStep),
		ClockSpread:     time.Duration(s.ClockSpread),
		Proxy:           s.Proxy,
		GCSBucket:       s.GCSBucket,
		ClientsAs:       s.ClientsAs,
		Backend:         s.Backend,
		InMemory:        s.Sim,
		Dir:             dir,
	}
	switch {
	case len(s.Worker) > 0:
		cfg.Worker = externalWorker(s.Worker)
	case cfg.ClientsAs == harness.ClientsAsProcesses:
		if worker == nil {
			// Validation only: the harness wants a path to be present.
			cfg.Worker.Path = "worker"
		} else if cfg.Worker, err = worker(); err != nil {
			return cfg, err
		}
	}
	return cfg, nil
}

// externalWorker is the command of an external worker: its program found
// on PATH (or relative to the working directory) when the run starts, so
// that a missing one is named before any client starts.
func externalWorker(argv []string) worker.Command {
	return worker.Command{Path: argv[0], Args: slices.Clone(argv[1:])}
}

// ParseFaultDuration reads fault_duration: "" (each fault's own range),
// "D" or "MIN-MAX".
func ParseFaultDuration(s string) (lo, hi time.Duration, err error) {
	if s = strings.TrimSpace(s); s == "" {
		return 0, 0, nil
	}
	a, b, isRange := strings.Cut(s, "-")
	if lo, err = time.ParseDuration(strings.TrimSpace(a)); err != nil {
		return 0, 0, fmt.Errorf("%q: want D or MIN-MAX, e.g. 3s or 500ms-2s", s)
	}
	hi = lo
	if isRange {
		if hi, err = time.ParseDuration(strings.TrimSpace(b)); err != nil {
			return 0, 0, fmt.Errorf("%q: want D or MIN-MAX, e.g. 3s or 500ms-2s", s)
		}
	}
	if lo <= 0 || hi < lo {
		return 0, 0, fmt.Errorf("%q: want 0 < MIN <= MAX", s)
	}
	return lo, hi, nil
}

// WriteRecord writes s as dir/scenario.json, unless it is there already.
func WriteRecord(dir string, s Spec) error {
	path := filepath.Join(dir, RecordFile)
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("%s: %w", RecordFile, err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if errors.Is(err, os.ErrExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s: %w", RecordFile, err)
	}
	_, err = f.Write(append(b, '\n'))
	return errors.Join(err, f.Close())
}

// ReadRecord reads the spec a run directory recorded.
func ReadRecord(dir string) (Spec, error) {
	b, err := os.ReadFile(filepath.Join(dir, RecordFile))
	if err != nil {
		return Spec{}, err
	}
	var s Spec
	if err := json.Unmarshal(b, &s); err != nil {
		return Spec{}, fmt.Errorf("%s: %w", filepath.Join(dir, RecordFile), err)
	}
	return s, nil
}
