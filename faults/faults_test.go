package faults

import (
	"context"
	"math/rand/v2"
	"net"
	"reflect"
	"slices"

	"strings"
	"testing"
	"time"

	"github.com/lockcheck/lockcheck/faults/netfault"
	"github.com/lockcheck/lockcheck/faults/netfault/proxies"
	"github.com/lockcheck/lockcheck/faults/serverfault"
)

func TestPlanIsReproducibleAndInsideTheWindow(t *testing.T) {
	kinds, err := Lookup([]string{"pause", "crash"})
	if err != nil {
		t.Fatal(err)
	}
	o := PlanOptions{Clients: 5, Window: 20 * time.Second, Interval: time.Second}
	a, b := Plan(7, kinds, o), Plan(7, kinds, o)
	if len(a) < 5 {
		t.Fatalf("only %d faults in a 20 s window at 1 s intervals", len(a))
	}
	if !reflect.DeepEqual(names(a), names(b)) || a[3].At != b[3].At || a[3].Clients[0] != b[3].Clients[0] {
		t.Fatal("same seed gave different plans")
	}
	if c := Plan(8, kinds, o); reflect.DeepEqual(starts(a), starts(c)) {
		t.Fatal("different seeds gave the same plan")
	}
	seen := map[string]bool{}
	var prevEnd time.Duration
	for _, p := range a {
		seen[p.Kind.Name] = true
		if p.At < prevEnd {
			t.Errorf("fault %d starts at %v before the previous one healed at %v", p.ID, p.At, prevEnd)
		}
		prevEnd = p.At + p.Duration
		if prevEnd > o.Window {
			t.Errorf("fault %d heals at %v, after the window %v", p.ID, prevEnd, o.Window)
		}
		if c := p.Clients[0]; c < 0 || c >= o.Clients {
			t.Errorf("fault %d targets client %d of %d", p.ID, c, o.Clients)
		}
	}
	if !seen["pause"] || !seen["crash"] {
		t.Errorf("kinds drawn: %v, want both", seen)
	}
}

func TestLookupNamesTheKnownFaults(t *testing.T) {
	_, err := Lookup([]string{"pause", "meteor"})
	if err == nil || !strings.Contains(err.Error(), `"meteor"`) || !strings.Contains(err.Error(), "pause, pause-holder, crash") {
		t.Fatalf("error = %v", err)
	}
}

// fakeClients logs calls and keeps one clock: a drift gains 2 s by the
// time it is stopped, as if that much time had passed at double speed.
type fakeClients struct {
	log  []string
	skew time.Duration
	rate float64
}

func (f *fakeClients) rec(s string) error  { f.log = append(f.log, s); return nil }
func (f *fakeClients) Pause(c int) error   { return f.rec("pause") }
func (f *fakeClients) Resume(c int) error  { return f.rec("resume") }
func (f *fakeClients) Crash(c int) error   { return f.rec("crash") }
func (f *fakeClients) Restart(c int) error { return f.rec("restart") }
func (f *fakeClients) Holders() []int      { return nil }
func (f *fakeClients) ShiftClock(c int, d time.Duration) (time.Duration, error) {
	f.skew += d
	return f.skew, f.rec("shift")
}
func (f *fakeClients) DriftClock(c int, rate float64) (time.Duration, error) {
	if f.rate != 0 {
		f.skew += 2 * time.Second
	}
	f.rate = rate
	return f.skew, f.rec("drift")
}

func TestEveryClientKindHeals(t *testing.T) {
	for _, k := range Kinds() {
		if k.Needs != NeedsClients {
			continue
		}
		f := &fakeClients{}
		heal, err := k.Inject(Target{Clients: f, ClockStep: 5 * time.Second}, []int{0})
		if err != nil {
			t.Fatal(err)
		}
		moved := f.skew != 0 || f.rate != 0
		if err := heal(); err != nil {
			t.Fatal(err)
		}
		if len(f.log) < 2 {
			t.Errorf("%s: calls %v, want a start and a heal", k.Name, f.log)
		}
		if strings.HasPrefix(k.Name, "clock-") && (!moved || f.skew != 0 || f.rate != 0) {
			t.Errorf("%s: clock moved %v, and after the heal is %v ahead at rate %v; want moved, then back to 0", k.Name, moved, f.skew, f.rate)
		}
	}
}

func names(p []Planned) (out []string) {
	for _, x := range p {
		out = append(out, x.Kind.Name)
	}
	return out
}

func starts(p []Planned) (out []time.Duration) {
	for _, x := range p {
		out = append(out, x.At)
	}
	return out
}

type fakePlane struct{ started, healed int }

func (f *fakePlane) heal() netfault.Heal {
	f.started++
	return func() error { f.healed++; return nil }
}
func (f *fakePlane) Latency([]int, time.Duration, time.Duration, netfault.Direction) (netfault.Heal, error) {
	return f.heal(), nil
}
func (f *fakePlane) Partition([]int, netfault.Direction) (netfault.Heal, error) { return f.heal(), nil }
func (f *fakePlane) LoseReplies([]int) (netfault.Heal, error)                   { return f.heal(), nil }
func (f *fakePlane) Reset([]int, netfault.Direction) (netfault.Heal, error)     { return f.heal(), nil }
func (f *fakePlane) DeliverLate([]int, time.Duration) (netfault.Heal, error)    { return f.heal(), nil }
func (f *fakePlane) Refuse([]int) (netfault.Heal, error)                        { return f.heal(), nil }
func (f *fakePlane) HealAll() error                                             { return nil }
func (f *fakePlane) Bandwidth([]int, int64, netfault.Direction) (netfault.Heal, error) {
	return f.heal(), nil
}
func (f *fakePlane) Slice([]int, int, int, time.Duration, netfault.Direction) (netfault.Heal, error) {
	return f.heal(), nil
}
func (f *fakePlane) LimitData([]int, int64, netfault.Direction) (netfault.Heal, error) {
	return f.heal(), nil
}

type fakeServer struct{ rules []serverfault.Rule }

func (f *fakeServer) Inject(r serverfault.Rule) (serverfault.Heal, error) {
	f.rules = append(f.rules, r)
	return func() error { return nil }, nil
}

func TestNetworkAndServerKindsReachTheirPlaneAndHeal(t *testing.T) {
	for _, k := range Kinds() {
		if k.Backends > 0 {
			continue // TestBackendKindsCutTheirShare
		}
		plane, server := &fakePlane{}, &fakeServer{}
		full := Target{Clients: &fakeClients{}, Network: plane, Server: server, ClockStep: time.Second, LateBy: 2 * time.Second}
		heal, err := k.Inject(full, []int{0})
		if err != nil {
			t.Fatalf("%s: %v", k.Name, err)
		}
		if err := heal(); err != nil {
			t.Fatalf("%s: heal: %v", k.Name, err)
		}
		switch k.Needs {
		case NeedsNetwork:
			if plane.started != 1 || plane.healed != 1 {
				t.Errorf("%s: network faults started %d, healed %d", k.Name, plane.started, plane.healed)
			}
			if _, err := k.Inject(Target{Clients: &fakeClients{}}, []int{0}); err == nil || !strings.Contains(err.Error(), "network") {
				t.Errorf("%s without a network: err = %v", k.Name, err)
			}
		case NeedsServer:
			if len(server.rules) != 1 {
				t.Errorf("%s: %d server rules", k.Name, len(server.rules))
			}
			if _, err := k.Inject(Target{Clients: &fakeClients{}}, []int{0}); err == nil || !strings.Contains(err.Error(), "HTTP front") {
				t.Errorf("%s without a server: err = %v", k.Name, err)
			}
		}
	}
}

// A minority partition cuts a client off from 1 of 3 backends, a majority
// from 2, rotating with the client; a single-backend plane is refused.
func TestBackendKindsCutTheirShare(t *testing.T) {
	var ups []string
	for range 3 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		ups = append(ups, ln.Addr().String())
	}
	g, err := proxies.StartGroup(context.Background(), ups, 3)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	cut := func() (backends []int) {
		for b := range g.Size() {
			if len(g.Plane(b).Active()) > 0 {
				backends = append(backends, b)
			}
		}
		return backends
	}
	for _, c := range []struct {
		kind   string
		client int
		want   []int
	}{
		{"partition-minority", 0, []int{0}},
		{"partition-minority", 2, []int{2}},
		{"partition-majority", 0, []int{0, 1}},
		{"partition-majority", 2, []int{0, 2}},
	} {
		ks, err := Lookup([]string{c.kind})
		if err != nil {
			t.Fatal(err)
		}
		heal, err := ks[0].Inject(Target{Clients: &fakeClients{}, Network: g}, []int{c.client})
		if err != nil {
			t.Fatalf("%s: %v", c.kind, err)
		}
		if got := cut(); !slices.Equal(got, c.want) {
			t.Errorf("%s on client %d cut backends %v, want %v", c.kind, c.client, got, c.want)
		}
		if err := heal(); err != nil {
			t.Fatal(err)
		}
		if got := cut(); len(got) != 0 {
			t.Fatalf("%s: still cut from %v after heal", c.kind, got)
		}
		if ks[0].Backends != 3 {
			t.Errorf("%s: Backends = %d, want 3", c.kind, ks[0].Backends)
		}
		if _, err := ks[0].Inject(Target{Clients: &fakeClients{}, Network: &fakePlane{}}, []int{0}); err == nil || !strings.Contains(err.Error(), "single backend") {
			t.Errorf("%s on a single backend: err = %v", c.kind, err)
		}
	}
}

// Every seed's plan in a window of Room runs every kind at least once;
// in a window much shorter, some seed's plan misses one.
func TestRoomFitsEveryKind(t *testing.T) {
	kinds, err := Lookup([]string{"clock-jump-forward", "clock-jump-back", "clock-drift"})
	if err != nil {
		t.Fatal(err)
	}
	o := PlanOptions{Clients: 4, Interval: time.Second}
	o.Window = Room(kinds, o)
	missed := func(o PlanOptions) (uint64, bool) {
		for seed := uint64(1); seed <= 500; seed++ {
			seen := map[string]bool{}
			for _, p := range Plan(seed, kinds, o) {
				seen[p.Kind.Name] = true
			}
			if len(seen) < len(kinds) {
				return seed, true
			}
		}
		return 0, false
	}
	if seed, ok := missed(o); ok {
		t.Fatalf("seed %d's plan in a %v window misses a kind", seed, o.Window)
	}
	o.Window /= 2
	if _, ok := missed(o); !ok {
		t.Fatalf("every plan in a %v window ran every kind: Room is not the least window it claims", o.Window)
	}
}

// A plan of one kind is drawn as it was before kinds came from a bag, so
// pinned scenarios keep their schedules.
func TestOneKindPlanUnchanged(t *testing.T) {
	kinds, err := Lookup([]string{"pause-holder"})
	if err != nil {
		t.Fatal(err)
	}
	o := PlanOptions{Clients: 8, Window: 20 * time.Second, Interval: time.Second, MinDuration: 2500 * time.Millisecond, MaxDuration: 2500 * time.Millisecond}
	for seed := uint64(1); seed <= 50; seed++ {
		// The draw before the bag: a kind by IntN(len(kinds)), then the
		// duration, the client and the interval.
		rng := rand.New(rand.NewPCG(seed, 0xfa017))
		between := func(lo, hi time.Duration) time.Duration {
			if hi <= lo {
				return lo
			}
			return lo + time.Duration(rng.Int64N(int64(hi-lo)))
		}
		var want []Planned
		at := between(o.Interval/2, o.Interval*3/2)
		for id := 1; ; id++ {
			k := kinds[rng.IntN(len(kinds))]
			d := between(o.MinDuration, o.MaxDuration)
			if at+d > o.Window {
				break
			}
			want = append(want, Planned{ID: id, Kind: k, Clients: []int{rng.IntN(o.Clients)}, At: at, Duration: d})
			at += d + between(o.Interval/2, o.Interval*3/2)
		}
		got := Plan(seed, kinds, o)
		if len(got) != len(want) {
			t.Fatalf("seed %d: %d faults, want %d", seed, len(got), len(want))
		}
		for i := range got {
			if got[i].ID != want[i].ID || got[i].At != want[i].At || got[i].Duration != want[i].Duration || got[i].Clients[0] != want[i].Clients[0] {
				t.Fatalf("seed %d fault %d: %+v, want %+v", seed, i, got[i], want[i])
			}
		}
	}
}

// An outage a locker must outlive lasts from MinLeases leases to twice
// that, whatever the kind's own bounds; without a lease, and under an
// explicit -fault-duration, the usual bounds hold.
func TestLeaseLongKindsLastLeases(t *testing.T) {
	kinds, err := Lookup([]string{"fail-fast-holder", "deliver-late"})
	if err != nil {
		t.Fatal(err)
	}
	const lease = 4 * time.Second
	for _, k := range kinds {
		lo, hi := PlanOptions{Lease: lease}.Bounds(k)
		want := time.Duration(k.MinLeases * float64(lease))
		if k.MinLeases < 1 || lo != want || hi != 2*want {
			t.Errorf("%s at a %v lease: lasts %v..%v, want %v..%v (more than a lease)", k.Name, lease, lo, hi, want, 2*want)
		}
		if lo, hi := (PlanOptions{}).Bounds(k); lo != k.Min || hi != k.Max {
			t.Errorf("%s without a lease: lasts %v..%v, want its own %v..%v", k.Name, lo, hi, k.Min, k.Max)
		}
		if lo, hi := (PlanOptions{Lease: lease, MinDuration: time.Second, MaxDuration: time.Second}).Bounds(k); lo != time.Second || hi != time.Second {
			t.Errorf("%s under -fault-duration 1s: lasts %v..%v", k.Name, lo, hi)
		}
		for _, p := range Plan(7, []Kind{k}, PlanOptions{Clients: 4, Window: time.Minute, Interval: time.Second, Lease: lease}) {
			if p.Duration < want || p.Duration > 2*want {
				t.Errorf("%s planned for %v at a %v lease", k.Name, p.Duration, lease)
			}
		}
	}
	// The lease does not touch a kind that does not ask for it.
	pause, _ := Lookup([]string{"pause"})
	if lo, hi := (PlanOptions{Lease: lease}).Bounds(pause[0]); lo != pause[0].Min || hi != pause[0].Max {
		t.Errorf("pause at a %v lease: lasts %v..%v", lease, lo, hi)
	}
}
