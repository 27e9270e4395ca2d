// Package suite runs a named set of scenarios, each on each of its seeds,
// judges every run against the verdict its scenario expects, and reports
// the lot as JUnit XML, a Markdown table and an exit status, so a CI job
// or a release pipeline can use lockcheck as a gate.
//
// A run is judged on its expectation, not on its verdict: a locker known
// to be unsafe is expected invalid, and finding it valid is a failure too
// ("became safe"), because either the fault stopped reaching it or the
// checker stopped seeing the violation, and both need a look.
package suite

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/lockcheck/lockcheck/models"
	"github.com/lockcheck/lockcheck/scenarios"
)

// Job is one scenario on one seed.
type Job struct {
	Spec scenarios.Spec
	Seed uint64
}

// Name is the scenario's name and the seed, as JUnit and the table show it.
func (j Job) Name() string { return fmt.Sprintf("%s seed %d", j.Spec.Name, j.Seed) }

// DirName is the job's run directory inside a suite's directory: the
// scenario's name with its slashes kept apart from the file system's.
func (j Job) DirName() string {
	name := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			return r
		}
		return '_'
	}, j.Spec.Name)
	return fmt.Sprintf("%s-s%d", name, j.Seed)
}

// Expand lists every spec on each of its seeds, in the specs' order and
// then the seeds', so two expansions of one suite agree job by job (which
// Shard relies on: every CI machine computes the same split).
func Expand(specs []scenarios.Spec) []Job {
	var jobs []Job
	for _, s := range specs {
		for _, seed := range s.Seeds {
			jobs = append(jobs, Job{Spec: s, Seed: seed})
		}
	}
	return jobs
}

// weight is what a job is expected to cost: its workload phase, with a
// floor for setup, checking and recovery, which every run pays.
func (j Job) weight() time.Duration {
	return max(time.Duration(j.Spec.Duration), 0) + 2*time.Second
}

// Shard returns shard i of n (i counts from 1) of jobs. The split depends
// on the jobs alone, so n machines each running one shard run every job
// exactly once. Shards are balanced by expected time, not by count: the
// longest jobs are dealt first, each to the shard with the least work so
// far (the lowest-numbered on a tie), so no shard carries more than one
// job's weight beyond another. Within a shard, jobs keep their order.
func Shard(jobs []Job, i, n int) ([]Job, error) {
	if n < 1 || i < 1 || i > n {
		return nil, fmt.Errorf("shard %d/%d: want i/n with 1 <= i <= n", i, n)
	}
	order := make([]int, len(jobs))
	for k := range order {
		order[k] = k
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(jobs[b].weight(), jobs[a].weight()) })
	load := make([]time.Duration, n)
	mine := make([]bool, len(jobs))
	for _, k := range order {
		s := 0
		for t := 1; t < n; t++ {
			if load[t] < load[s] {
				s = t
			}
		}
		load[s] += jobs[k].weight()
		mine[k] = s == i-1
	}
	var out []Job
	for k, j := range jobs {
		if mine[k] {
			out = append(out, j)
		}
	}
	return out, nil
}

// ParseShard reads "i/n" as given to -shard and SHARD=.
func ParseShard(s string) (i, n int, err error) {
	if _, err := fmt.Sscanf(s, "%d/%d", &i, &n); err != nil || fmt.Sprintf("%d/%d", i, n) != s {
		return 0, 0, fmt.Errorf("shard %q: want i/n, such as 1/4", s)
	}
	if n < 1 || i < 1 || i > n {
		return 0, 0, fmt.Errorf("shard %q: want i/n with 1 <= i <= n, such as 1/%d", s, max(n, 1))
	}
	return i, n, nil
}

// Outcome is what one run found.
type Outcome struct {
	// Verdict is the run's verdict: safety, merged with liveness when its
	// scenario requires recovery.
	Verdict models.Verdict
	// Liveness is the liveness verdict on its own, which the results show
	// even when it does not count.
	Liveness models.Verdict
	// Counterexample is the first safety checker's first counterexample.
	Counterexample string
	// Dir is the run's directory (history, result.json, report).
	Dir     string
	Elapsed time.Duration
	// Cause, for an unknown verdict, is why: each unknown check with its
	// reason.
	Cause string
	// NoFaultRan: the run asked for faults and none of them ran.
	NoFaultRan bool
	// LivenessCounts: the liveness verdict is part of Verdict
	// (runner.LivenessCounts).
	LivenessCounts bool
}

// OutcomeOf is what a checked run found, as a suite row shows it.
// livenessCounts says whether liveness counted in verdict.
func OutcomeOf(rep *models.Report, verdict models.Verdict, livenessCounts bool) Outcome {
	o := Outcome{Verdict: verdict, LivenessCounts: livenessCounts}
	if rep == nil {
		return o
	}
	if l := rep.Liveness; l != nil {
		o.Liveness = l.Verdict
	}
	for _, c := range rep.Checkers {
		if c.Safety && len(c.Counterexamples) > 0 {
			o.Counterexample = c.Counterexamples[0]
			break
		}
	}
	if o.Counterexample == "" && o.Liveness == models.Invalid && livenessCounts {
		o.Counterexample = "liveness: " + rep.Liveness.Summary
	}
	if verdict == models.Unknown {
		o.Cause = strings.Join(rep.UnknownCauses(livenessCounts), "; ")
	}
	o.NoFaultRan = rep.Faults.NoneRan()
	return o
}

// Status is a run judged against its expectation.
type Status string

const (
	// Pass: the verdict is the expected one.
	Pass Status = "pass"
	// Fail: the verdict is valid or invalid and not the expected one.
	Fail Status = "fail"
	// Unknown: the run could not be judged (a checker out of time, a
	// vacuous run, a fault that never ran, a partial history); Detail
	// says which. Never a pass.
	Unknown Status = "unknown"
	// Error: the run could not be done or checked.
	Error Status = "error"
	// Flaky: the scenario expects "either"; its verdict is reported and
	// never fails the suite.
	Flaky Status = "flaky"
	// NotRun: the suite was interrupted before the run finished.
	NotRun Status = "not-run"
)

// Either is the expectation of a scenario known to go both ways.
const Either = "either"

// Result is a job, what its run found and how that compares with what its
// scenario expects.
type Result struct {
	Job     Job
	Outcome Outcome
	Status  Status
	// Detail says, in a line, why the status is what it is: for a
	// failure, what was expected and what happened.
	Detail string
	// Attempts is how many runs were made of the job (Spec.Attempts):
	// more than one when the first ones missed the defect expected.
	Attempts int
}

// Judge compares a run's outcome (or the error that stopped it) with the
// verdict its scenario expects.
func Judge(e scenarios.Expect, o Outcome, runErr error) (Status, string) {
	if runErr != nil {
		return Error, "could not run: " + runErr.Error()
	}
	want := models.Verdict(e.Verdict)
	if want != models.Valid && want != models.Invalid && e.Verdict != Either {
		return Error, fmt.Sprintf("expectation %q: want valid, invalid or either in the scenario's expect.verdict", e.Verdict)
	}
	switch {
	case o.Verdict != models.Valid && o.Verdict != models.Invalid:
		why := cmp.Or(o.Cause, "the run was not judged")
		if o.NoFaultRan {
			why = models.NoFaultRan + ": " + why
		}
		return Unknown, fmt.Sprintf("expected %s, got %s, so nothing was shown: %s", e.Verdict, cmp.Or(string(o.Verdict), "no verdict"), why)
	case e.Verdict == Either:
		return Flaky, fmt.Sprintf("expected either, got %s", o.Verdict)
	case o.Verdict == want:
		return Pass, fmt.Sprintf("expected %s, got %s", want, o.Verdict)
	case want == models.Invalid:
		return Fail, "expected invalid, got valid: became safe (the fault no longer reaches the locker, or the checkers no longer see the violation)"
	default:
		return Fail, "expected valid, got invalid: a violation"
	}
}

// Options configure Run.
type Options struct {
	_ struct{}
	// Parallel is how many jobs run at once (at least 1).
	Parallel int
	// OutDir receives one directory per job, named Job.DirName; the
	// directory itself is left for Exec to create.
	OutDir string
	// Exec runs and checks one job in dir. A non-nil error means the run
	// could not be done or checked; ctx ending should make it return soon.
	Exec func(ctx context.Context, j Job, dir string) (Outcome, error)
	// Progress, when set, hears about every job as it ends, one call at a
	// time.
	Progress func(done, total int, r Result)
}

// Run runs every job, Parallel at a time, and returns one result per job
// in the jobs' order. When ctx ends, jobs not yet started, and those cut
// short, are NotRun; the others keep their results.
func Run(ctx context.Context, jobs []Job, o Options) ([]Result, error) {
	if o.Exec == nil {
		return nil, errors.New("suite: no Exec to run a job")
	}
	if o.Parallel < 1 {
		return nil, fmt.Errorf("suite: parallel %d: want at least 1", o.Parallel)
	}
	results := make([]Result, len(jobs))
	for k, j := range jobs {
		results[k] = Result{Job: j, Status: NotRun, Detail: "not run: the suite was interrupted first"}
	}
	next := make(chan int)
	var wg sync.WaitGroup
	var mu sync.Mutex
	done := 0
	for range min(o.Parallel, max(len(jobs), 1)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range next {
				r := runOne(ctx, jobs[k], o)
				mu.Lock()
				results[k] = r
				done++
				if o.Progress != nil {
					o.Progress(done, len(jobs), r)
				}
				mu.Unlock()
			}
		}()
	}
feed:
	for k := range jobs {
		// A cancelled ctx must win over a free worker, so no job starts
		// after an interrupt.
		if ctx.Err() != nil {
			break
		}
		select {
		case next <- k:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	return results, nil
}

// runOne runs j, again while it shows no defect it is expected to show
// and has attempts left (Spec.Attempts); each attempt has its own
// directory, and the result is the last attempt's.
func runOne(ctx context.Context, j Job, o Options) Result {
	attempts := max(j.Spec.Attempts, 1)
	var misses []string
	for attempt := 1; ; attempt++ {
		dir := filepath.Join(o.OutDir, j.DirName())
		if attempt > 1 {
			dir += fmt.Sprintf("-attempt%d", attempt)
		}
		r := runAttempt(ctx, j, o, dir)
		r.Attempts = attempt
		if r.Status == Fail && r.Outcome.Verdict == models.Valid && attempt < attempts && ctx.Err() == nil {
			misses = append(misses, r.Outcome.Dir)
			continue
		}
		if len(misses) > 0 {
			r.Detail += fmt.Sprintf(" (attempt %d of %d; valid before it: %s)", attempt, attempts, strings.Join(misses, ", "))
		}
		return r
	}
}

func runAttempt(ctx context.Context, j Job, o Options, dir string) Result {
	start := time.Now()
	out, err := o.Exec(ctx, j, dir)
	if out.Elapsed == 0 {
		out.Elapsed = time.Since(start)
	}
	if out.Dir == "" && err == nil {
		out.Dir = dir
	}
	r := Result{Job: j, Outcome: out}
	if ctx.Err() != nil && err != nil {
		// A run cut short has no recovery phase and is not the
		// scenario; what it recorded stays in its directory. A run
		// that finished before the interrupt keeps its result.
		r.Status, r.Detail = NotRun, fmt.Sprintf("interrupted after %.1fs", out.Elapsed.Seconds())
		return r
	}
	r.Status, r.Detail = Judge(j.Spec.Expect, out, err)
	return r
}

// ExitCode is the suite's exit status, as verify's:
//   - 0 when every result passed or is flaky (an empty suite, or an empty
//     shard, included);
//   - 1 when any verdict differs from its expectation, an unsafe locker
//     found safe included;
//   - 2 when none differs but any is unknown, could not run, or was not
//     run because the suite was interrupted: nothing failed, and nothing
//     was shown to pass either.
func ExitCode(results []Result) int {
	code := 0
	for _, r := range results {
		switch r.Status {
		case Pass, Flaky:
		case Fail:
			return 1
		default:
			code = 2
		}
	}
	return code
}

// Counts tallies results by status.
func Counts(results []Result) map[Status]int {
	c := map[Status]int{}
	for _, r := range results {
		c[r.Status]++
	}
	return c
}

// BecameSafe reports whether r failed because an unsafe locker was found
// safe.
func (r Result) BecameSafe() bool {
	return r.Status == Fail && r.Job.Spec.Expect.Verdict == string(models.Invalid) && r.Outcome.Verdict == models.Valid
}
