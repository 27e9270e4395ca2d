package harness_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/lockcheck/lockcheck/catalog"
	"github.com/lockcheck/lockcheck/harness"
	"github.com/lockcheck/lockcheck/history"
)

func TestNetworkAndServerFaultsReachAGCSLocker(t *testing.T) {
	t.Parallel()
	spec, err := catalog.Lookup("tus616")
	if err != nil {
		t.Fatal(err)
	}
	cfg := harness.TestConfig(t, "partition-holder", "server-429")
	cfg.Locker, cfg.TimeScale = spec, 0.05
	cfg.Duration, cfg.FaultInterval = 4*time.Second, 200*time.Millisecond
	cfg.Seed = harness.SeedWithEveryFault(t, cfg)
	out, h := harness.RunAndRead(t, cfg)
	if out.Interrupted {
		t.Fatal("run interrupted")
	}
	started, stopped := map[string]int{}, map[string]int{}
	var serverFaults, acquired int
	for _, e := range h.Events {
		switch e.F {
		case history.FaultStart, history.FaultStop:
			var f history.Fault
			if err := json.Unmarshal(e.Value, &f); err != nil {
				t.Fatal(err)
			}
			if e.F == history.FaultStart {
				started[f.Kind]++
			} else {
				stopped[f.Kind]++
			}
		case history.ServerFault:
			serverFaults++
		case history.Acquire:
			if e.Type == history.OK {
				acquired++
			}
		}
	}
	for _, k := range cfg.Faults {
		if started[k.Name] == 0 || started[k.Name] != stopped[k.Name] {
			t.Errorf("%s: started %d, healed %d", k.Name, started[k.Name], stopped[k.Name])
		}
	}
	if serverFaults == 0 {
		t.Error("no faulted request recorded while server-429 was on")
	}
	if acquired == 0 {
		t.Error("tus616 never acquired on the embedded GCS")
	}
}
