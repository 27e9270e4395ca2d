package shrink

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/lockcheck/lockcheck/catalog"
	"github.com/lockcheck/lockcheck/harness"
	"github.com/lockcheck/lockcheck/models"
	"github.com/lockcheck/lockcheck/runner"
	"github.com/lockcheck/lockcheck/scenarios"
)

func resolve(s scenarios.Spec) (harness.LockerSpec, error) {
	return catalog.Resolve(s.Locker, s.Worker, s.Backend)
}

func TestDdminKeepsOnlyWhatTheFailureNeeds(t *testing.T) {
	var items []int
	for i := range 16 {
		items = append(items, i)
	}
	calls := 0
	got := ddmin(items, func(keep []int) bool {
		calls++
		return slices.Contains(keep, 3) && slices.Contains(keep, 11)
	})
	if !slices.Equal(got, []int{3, 11}) {
		t.Fatalf("ddmin kept %v, want [3 11]", got)
	}
	// Complement-only ddmin needs O(k log n) tests for k needed items.
	if calls > 40 {
		t.Errorf("ddmin took %d tests for 2 needed items of 16", calls)
	}
	if got := ddmin(items, func([]int) bool { return true }); got != nil {
		t.Errorf("a failure that needs nothing kept %v", got)
	}
	if got := ddmin(items, func(keep []int) bool { return len(keep) == 16 }); len(got) != 16 {
		t.Errorf("a failure that needs everything kept %d of 16", len(got))
	}
}

func simSpec(t *testing.T, s scenarios.Spec) scenarios.Spec {
	t.Helper()
	s.Sim = true
	s.Name = "test"
	spec, err := s.Normalize(resolve)
	if err != nil {
		t.Fatal(err)
	}
	return spec
}

// The planted bug: an unlock that frees whoever holds the lock. Its
// shrunk run must be smaller, still invalid on mutual exclusion, and its
// scenario file must reproduce it on its own.
func TestShrinkAPlantedBug(t *testing.T) {
	spec := simSpec(t, scenarios.Spec{Locker: "mutant-unlock-any", Faults: []string{"pause", "crash"}, TimeScale: 1})
	res, err := Shrink(context.Background(), spec, 1, Options{Resolve: resolve, Dir: t.TempDir(), Runs: 200})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("before %s; after %s; %d runs", res.Before, res.After, res.Runs)
	if res.After.Operations >= res.Before.Operations || res.After.Duration >= res.Before.Duration || res.After.Faults > res.Before.Faults {
		t.Errorf("not smaller: before %s, after %s", res.Before, res.After)
	}
	if res.Before.Faults > 1 && res.After.Faults >= res.Before.Faults {
		t.Errorf("the bug needs at most one fault, yet %d of %d were kept", res.After.Faults, res.Before.Faults)
	}
	if res.Run.Verdict != models.Invalid || res.Run.Report.Mutex.Verdict != models.Invalid {
		t.Fatalf("shrunk run: verdict %s, mutual exclusion %s", res.Run.Verdict, res.Run.Report.Mutex.Verdict)
	}
	file, err := scenarios.ReadFile(res.ScenarioFile)
	if err != nil {
		t.Fatal(err)
	}
	file, err = file.Normalize(resolve)
	if err != nil {
		t.Fatalf("the shrunk scenario file does not validate: %v", err)
	}
	again, err := runner.Run(context.Background(), runner.Job{Spec: file, Resolve: resolve, Seed: file.Seeds[0], Dir: t.TempDir() + "/again"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if again.Verdict != models.Invalid || again.Report.Counts.Calls != res.After.Operations {
		t.Errorf("the scenario file ran %s with %d calls; the shrunk run was invalid with %d", again.Verdict, again.Report.Counts.Calls, res.After.Operations)
	}
	if file.Expect.Verdict != scenarios.ExpectInvalid {
		t.Errorf("the shrunk scenario expects %q, want invalid", file.Expect.Verdict)
	}
}

func TestShrinkRefusesARunThatDoesNotFail(t *testing.T) {
	spec := simSpec(t, scenarios.Spec{Locker: "lease"})
	_, err := Shrink(context.Background(), spec, 1, Options{Resolve: resolve, Dir: t.TempDir()})
	if !errors.Is(err, ErrDoesNotFail) {
		t.Fatalf("shrinking a valid run: %v, want ErrDoesNotFail", err)
	}
	live := spec
	live.Sim = false
	if _, err := Shrink(context.Background(), live, 1, Options{Resolve: resolve, Dir: t.TempDir()}); err == nil {
		t.Fatal("shrinking a live scenario: no error")
	}
}
