// Package shrink reduces a failing simulated run to a smaller one that
// still fails the same way: fewer clients, keys, operations and faults,
// a shorter run. A counterexample of 8 clients, 400 calls and 5 faults is
// read in an hour; one of 2 clients, 12 calls and 1 fault, in a minute.
//
// The fault schedule is first made explicit (scenarios.Spec.FaultPlan:
// the very schedule the seed drew), so that removing one fault leaves the
// others where they were. Then, pass after pass until none makes progress
// or the budget of runs is spent:
//   - the run is cut short, to the shortest of 1/8, 2/8, … 7/8 of its
//     duration that still fails (faults past the end are dropped);
//   - clients are dropped from the top slot down: a client's workload is
//     drawn from the seed and its slot, so the clients that stay do what
//     they did (faults aimed at a dropped client go with it);
//   - the faults are delta-debugged (ddmin over the schedule's entries);
//   - keys, then the request rate, are lowered.
//
// Every candidate is re-run in simulation, on the current seed first and
// then on the next few (Options.Seeds): removing a client changes which
// goroutine runs when, and a race that needs other timing is still the
// same race. A candidate counts as failing only with the original verdict
// and with at least one of the checkers that failed originally failing
// again, so a shrink never wanders from a mutual-exclusion violation to
// some other defect.
package shrink

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/lockcheck/lockcheck/faults"
	"github.com/lockcheck/lockcheck/history"
	"github.com/lockcheck/lockcheck/internal/bubble"
	"github.com/lockcheck/lockcheck/models"
	"github.com/lockcheck/lockcheck/runner"
	"github.com/lockcheck/lockcheck/scenarios"
)

// Size is how big a run is, in what a reader of its counterexample has
// to take in.
type Size struct {
	Clients int `json:"clients"`
	Keys    int `json:"keys"`
	// Operations counts acquire and release calls.
	Operations int `json:"operations"`
	// Faults counts the faults that started.
	Faults   int           `json:"faults"`
	Duration time.Duration `json:"duration"`
}

func (s Size) String() string {
	return fmt.Sprintf("%s, %s, %s, %s, %v", plural(s.Clients, "client"), plural(s.Keys, "key"), plural(s.Operations, "operation"), plural(s.Faults, "fault"), s.Duration)
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// Options shape a shrink.
type Options struct {
	// Resolve finds the scenario's locker.
	Resolve scenarios.Resolve
	// Dir is where the shrink writes: the shrunk run directory
	// (Dir/shrunk) and its scenario file (Dir/shrunk.json). Candidates
	// run in Dir/candidate-N and are removed.
	Dir string
	// Runs bounds the candidate runs; default 300.
	Runs int
	// Seeds is how many seeds each candidate is tried on before it is
	// judged not to fail: the current one, then the next ones; default 3.
	Seeds int
	// Bubbles runs the candidates; nil starts a pool of one.
	Bubbles *bubble.Pool
	// Progress, when set, hears of every candidate tried.
	Progress func(Step)
}

// Step is one candidate tried.
type Step struct {
	Run int
	// Pass is what the candidate changed ("duration", "clients", …).
	Pass string
	// Candidate is the size the candidate would have; Failed says
	// whether it still failed, and Current is the best size so far.
	Candidate, Current Size
	Failed             bool
}

// Result is a finished shrink.
type Result struct {
	Before, After Size
	// Spec is the shrunk scenario, with Seeds = [Seed]; ScenarioFile is
	// where it was written.
	Spec         scenarios.Spec
	Seed         uint64
	ScenarioFile string
	// Run is the shrunk scenario's run directory, reports included.
	Run *runner.Result
	// Runs counts the simulations the shrink ran, the first and last
	// included; Exhausted says it stopped at Options.Runs with passes
	// that still might have made progress.
	Runs      int
	Exhausted bool
}

// ErrDoesNotFail is the error of a shrink whose starting point does not
// fail in simulation: nothing to shrink.
var ErrDoesNotFail = errors.New("the run does not fail in simulation")

// Shrink reduces spec on seed, which must fail in simulation.
func Shrink(ctx context.Context, spec scenarios.Spec, seed uint64, o Options) (*Result, error) {
	if !spec.Sim {
		return nil, errors.New("shrink: the scenario is not a simulation (sim: true); only a simulated run can be re-run exactly")
	}
	if o.Runs <= 0 {
		o.Runs = 300
	}
	if o.Seeds <= 0 {
		o.Seeds = 3
	}
	if o.Bubbles == nil {
		o.Bubbles = bubble.Start(1)
		defer o.Bubbles.Close()
	}
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, err
	}
	s := &shrinker{ctx: ctx, o: o}
	first, err := s.run(spec, seed, filepath.Join(o.Dir, "original"), false)
	if err != nil {
		return nil, err
	}
	if first.Verdict == models.Valid || first.Report == nil {
		return nil, fmt.Errorf("%w: seed %d is %s", ErrDoesNotFail, seed, first.Verdict)
	}
	s.verdict, s.failing = first.Verdict, failingCheckers(first.Report, first.LivenessCounts())
	if len(s.failing) == 0 {
		return nil, fmt.Errorf("%w: seed %d is %s but no checker is invalid (an unknown verdict cannot be shrunk)", ErrDoesNotFail, seed, first.Verdict)
	}
	before := sizeOf(spec, first)
	os.RemoveAll(filepath.Join(o.Dir, "original"))

	// The schedule the seed drew, made explicit: the same run, with
	// faults that can be taken out one by one.
	cur := spec
	cur.FaultPlan = nil
	for _, p := range first.Config.DrawFaultPlan() {
		cur.FaultPlan = append(cur.FaultPlan, scenarios.PlannedFault{
			Kind: p.Kind.Name, Client: p.Clients[0], At: scenarios.Duration(p.At), Duration: scenarios.Duration(p.Duration),
		})
	}
	cur.Faults = usedKinds(cur.FaultPlan)
	s.cur, s.seed, s.size = cur, seed, before

	for progress := true; progress && !s.exhausted(); {
		progress = false
		for _, pass := range []func() bool{s.shorten, s.dropClients, s.dropFaults, s.fewerKeys, s.slower} {
			if s.exhausted() || ctx.Err() != nil {
				break
			}
			if pass() {
				progress = true
			}
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}

	final := s.cur
	final.Name = strings.TrimSuffix(spec.Name, "/shrunk") + "/shrunk"
	final.Seeds = []uint64{s.seed}
	final.SimSeed = 0
	// The reason names the checkers that fail in the shrunk run, which
	// may be fewer than the original's; a last run, with every report,
	// finds them and shows the shrunk run fails again, as it must.
	final.Expect = scenarios.Expect{Verdict: scenarios.ExpectInvalid, Reason: "shrunk"}
	res, err := s.run(final, s.seed, filepath.Join(o.Dir, "shrunk"), true)
	if err != nil {
		return nil, err
	}
	if !s.fails(res) {
		return nil, fmt.Errorf("shrink: the shrunk scenario ran again on seed %d and gave %s, not the failure it gave before: the simulation is not deterministic for this locker (verify sim -determinism measures it)", s.seed, res.Verdict)
	}
	final.Expect.Reason = fmt.Sprintf("shrunk from %s seed %d (%s) to %s: %s still invalid",
		spec.Name, seed, before, sizeOf(final, res), strings.Join(failingCheckers(res.Report, res.LivenessCounts()), " and "))
	file := filepath.Join(o.Dir, "shrunk.json")
	if err := writeSpec(file, final); err != nil {
		return nil, err
	}
	return &Result{
		Before: before, After: sizeOf(final, res), Spec: final, Seed: s.seed, ScenarioFile: file,
		Run: res, Runs: s.runs, Exhausted: s.exhausted(),
	}, nil
}

// shrinker holds a shrink's state: the smallest failing scenario so far.
type shrinker struct {
	ctx     context.Context
	o       Options
	verdict models.Verdict
	failing []string
	cur     scenarios.Spec
	seed    uint64
	size    Size
	runs    int
}

func (s *shrinker) exhausted() bool { return s.runs >= s.o.Runs }

func (s *shrinker) run(spec scenarios.Spec, seed uint64, dir string, reports bool) (*runner.Result, error) {
	s.runs++
	os.RemoveAll(dir)
	res, err := runner.Run(s.ctx, runner.Job{Spec: spec, Resolve: s.o.Resolve, Seed: seed, Dir: dir, Bubbles: s.o.Bubbles, ReportFailuresOnly: !reports}, nil)
	if err != nil {
		return nil, fmt.Errorf("shrink: seed %d: %w", seed, err)
	}
	return res, nil
}

// fails says whether a run fails as the original did.
func (s *shrinker) fails(res *runner.Result) bool {
	if res.Report == nil || res.Verdict != s.verdict {
		return false
	}
	for _, name := range failingCheckers(res.Report, res.LivenessCounts()) {
		if slices.Contains(s.failing, name) {
			return true
		}
	}
	return false
}

// try runs a candidate on the current seed and the next ones, and makes
// it the current scenario if it fails on one of them.
func (s *shrinker) try(pass string, cand scenarios.Spec) bool {
	cand.Faults = usedKinds(cand.FaultPlan)
	if len(cand.Faults) == 0 {
		cand.Faults = nil
	}
	guess := s.size
	guess.Clients, guess.Keys, guess.Faults, guess.Duration = cand.Clients, cand.Keys, len(cand.FaultPlan), time.Duration(cand.Duration)
	for i := range s.o.Seeds {
		if s.exhausted() || s.ctx.Err() != nil {
			return false
		}
		seed := s.seed + uint64(i)
		dir := filepath.Join(s.o.Dir, fmt.Sprintf("candidate-%d", s.runs+1))
		res, err := s.run(cand, seed, dir, false)
		os.RemoveAll(dir)
		failed := err == nil && s.fails(res)
		if err == nil {
			guess = sizeOf(cand, res)
		}
		if failed {
			s.cur, s.seed, s.size = cand, seed, guess
		}
		if s.o.Progress != nil {
			s.o.Progress(Step{Run: s.runs, Pass: pass, Candidate: guess, Current: s.size, Failed: failed})
		}
		if failed {
			return true
		}
	}
	return false
}

// shorten cuts the run to the shortest eighth of it that still fails.
func (s *shrinker) shorten() bool {
	d := time.Duration(s.cur.Duration)
	for k := 1; k < 8; k++ {
		short := (d * time.Duration(k) / 8).Round(10 * time.Millisecond)
		if short <= 0 || short >= d {
			continue
		}
		cand := s.cur
		cand.Duration = scenarios.Duration(short)
		cand.FaultPlan = slices.DeleteFunc(slices.Clone(cand.FaultPlan), func(f scenarios.PlannedFault) bool {
			return time.Duration(f.At+f.Duration) > short
		})
		if s.try("duration", cand) {
			return true
		}
	}
	return false
}

// dropClients keeps the fewest low slots that still fail.
func (s *shrinker) dropClients() bool {
	for n := 1; n < s.cur.Clients; n++ {
		cand := s.cur
		cand.Clients = n
		cand.FaultPlan = nil
		for _, f := range s.cur.FaultPlan {
			switch {
			case f.Client < n:
			case isAtHolder(f.Kind):
				// It goes to a holder anyway; its fallback target must
				// still exist.
				f.Client = n - 1
			default:
				continue
			}
			cand.FaultPlan = append(cand.FaultPlan, f)
		}
		if s.try("clients", cand) {
			return true
		}
	}
	return false
}

// dropFaults delta-debugs the fault schedule.
func (s *shrinker) dropFaults() bool {
	if len(s.cur.FaultPlan) == 0 {
		return false
	}
	before := len(s.cur.FaultPlan)
	ddmin(s.cur.FaultPlan, func(keep []scenarios.PlannedFault) bool {
		cand := s.cur
		cand.FaultPlan = keep
		return !s.exhausted() && s.try("faults", cand)
	})
	return len(s.cur.FaultPlan) < before
}

// ddmin is delta debugging's minimizing loop, complements only: it
// removes ever smaller chunks of items while fails holds without them,
// and returns what is left. fails sees every candidate it keeps, the
// last one it accepted included; the empty set is tried first.
func ddmin[T any](items []T, fails func([]T) bool) []T {
	if len(items) == 0 || fails(nil) {
		return nil
	}
	chunks := 2
	for len(items) > 1 {
		size := (len(items) + chunks - 1) / chunks
		removed := false
		for start := 0; start < len(items); start += size {
			keep := slices.Concat(items[:start], items[min(start+size, len(items)):])
			if fails(keep) {
				items, removed = keep, true
				chunks = max(chunks-1, 2)
				break
			}
		}
		if !removed {
			if size == 1 {
				break
			}
			chunks = min(chunks*2, len(items))
		}
	}
	return items
}

// fewerKeys tries the fewest keys that still fail.
func (s *shrinker) fewerKeys() bool {
	for k := 1; k < s.cur.Keys; k++ {
		cand := s.cur
		cand.Keys = k
		if s.try("keys", cand) {
			return true
		}
	}
	return false
}

// slower lowers the request rate, for fewer operations in the same time.
func (s *shrinker) slower() bool {
	if s.cur.Rate == nil || *s.cur.Rate <= 1 {
		return false
	}
	for _, f := range []float64{0.25, 0.5} {
		cand := s.cur
		r := max(*s.cur.Rate*f, 1)
		cand.Rate = &r
		if s.try("rate", cand) {
			return true
		}
	}
	return false
}

// failingCheckers names the checkers whose invalid verdict made the run's.
func failingCheckers(rep *models.Report, requireRecovery bool) []string {
	var out []string
	for _, c := range rep.Checkers {
		if c.Verdict == models.Invalid && (c.Safety || requireRecovery && c.Name == models.LivenessName) {
			out = append(out, c.Name)
		}
	}
	return out
}

func sizeOf(spec scenarios.Spec, res *runner.Result) Size {
	sz := Size{Clients: spec.Clients, Keys: spec.Keys, Duration: time.Duration(spec.Duration)}
	if res.Report != nil {
		sz.Operations = res.Report.Counts.Calls
	}
	if res.History != nil {
		for _, e := range res.History.Events {
			if e.F == history.FaultStart {
				sz.Faults++
			}
		}
	}
	return sz
}

func usedKinds(plan []scenarios.PlannedFault) []string {
	var out []string
	for _, f := range plan {
		if !slices.Contains(out, f.Kind) {
			out = append(out, f.Kind)
		}
	}
	return out
}

func isAtHolder(kind string) bool {
	k, err := faultKind(kind)
	return err == nil && k.AtHolder
}

func faultKind(name string) (faults.Kind, error) {
	k, err := faults.Lookup([]string{name})
	if err != nil {
		return faults.Kind{}, err
	}
	return k[0], nil
}

// writeSpec writes the shrunk scenario as a file verify run -scenario and
// verify suite -dir read.
func writeSpec(path string, spec scenarios.Spec) error {
	b, err := json.MarshalIndent(spec, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}
