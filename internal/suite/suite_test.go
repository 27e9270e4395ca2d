package suite

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lockcheck/lockcheck/models"
	"github.com/lockcheck/lockcheck/scenarios"
)

func spec(name, locker, expect string, seeds ...uint64) scenarios.Spec {
	return scenarios.Spec{Name: name, Locker: locker, Seeds: seeds, Duration: scenarios.Duration(time.Second),
		Expect: scenarios.Expect{Verdict: expect, Reason: "the test says so"}}
}

func TestExpandListsEverySpecOnEachSeedInOrder(t *testing.T) {
	jobs := Expand([]scenarios.Spec{spec("a", "x", "valid", 3, 1), spec("b", "y", "invalid"), spec("c", "z", "valid", 7)})
	var got []string
	for _, j := range jobs {
		got = append(got, j.Name())
	}
	want := []string{"a seed 3", "a seed 1", "c seed 7"}
	if !slices.Equal(got, want) {
		t.Fatalf("Expand: %q, want %q", got, want)
	}
}

func TestDirNameKeepsScenarioSlashesOutOfThePath(t *testing.T) {
	j := Job{Spec: spec("regression/tus616-pause", "tus616", "invalid"), Seed: 4}
	if got := j.DirName(); got != "regression_tus616-pause-s4" {
		t.Fatalf("DirName %q", got)
	}
}

// TestShardSplitsEveryJobIntoExactlyOneShard is a property test: for
// random suites and shard counts, the shards partition the jobs, keep
// their order, are deterministic and are balanced within one job's weight.
func TestShardSplitsEveryJobIntoExactlyOneShard(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for trial := range 300 {
		var specs []scenarios.Spec
		for s := range rng.IntN(12) {
			sp := spec(fmt.Sprintf("s%d", s), "x", "valid")
			sp.Duration = scenarios.Duration(time.Duration(rng.IntN(40)) * time.Second)
			for range rng.IntN(5) {
				sp.Seeds = append(sp.Seeds, rng.Uint64N(100)+1)
			}
			specs = append(specs, sp)
		}
		jobs := Expand(specs)
		n := 1 + rng.IntN(8)
		seen := map[string]int{}
		var maxW time.Duration
		for _, j := range jobs {
			maxW = max(maxW, j.weight())
		}
		var loads []time.Duration
		for i := 1; i <= n; i++ {
			a, err := Shard(jobs, i, n)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := Shard(slices.Clone(jobs), i, n)
			if !slices.EqualFunc(a, b, func(x, y Job) bool { return x.Name() == y.Name() }) {
				t.Fatalf("trial %d: shard %d/%d differs between two calls", trial, i, n)
			}
			var load time.Duration
			last := -1
			for _, j := range a {
				// Names can repeat (a seed listed twice), so count
				// occurrences and check order by first position
				// after the previous one.
				pos := slices.IndexFunc(jobs[last+1:], func(x Job) bool { return x.Name() == j.Name() })
				if pos < 0 {
					t.Fatalf("trial %d: shard %d/%d out of the jobs' order at %s", trial, i, n, j.Name())
				}
				last += pos + 1
				seen[j.Name()]++
				load += j.weight()
			}
			loads = append(loads, load)
		}
		want := map[string]int{}
		for _, j := range jobs {
			want[j.Name()]++
		}
		if fmt.Sprint(seen) != fmt.Sprint(want) {
			t.Fatalf("trial %d: %d shards hold %v, want every job once: %v", trial, n, seen, want)
		}
		if len(jobs) > 0 && slices.Max(loads)-slices.Min(loads) > maxW {
			t.Fatalf("trial %d: shard loads %v differ by more than the heaviest job %v", trial, loads, maxW)
		}
	}
}

func TestShardRefusesAShardOutsideOneToN(t *testing.T) {
	jobs := Expand([]scenarios.Spec{spec("a", "x", "valid", 1)})
	for _, c := range [][2]int{{0, 2}, {3, 2}, {1, 0}} {
		if _, err := Shard(jobs, c[0], c[1]); err == nil {
			t.Errorf("Shard(%d/%d) accepted", c[0], c[1])
		}
	}
}

func TestParseShard(t *testing.T) {
	if i, n, err := ParseShard("2/3"); err != nil || i != 2 || n != 3 {
		t.Fatalf("2/3: %d %d %v", i, n, err)
	}
	for _, bad := range []string{"3/2", "0/1", "1/0", "1", "a/b", "1/2x", " 1/2"} {
		if _, _, err := ParseShard(bad); err == nil || !strings.Contains(err.Error(), "i/n") {
			t.Errorf("ParseShard(%q): %v, want an error naming i/n", bad, err)
		}
	}
}

func TestJudge(t *testing.T) {
	cases := []struct {
		expect string
		got    models.Verdict
		err    error
		want   Status
		detail string
	}{
		{"valid", models.Valid, nil, Pass, "expected valid, got valid"},
		{"invalid", models.Invalid, nil, Pass, "expected invalid, got invalid"},
		{"invalid", models.Valid, nil, Fail, "became safe"},
		{"valid", models.Invalid, nil, Fail, "a violation"},
		{"valid", models.Unknown, nil, Unknown, "got unknown, so nothing was shown: linearizability: ran out of time"},
		{"invalid", models.Unknown, nil, Unknown, "got unknown, so nothing was shown: linearizability: ran out of time"},
		{"either", models.Unknown, nil, Unknown, "got unknown, so nothing was shown: linearizability: ran out of time"},
		{"either", models.Valid, nil, Flaky, "got valid"},
		{"either", models.Invalid, nil, Flaky, "got invalid"},
		{"valid", "", errors.New("setup: no redis-server"), Error, "no redis-server"},
		{"safe", models.Valid, nil, Error, "want valid, invalid or either"},
	}
	for _, c := range cases {
		o := Outcome{Verdict: c.got}
		if c.got == models.Unknown {
			o.Cause = "linearizability: ran out of time"
		}
		s, d := Judge(scenarios.Expect{Verdict: c.expect}, o, c.err)
		if s != c.want || !strings.Contains(d, c.detail) {
			t.Errorf("expect %s, got %q, err %v: %s (%s), want %s (…%s…)", c.expect, c.got, c.err, s, d, c.want, c.detail)
		}
	}
}

// A suite row names why a run is unknown, and says when no fault ran.
func TestOutcomeOfNamesTheCause(t *testing.T) {
	rep := &models.Report{Verdict: models.Unknown, Checkers: []models.CheckerResult{
		{Name: models.MutexName, Safety: true, Verdict: models.Valid, Summary: "no overlap"},
		{Name: models.FaultsName, Safety: true, Verdict: models.Unknown, Summary: "no fault ran: pause-holder never ran: the schedule held none"},
	}, Faults: &models.FaultsResult{Requested: []string{"pause-holder"}, Kinds: []models.FaultKindRun{{Kind: "pause-holder", Aimed: true}}}}
	o := OutcomeOf(rep, models.Unknown, false)
	if !o.NoFaultRan || !strings.Contains(o.Cause, "faults: no fault ran") {
		t.Fatalf("outcome %+v, want no fault ran and its cause", o)
	}
	if s, d := Judge(scenarios.Expect{Verdict: "valid"}, o, nil); s != Unknown || !strings.Contains(d, "no fault ran") {
		t.Errorf("judged %s (%s), want unknown naming the fault that never ran", s, d)
	}
	rep.Faults.Kinds[0].Applied, rep.Faults.Kinds[0].HitHolder = 1, 1
	if OutcomeOf(rep, models.Unknown, false).NoFaultRan {
		t.Error("NoFaultRan for a run whose fault ran at a holder")
	}
}

// fakeExec answers each job with the verdict named by its locker, or an
// error for locker "broken".
func fakeExec(_ context.Context, j Job, dir string) (Outcome, error) {
	if j.Spec.Locker == "broken" {
		return Outcome{}, errors.New("setup failed")
	}
	o := Outcome{Verdict: models.Verdict(j.Spec.Locker), Dir: dir, Elapsed: time.Duration(j.Seed) * time.Second}
	if o.Verdict == models.Invalid {
		o.Counterexample = "two holders of key k0\nclient 1 at 3 ms, client 2 at 4 ms"
	}
	return o, nil
}

func mixedJobs() []Job {
	return Expand([]scenarios.Spec{
		spec("good", "valid", "valid", 1, 2),
		spec("unsafe", "invalid", "invalid", 3),
		spec("healed", "valid", "invalid", 4),
		spec("slow", "unknown", "valid", 5),
		spec("noredis", "broken", "valid", 6),
		spec("wobbly", "invalid", "either", 7),
	})
}

func TestRunJudgesEveryJobInOrderAndReportsProgress(t *testing.T) {
	var calls atomic.Int32
	var lastDone, lastTotal int
	jobs := mixedJobs()
	rs, err := Run(context.Background(), jobs, Options{Parallel: 3, OutDir: "/out", Exec: fakeExec,
		Progress: func(done, total int, r Result) { calls.Add(1); lastDone, lastTotal = done, total }})
	if err != nil {
		t.Fatal(err)
	}
	want := []Status{Pass, Pass, Pass, Fail, Unknown, Error, Flaky}
	var got []Status
	for k, r := range rs {
		got = append(got, r.Status)
		if r.Job.Name() != jobs[k].Name() {
			t.Errorf("result %d is %s, want %s", k, r.Job.Name(), jobs[k].Name())
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("statuses %v, want %v", got, want)
	}
	if rs[0].Outcome.Dir != "/out/good-s1" {
		t.Errorf("run dir %q", rs[0].Outcome.Dir)
	}
	if !rs[3].BecameSafe() || rs[1].BecameSafe() {
		t.Errorf("became safe: healed %v, good %v", rs[3].BecameSafe(), rs[1].BecameSafe())
	}
	if calls.Load() != int32(len(jobs)) || lastDone != len(jobs) || lastTotal != len(jobs) {
		t.Errorf("progress: %d calls, last %d/%d", calls.Load(), lastDone, lastTotal)
	}
}

func TestRunInterruptedKeepsWhatFinishedAndMarksTheRestNotRun(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	jobs := Expand([]scenarios.Spec{spec("a", "valid", "valid", 1, 2, 3, 4)})
	exec := func(ctx context.Context, j Job, dir string) (Outcome, error) {
		if j.Seed == 2 {
			// An interrupt arrives while the second job runs.
			cancel()
			<-ctx.Done()
			return Outcome{Verdict: models.Valid}, ctx.Err()
		}
		return fakeExec(ctx, j, dir)
	}
	rs, err := Run(ctx, jobs, Options{Parallel: 1, OutDir: t.TempDir(), Exec: exec})
	if err != nil {
		t.Fatal(err)
	}
	var got []Status
	for _, r := range rs {
		got = append(got, r.Status)
	}
	if want := []Status{Pass, NotRun, NotRun, NotRun}; !slices.Equal(got, want) {
		t.Fatalf("statuses %v, want %v", got, want)
	}
	if !strings.Contains(rs[1].Detail, "interrupted") || !strings.Contains(rs[2].Detail, "not run") {
		t.Errorf("details %q, %q", rs[1].Detail, rs[2].Detail)
	}
	if ExitCode(rs) != 2 {
		t.Errorf("exit %d for an interrupted suite, want 2", ExitCode(rs))
	}
}

func TestRunKeepsAJobThatFinishedAsTheInterruptCame(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	jobs := Expand([]scenarios.Spec{spec("a", "valid", "valid", 1, 2)})
	exec := func(ctx context.Context, j Job, dir string) (Outcome, error) {
		cancel()
		return fakeExec(ctx, j, dir)
	}
	rs, _ := Run(ctx, jobs, Options{Parallel: 1, Exec: exec})
	if rs[0].Status != Pass || rs[1].Status != NotRun {
		t.Fatalf("statuses %s, %s; want the finished job's pass kept and the next not run", rs[0].Status, rs[1].Status)
	}
}

func TestRunRefusesNoExecOrNoParallelism(t *testing.T) {
	if _, err := Run(context.Background(), nil, Options{Parallel: 1}); err == nil || !strings.Contains(err.Error(), "Exec") {
		t.Errorf("no Exec: %v", err)
	}
	if _, err := Run(context.Background(), nil, Options{Exec: fakeExec}); err == nil || !strings.Contains(err.Error(), "parallel") {
		t.Errorf("parallel 0: %v", err)
	}
}

func results(statuses ...Status) []Result {
	var rs []Result
	for _, s := range statuses {
		rs = append(rs, Result{Status: s})
	}
	return rs
}

func TestExitCode(t *testing.T) {
	cases := []struct {
		rs   []Result
		want int
	}{
		{nil, 0},                                  // an empty shard passes
		{results(Pass, Pass), 0},                  // every run as expected
		{results(Pass, Flaky), 0},                 // a flaky cell never fails the suite
		{results(Pass, Fail), 1},                  // a verdict differs
		{results(Unknown, Fail, Error), 1},        // a difference outranks an unknown
		{results(Pass, Unknown), 2},               // unknown is never a pass
		{results(Pass, Error), 2},                 // could not run
		{results(Pass, NotRun), 2},                // interrupted
		{results(Flaky, Unknown, Error, Pass), 2}, // none differs, some unshown
	}
	for _, c := range cases {
		if got := ExitCode(c.rs); got != c.want {
			t.Errorf("ExitCode(%v) = %d, want %d", Counts(c.rs), got, c.want)
		}
	}
}

func TestWriteJUnitRoundTripsWithCountsMatchingItsCases(t *testing.T) {
	rs, _ := Run(context.Background(), mixedJobs(), Options{Parallel: 2, OutDir: "/out", Exec: fakeExec})
	rs = append(rs, Result{Job: Job{Spec: spec("late", "memory-owner", "valid"), Seed: 9}, Status: NotRun, Detail: "not run: the suite was interrupted first"})
	var buf bytes.Buffer
	if err := WriteJUnit(&buf, "quick", rs); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(buf.String(), "<?xml") {
		t.Fatalf("no XML header:\n%s", buf.String())
	}
	var back junitSuites
	if err := xml.Unmarshal(buf.Bytes(), &back); err != nil {
		t.Fatalf("not XML: %v\n%s", err, buf.String())
	}
	if len(back.Suites) != 1 {
		t.Fatalf("%d testsuites, want 1", len(back.Suites))
	}
	s := back.Suites[0]
	var failures, errs, skipped int
	for _, c := range s.Cases {
		n := 0
		for _, p := range []*junitProblem{c.Failure, c.Error, c.Skipped} {
			if p != nil {
				n++
			}
		}
		if n > 1 {
			t.Errorf("case %s has %d of failure/error/skipped, want at most one", c.Name, n)
		}
		if c.Failure != nil {
			failures++
		}
		if c.Error != nil {
			errs++
		}
		if c.Skipped != nil {
			skipped++
		}
		if c.Name == "" || c.Classname == "" || c.Time == "" {
			t.Errorf("case %+v lacks a name, classname or time", c)
		}
	}
	if s.Name != "quick" || s.Tests != len(rs) || len(s.Cases) != len(rs) || s.Failures != failures || s.Errors != errs || s.Skipped != skipped {
		t.Errorf("testsuite %s: tests %d failures %d errors %d skipped %d; cases %d failures %d errors %d skipped %d",
			s.Name, s.Tests, s.Failures, s.Errors, s.Skipped, len(s.Cases), failures, errs, skipped)
	}
	if failures != 1 || errs != 2 || skipped != 1 {
		t.Errorf("failures %d errors %d skipped %d, want 1 (became safe), 2 (unknown, error), 1 (not run)", failures, errs, skipped)
	}
	if back.Tests != s.Tests || back.Failures != s.Failures || back.Errors != s.Errors || back.Skipped != s.Skipped {
		t.Errorf("testsuites counts %+v differ from testsuite's", back)
	}
	healed := s.Cases[3]
	if healed.Name != "healed seed 4" || healed.Classname != "valid" || healed.Time != "4.000" || healed.Failure == nil ||
		healed.Failure.Type != "became-safe" || !strings.Contains(healed.Failure.Message, "expected invalid, got valid") ||
		!strings.Contains(healed.Failure.Body, "because the test says so") || !strings.Contains(healed.Failure.Body, "/out/healed-s4") {
		t.Errorf("became-safe case: %+v %+v", healed, healed.Failure)
	}
	if wobbly := s.Cases[6]; wobbly.Failure != nil || !strings.Contains(wobbly.SystemOut, "flaky") || !strings.Contains(wobbly.SystemOut, "two holders of key k0") {
		t.Errorf("flaky case: %+v", wobbly)
	}
}

func TestWriteJUnitCarriesTheCounterexampleOfAViolation(t *testing.T) {
	rs, _ := Run(context.Background(), Expand([]scenarios.Spec{spec("broke", "invalid", "valid", 1)}), Options{Parallel: 1, Exec: fakeExec})
	var buf bytes.Buffer
	if err := WriteJUnit(&buf, "s", rs); err != nil {
		t.Fatal(err)
	}
	var back junitSuites
	if err := xml.Unmarshal(buf.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	f := back.Suites[0].Cases[0].Failure
	if f == nil || f.Type != "verdict" || !strings.Contains(f.Body, "client 1 at 3 ms, client 2 at 4 ms") {
		t.Fatalf("failure %+v", f)
	}
}

func TestWriteMarkdownPutsFailuresFirstAndTotalsLast(t *testing.T) {
	rs, _ := Run(context.Background(), mixedJobs(), Options{Parallel: 2, OutDir: "/out", Exec: fakeExec})
	rs[0].Job.Spec.Name = "pipe|name"
	var buf bytes.Buffer
	if err := WriteMarkdown(&buf, rs); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2+len(rs)+2 {
		t.Fatalf("%d lines, want header, rule, %d rows, blank, totals:\n%s", len(lines), len(rs), buf.String())
	}
	for _, l := range lines[:2+len(rs)] {
		if strings.Count(strings.ReplaceAll(l, `\|`, ""), "|") != 8 {
			t.Errorf("row with a broken cell count: %s", l)
		}
	}
	first := lines[2]
	if !strings.HasPrefix(first, "| healed | 4 | invalid | valid | **fail: became safe** | 4.0s |") {
		t.Errorf("first row %q, want the became-safe failure", first)
	}
	if !strings.Contains(buf.String(), "| wobbly | 7 | either | invalid | flaky | 7.0s | two holders of key k0 |") {
		t.Errorf("flaky row or first counterexample line missing:\n%s", buf.String())
	}
	if !strings.Contains(buf.String(), `pipe\|name`) {
		t.Errorf("a | in a name is not escaped:\n%s", buf.String())
	}
	want := "7 runs, 3 pass, 1 fail (1 became safe), 1 unknown, 1 error, 1 flaky; exit status 1"
	if lines[len(lines)-1] != want {
		t.Errorf("totals %q, want %q", lines[len(lines)-1], want)
	}
}

// A liveness failure is its own verdict in the results: shown always,
// and said not to count when the rule (runner.LivenessCounts) says so.
func TestWriteMarkdownShowsLiveness(t *testing.T) {
	stuck := Result{Job: Job{Spec: scenarios.Spec{Name: "keeps", Expect: scenarios.Expect{Verdict: "valid"}}, Seed: 1},
		Outcome: Outcome{Verdict: models.Valid, Liveness: models.Invalid}, Status: Pass}
	required := stuck
	required.Job.Spec.Name, required.Job.Spec.RequireRecovery = "keeps-required", true
	required.Outcome.Verdict, required.Outcome.LivenessCounts, required.Status = models.Invalid, true, Fail
	var buf bytes.Buffer
	if err := WriteMarkdown(&buf, []Result{stuck, required}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "| keeps | 1 | valid | valid; liveness invalid (not counted: no lease, or a recovery window shorter than two leases, and the scenario does not require recovery) | pass |") ||
		!strings.Contains(buf.String(), "| keeps-required | 1 | valid | invalid; liveness invalid | **fail** |") {
		t.Errorf("liveness not shown:\n%s", buf.String())
	}
}

// A live scenario expected invalid may take attempts: a valid run is a
// miss, retried in a directory of its own, and only a seed valid on every
// attempt has become safe. A run expected valid is never retried.
func TestAttemptsRetryOnlyAMissedDefect(t *testing.T) {
	for _, tc := range []struct {
		name              string
		expect            string
		attempts, validOn int // the first validOn runs are valid, the rest invalid
		status            Status
		runs              int
	}{
		{"found on the third", "invalid", 3, 2, Pass, 3},
		{"never found", "invalid", 2, 5, Fail, 2},
		{"found at once", "invalid", 3, 0, Pass, 1},
		{"one attempt by default", "invalid", 0, 1, Fail, 1},
		{"expected valid, violated", "valid", 3, 0, Fail, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := spec("s", "x", tc.expect, 1)
			s.Attempts = tc.attempts
			var dirs []string
			exec := func(ctx context.Context, j Job, dir string) (Outcome, error) {
				dirs = append(dirs, dir)
				if len(dirs) <= tc.validOn {
					return Outcome{Verdict: models.Valid}, nil
				}
				return Outcome{Verdict: models.Invalid}, nil
			}
			rs, err := Run(context.Background(), Expand([]scenarios.Spec{s}), Options{Parallel: 1, OutDir: "/out", Exec: exec})
			if err != nil {
				t.Fatal(err)
			}
			r := rs[0]
			if r.Status != tc.status || r.Attempts != tc.runs || len(dirs) != tc.runs {
				t.Fatalf("status %s after %d attempts (%d runs: %v), want %s after %d; detail %q", r.Status, r.Attempts, len(dirs), dirs, tc.status, tc.runs, r.Detail)
			}
			if want := "/out/s-s1"; dirs[0] != want || r.Outcome.Dir != dirs[len(dirs)-1] {
				t.Errorf("directories %v, result in %s; want the first in %s and the result in the last", dirs, r.Outcome.Dir, want)
			}
			if tc.runs > 1 {
				if dirs[1] != "/out/s-s1-attempt2" {
					t.Errorf("second attempt in %s, want /out/s-s1-attempt2", dirs[1])
				}
				if want := fmt.Sprintf("attempt %d of %d; valid before it: /out/s-s1", tc.runs, tc.attempts); !strings.Contains(r.Detail, want) {
					t.Errorf("detail %q does not say %q", r.Detail, want)
				}
				var md bytes.Buffer
				if err := WriteMarkdown(&md, rs); err != nil {
					t.Fatal(err)
				}
				if want := fmt.Sprintf("(attempt %d of %d) |", tc.runs, tc.attempts); !strings.Contains(md.String(), want) {
					t.Errorf("the table does not say %q:\n%s", want, md.String())
				}
			}
		})
	}
}
