package compare

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lockcheck/lockcheck/catalog"
	"github.com/lockcheck/lockcheck/harness"
	"github.com/lockcheck/lockcheck/models"
	"github.com/lockcheck/lockcheck/scenarios"
)

func lookup(t *testing.T, names ...string) []harness.LockerSpec {
	t.Helper()
	var out []harness.LockerSpec
	for _, n := range names {
		l, err := catalog.Lookup(n)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, l)
	}
	return out
}

func resolve(s scenarios.Spec) (harness.LockerSpec, error) {
	return catalog.Resolve(s.Locker, s.Worker, s.Backend)
}

func base() scenarios.Spec {
	rate := 50.0
	return scenarios.Spec{
		Clients: 4, Keys: 1, Duration: scenarios.Duration(2 * time.Second), Rate: &rate,
		RecoveryTimeout: scenarios.Duration(5 * time.Second), FaultInterval: scenarios.Duration(time.Second),
		HoldMax: scenarios.Duration(10 * time.Millisecond), AcquireTimeout: scenarios.Duration(2 * time.Second),
	}
}

// A planted double grant is invalid in its cell, the correct control is
// valid in the same scenario, and a network fault on an in-process lock is
// n/a rather than a pass or a failure.
func TestExecuteSeparatesGoodFromBadAndNotApplicable(t *testing.T) {
	scen, err := LookupScenarios([]string{"none", "latency"})
	if err != nil {
		t.Fatal(err)
	}
	var progress int
	// In simulation, so the catch is the same on every run of the seed.
	sim := base()
	sim.Sim = true
	p := Plan{
		Lockers:   lookup(t, "lease", "mutant-double-grant"),
		Scenarios: scen,
		Seeds:     []uint64{1},
		TTL:       time.Second,
		Base:      sim,
		Resolve:   resolve,
		Dir:       t.TempDir(),
		Parallel:  2,
		Progress:  func(done, total int, r Run) { progress++ },
	}
	table, err := Execute(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	if len(table.Runs) != 4 || progress != 4 || table.Interrupted {
		t.Fatalf("%d runs, %d progress reports, interrupted %v; want 4, 4, false", len(table.Runs), progress, table.Interrupted)
	}
	want := map[[2]string]string{
		{"lease", "none"}:                  "valid 1/1",
		{"lease", "latency"}:               "n/a",
		{"mutant-double-grant", "none"}:    "**invalid** 1/1",
		{"mutant-double-grant", "latency"}: "n/a",
	}
	for _, c := range table.Cells() {
		s := c.Summarize()
		if got := s.Verdict(); got != want[[2]string{c.Locker, c.Scenario}] {
			t.Errorf("%s / %s: %s, want %s (runs %+v)", c.Locker, c.Scenario, got, want[[2]string{c.Locker, c.Scenario}], c.Runs)
		}
		if c.Locker == "mutant-double-grant" && c.Scenario == "none" && (s.Violations == 0 || c.Runs[0].Counterexample == "") {
			t.Errorf("double grant: %d overlaps, counterexample %q; want both", s.Violations, c.Runs[0].Counterexample)
		}
		if c.Locker == "lease" && c.Scenario == "none" && s.AcquireP50 <= 0 {
			t.Errorf("lease: acquire p50 %v, want it measured", s.AcquireP50)
		}
	}
	var md strings.Builder
	if err := table.WriteMarkdown(&md); err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"| lease | valid 1/1 | n/a |", "| mutant-double-grant | **invalid** 1/1 | n/a |", "| mutant-double-grant | none | **invalid** 1/1 |", "[s1](mutant-double-grant/none/s1/report.html)"} {
		if !strings.Contains(md.String(), w) {
			t.Errorf("markdown lacks %q:\n%s", w, md.String())
		}
	}
}

// A column whose faults would not fit the base run is lengthened until
// every seed's plan holds each of its faults, as the run will draw it.
func TestColumnsRunLongEnoughForTheirFaults(t *testing.T) {
	cols, err := LookupScenarios([]string{"pause", "clock", "server-lost-reply", "none", "long-fail-fast", "deliver-late"})
	if err != nil {
		t.Fatal(err)
	}
	p := Plan{Lockers: lookup(t, "lease"), Scenarios: cols, Seeds: []uint64{1}, TTL: time.Second, Base: base(), Resolve: resolve, Dir: t.TempDir(), Parallel: 1}
	for _, c := range cols {
		for seed := uint64(1); seed <= 200; seed++ {
			spec, err := p.Spec(p.Lockers[0], c, seed).Normalize(resolve)
			if err != nil {
				t.Fatal(err)
			}
			if len(c.Faults) == 0 {
				if spec.Duration != p.Base.Duration {
					t.Fatalf("column %s without faults runs %v, want the base %v", c.Name, spec.Duration, p.Base.Duration)
				}
				break
			}
			cfg, err := scenarios.Prepare(spec, resolve, seed, t.TempDir(), nil)
			if err != nil {
				t.Fatal(err)
			}
			seen := map[string]bool{}
			for _, f := range cfg.DrawFaultPlan() {
				seen[f.Kind.Name] = true
			}
			if len(seen) != len(c.Faults) {
				t.Fatalf("column %s, seed %d, %v run: plan holds %v, want each of %v", c.Name, seed, spec.Duration, seen, c.Faults)
			}
		}
	}
}

// Cell verdicts never read an unknown or a failed run as a pass.
func TestSummaryVerdicts(t *testing.T) {
	cases := []struct {
		runs []Run
		want string
	}{
		{[]Run{{Verdict: models.Valid}, {Verdict: models.Valid}}, "valid 2/2"},
		{[]Run{{Verdict: models.Valid}, {Verdict: models.Invalid, Violations: 3}}, "**invalid** 1/2"},
		{[]Run{{Verdict: models.Valid}, {Verdict: models.Unknown}}, "unknown 1/2"},
		{[]Run{{Verdict: models.Valid}, {Verdict: models.Valid, Error: "interrupted"}}, "unknown 1/2"},
		{[]Run{{Verdict: models.Unknown, Error: "setup: no redis"}}, "error 1/1"},
		{[]Run{{NotApplicable: "no network"}}, "n/a"},
		{[]Run{{Verdict: models.Unknown, NoFaultRan: true}, {Verdict: models.Unknown, NoFaultRan: true}}, "no fault ran 2/2"},
		{[]Run{{Verdict: models.Unknown, NoFaultRan: true}, {Verdict: models.Unknown}}, "unknown 2/2"},
	}
	for _, c := range cases {
		if got := (Cell{Runs: c.runs}).Summarize().Verdict(); got != c.want {
			t.Errorf("%+v: %s, want %s", c.runs, got, c.want)
		}
	}
	if _, err := LookupScenarios([]string{"nope"}); err == nil || !strings.Contains(err.Error(), "known scenarios") {
		t.Errorf("unknown scenario: %v", err)
	}
}

// A lock that never lets go is safe: its cell says so, and says its
// liveness failed, as a verdict of its own.
func TestLivenessIsACellVerdictOfItsOwn(t *testing.T) {
	stuck := Cell{Runs: []Run{{Verdict: models.Valid, Liveness: models.Invalid, Stuck: 7}, {Verdict: models.Valid, Liveness: models.Valid}}}
	if got := stuck.Summarize().Verdict(); got != "valid 2/2; **liveness invalid** 1/2" {
		t.Errorf("cell %q", got)
	}
	deaf := Cell{Runs: []Run{{Verdict: models.Valid, Liveness: models.Valid, ReleaseContended: 9, ReleaseMissed: 4}, {Verdict: models.Valid, Liveness: models.Valid, ReleaseContended: 3}}}
	if got := deaf.Summarize().Verdict(); got != "valid 2/2; **release requests missed** 4/12" {
		t.Errorf("a holder that ignores release requests: cell %q", got)
	}
	fine := Cell{Runs: []Run{{Verdict: models.Valid, Liveness: models.Valid, ReleaseContended: 5}}}
	if got := fine.Summarize().Verdict(); got != "valid 1/1" {
		t.Errorf("cell %q", got)
	}
	var md strings.Builder
	table := &Table{TTL: time.Second, Lockers: []string{"l"}, Scenarios: []Scenario{{Name: "none"}},
		Runs: []Run{{Locker: "l", Scenario: "none", Verdict: models.Valid, Liveness: models.Invalid, Stuck: 7}}}
	if err := table.WriteMarkdown(&md); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(md.String(), "| l | none | valid 1/1 | – | **invalid** 1/1 | 0 |") {
		t.Errorf("the full table lacks the liveness column:\n%s", md.String())
	}
}

// Where a control and its mutant are both invalid, the table says which
// checkers found each: the mutant's extra catch is what tells them apart.
func TestCaughtByTellsAMutantFromItsInvalidControl(t *testing.T) {
	control := &models.Report{Verdict: models.Invalid, Checkers: []models.CheckerResult{
		{Name: "mutual-exclusion", Safety: true, Verdict: models.Invalid, Counterexamples: []string{"overlap"}},
		{Name: models.AuditName, Safety: true, Verdict: models.Valid},
		{Name: models.LivenessName, Verdict: models.Invalid},
	}}
	mutant := &models.Report{Verdict: models.Invalid, Checkers: []models.CheckerResult{
		{Name: "mutual-exclusion", Safety: true, Verdict: models.Invalid, Counterexamples: []string{"overlap"}},
		{Name: models.AuditName, Safety: true, Verdict: models.Invalid, Counterexamples: []string{"stray write"}},
	}}
	var runs []Run
	for i, rep := range []*models.Report{control, control, mutant, mutant, mutant} {
		r := Run{Locker: "control", Scenario: "deliver-late", Seed: uint64(i)}
		if rep == mutant {
			r.Locker = "mutant"
		}
		r.fill(rep)
		runs = append(runs, r)
	}
	if got := runs[0].CaughtBy; !slices.Equal(got, []string{"mutual-exclusion"}) {
		t.Errorf("control caught by %q; a valid checker or a liveness one is no catch", got)
	}
	if got := runs[0].Counterexample; got != "overlap" {
		t.Errorf("control's counterexample %q, want the first checker's", got)
	}
	var md strings.Builder
	table := &Table{TTL: time.Second, Lockers: []string{"control", "mutant"}, Scenarios: []Scenario{{Name: "deliver-late"}}, Runs: runs}
	if err := table.WriteMarkdown(&md); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"| control | deliver-late | **invalid** 2/2 | mutual-exclusion 2 |",
		"| mutant | deliver-late | **invalid** 3/3 | backend-audit 3, mutual-exclusion 3 |",
	} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("the table lacks %q:\n%s", want, md.String())
		}
	}
}

// A comparison in simulation leaves the columns of process clients n/a:
// a process cannot enter virtual time.
func TestSimulatedComparisonLeavesProcessColumnsNotApplicable(t *testing.T) {
	cols, err := LookupScenarios([]string{"sigstop"})
	if err != nil {
		t.Fatal(err)
	}
	sim := base()
	sim.Sim = true
	p := Plan{Lockers: lookup(t, "fenced"), Scenarios: cols, Seeds: []uint64{1}, TTL: time.Second, Base: sim, Resolve: resolve, Dir: t.TempDir(), Parallel: 1}
	table, err := Execute(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	if len(table.Runs) != 1 || !strings.Contains(table.Runs[0].NotApplicable, "process clients cannot run in simulation") {
		t.Fatalf("runs %+v, want one n/a naming the processes", table.Runs)
	}
}

// The long columns, in simulation on seed 1 with the defaults every
// comparison starts from (make mutant-table shows seeds 1-3, live and
// simulated): fenced survives a holder's loud outage and its
// silent partition; a copy that counts a refresh failed at once as
// confirmed breaks under the outage and not under the
// partition (its class: a timeout it handles as the original does); a
// copy that moves its deadline when a refresh is sent breaks under the
// outage; a copy that refreshes with no precondition passes every client
// check under a holder's late deliveries, and the backend audit catches
// its late refresh on the next holder's lock.
func TestLongColumnsCatchTheirClassOfMutant(t *testing.T) {
	t.Parallel()
	want := map[[2]string]string{
		{"fenced", "long-fail-fast"}:                      "valid 1/1",
		{"mutant-failed-extend-counts", "long-fail-fast"}: "**invalid** 1/1",
		{"mutant-deadline-on-send", "long-fail-fast"}:     "**invalid** 1/1",
		{"fenced", "long-partition"}:                      "valid 1/1",
		{"mutant-failed-extend-counts", "long-partition"}: "valid 1/1",
		{"fenced", "deliver-late"}:                        "valid 1/1",
		{"mutant-blind-extend", "deliver-late"}:           "**invalid** 1/1",
	}
	for _, column := range []struct {
		name    string
		lockers []string
	}{
		{"long-fail-fast", []string{"fenced", "mutant-failed-extend-counts", "mutant-deadline-on-send"}},
		{"long-partition", []string{"fenced", "mutant-failed-extend-counts"}},
		{"deliver-late", []string{"fenced", "mutant-blind-extend"}},
	} {
		cols, err := LookupScenarios([]string{column.name})
		if err != nil {
			t.Fatal(err)
		}
		p := Plan{
			Lockers: lookup(t, column.lockers...), Scenarios: cols, Seeds: []uint64{1}, TTL: time.Second,
			Base: scenarios.Spec{Sim: true}, Resolve: resolve, Dir: t.TempDir(), Parallel: 2,
		}
		table, err := Execute(context.Background(), p)
		if err != nil {
			t.Fatal(err)
		}
		cells := table.Cells()
		if len(cells) != len(column.lockers) {
			t.Fatalf("%s: %d cells, want %d", column.name, len(cells), len(column.lockers))
		}
		for _, c := range cells {
			w := want[[2]string{c.Locker, c.Scenario}]
			if got := c.Summarize().Verdict(); got != w {
				t.Errorf("%s × %s: %s, want %s", c.Locker, c.Scenario, got, w)
			}
			if c.Locker == "mutant-blind-extend" && (c.Runs[0].Violations != 0 || !strings.Contains(c.Runs[0].Counterexample, "a write from a client that did not hold the lock")) {
				t.Errorf("mutant-blind-extend: %d overlaps, counterexample %q; want none, and the audit's", c.Runs[0].Violations, c.Runs[0].Counterexample)
			}
		}
	}
}

// The embedded Redis's audit, in simulation on seed 1: under a holder's
// late deliveries, redis (PR #846's locker, whose holders work past
// their lease) already overlaps, so the cell alone cannot tell it from
// its copy whose extend is a bare PEXPIRE; the audit can: the late
// extend lands on the next holder's key.
func TestRedisAuditTellsABlindExtendFromItsOriginal(t *testing.T) {
	t.Parallel()
	cols, err := LookupScenarios([]string{"deliver-late"})
	if err != nil {
		t.Fatal(err)
	}
	p := Plan{
		Lockers: lookup(t, "redis", "mutant-redis-blind-extend"), Scenarios: cols, Seeds: []uint64{1}, TTL: time.Second,
		Base: scenarios.Spec{Sim: true}, Resolve: resolve, Dir: t.TempDir(), Parallel: 2,
	}
	table, err := Execute(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	if len(table.Runs) != 2 {
		t.Fatalf("%d runs, want 2", len(table.Runs))
	}
	for _, r := range table.Runs {
		audited := slices.Contains(r.CaughtBy, models.AuditName)
		switch r.Locker {
		case "redis":
			if audited {
				t.Errorf("redis: the audit found a stray write (%v): %s", r.CaughtBy, r.Counterexample)
			}
		case "mutant-redis-blind-extend":
			if !audited {
				t.Errorf("mutant-redis-blind-extend: caught by %v, not by the backend audit", r.CaughtBy)
			}
		}
		rep, err := os.ReadFile(filepath.Join(r.Dir, "summary.txt"))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(rep), models.AuditName+": ") {
			t.Errorf("%s: the summary has no backend audit line:\n%s", r.Locker, rep)
		}
	}
}
