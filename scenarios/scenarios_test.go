package scenarios

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/lockcheck/lockcheck/backends/redisserver"
	"github.com/lockcheck/lockcheck/catalog"
	"github.com/lockcheck/lockcheck/faults"
	"github.com/lockcheck/lockcheck/harness"
	"github.com/lockcheck/lockcheck/history"
)

func TestRegressionFilesLoadAndValidate(t *testing.T) {
	specs := Regression()
	if len(specs) == 0 {
		t.Fatal("no regression scenarios embedded")
	}
	for _, s := range specs {
		n, err := s.Normalize(resolve)
		if err != nil {
			t.Errorf("%v", err)
			continue
		}
		if !strings.HasPrefix(s.Name, "regression/") || s.Summary == "" {
			t.Errorf("%s: want a regression/<defect> name and a summary saying the defect and its step", s.Name)
		}
		if len(s.Seeds) != 1 {
			t.Errorf("%s: seeds %v: pin exactly the seed that reproduced it", s.Name, s.Seeds)
		}
		if s.Expect.Verdict != ExpectInvalid {
			t.Errorf("%s: expect %q; a pinned defect is expected invalid", s.Name, s.Expect.Verdict)
		}
		// The suite runs every regression scenario; each must stay short.
		if wall := time.Duration(n.Duration + n.RecoveryTimeout); wall > 30*time.Second {
			t.Errorf("%s: duration + recovery timeout = %v, want at most 30s", s.Name, wall)
		}
	}
}

// A sim form of its own is read in place of the derived one only when it
// is right; SimForm falls back quietly, so every file is checked here: it
// has a regression scenario, its name, a simulation, one seed, the
// expectation of its regression scenario, and it validates.
func TestSimFormFilesBelongAndValidate(t *testing.T) {
	files, err := fs.Glob(regressionFS, "regression/sim/*.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, file := range files {
		parent, err := Lookup("regression/" + strings.TrimSuffix(path.Base(file), ".json"))
		if err != nil {
			t.Errorf("%s: no regression scenario of that name: %v", file, err)
			continue
		}
		f, err := simFile(regressionFS, parent)
		if err != nil {
			t.Error(err)
			continue
		}
		if _, err := f.Normalize(resolve); err != nil {
			t.Errorf("%s: %v", file, err)
		}
		if got, _ := SimForm(parent); got.Name != f.Name || len(got.FaultPlan) != len(f.FaultPlan) || got.Clients != f.Clients {
			t.Errorf("%s: SimForm does not return the file", file)
		}
	}
	bad := fstest.MapFS{"regression/sim/x.json": {Data: []byte(`{"name": "regression/x/sim", "locker": "lai", "seeds": [1], "expect": {"verdict": "invalid", "reason": "r"}}`)}}
	if _, err := simFile(bad, Spec{Name: "regression/x", Expect: Expect{Verdict: ExpectInvalid}}); err == nil || !strings.Contains(err.Error(), "not a simulation") {
		t.Errorf("a sim form without sim: true: %v", err)
	}
}

// Every cell where a ported locker was not valid on every seed is pinned
// by a regression scenario, so a defect the tables found cannot be left
// without one.
func TestEveryDefectOfAPortedLockerIsPinned(t *testing.T) {
	for locker, cells := range measured {
		if slices.Contains(notPorted, locker) {
			continue
		}
		for family := range cells {
			if _, ok := pinnedBy[locker+"/"+family]; !ok {
				t.Errorf("%s under %s is not valid on every seed, and no regression scenario pins it: add one to pinnedBy", locker, family)
			}
		}
	}
	for cell, name := range pinnedBy {
		s, err := Lookup(name)
		if err != nil || !strings.HasPrefix(s.Name, "regression/") {
			t.Errorf("%s: pinned by %q, which is no regression scenario: %v", cell, name, err)
			continue
		}
		locker := strings.Split(cell, "/")[0]
		if s.Locker != locker || slices.Contains(notPorted, locker) {
			t.Errorf("%s: pinned by %s, a scenario of %s", cell, name, s.Locker)
		}
	}
	pinned := map[string]bool{}
	for _, name := range pinnedBy {
		pinned[name] = true
	}
	for _, s := range Regression() {
		if !pinned[s.Name] {
			t.Errorf("%s pins no cell of the tables; name the cells it stands for in pinnedBy", s.Name)
		}
	}
}

func TestRegressionFileMustBeNamedAfterItsDefect(t *testing.T) {
	fsys := fstest.MapFS{"regression/a.json": {Data: []byte(`{"name": "regression/b", "locker": "lai", "seeds": [1], "expect": {"verdict": "invalid", "reason": "x"}}`)}}
	if _, err := loadRegression(fsys); err == nil || !strings.Contains(err.Error(), `want "regression/a"`) {
		t.Errorf("misnamed file: %v", err)
	}
	fsys = fstest.MapFS{"regression/a.json": {Data: []byte(`{"name": "regression/a", "lokcer": "lai"}`)}}
	if _, err := loadRegression(fsys); err == nil || !strings.Contains(err.Error(), "lokcer") {
		t.Errorf("misspelt field: %v", err)
	}
}

func TestBadSpecsNameWhatToFix(t *testing.T) {
	good := func() Spec {
		return Spec{Name: "t/bad", Locker: "memory-owner", Seeds: []uint64{1}, Expect: Expect{Verdict: "valid", Reason: "control"}}
	}
	if _, err := good().Normalize(resolve); err != nil {
		t.Fatalf("the good spec: %v", err)
	}
	cases := []struct {
		name   string
		change func(*Spec)
		want   string
	}{
		{"locker", func(s *Spec) { s.Locker = "nope" }, `locker: unknown locker "nope"; known lockers: memory`},
		{"fault", func(s *Spec) { s.Faults = []string{"meteor"} }, `faults: unknown fault "meteor"`},
		{"workload", func(s *Spec) { s.Workload = "queue" }, `workload: unknown workload "queue"; known workloads: mutex`},
		{"verdict", func(s *Spec) { s.Expect.Verdict = "ok" }, `expect.verdict: "ok": want "valid", "invalid" or "either"`},
		{"reason", func(s *Spec) { s.Expect.Reason = " " }, "expect.reason: empty"},
		{"seed 0", func(s *Spec) { s.Seeds = []uint64{0} }, "seeds: 0: want 1..2^63-1"},
		{"seed twice", func(s *Spec) { s.Seeds = []uint64{1, 2, 1} }, "seeds: 1 is listed twice"},
		{"attempts", func(s *Spec) { s.Expect.Verdict, s.Attempts = "invalid", 9 }, "attempts: 9: want 1..5, or 0 for one"},
		{"attempts of a valid", func(s *Spec) { s.Attempts = 3 }, "attempts: only a scenario expected invalid may take attempts"},
		{"attempts of a sim", func(s *Spec) { s.Expect.Verdict, s.Attempts, s.Sim = "invalid", 3, true }, "attempts: a simulated run repeats its history exactly"},
		{"fault duration", func(s *Spec) { s.FaultDuration = "3" }, `fault_duration: "3": want D or MIN-MAX`},
		{"fault range", func(s *Spec) { s.FaultDuration = "2s-1s" }, `fault_duration: "2s-1s": want 0 < MIN <= MAX`},
		{"backend", func(s *Spec) { s.Backend = "etcd" }, `backend: unknown backend "etcd"`},
		{"backend of locker", func(s *Spec) { s.Backend = BackendRedisServer }, `backend: "redis-server" runs Redis lockers only`},
		{"ttl and scale", func(s *Spec) { s.Locker, s.TTL, s.TimeScale = "lai", Duration(time.Second), 0.5 }, "ttl: ttl and time_scale both set"},
		{"clients", func(s *Spec) { s.Clients = -1 }, "settings: clients must be between 1 and 1024"},
		{"hold range", func(s *Spec) { s.HoldMin = Duration(time.Second) }, "hold range 1s..50ms is empty"},
		{"redis addr", func(s *Spec) { s.RedisAddrs = []string{"localhost"} }, `redis_addrs: "localhost": want host:port`},
		{"plan kind", func(s *Spec) {
			s.FaultPlan = []PlannedFault{{Kind: "pause", Client: 0, At: Duration(time.Second), Duration: Duration(time.Second)}}
		}, `fault_plan: [0] (pause at 1s): kind "pause" is not in faults []`},
		{"plan client", func(s *Spec) {
			s.Faults = []string{"pause"}
			s.FaultPlan = []PlannedFault{{Kind: "pause", Client: 8, At: Duration(time.Second), Duration: Duration(time.Second)}}
		}, "fault_plan: [0] (pause at 1s): client 8: want 0..7"},
		{"plan end", func(s *Spec) {
			s.Faults = []string{"pause"}
			s.FaultPlan = []PlannedFault{{Kind: "pause", At: Duration(9 * time.Second), Duration: Duration(2 * time.Second)}}
		}, "ends at 11s, after the run's duration"},
		{"plan overlap", func(s *Spec) {
			s.Faults = []string{"pause"}
			s.FaultPlan = []PlannedFault{{Kind: "pause", At: Duration(time.Second), Duration: Duration(2 * time.Second)}, {Kind: "pause", At: Duration(2 * time.Second), Duration: Duration(time.Second)}}
		}, "fault_plan: [1] (pause at 2s): starts before the fault before it ends (3s)"},
	}
	for _, c := range cases {
		s := good()
		c.change(&s)
		_, err := s.Normalize(resolve)
		if err == nil {
			t.Errorf("%s: accepted", c.name)
			continue
		}
		if msg := err.Error(); !strings.Contains(msg, c.want) || !strings.Contains(msg, "scenario t/bad") {
			t.Errorf("%s: error does not say %q with the scenario's name:\n%s", c.name, c.want, msg)
		}
	}
}

func TestNormalizeFillsTheTablesDefaults(t *testing.T) {
	s, err := Spec{Name: "t", Locker: "lai", Seeds: []uint64{1}, Expect: Expect{"valid", "x"}}.Normalize(resolve)
	if err != nil {
		t.Fatal(err)
	}
	if s.Workload != "mutex" || s.Clients != 8 || s.Keys != 2 || s.Duration != Duration(8*time.Second) || *s.Rate != 20 ||
		s.HoldMax != Duration(50*time.Millisecond) || s.TTL != Duration(time.Second) || s.RecoveryTimeout != Duration(10*time.Second) {
		t.Errorf("defaults: %+v", s)
	}
	zero := 0.0
	s, err = Spec{Name: "t", Locker: "gcslock", Rate: &zero, Seeds: []uint64{1}, Expect: Expect{"valid", "x"}}.Normalize(resolve)
	if err != nil {
		t.Fatal(err)
	}
	if *s.Rate != 0 || s.TTL != 0 {
		t.Errorf("rate 0 (back to back) must stay, and a locker without a lease gets no ttl: rate %v ttl %v", *s.Rate, s.TTL)
	}
}

func TestExploreIsUniqueApplicableAndValid(t *testing.T) {
	specs := Explore()
	seen := map[string]bool{}
	for _, s := range specs {
		if seen[s.Name] {
			t.Errorf("duplicate %s", s.Name)
		}
		seen[s.Name] = true
		if _, err := s.Normalize(resolve); err != nil {
			t.Error(err)
		}
		kinds, _ := faults.Lookup(s.Faults)
		i := slices.IndexFunc(exploreLockers, func(l exploreLocker) bool { return l.name == s.Locker })
		for _, k := range kinds {
			b := exploreLockers[i].backend
			if (k.Needs == faults.NeedsNetwork && b == inProcess) || (k.Needs == faults.NeedsServer && b != gcsBackend) {
				t.Errorf("%s: fault %s cannot reach locker %s", s.Name, k.Name, s.Locker)
			}
		}
	}
	// Every non-mutant locker is classified, in catalog order, so a new
	// one is not left out, or taken for in-process, by accident.
	var want []string
	for _, l := range catalog.Lockers() {
		if !strings.HasPrefix(l.Name, "mutant-") {
			want = append(want, l.Name)
		}
	}
	if got := ExploreLockers(); !slices.Equal(got, want) {
		t.Errorf("explore.go's lockers %v, the catalog's non-mutant lockers %v", got, want)
	}
	for _, want := range []string{"lai/mutex/partition", "redis/register/pause", "gcslock/mutex/lost-reply", "memory/mutex/clock"} {
		if !seen[want] {
			t.Errorf("explore lacks %s", want)
		}
	}
	for _, absent := range []string{"memory/mutex/partition", "lease/mutex/latency", "redis/mutex/429"} {
		if seen[absent] {
			t.Errorf("explore has not-applicable %s", absent)
		}
	}
	byName := map[string]Spec{}
	for _, s := range specs {
		byName[s.Name] = s
	}
	for name, want := range map[string]string{"lai/mutex/partition": "either", "lai/mutex/server-lost-reply": "invalid", "lai/register/server-lost-reply": "invalid", "fenced/mutex/pause": "either", "fenced/mutex/none": "valid", "gcslock/register/lost-reply": "either"} {
		if got := byName[name].Expect.Verdict; got != want {
			t.Errorf("%s: expect %q, want %q", name, got, want)
		}
	}
	if s := byName["lai/mutex/pause"]; s.FaultDuration != "2.5s" || s.TTL != Duration(time.Second) {
		t.Errorf("lai pause: fault duration %q ttl %v, want 2.5 leases of 1s", s.FaultDuration, s.TTL)
	}
}

func TestLookupAndSuites(t *testing.T) {
	if s, err := Lookup("lai/mutex/pause"); err != nil || s.Locker != "lai" {
		t.Errorf("Lookup: %v %v", s.Name, err)
	}
	_, err := Lookup("lai/mutex/paws")
	if err == nil || !strings.Contains(err.Error(), "did you mean") || !strings.Contains(err.Error(), "lai/mutex/pause") {
		t.Errorf("Lookup of a near miss: %v", err)
	}
	if _, err := Lookup("zzz"); err == nil || !strings.Contains(err.Error(), "verify scenarios") {
		t.Errorf("Lookup of nothing close: %v", err)
	}
	quick, err := Suite("quick")
	if err != nil || len(quick) == 0 {
		t.Fatalf("quick: %v", err)
	}
	var valid, invalid int
	for _, s := range quick {
		if len(s.Seeds) != 1 {
			t.Errorf("quick %s runs %d seeds, want 1", s.Name, len(s.Seeds))
		}
		switch s.Expect.Verdict {
		case ExpectValid:
			valid++
		case ExpectInvalid:
			invalid++
		default:
			t.Errorf("quick %s expects %q: a quick suite wants certain cells", s.Name, s.Expect.Verdict)
		}
	}
	if valid == 0 || invalid == 0 {
		t.Errorf("quick has %d valid and %d invalid cells; want both", valid, invalid)
	}
	nightly, _ := Suite("nightly")
	reg, _ := Suite("regression")
	regSim, _ := Suite("regression-sim")
	if len(nightly) != len(Explore()) || len(reg) != len(Regression()) || len(regSim) != len(RegressionSim()) ||
		len(All()) != len(nightly)+len(reg)+len(regSim) {
		t.Errorf("nightly %d, regression %d, regression-sim %d, all %d", len(nightly), len(reg), len(regSim), len(All()))
	}
	for _, s := range regSim {
		if !s.Sim || len(s.Seeds) != 1 || !strings.HasSuffix(s.Name, "/sim") {
			t.Errorf("sim form %s: sim %v, seeds %v; want a simulation on one seed named <defect>/sim", s.Name, s.Sim, s.Seeds)
		}
		if _, err := Lookup(s.Name); err != nil {
			t.Errorf("sim form %s cannot be looked up: %v", s.Name, err)
		}
	}
	for _, s := range nightly {
		if len(s.Seeds) != 3 {
			t.Errorf("nightly %s: %d seeds, want 3", s.Name, len(s.Seeds))
		}
	}
	if _, err := Suite("weekly"); err == nil || !strings.Contains(err.Error(), "known suites: quick") {
		t.Errorf("unknown suite: %v", err)
	}
}

func TestPrepareRecordsTheSpecAndItsSeed(t *testing.T) {
	s, err := Spec{Name: "t/p", Locker: "lai", Faults: []string{"pause-holder"}, FaultDuration: "500ms-1s", Seeds: []uint64{1}, Expect: Expect{"invalid", "x"}}.Normalize(resolve)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir() + "/run"
	cfg, err := Prepare(s, resolve, 42, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Seed != 42 || cfg.Dir != dir || cfg.FaultMin != 500*time.Millisecond || cfg.FaultMax != time.Second ||
		cfg.TimeScale != float64(time.Second)/float64(cfg.Locker.TTL) || len(cfg.Observers) != 1 {
		t.Fatalf("config: %+v", cfg)
	}
	out, err := harness.Run(context.Background(), withShortRun(cfg))
	if err != nil {
		t.Fatal(err)
	}
	got, err := ReadRecord(out.Dir)
	if err != nil {
		t.Fatal(err)
	}
	want := s
	want.Seeds = []uint64{42}
	a, _ := json.Marshal(got)
	b, _ := json.Marshal(want)
	if string(a) != string(b) {
		t.Errorf("scenario.json:\n%s\nwant\n%s", a, b)
	}
	if _, err := Prepare(s, resolve, 0, dir, nil); err == nil {
		t.Error("Prepare took seed 0")
	}
}

// The redis-server backend runs the locker on real servers, which the
// run starts and stops (package backends tests how many and that they
// stop).
func TestPrepareRunsOnRealRedisServers(t *testing.T) {
	s, err := Spec{Name: "t/redis", Locker: "redlock", Backend: BackendRedisServer, Duration: Duration(300 * time.Millisecond),
		RecoveryTimeout: Duration(2 * time.Second), Clients: 2, Keys: 1, Seeds: []uint64{1}, Expect: Expect{"valid", "x"}}.Normalize(resolve)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := Prepare(s, resolve, 1, t.TempDir()+"/run", nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Backend != BackendRedisServer {
		t.Fatalf("backend %q reached the harness, want %q", cfg.Backend, BackendRedisServer)
	}
	out, err := harness.Run(context.Background(), cfg)
	if errors.Is(err, redisserver.ErrNoRedisServer) {
		t.Skipf("no real Redis (`make redis-server` installs it): %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	h, err := history.ReadFile(filepath.Join(out.Dir, "history.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	acquired := 0
	for _, e := range h.Events {
		if e.F == history.Acquire && e.Type == history.OK {
			acquired++
		}
	}
	if acquired == 0 {
		t.Error("no acquire succeeded on the real servers")
	}
}

// withShortRun keeps a test run under a second.
func withShortRun(c harness.Config) harness.Config {
	c.Locker, _ = catalog.Lookup("memory-owner")
	c.Duration, c.RecoveryTimeout, c.Faults, c.Clients = 200*time.Millisecond, time.Second, nil, 2
	return c
}

// Every family has scenarios, each shaped as its compare column shapes
// a run: the long columns' holds outlast the lease, their faults three
// leases.
func TestFamiliesAreCompareColumns(t *testing.T) {
	cols, err := LookupColumns(Families)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cols {
		i := slices.IndexFunc(Explore(), func(s Spec) bool { return strings.HasSuffix(s.Name, "/"+c.Name) })
		if i < 0 {
			t.Errorf("family %s has no scenario", c.Name)
			continue
		}
		s := Explore()[i]
		want := Spec{}
		c.Apply(&want, DefaultTTL)
		if s.HoldMin != want.HoldMin || s.HoldMax != want.HoldMax || s.FaultDuration != want.FaultDuration || s.Keys != want.Keys || s.Clients != want.Clients {
			t.Errorf("%s: holds %v-%v, faults %q, %d keys, %d clients; its column makes %v-%v, %q, %d, %d",
				s.Name, s.HoldMin, s.HoldMax, s.FaultDuration, s.Keys, s.Clients, want.HoldMin, want.HoldMax, want.FaultDuration, want.Keys, want.Clients)
		}
	}
	long := Explore()[slices.IndexFunc(Explore(), func(s Spec) bool { return s.Name == "fenced/mutex/long-fail-fast" })]
	if time.Duration(long.HoldMin) != 3*DefaultTTL || long.FaultDuration != (3*DefaultTTL).String() {
		t.Errorf("fenced/mutex/long-fail-fast: holds from %v, faults %q; want three leases each", long.HoldMin, long.FaultDuration)
	}
}

// resolve is the command line's resolver: the built-in catalog, or an
// external worker.
func resolve(s Spec) (harness.LockerSpec, error) {
	return catalog.Resolve(s.Locker, s.Worker, s.Backend)
}

// Every exploratory scenario has room for each of its faults on each of
// its seeds: a nightly run whose faults never ran would be unknown.
func TestExploreScenariosHaveRoomForTheirFaults(t *testing.T) {
	for _, s := range Explore() {
		if len(s.Faults) == 0 {
			continue
		}
		n, err := s.Normalize(resolve)
		if err != nil {
			t.Fatal(err)
		}
		for _, seed := range n.Seeds {
			cfg, err := Prepare(n, resolve, seed, t.TempDir(), nil)
			if err != nil {
				t.Fatalf("%s: %v", s.Name, err)
			}
			seen := map[string]bool{}
			for _, f := range cfg.DrawFaultPlan() {
				seen[f.Kind.Name] = true
			}
			if len(seen) != len(s.Faults) {
				t.Errorf("%s seed %d (%v): plan holds %v, want each of %v", s.Name, seed, time.Duration(n.Duration), seen, s.Faults)
			}
		}
	}
}
