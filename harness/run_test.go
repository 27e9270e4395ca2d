package harness

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lockcheck/lockcheck/faults"
	"github.com/lockcheck/lockcheck/history"
	"github.com/lockcheck/lockcheck/lockers"
)

// testLocker is a minimal correct lock, so these tests exercise the
// harness and not a locker under test.
type testStore struct {
	mu     sync.Mutex
	owners map[string]*testLease
	tokens map[string]uint64
}

type testLocker struct {
	store *testStore
	env   lockers.Env
}

type testLease struct {
	store *testStore
	key   string
	token uint64
}

func (l *testLocker) Lock(ctx context.Context, key string) (lockers.Lease, error) {
	for {
		l.env.MarkAttempt()
		l.store.mu.Lock()
		if l.store.owners[key] == nil {
			l.store.tokens[key]++
			lease := &testLease{store: l.store, key: key, token: l.store.tokens[key]}
			l.store.owners[key] = lease
			l.store.mu.Unlock()
			return lease, nil
		}
		l.store.mu.Unlock()
		if err := lockers.Sleep(ctx, l.env.Clock, time.Millisecond); err != nil {
			return nil, errors.Join(lockers.ErrNoEffect, err)
		}
	}
}

func (l *testLease) Token() uint64         { return l.token }
func (l *testLease) Lost() <-chan struct{} { return nil }
func (l *testLease) Unlock(context.Context) error {
	l.store.mu.Lock()
	defer l.store.mu.Unlock()
	if l.store.owners[l.key] != l {
		return lockers.ErrNoEffect
	}
	delete(l.store.owners, l.key)
	return nil
}

func testSpec() LockerSpec {
	return LockerSpec{Name: "test", Fencing: true, Setup: func(context.Context, Params) (*Instance, error) {
		s := &testStore{owners: map[string]*testLease{}, tokens: map[string]uint64{}}
		return &Instance{New: func(env lockers.Env) (lockers.Locker, error) { return &testLocker{store: s, env: env}, nil }, Close: func() {}}, nil
	}}
}

func testConfig(t *testing.T, faultNames ...string) Config {
	kinds, err := faults.Lookup(faultNames)
	if err != nil {
		t.Fatal(err)
	}
	return Config{
		Locker: testSpec(), Clients: 4, Duration: 1500 * time.Millisecond,
		Workload:      Workload{Name: "mutex", Keys: 2, Rate: 50, HoldMin: time.Millisecond, HoldMax: 5 * time.Millisecond, AcquireTimeout: time.Second},
		Faults:        kinds,
		FaultInterval: 100 * time.Millisecond, RecoveryTimeout: 2 * time.Second,
		Seed: 3, TimeScale: 1, Dir: filepath.Join(t.TempDir(), "run"),
	}
}

func runAndRead(t *testing.T, cfg Config) (*Outcome, *history.History) {
	t.Helper()
	out, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	h, err := history.ReadFile(out.HistoryPath)
	if err != nil {
		t.Fatal(err)
	}
	return out, h
}

// seedWithEveryFault picks a seed whose plan has every configured kind, so
// the test does not depend on a lucky draw.
func seedWithEveryFault(t *testing.T, cfg Config) uint64 {
	for seed := uint64(1); seed < 1000; seed++ {
		seen := map[string]bool{}
		for _, p := range faults.Plan(seed, cfg.Faults, faults.PlanOptions{Clients: cfg.Clients, Window: cfg.Duration, Interval: cfg.FaultInterval}) {
			seen[p.Kind.Name] = true
		}
		if len(seen) == len(cfg.Faults) {
			return seed
		}
	}
	t.Fatal("no seed below 1000 plans every fault kind")
	return 0
}

func TestRunRecordsWellFormedCalls(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, "pause", "crash")
	cfg.Seed = seedWithEveryFault(t, cfg)
	out, h := runAndRead(t, cfg)
	if out.Interrupted || len(out.Unfinished) > 0 {
		t.Fatalf("outcome %+v", out)
	}
	if h.Header.Run.Locker != "test" || h.Header.Run.Seed != cfg.Seed || len(h.Header.Run.Faults) != 2 {
		t.Errorf("header %+v", h.Header.Run)
	}
	open := map[history.Process]history.Event{}
	var prev int64
	counts := map[string]int{}
	recoveryAt := int64(-1)
	crashed := map[history.Process]bool{}
	// The test locker has no lease: a key whose holder crashed stays held
	// for good, and its clients cannot recover. Which keys that happens to
	// depends on timing, so the history says. A crash that cut a call short
	// (recorded as info) may or may not have left its key held.
	holding := map[history.Process]string{}
	cutShort := map[history.Process]string{}
	stuck, maybeStuck := map[string]bool{}, map[string]bool{}
	clientKey := map[int]string{}
	for _, e := range h.Events {
		if e.Time < prev {
			t.Fatalf("event %d goes back in time", e.Index)
		}
		prev = e.Time
		if e.Process == history.Nemesis {
			counts[e.F]++
			if e.F == history.Recovery {
				recoveryAt = e.Time
			}
			if e.F == history.Crash {
				var ref history.ClientRef
				mustUnmarshal(t, e.Value, &ref)
				crashed[ref.Process] = true
				if key, held := holding[ref.Process]; held {
					stuck[key] = true
				}
				if key, cut := cutShort[ref.Process]; cut {
					maybeStuck[key] = true
				}
				if _, stillOpen := open[ref.Process]; stillOpen {
					t.Errorf("process %d crashed with a call left open", ref.Process)
				}
			}
			continue
		}
		if crashed[e.Process] {
			t.Errorf("event %d by process %d after its crash", e.Index, e.Process)
		}
		switch e.Type {
		case history.Invoke:
			if prior, ok := open[e.Process]; ok {
				t.Fatalf("process %d invokes at %d with call %d open", e.Process, e.Index, prior.Index)
			}
			open[e.Process] = e
		case history.OK, history.Fail, history.Info:
			if e.F == history.Lost {
				continue
			}
			inv, ok := open[e.Process]
			if !ok || inv.F != e.F || inv.Key != e.Key {
				t.Fatalf("completion %d does not match an open call of process %d", e.Index, e.Process)
			}
			delete(open, e.Process)
			counts[string(e.Type)+" "+e.F]++
			clientKey[e.Client] = e.Key
			delete(cutShort, e.Process)
			switch {
			case e.Type == history.OK && e.F == history.Acquire:
				holding[e.Process] = e.Key
			case e.Type == history.OK && e.F == history.Release:
				delete(holding, e.Process)
			case e.Type == history.Info:
				cutShort[e.Process] = e.Key
			}
			if e.Type == history.OK && e.F == history.Acquire && (e.Token == 0 || e.Attempt < inv.Time || e.Attempt > e.Time) {
				t.Errorf("acquire %d: token %d attempt %d outside [%d, %d]", e.Index, e.Token, e.Attempt, inv.Time, e.Time)
			}
		}
	}
	if len(open) != 0 {
		t.Errorf("calls never completed: %v", open)
	}
	// Some calls, so that the checks above had something to check; how
	// many fit in 1.5 s of wall time depends on the machine's load (one
	// clean clone under two busy loops recorded 20 acquires and 19
	// releases, under a floor of 20 once set here).
	if counts["ok acquire"] < 3 || counts["ok release"] < 3 {
		t.Errorf("too little work recorded: %v", counts)
	}
	if counts[history.FaultStart] == 0 || counts[history.FaultStart] != counts[history.FaultStop] {
		t.Errorf("faults started %d, healed %d", counts[history.FaultStart], counts[history.FaultStop])
	}
	if counts[history.Crash] == 0 || counts[history.Crash] != counts[history.Restart] {
		t.Errorf("crashes %d, restarts %d", counts[history.Crash], counts[history.Restart])
	}
	if recoveryAt < 0 {
		t.Fatal("no recovery phase recorded")
	}
	recovered := map[int]bool{}
	for _, e := range h.Events {
		if e.Time >= recoveryAt && e.Type == history.OK && e.F == history.Acquire {
			recovered[e.Client] = true
		}
	}
	for c := range cfg.Clients {
		key, known := clientKey[c]
		switch {
		case !known:
			t.Errorf("client %d completed no call", c)
		case maybeStuck[key] && !stuck[key]:
			// A crash cut a call on key short: recovered or not, both are right.
		case stuck[key] && recovered[c]:
			t.Errorf("client %d acquired %s in recovery, which a crashed holder still held", c, key)
		case !stuck[key] && !recovered[c]:
			t.Errorf("client %d did not acquire %s in recovery (acquired: %v; left held by a crashed holder: %v)", c, key, recovered, stuck)
		}
	}
}

func TestSameSeedSameFaultSchedule(t *testing.T) {
	t.Parallel()
	schedule := func() (out []string) {
		_, h := runAndRead(t, testConfig(t, "pause", "crash"))
		for _, e := range h.Events {
			if e.F == history.FaultStart {
				out = append(out, string(e.Value))
			}
		}
		return out
	}
	a, b := schedule(), schedule()
	if len(a) == 0 || len(a) != len(b) {
		t.Fatalf("schedules differ in length: %d vs %d", len(a), len(b))
	}
	for i := range a {
		if a[i] != b[i] {
			t.Errorf("fault %d: %s vs %s", i, a[i], b[i])
		}
	}
}

// An explicit fault plan is played as it is: what was planned starts,
// when planned, on the client planned, and nothing the seed would draw.
func TestAFaultPlanIsPlayedAsGiven(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, "pause", "crash")
	kinds := cfg.Faults
	cfg.FaultPlan = []faults.Planned{
		{ID: 1, Kind: kinds[1], Clients: []int{2}, At: 200 * time.Millisecond, Duration: 300 * time.Millisecond},
		{ID: 2, Kind: kinds[0], Clients: []int{1}, At: 900 * time.Millisecond, Duration: 200 * time.Millisecond},
	}
	if drawn := cfg.DrawFaultPlan(); len(drawn) == len(cfg.FaultPlan) {
		t.Fatalf("the seed draws %d faults, as many as the plan; the test needs another number to tell them apart", len(drawn))
	}
	_, h := runAndRead(t, cfg)
	var got []history.Fault
	for _, e := range h.Events {
		if e.F == history.FaultStart {
			var f history.Fault
			if err := json.Unmarshal(e.Value, &f); err != nil {
				t.Fatal(err)
			}
			if at := time.Duration(e.Time); at < cfg.FaultPlan[len(got)%2].At {
				t.Errorf("fault %d started at %v, before its planned %v", f.ID, at, cfg.FaultPlan[len(got)%2].At)
			}
			got = append(got, f)
		}
	}
	if len(got) != 2 || got[0].Kind != "crash" || got[0].Clients[0] != 2 || got[1].Kind != "pause" || got[1].Clients[0] != 1 {
		t.Fatalf("played %+v, want crash on client 2 then pause on client 1", got)
	}
	bad := testConfig(t, "pause")
	bad.FaultPlan = []faults.Planned{{ID: 1, Kind: bad.Faults[0], Clients: []int{9}, At: 0, Duration: time.Second}}
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "fault plan entry 0") {
		t.Errorf("a plan aimed at client 9 of 4: %v", err)
	}
}

func TestInterruptedRunKeepsItsHistory(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, "pause")
	cfg.Duration = time.Hour
	ctx, cancel := context.WithCancel(context.Background())
	acquired := make(chan struct{})
	var once sync.Once
	cfg.Observers = []func(history.Event){func(e history.Event) {
		if e.Type == history.OK && e.F == history.Release {
			once.Do(func() { close(acquired) })
		}
	}}
	go func() { <-acquired; cancel() }()
	out, err := Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !out.Interrupted {
		t.Error("interrupted run not reported as such")
	}
	h, err := history.ReadFile(out.HistoryPath)
	if err != nil {
		t.Fatal(err)
	}
	var releases int
	for _, e := range h.Events {
		if e.F == history.Recovery {
			t.Error("an interrupted run ran its recovery phase")
		}
		if e.Type == history.OK && e.F == history.Release {
			releases++
		}
	}
	if releases == 0 {
		t.Error("the interrupted run's history lost its calls")
	}
}

func TestConfigErrorsNameWhatToFix(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cfg.Clients = 0
	cfg.Workload.HoldMax = -1
	_, err := Run(context.Background(), cfg)
	if err == nil {
		t.Fatal("bad config accepted")
	}
	for _, want := range []string{"clients must be between 1 and 1024, got 0", "hold range"} {
		if !contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

type panickyLocker struct{ calls int }

func (p *panickyLocker) Lock(context.Context, string) (lockers.Lease, error) {
	p.calls++
	if p.calls == 3 {
		panic("locker bug")
	}
	return nil, nil
}

func TestLockerBugsTakeDownOnlyTheirClient(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cfg.Locker = LockerSpec{Name: "panicky", Setup: func(context.Context, Params) (*Instance, error) {
		return &Instance{New: func(lockers.Env) (lockers.Locker, error) { return &panickyLocker{}, nil }, Close: func() {}}, nil
	}}
	cfg.Clients = 2
	_, h := runAndRead(t, cfg)
	var crashes, noLease int
	for _, e := range h.Events {
		if e.F == history.Crash {
			crashes++
		}
		if e.Type == history.Info && e.Error == errNoLease.Error() {
			noLease++
		}
	}
	if crashes != 2 {
		t.Errorf("%d crashes recorded, want one per client", crashes)
	}
	if noLease != 4 {
		t.Errorf("%d nil-lease calls recorded as indeterminate, want 4", noLease)
	}
}

// A fault aimed at a holder waits for one: with locks held a few
// milliseconds a few times a second, a random instant almost never finds
// a holder, yet every pause-holder here starts on a client that holds a
// lock, and says so.
func TestHolderFaultsWaitForAHolder(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, "pause-holder")
	cfg.Clients, cfg.Duration = 2, 3*time.Second
	cfg.Workload.Rate, cfg.Workload.HoldMin, cfg.Workload.HoldMax = 3, 20*time.Millisecond, 30*time.Millisecond
	cfg.FaultInterval, cfg.FaultMin, cfg.FaultMax = 300*time.Millisecond, 100*time.Millisecond, 100*time.Millisecond
	_, h := runAndRead(t, cfg)
	holding := map[int]bool{}
	var faults, atHolder int
	for _, e := range h.Events {
		switch {
		case e.F == history.Acquire && e.Type == history.OK:
			holding[e.Client] = true
		case e.F == history.Release && e.Type == history.Invoke:
			holding[e.Client] = false
		case e.F == history.FaultStart:
			var f history.Fault
			if err := json.Unmarshal(e.Value, &f); err != nil {
				t.Fatal(err)
			}
			faults++
			if f.AtHolder {
				atHolder++
				if !holding[f.Clients[0]] {
					t.Errorf("fault %d says it hit a holder, but client %d held nothing at %v", f.ID, f.Clients[0], time.Duration(e.Time))
				}
			}
		}
	}
	if faults < 3 || atHolder < faults-1 {
		t.Errorf("%d of %d pause-holder faults hit a holder; want all (or all but one) of at least 3", atHolder, faults)
	}
}

// Clock faults and a clock spread reach the clients' clocks and are
// recorded: every client starts off real time by its constant, each jump
// or drift is a clock event, and each heal puts the clock back where the
// client's constant left it.
func TestClockFaultsAreRecordedAndHealed(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, "clock-jump-forward", "clock-jump-back", "clock-drift")
	cfg.Duration, cfg.ClockSpread, cfg.ClockStep = 3*time.Second, 10*time.Second, time.Minute
	cfg.FaultMin, cfg.FaultMax = 200*time.Millisecond, 300*time.Millisecond
	_, h := runAndRead(t, cfg)
	constant := map[int]time.Duration{}
	last := map[int]history.ClockChange{}
	var changes, faults int
	for _, e := range h.Events {
		switch e.F {
		case history.Clock:
			var c history.ClockChange
			if err := json.Unmarshal(e.Value, &c); err != nil {
				t.Fatal(err)
			}
			if _, ok := constant[c.Client]; !ok {
				constant[c.Client] = time.Duration(c.Skew)
				if d := time.Duration(c.Skew); d < -cfg.ClockSpread || d > cfg.ClockSpread {
					t.Errorf("client %d set %v off, outside ±%v", c.Client, d, cfg.ClockSpread)
				}
				continue
			}
			changes++
			last[c.Client] = c
		case history.FaultStart:
			faults++
		}
	}
	if len(constant) != cfg.Clients {
		t.Fatalf("%d clients got their constant offset, want %d", len(constant), cfg.Clients)
	}
	if faults < 2 || changes < 2*faults {
		t.Fatalf("%d clock faults made %d clock changes; want at least 2 faults, 2 changes each", faults, changes)
	}
	for c, ch := range last {
		// A drift's heal stops the drift and steps back; rounding of the
		// stop instant leaves nanoseconds at most.
		if d := time.Duration(ch.Skew) - constant[c]; ch.Drift != 0 || d < -time.Millisecond || d > time.Millisecond {
			t.Errorf("client %d after its last heal: %v off its constant %v, drift %v", c, time.Duration(ch.Skew), constant[c], ch.Drift)
		}
	}
}

// Two runs given one directory (parallel tests of one locker and seed
// started in the same millisecond) each get a directory of their own, and
// each history says which.
func TestRunsGivenOneDirectoryEachClaimTheirOwn(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cfg.Duration = 200 * time.Millisecond
	outs := make([]*Outcome, 2)
	var wg sync.WaitGroup
	for i := range outs {
		wg.Go(func() {
			out, err := Run(context.Background(), cfg)
			if err != nil {
				t.Error(err)
				return
			}
			outs[i] = out
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	got := []string{outs[0].Dir, outs[1].Dir}
	slices.Sort(got)
	if want := []string{cfg.Dir, cfg.Dir + "-2"}; !slices.Equal(got, want) {
		t.Fatalf("run directories %q, want %q", got, want)
	}
	for _, out := range outs {
		h, err := history.ReadFile(out.HistoryPath)
		if err != nil {
			t.Fatal(err)
		}
		if h.Header.Run.ID != filepath.Base(out.Dir) {
			t.Errorf("%s: history names run %q", out.Dir, h.Header.Run.ID)
		}
	}
}
