package harness

import (
	"context"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/lockcheck/lockcheck/history"
	"github.com/lockcheck/lockcheck/lockers"
)

// withRegisters gives a test spec in-process registers.
func withRegisters(spec LockerSpec) LockerSpec {
	setup := spec.Setup
	spec.Setup = func(ctx context.Context, p Params) (*Instance, error) {
		inst, err := setup(ctx, p)
		if err == nil {
			mem, _ := InProcess(func(Params) func(lockers.Env) (lockers.Locker, error) { return nil })(ctx, p)
			inst.Register = mem.Register
		}
		return inst, err
	}
	return spec
}

// grantAllSpec is a lock that grants every request at once, with tokens
// that rise per key: no exclusion at all, so its register loses updates
// and only a fenced store can save the data.
func grantAllSpec() LockerSpec {
	return withRegisters(LockerSpec{Name: "grant-all", Fencing: true, Setup: func(context.Context, Params) (*Instance, error) {
		var mu sync.Mutex
		tokens := map[string]uint64{}
		return &Instance{New: func(lockers.Env) (lockers.Locker, error) {
			return lockerFunc(func(_ context.Context, key string) (lockers.Lease, error) {
				mu.Lock()
				defer mu.Unlock()
				tokens[key]++
				return grantedLease{token: tokens[key]}, nil
			}), nil
		}, Close: func() {}}, nil
	}})
}

type lockerFunc func(context.Context, string) (lockers.Lease, error)

func (f lockerFunc) Lock(ctx context.Context, key string) (lockers.Lease, error) { return f(ctx, key) }

type grantedLease struct{ token uint64 }

func (l grantedLease) Token() uint64                { return l.token }
func (l grantedLease) Lost() <-chan struct{}        { return nil }
func (l grantedLease) Unlock(context.Context) error { return nil }

func intValue(t *testing.T, e history.Event) int64 {
	t.Helper()
	v, err := strconv.ParseInt(string(e.Value), 10, 64)
	if err != nil {
		t.Fatalf("event %d: value %q is not an integer", e.Index, e.Value)
	}
	return v
}

// registerTally reads a register history back: the writes each key's
// store acknowledged, the final values, and the refusals.
type registerTally struct {
	acked, refused map[string]int
	finals         map[string]int64
}

func tallyRegister(t *testing.T, h *history.History) registerTally {
	t.Helper()
	tally := registerTally{acked: map[string]int{}, refused: map[string]int{}, finals: map[string]int64{}}
	open := map[history.Process]history.Event{}
	holding := map[history.Process]uint64{} // process → token of the lease it holds
	for _, e := range h.Events {
		switch {
		case e.F == history.Final:
			tally.finals[e.Key] = intValue(t, e)
		case e.Type == history.Invoke:
			open[e.Process] = e
			if e.F == history.ReadOp || e.F == history.WriteOp {
				tok, ok := holding[e.Process]
				if !ok {
					t.Fatalf("event %d: %s outside a critical section", e.Index, e.F)
				}
				if e.Token != tok {
					t.Fatalf("event %d: %s carries token %d, the lease's is %d", e.Index, e.F, e.Token, tok)
				}
			}
			if e.F == history.Release {
				delete(holding, e.Process)
			}
		case e.F == history.Acquire && e.Type == history.OK:
			holding[e.Process] = e.Token
		case e.F == history.WriteOp && e.Type == history.OK:
			if intValue(t, e) != intValue(t, open[e.Process]) {
				t.Fatalf("event %d: write ok of %s, invoked with %s", e.Index, e.Value, open[e.Process].Value)
			}
			tally.acked[e.Key]++
		case e.F == history.WriteOp && e.Type == history.Fail:
			tally.refused[e.Key]++
		}
	}
	return tally
}

func TestRegisterWorkloadUnderACorrectLockLosesNothing(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cfg.Locker = withRegisters(testSpec())
	cfg.Workload.Name = history.WorkloadRegister
	_, h := runAndRead(t, cfg)
	tally := tallyRegister(t, h)
	if len(tally.finals) != cfg.Workload.Keys {
		t.Fatalf("final values of %d keys, want %d: %v", len(tally.finals), cfg.Workload.Keys, tally.finals)
	}
	total := 0
	for key, n := range tally.acked {
		total += n
		if tally.finals[key] != int64(n) {
			t.Errorf("key %s: %d acknowledged increments, final value %d", key, n, tally.finals[key])
		}
	}
	if total < 10 {
		t.Fatalf("only %d increments; the workload did not run", total)
	}
}

func TestRegisterWorkloadWithoutExclusionLosesUpdates(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cfg.Locker = grantAllSpec()
	cfg.Workload.Name = history.WorkloadRegister
	cfg.Workload.Keys = 1
	cfg.Workload.HoldMin, cfg.Workload.HoldMax = 5*time.Millisecond, 20*time.Millisecond
	_, h := runAndRead(t, cfg)
	tally := tallyRegister(t, h)
	got, recorded := tally.finals["k0"]
	acked := tally.acked["k0"]
	if !recorded || acked == 0 {
		t.Fatalf("final value recorded: %v, %d acknowledged increments: the workload or its final read did not run", recorded, acked)
	}
	if got >= int64(acked) {
		t.Fatalf("final value %d with %d acknowledged increments by clients that never excluded each other: no update was lost", got, acked)
	}
}

func TestFencedRegisterRefusesStaleTokens(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cfg.Locker = grantAllSpec()
	cfg.Workload.Name = history.WorkloadFencedRegister
	cfg.Workload.Keys = 1
	cfg.Workload.HoldMin, cfg.Workload.HoldMax = 5*time.Millisecond, 20*time.Millisecond
	_, h := runAndRead(t, cfg)
	tally := tallyRegister(t, h)
	if tally.refused["k0"] == 0 {
		t.Fatal("no write was refused, though every client held the lock at once")
	}
	if got, acked := tally.finals["k0"], tally.acked["k0"]; got != int64(acked) || acked == 0 {
		t.Fatalf("final value %d, %d acknowledged increments: the fenced store lost or invented an update", got, acked)
	}
}

// TestWorkloadsAreNamed: an unknown workload is refused before anything is
// written, naming the ones there are.
func TestWorkloadsAreNamed(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cfg.Workload.Name = "queue"
	if _, err := Run(context.Background(), cfg); err == nil || !contains(err.Error(), "register") {
		t.Fatalf("error %v, want one listing the workloads", err)
	}
	if _, err := os.Stat(cfg.Dir); !os.IsNotExist(err) {
		t.Fatalf("refused run left %s behind", cfg.Dir)
	}
	cfg = testConfig(t)
	cfg.Workload.Name = history.WorkloadRegister // testSpec has no store
	if _, err := Run(context.Background(), cfg); err == nil || !contains(err.Error(), "no store") {
		t.Fatalf("error %v, want one saying the locker has no store", err)
	}
}
