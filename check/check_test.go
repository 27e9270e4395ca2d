package check_test

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"github.com/lockcheck/lockcheck/check"
	"github.com/lockcheck/lockcheck/lockers"
	"github.com/lockcheck/lockcheck/lockers/mutants"
	"github.com/lockcheck/lockcheck/models"
	"github.com/lockcheck/lockcheck/scenarios"
)

// mutant is one of lockcheck's planted lockers given as a user would give
// their own: a store for the run, a Locker per client.
func mutant(name string, build func(*mutants.Store, lockers.Env, mutants.Options) *mutants.Locker) check.Locker {
	store := mutants.NewStore(lockers.SystemClock{}, mutants.StoreOptions{})
	return check.Locker{Name: name, Fencing: true, New: func(env lockers.Env) (lockers.Locker, error) {
		return build(store, env, mutants.Options{}), nil
	}}
}

// grantAll is the most broken lock there is: every Lock succeeds at once.
// Two clients on one key that hold for milliseconds overlap on every seed.
func grantAll() check.Locker {
	var mu sync.Mutex
	token := uint64(0)
	return check.Locker{Name: "grant-all", New: func(lockers.Env) (lockers.Locker, error) {
		return lockFunc(func(context.Context, string) (lockers.Lease, error) {
			mu.Lock()
			defer mu.Unlock()
			token++
			return grant{token}, nil
		}), nil
	}}
}

type lockFunc func(context.Context, string) (lockers.Lease, error)

func (f lockFunc) Lock(ctx context.Context, key string) (lockers.Lease, error) { return f(ctx, key) }

type grant struct{ token uint64 }

func (g grant) Token() uint64                { return g.token }
func (g grant) Lost() <-chan struct{}        { return nil }
func (g grant) Unlock(context.Context) error { return nil }

// short runs in simulation: a catch or a pass these tests assert is the
// same on every run of its seed, loaded machine or not.
var short = check.Scenario{Sim: true, Clients: 4, Keys: 1, Duration: check.Seconds(1.5), RecoveryTimeout: check.Seconds(3)}

// fakeT records what Test says, so a failing verdict can be seen failing.
type fakeT struct {
	mu     sync.Mutex
	errors []string
	fatal  []string
	ctx    context.Context
}

func (f *fakeT) Helper()                  {}
func (f *fakeT) Logf(string, ...any)      {}
func (f *fakeT) Context() context.Context { return f.ctx }
func (f *fakeT) Errorf(s string, a ...any) {
	f.mu.Lock()
	f.errors = append(f.errors, fmt.Sprintf(s, a...))
	f.mu.Unlock()
}
func (f *fakeT) Fatalf(s string, a ...any) {
	f.mu.Lock()
	f.fatal = append(f.fatal, fmt.Sprintf(s, a...))
	f.mu.Unlock()
}

func TestACorrectLockPasses(t *testing.T) {
	t.Setenv("LOCKCHECK_RESULTS", t.TempDir())
	f := &fakeT{ctx: t.Context()}
	results := check.Test(f, mutant("lease", mutants.NewLease), short)
	if len(f.errors)+len(f.fatal) > 0 {
		t.Fatalf("the lease control failed: %v %v", f.errors, f.fatal)
	}
	if len(results) != 1 || results[0].Verdict != models.Valid || !results[0].Met {
		t.Fatalf("results %+v, want one valid run that met its expectation", results)
	}
}

func TestABrokenLockFailsTheTestWithItsCounterexample(t *testing.T) {
	t.Setenv("LOCKCHECK_RESULTS", t.TempDir())
	f := &fakeT{ctx: t.Context()}
	s := short
	s.Seeds = []uint64{1, 2}
	results := check.Test(f, grantAll(), s)
	if len(results) != 2 {
		t.Fatalf("%d results, want one per seed", len(results))
	}
	if len(f.errors) != 2 {
		t.Fatalf("%d failures, want one per seed: %v", len(f.errors), f.errors)
	}
	for _, e := range f.errors {
		for _, want := range []string{"expected valid, got invalid", "first counterexample (mutual-exclusion): key k0:", "report.html"} {
			if !strings.Contains(e, want) {
				t.Errorf("failure does not say %q:\n%s", want, e)
			}
		}
	}
}

// A scenario that expects the planted bug is met when it is caught.
func TestExpectingInvalidIsMetByACaughtBug(t *testing.T) {
	s := short
	s.Expect = check.Expect{Verdict: scenarios.ExpectInvalid, Reason: "planted"}
	results, err := check.Run(t.Context(), grantAll(), s, check.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if r := results[0]; !r.Met || r.Verdict != models.Invalid || r.Counterexample == "" {
		t.Fatalf("result %+v, want invalid, met, with a counterexample", r)
	}
	results, err = check.Run(t.Context(), mutant("lease", mutants.NewLease), s, check.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if r := results[0]; r.Met || r.Verdict != models.Valid {
		t.Fatalf("result %+v: a valid run must not meet an invalid expectation", r)
	}
}

func TestBadInputIsNamed(t *testing.T) {
	newLocker := func(lockers.Env) (lockers.Locker, error) { return nil, nil }
	for _, c := range []struct {
		locker   check.Locker
		scenario check.Scenario
		want     string
	}{
		{check.Locker{New: newLocker}, short, "has no Name"},
		{check.Locker{Name: "x"}, short, "give New (clients in this process) or Setup"},
		{check.Locker{Name: "x", New: newLocker}, check.Scenario{Locker: "y"}, `names locker "y"`},
		{check.Locker{Name: "x", New: newLocker}, check.Scenario{Worker: []string{"node"}}, "names a worker"},
		{check.Locker{Name: "x", New: newLocker}, check.Scenario{Clients: -3}, "clients must be between 1 and 1024"},
		{check.Locker{Name: "x", New: newLocker}, check.Scenario{Faults: []string{"partition"}}, "acts on the network"},
	} {
		_, err := check.Run(t.Context(), c.locker, c.scenario, check.Options{Dir: t.TempDir()})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: error %v, want one saying %q", c.locker.Name, err, c.want)
		}
	}
}

// Importing the Go API for an in-process locker must not link the GCS
// and Redis clients, the emulators or toxiproxy.
func TestTheAPILinksNoBackend(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/lockcheck/lockcheck/check").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	deps := strings.Fields(string(out))
	for _, d := range deps {
		for _, heavy := range []string{"cloud.google.com/go/storage", "github.com/fsouza/fake-gcs-server", "github.com/Shopify/toxiproxy", "github.com/redis/go-redis", "github.com/alicebob/miniredis"} {
			if strings.HasPrefix(d, heavy) {
				t.Errorf("package check depends on %s", d)
			}
		}
	}
	t.Logf("package check: %d packages with its dependencies", len(deps))
}
