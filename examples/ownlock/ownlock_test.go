package ownlock_test

import (
	"os"
	"testing"
	"time"

	"example.com/ownlock"
	"github.com/lockcheck/lockcheck/check"
	"github.com/lockcheck/lockcheck/lockers"
)

// locker is ownlock as lockcheck runs it: one store for the run, one
// Locker per client. With EXAMPLE_PLANT_BUG=1 the refresher never runs.
func locker(skipRefresh bool) check.Locker {
	store := ownlock.NewStore(lockers.SystemClock{})
	return check.Locker{
		Name: "ownlock",
		New: func(env lockers.Env) (lockers.Locker, error) {
			return ownlock.New(store, env, ownlock.Options{TTL: 300 * time.Millisecond, SkipRefresh: skipRefresh}), nil
		},
	}
}

// Holds run past the TTL, so only a refreshed lease keeps its holder
// alone; crashes leave leases to expire. The run is simulated (Sim): in
// virtual time, the same history on every run of a seed, so neither test
// can flake on a loaded machine, where a refresh that comes late breaks
// a 300 ms lease for real. Leave Sim out to run the same scenario live.
var scenario = check.Scenario{
	Sim:     true,
	Clients: 6, Keys: 1, Duration: check.Seconds(4),
	HoldMin: check.Seconds(0.05), HoldMax: check.Seconds(0.6),
	Faults: []string{"crash"}, Seeds: []uint64{1, 2},
}

// Both tests run in parallel: each run directory is claimed by its run,
// so two of one locker and seed never collide.
func TestOwnLock(t *testing.T) {
	t.Parallel()
	check.Test(t, locker(os.Getenv("EXAMPLE_PLANT_BUG") == "1"), scenario)
}

// The planted bug must be caught, or this test proves nothing: the same
// scenario, expecting invalid, on the locker without its refresher.
func TestPlantedBugIsCaught(t *testing.T) {
	t.Parallel()
	s := scenario
	s.Expect = check.Expect{Verdict: "invalid", Reason: "the refresher never runs, so a lease held past its TTL is taken over"}
	for _, r := range check.Test(t, locker(true), s) {
		if r.Counterexample == "" {
			t.Errorf("seed %d: invalid with no counterexample", r.Seed)
		}
	}
}
