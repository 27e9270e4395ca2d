package harness

import (
	"encoding/json"
	"os"
	"testing"
	"time"

	"github.com/lockcheck/lockcheck/harness/history"
)

func TestNetworkAndServerFaultsReachAGCSLocker(t *testing.T) {
	spec, err := LookupLocker("tus616")
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, "partition-holder", "server-429")
	cfg.Locker, cfg.TimeScale = spec, 0.05
	cfg.Duration, cfg.FaultInterval = 4*time.Second, 200*time.Millisecond
	cfg.Seed = seedWithEveryFault(t, cfg)
	out, h := runAndRead(t, cfg)
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

func TestNetworkFaultOnAnInProcessLockerIsRefused(t *testing.T) {
	cfg := testConfig(t, "partition")
	_, err := Run(t.Context(), cfg)
	if err == nil || !contains(err.Error(), "acts on the network, which locker test does not have") {
		t.Fatalf("err = %v", err)
	}
	if _, statErr := os.Stat(cfg.Dir); !os.IsNotExist(statErr) {
		t.Errorf("a refused run left %s behind (%v)", cfg.Dir, statErr)
	}
}
