package harness_test

import (
	"testing"
	"time"

	"github.com/lockcheck/lockcheck/catalog"
	"github.com/lockcheck/lockcheck/harness"
	"github.com/lockcheck/lockcheck/history"
)

func TestRequestReleaseEndsHoldsEarly(t *testing.T) {
	t.Parallel()
	spec, err := catalog.Lookup("memory") // tus MemoryLocker: waiters ask the holder
	if err != nil {
		t.Fatal(err)
	}
	cfg := harness.TestConfig(t)
	cfg.Locker = spec
	cfg.Workload = harness.Workload{Name: history.WorkloadRequestRelease, Keys: 1, Rate: 50, HoldMin: time.Minute, HoldMax: time.Minute, AcquireTimeout: 5 * time.Second}
	cfg.Duration = time.Second
	cfg.RecoveryTimeout = 5 * time.Second
	out, h := harness.RunAndRead(t, cfg)
	if len(out.Unfinished) > 0 {
		t.Fatalf("clients %v never let go of a minute-long hold", out.Unfinished)
	}
	asked := map[history.Process]bool{}
	requests, released := 0, 0
	for _, e := range h.Events {
		switch {
		case e.F == history.ReleaseRequested:
			requests++
			asked[e.Process] = true
		case e.F == history.Release && e.Type == history.Invoke && asked[e.Process]:
			released++
			delete(asked, e.Process)
		}
	}
	if requests < 3 || released != requests {
		t.Fatalf("%d release requests, %d releases after one: holds of a minute should all have ended on request", requests, released)
	}
}
