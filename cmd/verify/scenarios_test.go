package main

import (
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lockcheck/lockcheck/catalog"
	"github.com/lockcheck/lockcheck/faults"
	"github.com/lockcheck/lockcheck/harness"
	"github.com/lockcheck/lockcheck/scenarios"
)

// oldConfig is how verify run turned its flags into a run before flags
// became a scenario: kept here to hold the one path to it.
func oldConfig(f *runFlags) (harness.Config, error) {
	locker, err := catalog.Lookup(f.locker)
	if err != nil {
		return harness.Config{}, err
	}
	var names []string
	for _, n := range strings.Split(f.faults, ",") {
		if n = strings.TrimSpace(n); n != "" && !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	kinds, err := faults.Lookup(names)
	if err != nil {
		return harness.Config{}, err
	}
	// Neither -ttl nor -time-scale: a locker with a lease runs at the
	// scenarios' default lease, one without as published.
	timeScale := f.timeScale
	ttl := f.ttl
	if ttl == 0 && timeScale == 0 {
		ttl, timeScale = scenarios.DefaultTTL, 1
	}
	if ttl != 0 && locker.TTL > 0 {
		timeScale = float64(ttl) / float64(locker.TTL)
	}
	faultMin, faultMax, err := scenarios.ParseFaultDuration(f.faultDuration)
	if err != nil {
		return harness.Config{}, err
	}
	redisAddrs, err := f.redisList()
	if err != nil {
		return harness.Config{}, err
	}
	return harness.Config{
		Locker: locker, Clients: f.clients, Duration: f.duration,
		Workload: harness.Workload{Name: f.workload, Keys: f.keys, Rate: f.rate, HoldMin: f.holdMin, HoldMax: f.holdMax, AcquireTimeout: f.acquireTimeout},
		Faults:   kinds, FaultInterval: f.faultInterval, RecoveryTimeout: f.recoveryTimeout, Seed: f.seed,
		TimeScale: timeScale, FaultMin: faultMin, FaultMax: faultMax, FaultCoverage: f.faultCoverage, RedisAddrs: redisAddrs,
		ClockStep: f.clockStep, ClockSpread: f.clockSpread, Proxy: f.proxy, GCSBucket: f.gcsBucket, ClientsAs: f.clientsAs,
	}, nil
}

func TestFlagsGoThroughPrepareToTheOldConfig(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"-seed", "3"},
		{"-locker", "tus616", "-time-scale", "0.1", "-faults", "partition-holder,server-429,partition-holder", "-seed", "3"},
		{"-locker", "lai", "-ttl", "1s", "-faults", "clock-jump-forward", "-clock-step", "3s", "-clock-spread", "2s", "-seed", "9"},
		{"-locker", "gmutex", "-ttl", "1s", "-workload", "register", "-faults", "pause-holder", "-fault-duration", "500ms-2.5s", "-rate", "0", "-hold-min", "10ms", "-seed", "4"},
		{"-locker", "redlock", "-redis-addr", "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003", "-proxy", "-clients", "3", "-keys", "5", "-duration", "3s", "-acquire-timeout", "1s", "-fault-interval", "2s", "-recovery-timeout", "4s", "-seed", "8"},
		{"-locker", "gcslock", "-gcs-bucket", "b", "-seed", "1"},
	} {
		fs, f := newRunFlags(&strings.Builder{})
		if err := fs.Parse(args); err != nil {
			t.Fatal(err)
		}
		set := map[string]bool{}
		fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
		spec, err := f.spec(set)
		if err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		if spec, err = spec.Normalize(resolveLocker); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		got, err := scenarios.Prepare(spec, resolveLocker, f.seed, "dir", workerCommand)
		if err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		want, err := oldConfig(f)
		if err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		if got.Locker.Name != want.Locker.Name {
			t.Errorf("%v: locker %s, want %s", args, got.Locker.Name, want.Locker.Name)
		}
		got.Locker, want.Locker = harness.LockerSpec{}, harness.LockerSpec{}
		// A fault kind holds a function, which DeepEqual never finds equal.
		if a, b := faultNamesOf(got.Faults), faultNamesOf(want.Faults); !slices.Equal(a, b) {
			t.Errorf("%v: faults %v, want %v", args, a, b)
		}
		got.Faults, want.Faults = nil, nil
		got.Observers, got.Dir = nil, ""
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%v:\n got %+v\nwant %+v", args, got, want)
		}
	}
}

func TestScenariosListsNameVerdictAndReason(t *testing.T) {
	t.Parallel()
	code, stdout, stderr := verify(t, "scenarios")
	if code != exitValid {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if !strings.HasPrefix(lines[0], "NAME") || !strings.Contains(lines[0], "EXPECT") || !strings.Contains(lines[0], "REASON") {
		t.Errorf("header: %q", lines[0])
	}
	if want := len(scenarios.All()); len(lines) != want+2 {
		t.Errorf("%d lines, want a header, %d scenarios and a count", len(lines), want)
	}
	for _, want := range []string{"regression/tus616-pause-stale-delete", "lai/mutex/partition", "invalid", "either", "step 5"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("listing lacks %q", want)
		}
	}
	code, again, _ := verify(t, "scenarios")
	if code != exitValid || again != stdout {
		t.Error("two listings differ; the order must be stable")
	}
	code, stdout, _ = verify(t, "scenarios", "-suite", "quick")
	if code != exitValid || strings.Contains(stdout, "regression/") || !strings.Contains(stdout, "lease/mutex/pause") {
		t.Errorf("-suite quick: exit %d\n%s", code, stdout)
	}
	code, _, stderr = verify(t, "scenarios", "-suite", "weekly")
	if code != exitCouldNot || !strings.Contains(stderr, "known suites") {
		t.Errorf("-suite weekly: exit %d\n%s", code, stderr)
	}
}

func TestRunScenarioRefusesTheFlagsItSets(t *testing.T) {
	t.Parallel()
	code, _, stderr := verify(t, "run", "-scenario", "lai/mutex/pause", "-clients", "3", "-keys", "1")
	if code != exitCouldNot || !strings.Contains(stderr, "-scenario sets these; drop -clients, -keys") {
		t.Errorf("exit %d\n%s", code, stderr)
	}
	code, _, stderr = verify(t, "run", "-scenario", "lai/mutex/paws")
	if code != exitCouldNot || !strings.Contains(stderr, "did you mean") {
		t.Errorf("exit %d\n%s", code, stderr)
	}
}

func TestRunRecordsItsSpecAndReplayReproducesIt(t *testing.T) {
	t.Parallel()
	// In simulation: a replay of a simulated seed is the same history.
	dir, code, stdout := runOnce(t, "-sim", "-locker", "mutant-silent-expiry", "-time-scale", "1", "-clients", "4", "-keys", "1", "-rate", "0", "-hold-min", "40ms", "-hold-max", "60ms", "-seed", "11")
	if code != exitInvalid {
		t.Fatalf("exit %d, want 1\n%s", code, stdout)
	}
	rec, err := scenarios.ReadRecord(dir)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Locker != "mutant-silent-expiry" || !slices.Equal(rec.Seeds, []uint64{11}) || *rec.Rate != 0 || rec.Duration != scenarios.Duration(1500*time.Millisecond) {
		t.Errorf("scenario.json: %+v", rec)
	}
	code, stdout, stderr := verify(t, "replay", "-q", dir)
	if code != exitInvalid {
		t.Fatalf("replay: exit %d\n%s%s", code, stdout, stderr)
	}
	if !strings.Contains(stdout, "replayed "+dir+" as ") || !strings.Contains(stdout, "verdict invalid, saved invalid: reproduced") {
		t.Errorf("replay output:\n%s", stdout)
	}
	entries, _ := os.ReadDir(filepath.Dir(dir))
	if len(entries) != 2 {
		t.Errorf("want the old and the new run directory side by side, got %d entries", len(entries))
	}
}

func TestReplayWithoutScenarioExitsThree(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	code, _, stderr := verify(t, "replay", dir)
	if code != exitCouldNot || !strings.Contains(stderr, "has no scenario.json") {
		t.Errorf("exit %d\n%s", code, stderr)
	}
	code, _, stderr = verify(t, "replay")
	if code != exitCouldNot || !strings.Contains(stderr, "want exactly one run directory") {
		t.Errorf("no argument: exit %d\n%s", code, stderr)
	}
}

func faultNamesOf(kinds []faults.Kind) []string {
	var out []string
	for _, k := range kinds {
		out = append(out, k.Name)
	}
	return out
}
