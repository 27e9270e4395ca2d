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
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/lockcheck/lockcheck/faults"
	"github.com/lockcheck/lockcheck/harness"
	"github.com/lockcheck/lockcheck/harness/history"
	"github.com/lockcheck/lockcheck/harness/worker"
	"github.com/lockcheck/lockcheck/models"
)

// Scenario is one column of the comparison: a set of faults.
type Scenario struct {
	Name    string
	Summary string
	Faults  []string
	// LeaseMultiple, when positive, makes every fault last this many
	// leases (Plan.TTL), so it outlasts the lease; zero keeps each
	// fault's own duration range.
	LeaseMultiple float64
	// Workload, when set, replaces the base workload (history.Workload*).
	Workload string `json:",omitempty"`
	// Processes runs every client as a worker process, so pauses and
	// crashes are real SIGSTOP and SIGKILL.
	Processes bool `json:",omitempty"`
	// HoldLeases, when positive, lets holders keep a lock up to this
	// many leases instead of the base hold.
	HoldLeases float64 `json:",omitempty"`
	// ClockSpreadLeases, when positive, sets every client's clock off by
	// a constant of up to this many leases either way for the whole run.
	ClockSpreadLeases float64 `json:",omitempty"`
}

// Scenarios are the standard columns: no faults, then one fault family
// each. DefaultScenarios names the ones a comparison runs unless told.
func Scenarios() []Scenario {
	return []Scenario{
		{Name: "none", Summary: "no faults"},
		{Name: "latency", Summary: "100 ms ± 50 ms each way on one client's link at a time", Faults: []string{"latency"}},
		{Name: "partition", Summary: "a lock holder cut off from the backend, silently, for 2.5 leases", Faults: []string{"partition-holder"}, LeaseMultiple: 2.5},
		{Name: "lost-reply", Summary: "one client's requests are applied and its replies lost", Faults: []string{"lost-reply"}},
		{Name: "429", Summary: "the backend refuses a second write to one object within a second (GCS only)", Faults: []string{"server-429"}},
		{Name: "pause", Summary: "a lock holder frozen, timers and network included, for 2.5 leases", Faults: []string{"pause-holder"}, LeaseMultiple: 2.5},
		{Name: "crash", Summary: "a lock holder killed, restarted later under a new process", Faults: []string{"crash-holder"}},
		{Name: "clock", Summary: "one client's clock stepped three leases forward or back, or run at twice real speed", Faults: []string{"clock-jump-forward", "clock-jump-back", "clock-drift"}},
		{Name: "skew", Summary: "every client's clock off by a constant of up to three leases either way, holds up to half a lease", ClockSpreadLeases: 3, HoldLeases: 0.5},
		{Name: "register-pause", Summary: "register workload (an unguarded read-increment-write), a holder frozen for 2.5 leases", Workload: history.WorkloadRegister, Faults: []string{"pause-holder"}, LeaseMultiple: 2.5},
		{Name: "fenced-pause", Summary: "fenced-register workload (the store refuses stale tokens), a holder frozen for 2.5 leases", Workload: history.WorkloadFencedRegister, Faults: []string{"pause-holder"}, LeaseMultiple: 2.5},
		{Name: "sigstop", Summary: "process clients; a holder's process stopped with SIGSTOP for 2.5 leases, register workload", Workload: history.WorkloadRegister, Processes: true, Faults: []string{"pause-holder"}, LeaseMultiple: 2.5},
		{Name: "sigkill", Summary: "process clients; a holder's process killed with SIGKILL, restarted later under a new pid", Processes: true, Faults: []string{"crash-holder"}},
		{Name: "request-release", Summary: "holders keep a lock up to two leases unless another client asks for it", Workload: history.WorkloadRequestRelease, HoldLeases: 2},
	}
}

// DefaultScenarios are the columns of the standard comparison table.
var DefaultScenarios = []string{"none", "latency", "partition", "lost-reply", "429", "pause", "crash"}

// DataScenarios are the columns of the second table: clocks, data, real
// processes, release requests.
var DataScenarios = []string{"clock", "skew", "register-pause", "fenced-pause", "sigstop", "sigkill", "request-release"}

// LookupScenarios finds scenarios by name.
func LookupScenarios(names []string) ([]Scenario, error) {
	all := Scenarios()
	var out []Scenario
	for _, n := range names {
		i := slices.IndexFunc(all, func(s Scenario) bool { return s.Name == n })
		if i < 0 {
			var known []string
			for _, s := range all {
				known = append(known, s.Name)
			}
			return nil, fmt.Errorf("unknown scenario %q; known scenarios: %v", n, known)
		}
		out = append(out, all[i])
	}
	return out, nil
}

// Plan is one comparison.
type Plan struct {
	Lockers   []harness.LockerSpec
	Scenarios []Scenario
	Seeds     []uint64
	// TTL is the lease every locker is scaled to.
	TTL time.Duration
	// Base is every run's configuration before the locker, faults, seed,
	// time scale and directory are filled in.
	Base harness.Config
	// Dir receives one run directory per cell and seed.
	Dir string
	// Parallel is how many runs go at once.
	Parallel int
	// Check judges a finished run's history (and writes its results into
	// the run directory).
	Check func(historyPath, dir string) (*models.Report, error)
	// Progress, when set, hears about every run as it ends.
	Progress func(done, total int, r Run)
	// Workers are the lockers of Lockers that run as external worker
	// processes, by name, with the command of each: their clients are
	// processes in every scenario.
	Workers map[string]worker.Command
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
	Elapsed           time.Duration `json:"elapsed_ns"`
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
}

// Execute runs every locker × scenario × seed, Parallel at a time. It
// returns the table of what ran even when ctx ends early.
func Execute(ctx context.Context, p Plan) (*Table, error) {
	if err := p.validate(); err != nil {
		return nil, err
	}
	t := &Table{TTL: p.TTL, Seeds: p.Seeds, Scenarios: p.Scenarios}
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
	if p.Dir == "" || p.Check == nil {
		errs = append(errs, errors.New("no output directory or checker"))
	}
	for _, s := range p.Scenarios {
		if _, err := faults.Lookup(s.Faults); err != nil {
			errs = append(errs, fmt.Errorf("scenario %s: %w", s.Name, err))
		}
	}
	return errors.Join(errs...)
}

// runOne runs and checks one cell's seed. A run refused because its faults
// cannot act on the locker is not applicable, not an error.
func (p Plan) runOne(ctx context.Context, l harness.LockerSpec, s Scenario, seed uint64) (r Run) {
	r = Run{Locker: l.Name, Scenario: s.Name, Seed: seed}
	start := time.Now()
	defer func() { r.Elapsed = time.Since(start) }()
	kinds, err := faults.Lookup(s.Faults)
	if err != nil {
		r.Error = err.Error()
		return r
	}
	cfg := p.Base
	cfg.Locker, cfg.Faults, cfg.Seed = l, kinds, seed
	cfg.TimeScale = 1
	if l.TTL > 0 {
		cfg.TimeScale = float64(p.TTL) / float64(l.TTL)
	}
	if s.LeaseMultiple > 0 {
		cfg.FaultMin = time.Duration(s.LeaseMultiple * float64(p.TTL))
		cfg.FaultMax = cfg.FaultMin
	}
	if s.Workload != "" {
		cfg.Workload.Name = s.Workload
	}
	if s.Processes {
		cfg.ClientsAs = harness.ClientsAsProcesses
	}
	if w, ok := p.Workers[l.Name]; ok {
		cfg.ClientsAs, cfg.Worker = harness.ClientsAsProcesses, w
	}
	if s.HoldLeases > 0 {
		cfg.Workload.HoldMax = time.Duration(s.HoldLeases * float64(p.TTL))
	}
	if s.ClockSpreadLeases > 0 {
		cfg.ClockSpread = time.Duration(s.ClockSpreadLeases * float64(p.TTL))
	}
	cfg.Dir = filepath.Join(p.Dir, l.Name, s.Name, fmt.Sprintf("s%d", seed))
	cfg.Observers = nil
	out, err := harness.Run(ctx, cfg)
	if errors.Is(err, harness.ErrFaultNotApplicable) {
		r.NotApplicable = err.Error()
		r.Verdict = models.Unknown
		return r
	}
	if out == nil {
		r.Error = err.Error()
		r.Verdict = models.Unknown
		return r
	}
	r.Dir = out.Dir
	rep, cerr := p.Check(out.HistoryPath, out.Dir)
	if err = errors.Join(err, cerr); err != nil {
		r.Error = err.Error()
	}
	if rep == nil {
		r.Verdict = models.Unknown
		return r
	}
	if out.Interrupted {
		// An interrupted run's safety verdict stands for what it
		// recorded, but it has no recovery phase and is not the cell.
		r.Error = errors.Join(errors.New("interrupted"), err).Error()
	}
	r.fill(rep)
	return r
}

func (r *Run) fill(rep *models.Report) {
	r.Verdict = rep.Verdict
	if rep.Mutex != nil {
		r.Violations = rep.Mutex.Violations
	}
	if rep.Linearizability != nil {
		r.Linearizable = rep.Linearizability.Verdict
	}
	for _, c := range rep.Checkers {
		if c.Safety && len(c.Counterexamples) > 0 {
			r.Counterexample = c.Counterexamples[0]
			break
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
