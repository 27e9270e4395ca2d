// Package compare runs a set of lockers through a set of fault scenarios on
// the same seeds and lays the verdicts and figures side by side.
//
// Every locker in one comparison is scaled so its lease lasts the same
// time (Plan.TTL), and every fault that is meant to outlast a lease is
// given as a multiple of it, so "a pause longer than the TTL" means the
// same thing to a 12 s lock and a 300 s one. Lockers with no lease run as
// published.
package compare

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/lockcheck/lockcheck/faults"
	"github.com/lockcheck/lockcheck/harness"
	"github.com/lockcheck/lockcheck/harness/worker"
	"github.com/lockcheck/lockcheck/models"
	"github.com/lockcheck/lockcheck/runner"
	"github.com/lockcheck/lockcheck/scenarios"
)

// Scenario is one column of the comparison: a set of faults. The columns
// are scenario data, kept with the other scenarios.
type Scenario = scenarios.Column

// Scenarios are the standard columns.
func Scenarios() []Scenario { return scenarios.Columns() }

// DefaultScenarios are the columns of the standard comparison table, and
// DataScenarios those of the second one.
var (
	DefaultScenarios = scenarios.DefaultColumns
	DataScenarios    = scenarios.DataColumns
)

// LookupScenarios finds columns by name.
func LookupScenarios(names []string) ([]Scenario, error) { return scenarios.LookupColumns(names) }

// Plan is one comparison.
type Plan struct {
	Lockers   []harness.LockerSpec
	Scenarios []Scenario
	Seeds     []uint64
	// TTL is the lease every locker is scaled to.
	TTL time.Duration
	// Base is every run's scenario before the locker, faults, seed and
	// lease are filled in: clients, keys, duration, rate, timeouts.
	Base scenarios.Spec
	// Resolve finds each run's locker.
	Resolve scenarios.Resolve
	// Dir receives one run directory per cell and seed.
	Dir string
	// Parallel is how many runs go at once.
	Parallel int
	// Progress, when set, hears about every run as it ends.
	Progress func(done, total int, r Run)
	// Workers are the lockers of Lockers that run as external worker
	// processes, by name: their clients are processes in every scenario.
	Workers map[string]Worker
	// ProcessWorker is the command of a built-in locker's process clients
	// (the scenarios with Processes).
	ProcessWorker func() (worker.Command, error)
}

// Worker is an external worker's row: its command and the backend the
// harness starts for it.
type Worker struct {
	Argv    []string
	Backend string
}

// Run is one locker, scenario and seed.
type Run struct {
	Locker   string `json:"locker"`
	Scenario string `json:"scenario"`
	Seed     uint64 `json:"seed"`
	Dir      string `json:"dir,omitempty"`
	// NotApplicable says why the scenario's faults cannot act on this
	// locker (an in-process backend has no network to partition).
	NotApplicable string `json:"not_applicable,omitempty"`
	// Error is why the run could not be done or checked.
	Error   string         `json:"error,omitempty"`
	Verdict models.Verdict `json:"verdict"`
	// Cause, for an unknown verdict, is why; NoFaultRan says the run
	// asked for faults and none of them ran.
	Cause      string `json:"cause,omitempty"`
	NoFaultRan bool   `json:"no_fault_ran,omitempty"`
	// Figures are read off the run's report.
	Violations          int            `json:"mutex_violations"`
	Linearizable        models.Verdict `json:"linearizability"`
	AcquireP50          time.Duration  `json:"acquire_p50_ns"`
	AcquireP99          time.Duration  `json:"acquire_p99_ns"`
	HandOffP50          time.Duration  `json:"hand_off_p50_ns"`
	HandOffs            int            `json:"hand_offs"`
	HolderCrashes       int            `json:"holder_crashes"`
	CrashRecoveryP50    time.Duration  `json:"crash_recovery_p50_ns"`
	CrashNeverRecovered int            `json:"crash_never_recovered"`
	Stuck               int            `json:"stuck_clients"`
	// Liveness is the liveness verdict, apart from the safety one: a lock
	// that never lets go is safe and useless, and the cell says so.
	Liveness models.Verdict `json:"liveness"`
	// LivenessCounts says the liveness verdict counts as the run's
	// (runner.LivenessCounts), as it would in verify run.
	LivenessCounts bool `json:"liveness_counts,omitempty"`
	// Data-level figures, on register workloads: increments the store
	// acknowledged, how many of them the final value lacks, and the
	// calls a fenced store refused or (wrongly) accepted as stale.
	Increments    int   `json:"increments,omitempty"`
	LostUpdates   int64 `json:"lost_updates,omitempty"`
	DataChecked   bool  `json:"data_checked,omitempty"`
	StaleRefused  int   `json:"stale_refused,omitempty"`
	StaleAccepted int   `json:"stale_accepted,omitempty"`
	// Release requests, on the request-release workload: contended holds
	// whose holder was asked, those that ended without honouring the
	// request, and the median from the request to the next acquire.
	ReleaseContended  int           `json:"release_contended,omitempty"`
	ReleaseMissed     int           `json:"release_missed,omitempty"`
	ReleaseHandOffP50 time.Duration `json:"release_hand_off_p50_ns,omitempty"`
	Counterexample    string        `json:"counterexample,omitempty"`
	// CaughtBy names the safety checkers that found a violation: where a
	// control and its mutant are both invalid, which checks tell them
	// apart.
	CaughtBy []string      `json:"caught_by,omitempty"`
	Elapsed  time.Duration `json:"elapsed_ns"`
}

// Table is a finished (or interrupted) comparison.
type Table struct {
	TTL       time.Duration `json:"ttl_ns"`
	Seeds     []uint64      `json:"seeds"`
	Lockers   []string      `json:"lockers"`
	Scenarios []Scenario    `json:"scenarios"`
	Runs      []Run         `json:"runs"`
	// Interrupted is set when the comparison stopped before every run.
	Interrupted bool `json:"interrupted"`
	// Dir is the comparison's directory, which compare.md's links to each
	// run's report are relative to.
	Dir string `json:"dir,omitempty"`
}

// Execute runs every locker × scenario × seed, Parallel at a time. It
// returns the table of what ran even when ctx ends early.
func Execute(ctx context.Context, p Plan) (*Table, error) {
	if err := p.validate(); err != nil {
		return nil, err
	}
	t := &Table{TTL: p.TTL, Seeds: p.Seeds, Scenarios: p.Scenarios, Dir: p.Dir}
	for _, l := range p.Lockers {
		t.Lockers = append(t.Lockers, l.Name)
	}
	type job struct {
		locker   harness.LockerSpec
		scenario Scenario
		seed     uint64
	}
	var jobs []job
	for _, l := range p.Lockers {
		for _, s := range p.Scenarios {
			for _, seed := range p.Seeds {
				jobs = append(jobs, job{l, s, seed})
			}
		}
	}
	runs := make([]Run, len(jobs))
	next := make(chan int)
	var wg sync.WaitGroup
	var mu sync.Mutex
	done := 0
	for range p.Parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				j := jobs[i]
				r := p.runOne(ctx, j.locker, j.scenario, j.seed)
				mu.Lock()
				runs[i] = r
				done++
				if p.Progress != nil {
					p.Progress(done, len(jobs), r)
				}
				mu.Unlock()
			}
		}()
	}
feed:
	for i := range jobs {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	for _, r := range runs {
		if r.Locker != "" {
			t.Runs = append(t.Runs, r)
		}
	}
	t.Interrupted = len(t.Runs) < len(jobs) || ctx.Err() != nil
	return t, nil
}

func (p Plan) validate() error {
	var errs []error
	if len(p.Lockers) == 0 {
		errs = append(errs, errors.New("no lockers"))
	}
	if len(p.Scenarios) == 0 {
		errs = append(errs, errors.New("no scenarios"))
	}
	if len(p.Seeds) == 0 {
		errs = append(errs, errors.New("no seeds"))
	}
	if p.TTL <= 0 {
		errs = append(errs, fmt.Errorf("ttl %v: want a positive lease", p.TTL))
	}
	if p.Parallel < 1 || p.Parallel > 64 {
		errs = append(errs, fmt.Errorf("parallel %d: want 1..64", p.Parallel))
	}
	if p.Dir == "" || p.Resolve == nil {
		errs = append(errs, errors.New("no output directory or locker resolver"))
	}
	for _, s := range p.Scenarios {
		if _, err := faults.Lookup(s.Faults); err != nil {
			errs = append(errs, fmt.Errorf("scenario %s: %w", s.Name, err))
		}
	}
	return errors.Join(errs...)
}

// Spec is the scenario of one cell's seed: what verify replay runs again
// from its run directory's scenario.json.
func (p Plan) Spec(l harness.LockerSpec, sc Scenario, seed uint64) scenarios.Spec {
	s := p.Base
	s.Name = "compare/" + l.Name + "/" + sc.Name
	s.Summary = sc.Summary
	s.Locker, s.Faults, s.Seeds = l.Name, slices.Clone(sc.Faults), []uint64{seed}
	s.Expect = scenarios.Expect{Verdict: scenarios.ExpectEither, Reason: "a comparison cell: its verdict is what the comparison measures"}
	w, isWorker := p.Workers[l.Name]
	switch {
	case isWorker:
		// A worker's lease is its own: it runs as published.
		s.Worker, s.Backend, s.ClientsAs, s.TimeScale = slices.Clone(w.Argv), w.Backend, harness.ClientsAsProcesses, 1
	case l.TTL > 0:
		s.TTL, s.TimeScale = scenarios.Duration(p.TTL), 0
	default:
		s.TimeScale = 1
	}
	// Lengthened from the base's duration, or the default a zero one
	// stands for: a zero left here would become the room itself.
	s.Duration = scenarios.Duration(max(cmp.Or(time.Duration(s.Duration), scenarios.DefaultDuration), p.Room(sc)))
	sc.Apply(&s, p.TTL)
	return s
}

// Room is how long a run of column sc lasts at least (Column.Room).
func (p Plan) Room(sc Scenario) time.Duration {
	return sc.Room(p.TTL, time.Duration(p.Base.FaultInterval))
}

// runOne runs and checks one cell's seed through the one run path
// (runner.Run), so its directory is a run directory like any other:
// scenario.json included, for verify replay and verify report. A run
// refused because its faults cannot act on the locker is not applicable,
// not an error.
func (p Plan) runOne(ctx context.Context, l harness.LockerSpec, sc Scenario, seed uint64) (r Run) {
	r = Run{Locker: l.Name, Scenario: sc.Name, Seed: seed}
	start := time.Now()
	defer func() { r.Elapsed = time.Since(start) }()
	if p.Base.Sim && sc.Processes {
		r.NotApplicable, r.Verdict = "process clients cannot run in simulation, whose clients are goroutines in virtual time", models.Unknown
		return r
	}
	spec, err := p.Spec(l, sc, seed).Normalize(p.Resolve)
	if err != nil {
		r.Error, r.Verdict = err.Error(), models.Unknown
		return r
	}
	dir := filepath.Join(p.Dir, l.Name, sc.Name, fmt.Sprintf("s%d", seed))
	res, err := runner.Run(ctx, runner.Job{Spec: spec, Resolve: p.Resolve, Seed: seed, Dir: dir, Worker: p.ProcessWorker}, nil)
	if errors.Is(err, harness.ErrFaultNotApplicable) {
		r.NotApplicable = err.Error()
		r.Verdict = models.Unknown
		return r
	}
	if res == nil {
		r.Error = err.Error()
		r.Verdict = models.Unknown
		return r
	}
	r.Dir = res.Dir
	if err != nil {
		r.Error = err.Error()
	}
	if res.Report == nil {
		r.Verdict = models.Unknown
		return r
	}
	if res.Outcome != nil && res.Outcome.Interrupted {
		// An interrupted run's safety verdict stands for what it
		// recorded, but it has no recovery phase and is not the cell.
		r.Error = errors.Join(errors.New("interrupted"), err).Error()
	}
	r.fill(res.Report)
	r.LivenessCounts = res.LivenessCounts()
	return r
}

func (r *Run) fill(rep *models.Report) {
	r.Verdict = rep.Verdict
	if r.Verdict == models.Unknown {
		r.Cause = strings.Join(rep.UnknownCauses(false), "; ")
	}
	r.NoFaultRan = rep.Faults.NoneRan()
	if rep.Mutex != nil {
		r.Violations = rep.Mutex.Violations
	}
	if rep.Linearizability != nil {
		r.Linearizable = rep.Linearizability.Verdict
	}
	for _, c := range rep.Checkers {
		if c.Safety && len(c.Counterexamples) > 0 && r.Counterexample == "" {
			r.Counterexample = c.Counterexamples[0]
		}
		if c.Safety && c.Verdict == models.Invalid {
			r.CaughtBy = append(r.CaughtBy, c.Name)
		}
	}
	// An unknown count (a key without its final value) is no "0 lost".
	if lu := rep.LostUpdates; lu != nil && lu.Verdict != models.Unknown {
		r.DataChecked, r.Increments, r.LostUpdates = true, lu.Acknowledged, lu.Lost
	}
	if f := rep.Fencing; f != nil {
		r.StaleRefused, r.StaleAccepted = f.Refused, f.StaleAccepted
	}
	if rr := rep.ReleaseRequests; rr != nil {
		r.ReleaseContended, r.ReleaseMissed, r.ReleaseHandOffP50 = rr.Contended, rr.Missed, rr.HandOff.P50
	}
	if l := rep.Liveness; l != nil {
		r.AcquireP50, r.AcquireP99 = l.LatencyP50, l.LatencyP99
		r.HandOffP50, r.HandOffs = l.HandOffs.P50, l.HandOffs.Count
		r.HolderCrashes = l.HolderCrashes.Crashes
		r.CrashRecoveryP50 = l.HolderCrashes.P50
		r.CrashNeverRecovered = l.HolderCrashes.Never
		r.Stuck = len(l.Stuck)
		r.Liveness = l.Verdict
	}
}

// Cell is one locker × scenario over every seed.
type Cell struct {
	Locker, Scenario string
	Runs             []Run
}

// Cells groups the table's runs by locker and scenario, in the plan's
// order.
func (t *Table) Cells() []Cell {
	order := map[string]int{}
	for i, l := range t.Lockers {
		order["l"+l] = i
	}
	for i, s := range t.Scenarios {
		order["s"+s.Name] = i
	}
	byKey := map[[2]string]*Cell{}
	var cells []*Cell
	for _, r := range t.Runs {
		k := [2]string{r.Locker, r.Scenario}
		c, ok := byKey[k]
		if !ok {
			c = &Cell{Locker: r.Locker, Scenario: r.Scenario}
			byKey[k] = c
			cells = append(cells, c)
		}
		c.Runs = append(c.Runs, r)
	}
	sort.SliceStable(cells, func(i, j int) bool {
		a, b := cells[i], cells[j]
		if a.Locker != b.Locker {
			return order["l"+a.Locker] < order["l"+b.Locker]
		}
		return order["s"+a.Scenario] < order["s"+b.Scenario]
	})
	out := make([]Cell, len(cells))
	for i, c := range cells {
		out[i] = *c
	}
	return out
}
