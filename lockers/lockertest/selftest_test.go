package lockertest

import (
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lockcheck/lockcheck/lockers"
	"github.com/lockcheck/lockcheck/lockers/memory"
	"github.com/lockcheck/lockcheck/lockers/mutants"
)

func mutantSuite(newLocker func(*mutants.Store, lockers.Env, mutants.Options) *mutants.Locker) Suite {
	const ttl = 2 * time.Second
	return Suite{
		New: func(testing.TB) func(lockers.Env) lockers.Locker {
			store := mutants.NewStore(lockers.SystemClock{}, mutants.StoreOptions{})
			return func(env lockers.Env) lockers.Locker {
				return newLocker(store, env, mutants.Options{TTL: ttl, PollInterval: time.Millisecond})
			}
		},
		Fencing: true, OwnerCheck: true, TTL: ttl,
	}
}

// The suite can fail: run with a recorder in place of the test, it catches
// each mutant's bug in the property made for it, and raises no alarm on the
// correct lockers. (Each locker's own tests assert the same through
// Suite.Lacks; this pins it where the suite is.)
func TestSuiteCatchesBrokenLockers(t *testing.T) {
	memorySuite := Suite{
		New: func(testing.TB) func(lockers.Env) lockers.Locker {
			store := memory.NewStore()
			// A poll interval spares the suite 31 spinning waiters; the
			// property at stake here is the owner check.
			return func(env lockers.Env) lockers.Locker {
				return memory.New(store, env, memory.Options{PollInterval: time.Millisecond})
			}
		},
		ReleaseRequest: true,
		OwnerCheck:     true, // claimed falsely, to see it fail
	}
	for _, tc := range []struct {
		name string
		s    Suite
		fail []Property
	}{
		{mutants.Lease, mutantSuite(mutants.NewLease), nil},
		{mutants.DoubleGrant, mutantSuite(mutants.NewDoubleGrant), []Property{MutexOneKey, MutexManyKeys}},
		{mutants.UnlockAny, mutantSuite(mutants.NewUnlockAny), []Property{OwnerCheck}},
		{mutants.SilentExpiry, mutantSuite(mutants.NewSilentExpiry), []Property{LeaseKept}},
		{memory.Name, memorySuite, []Property{OwnerCheck}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, p := range properties {
				if claimed, _ := p.claimed(tc.s); !claimed {
					continue
				}
				failures := check(t, tc.s, p)
				want := false
				for _, f := range tc.fail {
					want = want || f == p.name
				}
				switch {
				case want && len(failures) == 0:
					t.Errorf("%s: passed, want a failure", p.name)
				case !want && len(failures) > 0:
					t.Errorf("%s: false alarm: %s", p.name, strings.Join(failures, "; "))
				case want:
					t.Logf("%s: caught: %s", p.name, failures[0])
				}
			}
		})
	}
}

// A property listed in Lacks that holds fails Run: a weakness claimed is a
// weakness shown. The failing Run happens in a child process, the only way
// to watch a *testing.T fail without failing this test.
func TestRunFailsWhenLackedPropertyHolds(t *testing.T) {
	if os.Getenv("LOCKERTEST_CHILD") == "1" {
		s := mutantSuite(mutants.NewLease)
		s.OwnerCheck = false
		s.Lacks = map[Property]string{OwnerCheck: "claimed for the test, but lease has one"}
		Run(t, s)
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestRunFailsWhenLackedPropertyHolds$", "-test.v")
	cmd.Env = append(os.Environ(), "LOCKERTEST_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("the child's Run passed, want a failure:\n%s", out)
	}
	if !strings.Contains(string(out), "documented as lacking owner-check") {
		t.Fatalf("the child failed, but not for the lacking property:\n%s", out)
	}
	if strings.Contains(string(out), "--- FAIL: TestRunFailsWhenLackedPropertyHolds/mutex") {
		t.Fatalf("the child failed other properties too:\n%s", out)
	}
}

func TestSuiteValidation(t *testing.T) {
	newLocker := func(testing.TB) func(lockers.Env) lockers.Locker { return nil }
	for _, tc := range []struct {
		name string
		s    Suite
		want string
	}{
		{"no New", Suite{}, "Suite.New is nil"},
		{"unknown property", Suite{New: newLocker, Lacks: map[Property]string{"mutex": "x"}}, "unknown property"},
		{"no reason", Suite{New: newLocker, Lacks: map[Property]string{OwnerCheck: " "}}, "gives no reason"},
		{"claimed and lacked", Suite{New: newLocker, OwnerCheck: true, Lacks: map[Property]string{OwnerCheck: "x"}}, "both claimed"},
		{"lease-kept without TTL", Suite{New: newLocker, Lacks: map[Property]string{LeaseKept: "x"}}, "needs Suite.TTL"},
	} {
		err := tc.s.validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error containing %q", tc.name, err, tc.want)
		}
	}
	ok := Suite{New: newLocker, TTL: time.Second, Lacks: map[Property]string{LeaseKept: "x", MutexOneKey: "y"}}
	if err := ok.validate(); err != nil {
		t.Errorf("valid suite: %v", err)
	}
}

// Parallel runs the properties side by side and keeps the verdicts: the
// correct lease passes every one, and the double grant's lacking mutex
// properties are still proven (Run fails if a lacked property holds).
func TestParallelSuiteKeepsTheVerdicts(t *testing.T) {
	t.Run("lease", func(t *testing.T) {
		s := mutantSuite(mutants.NewLease)
		s.Parallel = true
		Run(t, s)
	})
	t.Run("double-grant", func(t *testing.T) {
		s := mutantSuite(mutants.NewDoubleGrant)
		s.Parallel = true
		s.Fencing = false // its tokens break with its exclusion
		s.Lacks = map[Property]string{MutexOneKey: "grants every request", MutexManyKeys: "grants every request"}
		Run(t, s)
	})
}

// A check that proves a lacking property stops at the first overlap: the
// double grant overlaps at once, so far fewer than all 32 x 10 holds run.
func TestProvingALackStopsAtTheFirstOverlap(t *testing.T) {
	failures := check(t, mutantSuite(mutants.NewDoubleGrant), properties[slices.IndexFunc(properties, func(p property) bool { return p.name == MutexOneKey })])
	if len(failures) == 0 {
		t.Fatal("the double grant passed mutex-1key")
	}
	var sightings, holds int
	if _, err := fmt.Sscanf(failures[0], "mutual exclusion broken (%d sightings of a second holder) in %d holds", &sightings, &holds); err != nil {
		t.Fatalf("unexpected failure %q: %v", failures[0], err)
	}
	if holds >= 32*10 {
		t.Errorf("%d holds, all of them: the check ran on past the first overlap", holds)
	}
	t.Logf("stopped after %d holds (%d sightings)", holds, sightings)
}
