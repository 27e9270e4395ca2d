// Package check runs lockcheck on a locker of your own, from Go: from a
// test in another module, with no fork of lockcheck and nothing built but
// what the locker needs.
//
// Give it the locker (a factory of one client's [lockers.Locker]) and a
// [Scenario]; it runs the clients through the scenario's workload and
// faults, records the history, checks it, and writes the whole run
// directory (history.jsonl, scenario.json, result.json, summary.txt,
// history.html, report.html) as `verify run` does, so `verify check`,
// `verify replay` and `verify report` work on it. [Test] does that from a
// test and fails it with the counterexample:
//
//	func TestMyLock(t *testing.T) {
//		store := mylock.NewStore()
//		check.Test(t, check.Locker{
//			Name: "mylock",
//			New: func(env lockers.Env) (lockers.Locker, error) {
//				return mylock.New(store, env), nil
//			},
//		}, check.Scenario{Clients: 8, Keys: 1, Faults: []string{"pause", "crash"}})
//	}
//
// A locker whose clients share state in this process needs nothing else:
// importing this package links neither the GCS and Redis clients nor the
// emulators nor toxiproxy. A locker that needs a backend gives Setup
// instead of New, from package backends (backends.GCS, backends.Redis),
// which brings them in.
//
// Every setting a Scenario leaves out gets the default `verify run` uses
// (scenarios.Spec.Normalize, the one place defaults are filled); with no
// seeds it runs seed 1, and with no expectation it expects valid.
package check

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/lockcheck/lockcheck/harness"
	"github.com/lockcheck/lockcheck/internal/suite"
	"github.com/lockcheck/lockcheck/lockers"
	"github.com/lockcheck/lockcheck/models"
	"github.com/lockcheck/lockcheck/runner"
	"github.com/lockcheck/lockcheck/scenarios"
)

// Locker is the lock under test.
type Locker struct {
	// Name names the locker in reports and run directories.
	Name string
	// New builds one client's locker. It is called once per client and
	// again for each restart after a crash; state the clients share (the
	// store a lock lives in) is the caller's, captured by the closure,
	// and lives as long as the caller keeps it.
	New func(lockers.Env) (lockers.Locker, error)
	// Setup, instead of New, is a locker that runs on a backend the run
	// starts (backends.GCS, backends.Redis), built once per client.
	Setup harness.Setup
	// Fencing says the locker's tokens increase per key, so the fencing
	// checker applies (fenced-register workload).
	Fencing bool
	// TTL is the lease the locker's clients hold without refreshing,
	// when it has one: a scenario's ttl is then honoured by telling the
	// locker its time scale (harness.Params.TimeScale).
	TTL time.Duration

	_ struct{}
}

// Scenario is what to run: clients, keys, workload, faults, duration,
// seeds and the verdict expected; `verify run -h` and scenarios.Spec
// document every field. Locker and Worker are set from the Locker.
type Scenario = scenarios.Spec

// Expect is the verdict a scenario expects, and why: "valid" (the
// default), "invalid" (a planted bug that must be caught) or "either".
type Expect = scenarios.Expect

// Seconds is a scenario duration of s seconds.
func Seconds(s float64) scenarios.Duration {
	return scenarios.Duration(time.Duration(s * float64(time.Second)))
}

// Options say where a run's files go and who hears about it.
type Options struct {
	// Dir receives one run directory per seed (default "results").
	Dir string
	// Log receives the run's diagnostics (locker errors, heals); a
	// *testing.T is one.
	Log lockers.Logger

	_ struct{}
}

// Result is one seed's run, checked and judged against the scenario's
// expectation.
type Result struct {
	Seed uint64
	// Dir is the run directory.
	Dir string
	// Verdict is the run's verdict: valid, invalid or unknown (never a
	// pass).
	Verdict models.Verdict
	// Met says the verdict is what the scenario expected; Detail says
	// why or why not, in a line.
	Met    bool
	Detail string
	// Counterexample is the first safety checker's first counterexample,
	// for an invalid run.
	Counterexample string
	// Summary is the whole report as `verify run` prints it.
	Summary string
	Report  *models.Report
}

// Run runs every seed of s on l and checks each, returning one Result per
// seed in order. An error means a seed could not be run or checked; the
// results of the seeds before it are returned with it.
func Run(ctx context.Context, l Locker, s Scenario, o Options) ([]Result, error) {
	spec, resolve, err := prepare(l, s)
	if err != nil {
		return nil, err
	}
	out := cmp.Or(o.Dir, "results")
	var results []Result
	for _, seed := range spec.Seeds {
		dir := filepath.Join(out, harness.NewRunID(time.Now(), safeName(spec.Locker), seed))
		res, err := runner.Run(ctx, runner.Job{Spec: spec, Resolve: resolve, Seed: seed, Dir: dir, Log: o.Log}, nil)
		if res == nil || res.Report == nil {
			return results, fmt.Errorf("check: locker %s, seed %d: %w", spec.Locker, seed, err)
		}
		r := Result{Seed: seed, Dir: res.Dir, Verdict: res.Verdict, Report: res.Report, Summary: res.Report.Summary()}
		for _, c := range res.Report.Checkers {
			if c.Safety && len(c.Counterexamples) > 0 {
				r.Counterexample = c.Counterexamples[0]
				break
			}
		}
		if res.Outcome.Interrupted {
			err = errors.Join(err, errors.New("interrupted before the run finished"))
		}
		status, detail := suite.Judge(spec.Expect, suite.OutcomeOf(res.Report, res.Verdict, res.LivenessCounts()), err)
		r.Met, r.Detail = status == suite.Pass, detail
		results = append(results, r)
		if err != nil {
			return results, fmt.Errorf("check: locker %s, seed %d: %w", spec.Locker, seed, err)
		}
	}
	return results, nil
}

// prepare fills s from l and the defaults, and gives the resolver that
// finds l.
func prepare(l Locker, s Scenario) (Scenario, scenarios.Resolve, error) {
	if strings.TrimSpace(l.Name) == "" {
		return s, nil, errors.New("check: the Locker has no Name; name it, for its reports")
	}
	if (l.New == nil) == (l.Setup == nil) {
		return s, nil, fmt.Errorf("check: locker %s: give New (clients in this process) or Setup (a locker on a backend), exactly one", l.Name)
	}
	if s.Locker != "" && s.Locker != l.Name {
		return s, nil, fmt.Errorf("check: the Scenario names locker %q and the Locker is %q; leave Scenario.Locker empty", s.Locker, l.Name)
	}
	if len(s.Worker) > 0 {
		return s, nil, errors.New("check: the Scenario names a worker; the Go API runs the Locker it is given (external workers are `verify run -worker`)")
	}
	s.Locker = l.Name
	s.Name = cmp.Or(s.Name, "check/"+l.Name)
	setup := l.Setup
	if setup == nil {
		newLocker := l.New
		setup = harness.InProcess(func(harness.Params) func(lockers.Env) (lockers.Locker, error) { return newLocker })
	}
	spec := harness.LockerSpec{Name: l.Name, Summary: "given through the Go API", Fencing: l.Fencing, TTL: l.TTL, Setup: setup}
	resolve := func(s scenarios.Spec) (harness.LockerSpec, error) {
		if s.Locker != l.Name {
			return harness.LockerSpec{}, fmt.Errorf("unknown locker %q; this run knows only %q", s.Locker, l.Name)
		}
		return spec, nil
	}
	n, err := s.Normalize(resolve)
	if err != nil {
		return s, nil, fmt.Errorf("check: %w", err)
	}
	return n, resolve, nil
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// safeName makes a locker's name fit a directory name.
func safeName(name string) string { return unsafeName.ReplaceAllString(name, "_") }

// TB is what Test needs of a test: *testing.T and *testing.B are ones.
type TB interface {
	Helper()
	Logf(format string, args ...any)
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
	Context() context.Context
}

// Test runs every seed of s on l from a test, and fails the test for
// each seed whose verdict is not the one s expects (valid unless it says
// otherwise; unknown never passes), printing the counterexample and where
// the run directory is. Run directories go under
// $LOCKCHECK_RESULTS, or lockcheck-results in the system's temporary
// directory, and are kept. It returns the results.
func Test(t TB, l Locker, s Scenario) []Result {
	t.Helper()
	dir := os.Getenv("LOCKCHECK_RESULTS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "lockcheck-results")
	}
	log := &untilDone{t: t}
	results, err := Run(t.Context(), l, s, Options{Dir: dir, Log: log})
	log.stop()
	for _, r := range results {
		if r.Met {
			t.Logf("lockcheck: %s seed %d: %s; run in %s", l.Name, r.Seed, r.Detail, r.Dir)
			continue
		}
		// The summary ends with the first counterexample.
		msg := fmt.Sprintf("lockcheck: %s seed %d: %s\n%srun directory (report.html, history.jsonl): %s", l.Name, r.Seed, r.Detail, r.Summary, r.Dir)
		t.Errorf("%s", msg)
	}
	if err != nil {
		t.Fatalf("%v", err)
	}
	return results
}

// untilDone forwards a run's log to the test until the run is over: a
// locker's goroutine that outlives its run (a library stuck in Close) must
// not log to a finished test, which panics.
type untilDone struct {
	mu   sync.Mutex
	t    TB
	done bool
}

func (u *untilDone) Logf(format string, args ...any) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if !u.done {
		u.t.Logf(format, args...)
	}
}

func (u *untilDone) stop() {
	u.mu.Lock()
	u.done = true
	u.mu.Unlock()
}
