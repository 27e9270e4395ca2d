// Package faults plans and injects the faults of a run.
//
// A plan is data: drawn from the run's seed before the run starts, so the
// same seed gives the same schedule and a run can be replayed. Each fault
// kind is a named value in an explicit list ([Kinds]); injecting one returns
// the heal that undoes it, and the run heals every fault before it ends.
package faults

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/lockcheck/lockcheck/faults/netfault"
	"github.com/lockcheck/lockcheck/faults/serverfault"
)

// Target is everything a fault can act on in one run.
type Target struct {
	Clients Clients
	// Network is the per-client proxy plane; nil when the locker's backend
	// is in-process and no network lies between it and the clients.
	Network netfault.Faults
	// Server faults single requests in front of the backend; nil when the
	// backend has no HTTP front.
	Server ServerFaults
	// ClockStep is how far a clock jump moves a client's clock: a few of
	// the locker's leases, so that a skewed client misjudges expiry.
	ClockStep time.Duration
	// LateBy is how long deliver-late holds a request: three leases, so
	// that the sender's lease has run out on the server when it lands and
	// a waiter has had time to take the key, even from a lock that waits
	// out a second of clock slack on a 1 s lease before a takeover.
	LateBy time.Duration
}

// ClockDriftRate is how fast a drifting clock runs: twice real speed, so
// that a fault of a few leases' length leaves it a few leases ahead.
const ClockDriftRate = 1.0

// ServerFaults switches server-side fault rules on; *serverfault.Middleware
// is one.
type ServerFaults interface {
	Inject(serverfault.Rule) (serverfault.Heal, error)
}

// Needs says which part of a Target a kind acts on.
type Needs int

const (
	NeedsClients Needs = iota
	NeedsNetwork
	NeedsServer
)

func (n Needs) String() string {
	return [...]string{"clients", "network", "server"}[n]
}

// Clients is what in-process faults act on: the run's simulated clients.
type Clients interface {
	// Pause freezes a client, background work included, until Resume.
	Pause(client int) error
	Resume(client int) error
	// Crash kills a client's current incarnation: whatever it holds is
	// abandoned. Restart brings the client back under a new process.
	Crash(client int) error
	Restart(client int) error
	// Holders lists the clients that hold a lock right now, for faults
	// aimed at a holder.
	Holders() []int
	// ShiftClock steps a client's machine clock by delta; DriftClock makes
	// it gain rate seconds per real second (negative: lose). Both last
	// across the client's restarts, as a machine's clock does.
	// Each returns how far the clock is ahead of real time afterwards.
	ShiftClock(client int, delta time.Duration) (time.Duration, error)
	DriftClock(client int, rate float64) (time.Duration, error)
}

// A Kind is one sort of fault.
type Kind struct {
	Name    string
	Summary string
	// Min and Max bound how long one occurrence lasts before its heal.
	Min, Max time.Duration
	// MinLeases, when positive, makes one occurrence last from that many
	// of the run's leases (PlanOptions.Lease) to twice as many, in place
	// of Min and Max, which serve a run without a lease: an outage a
	// locker must outlive, not one its retries ride out.
	MinLeases float64
	// Needs is the part of the run the fault acts on.
	Needs Needs
	// Backends is the least number of independent backends the run must
	// have (a partition from a majority of Redlock's servers needs 3);
	// zero means any.
	Backends int
	// AtHolder aims the fault at a client that holds a lock when it
	// starts (the planned client if nobody holds one).
	AtHolder bool
	// Shapes says the fault shapes bytes on a socket (bandwidth, slices,
	// a byte limit), which only a live run's proxies can do: the
	// simulation's in-memory network carries whole requests.
	Shapes bool
	// Inject starts the fault on the given clients and returns its heal.
	Inject func(t Target, targets []int) (heal func() error, err error)
}

var errNoNetwork = errors.New("this run has no network between clients and backend (the locker's backend is in-process)")
var errNoServer = errors.New("this run's backend has no HTTP front to fault")

func network(t Target) (netfault.Faults, error) {
	if t.Network == nil {
		return nil, errNoNetwork
	}
	return t.Network, nil
}

func shaper(t Target) (netfault.Shaper, error) {
	n, err := network(t)
	if err != nil {
		return nil, err
	}
	s, ok := n.(netfault.Shaper)
	if !ok {
		return nil, errors.New("this run's network cannot shape bandwidth")
	}
	return s, nil
}

func netKind(name, summary string, holder bool, inject func(n netfault.Faults, targets []int) (netfault.Heal, error)) Kind {
	return Kind{Name: name, Summary: summary, Min: 500 * time.Millisecond, Max: 3 * time.Second, Needs: NeedsNetwork, AtHolder: holder,
		Inject: func(t Target, targets []int) (func() error, error) {
			n, err := network(t)
			if err != nil {
				return nil, err
			}
			heal, err := inject(n, targets)
			return heal, err
		}}
}

// backendKind partitions clients from a minority or a majority of the
// backends. Which backends rotates with the client, so different clients
// lose different servers over a run, reproducibly.
func backendKind(name, summary string, majority bool) Kind {
	return Kind{Name: name, Summary: summary, Min: 500 * time.Millisecond, Max: 3 * time.Second, Needs: NeedsNetwork, Backends: 3,
		Inject: func(t Target, targets []int) (func() error, error) {
			n, err := network(t)
			if err != nil {
				return nil, err
			}
			g, ok := n.(netfault.BackendGroup)
			if !ok || g.Size() < 3 {
				return nil, errors.New("this run has a single backend; a minority or majority partition needs three or more (redlock)")
			}
			var heals []netfault.Heal
			undo := func() error {
				var errs []error
				for _, h := range heals {
					errs = append(errs, h())
				}
				return errors.Join(errs...)
			}
			for _, c := range targets {
				cut := g.Size()/2 + 1
				if !majority {
					cut = (g.Size() - 1) / 2
				}
				var which []int
				for i := range cut {
					which = append(which, (c+i)%g.Size())
				}
				sub, err := g.Backends(which)
				if err != nil {
					return nil, errors.Join(err, undo())
				}
				h, err := sub.Partition([]int{c}, netfault.Both)
				if err != nil {
					return nil, errors.Join(err, undo())
				}
				heals = append(heals, h)
			}
			return undo, nil
		}}
}

// lateKind holds the target's requests by t.LateBy (three leases); it
// lasts at least 3.5 leases, so that a request sent as it starts is held
// its whole time (the heal delivers what is still held at once).
func lateKind(name, summary string, holder bool) Kind {
	k := netKind(name, summary, holder, nil)
	k.MinLeases = 3.5
	k.Inject = func(t Target, targets []int) (func() error, error) {
		n, err := network(t)
		if err != nil {
			return nil, err
		}
		if t.LateBy <= 0 {
			return nil, errors.New("deliver-late holds requests for zero time: the run has no lease to set it from")
		}
		heal, err := n.DeliverLate(targets, t.LateBy)
		return heal, err
	}
	return k
}

// refuseKind refuses the target's connections for at least 1.5 leases:
// a holder's extends all fail while its lease runs out on the server.
func refuseKind(name, summary string, holder bool) Kind {
	k := netKind(name, summary, holder, func(n netfault.Faults, c []int) (netfault.Heal, error) {
		return n.Refuse(c)
	})
	k.MinLeases = 1.5
	return k
}

func shapeKind(name, summary string, inject func(s netfault.Shaper, targets []int) (netfault.Heal, error)) Kind {
	return Kind{Name: name, Summary: summary, Min: 500 * time.Millisecond, Max: 3 * time.Second, Needs: NeedsNetwork, Shapes: true,
		Inject: func(t Target, targets []int) (func() error, error) {
			s, err := shaper(t)
			if err != nil {
				return nil, err
			}
			heal, err := inject(s, targets)
			return heal, err
		}}
}

func serverKind(name, summary string, rule serverfault.Rule) Kind {
	return Kind{Name: name, Summary: summary, Min: 500 * time.Millisecond, Max: 3 * time.Second, Needs: NeedsServer,
		Inject: func(t Target, _ []int) (func() error, error) {
			if t.Server == nil {
				return nil, errNoServer
			}
			heal, err := t.Server.Inject(rule)
			return heal, err
		}}
}

// Kinds lists every fault a run can schedule, by name.
func Kinds() []Kind {
	return []Kind{
		{
			Name:    "pause",
			Summary: "freeze one client, its timers and network included, then resume it (SIGSTOP/SIGCONT for goroutine clients)",
			Min:     200 * time.Millisecond, Max: 2 * time.Second,
			Inject: func(t Target, targets []int) (func() error, error) {
				return each(targets, t.Clients.Pause, t.Clients.Resume)
			},
		},
		{
			Name:    "pause-holder",
			Summary: "pause, aimed at a client that holds a lock",
			Min:     200 * time.Millisecond, Max: 2 * time.Second, AtHolder: true,
			Inject: func(t Target, targets []int) (func() error, error) {
				return each(targets, t.Clients.Pause, t.Clients.Resume)
			},
		},
		{
			Name:    "crash",
			Summary: "kill one client, abandoning any lock it holds, and restart it later under a new process",
			Min:     200 * time.Millisecond, Max: 2 * time.Second,
			Inject: func(t Target, targets []int) (func() error, error) {
				return each(targets, t.Clients.Crash, t.Clients.Restart)
			},
		},
		{
			Name:    "crash-holder",
			Summary: "crash, aimed at a client that holds a lock",
			Min:     200 * time.Millisecond, Max: 2 * time.Second, AtHolder: true,
			Inject: func(t Target, targets []int) (func() error, error) {
				return each(targets, t.Clients.Crash, t.Clients.Restart)
			},
		},
		{
			Name:    "clock-jump-forward",
			Summary: "step one client's clock forward by -clock-step (a few leases), and back at the heal",
			Min:     500 * time.Millisecond, Max: 3 * time.Second,
			Inject: func(t Target, targets []int) (func() error, error) {
				return clockStep(t, targets, t.ClockStep)
			},
		},
		{
			Name:    "clock-jump-back",
			Summary: "step one client's clock back by -clock-step (a few leases), and forward at the heal",
			Min:     500 * time.Millisecond, Max: 3 * time.Second,
			Inject: func(t Target, targets []int) (func() error, error) {
				return clockStep(t, targets, -t.ClockStep)
			},
		},
		{
			Name:    "clock-drift",
			Summary: "one client's clock runs at twice real speed, then is stepped back at the heal (as NTP would)",
			Min:     500 * time.Millisecond, Max: 3 * time.Second,
			Inject: func(t Target, targets []int) (func() error, error) {
				var before []time.Duration
				for _, c := range targets {
					s, err := t.Clients.DriftClock(c, ClockDriftRate)
					if err != nil {
						return nil, err
					}
					before = append(before, s)
				}
				return func() error {
					var errs []error
					for i, c := range targets {
						reached, err := t.Clients.DriftClock(c, 0)
						if err == nil {
							_, err = t.Clients.ShiftClock(c, before[i]-reached)
						}
						errs = append(errs, err)
					}
					return errors.Join(errs...)
				}, nil
			},
		},
		netKind("latency", "100 ms ± 50 ms each way between one client and the backend", false, func(n netfault.Faults, c []int) (netfault.Heal, error) {
			return n.Latency(c, 100*time.Millisecond, 50*time.Millisecond, netfault.Both)
		}),
		netKind("partition", "cut one client off from the backend, silently (requests hang until their deadline)", false, func(n netfault.Faults, c []int) (netfault.Heal, error) {
			return n.Partition(c, netfault.Both)
		}),
		netKind("partition-holder", "partition, aimed at a client that holds a lock", true, func(n netfault.Faults, c []int) (netfault.Heal, error) {
			return n.Partition(c, netfault.Both)
		}),
		backendKind("partition-minority", "cut one client off from a minority of the backends (1 of 3 Redlock servers), silently", false),
		backendKind("partition-majority", "cut one client off from a majority of the backends (2 of 3 Redlock servers), silently", true),
		netKind("partition-up", "one-way partition: the client's requests never reach the backend", false, func(n netfault.Faults, c []int) (netfault.Heal, error) {
			return n.Partition(c, netfault.Upstream)
		}),
		netKind("partition-down", "one-way partition: the backend's replies never reach the client", false, func(n netfault.Faults, c []int) (netfault.Heal, error) {
			return n.Partition(c, netfault.Downstream)
		}),
		netKind("lost-reply", "the backend applies the client's requests, the replies are lost (downstream blackhole)", false, func(n netfault.Faults, c []int) (netfault.Heal, error) {
			return n.LoseReplies(c)
		}),
		netKind("lost-reply-holder", "lost replies, aimed at a client that holds a lock, so the release it sends next is applied and goes unanswered", true, func(n netfault.Faults, c []int) (netfault.Heal, error) {
			return n.LoseReplies(c)
		}),
		netKind("reset", "reset the client's connections to the backend", false, func(n netfault.Faults, c []int) (netfault.Heal, error) {
			return n.Reset(c, netfault.Both)
		}),
		lateKind("deliver-late", "hold one client's requests and deliver each three leases late, after other clients have acted, even when the client gave up on it", false),
		lateKind("deliver-late-holder", "deliver-late, aimed at a client that holds a lock: its extend or release lands after the key may have changed hands", true),
		refuseKind("fail-fast", "every request of one client fails at once (connection refused), for longer than a lease: a loud outage, where partition is a silent one", false),
		refuseKind("fail-fast-holder", "fail-fast, aimed at a client that holds a lock: every extend fails at once while it works on", true),
		shapeKind("bandwidth", "throttle one client's link to 8 KB/s each way", func(s netfault.Shaper, c []int) (netfault.Heal, error) {
			return s.Bandwidth(c, 8, netfault.Both)
		}),
		shapeKind("slicer", "slice one client's traffic into small delayed pieces", func(s netfault.Shaper, c []int) (netfault.Heal, error) {
			return s.Slice(c, 64, 32, 5*time.Millisecond, netfault.Both)
		}),
		shapeKind("limit-data", "close one client's connections after 2 KB of replies", func(s netfault.Shaper, c []int) (netfault.Heal, error) {
			return s.LimitData(c, 2048, netfault.Downstream)
		}),
		serverKind("server-503", "the backend answers 30% of writes 503 before applying them", serverfault.Rule{Kind: serverfault.Unavailable, Probability: 0.3}),
		serverKind("server-lost-reply", "the backend applies 30% of writes, then answers 503 (the reply is lost)", serverfault.Rule{Kind: serverfault.LostReply, Probability: 0.3}),
		serverKind("server-drop", "the backend applies 30% of writes, then drops the connection", serverfault.Rule{Kind: serverfault.DroppedReply, Probability: 0.3}),
		serverKind("server-429", "the backend refuses a second write to one object within a second (429), as GCS may", serverfault.Rule{Kind: serverfault.RateLimit}),
		serverKind("server-latency", "the backend answers every request 100 ms ± 50 ms late", serverfault.Rule{Kind: serverfault.Latency, Ops: serverfault.AllOps, Latency: 100 * time.Millisecond, Jitter: 50 * time.Millisecond}),
	}
}

// clockStep steps the targets' clocks by delta, and back at the heal.
func clockStep(t Target, targets []int, delta time.Duration) (func() error, error) {
	if delta == 0 {
		return nil, errors.New("clock step is zero: set -clock-step")
	}
	shift := func(d time.Duration) func(int) error {
		return func(c int) error { _, err := t.Clients.ShiftClock(c, d); return err }
	}
	return each(targets, shift(delta), shift(-delta))
}

func each(targets []int, start, stop func(int) error) (func() error, error) {
	var started []int
	heal := func() error {
		var firstErr error
		for _, t := range started {
			if err := stop(t); err != nil && firstErr == nil {
				firstErr = err
			}
		}
		return firstErr
	}
	for _, t := range targets {
		if err := start(t); err != nil {
			return heal, err
		}
		started = append(started, t)
	}
	return heal, nil
}

// ErrNotApplicable refuses a fault that needs what a run does not have (a
// network, an HTTP front, several servers, a socket to shape).
var ErrNotApplicable = errors.New("fault does not apply to this locker")

// Applicable says why k cannot act on t, a run whose locker has backends
// independent servers and is named locker, or nil when it can. It is the
// one rule for every mode: a fault a run cannot apply is refused before
// the run, never left to fail silently during it.
func (k Kind) Applicable(t Target, backends int, locker string) error {
	switch {
	case k.Needs == NeedsNetwork && t.Network == nil:
		return fmt.Errorf("%w: fault %s acts on the network, and locker %s has none between its clients and its backend (the backend is in-process); choose a GCS or Redis locker, or drop the fault", ErrNotApplicable, k.Name, locker)
	case k.Needs == NeedsServer && t.Server == nil:
		return fmt.Errorf("%w: fault %s acts on the backend's HTTP front, which locker %s does not have (its backend is not GCS); choose a GCS locker, or drop the fault", ErrNotApplicable, k.Name, locker)
	case k.Shapes:
		if _, ok := t.Network.(netfault.Shaper); !ok {
			return fmt.Errorf("%w: fault %s shapes bytes on a socket, which only a live run has (verify run; the simulation's network carries whole requests); drop it here", ErrNotApplicable, k.Name)
		}
	case backends < k.Backends:
		return fmt.Errorf("%w: fault %s needs %d independent backends, and locker %s has %d; choose redlock, or drop the fault", ErrNotApplicable, k.Name, k.Backends, locker, backends)
	}
	return nil
}

// Lookup resolves fault names, failing on an unknown one with the list of
// known names.
func Lookup(names []string) ([]Kind, error) {
	all := Kinds()
	var out []Kind
	for _, n := range names {
		i := slices.IndexFunc(all, func(k Kind) bool { return k.Name == n })
		if i < 0 {
			return nil, fmt.Errorf("unknown fault %q; known faults: %s", n, strings.Join(Names(), ", "))
		}
		out = append(out, all[i])
	}
	return out, nil
}

// Names lists the known fault names.
func Names() []string {
	var names []string
	for _, k := range Kinds() {
		names = append(names, k.Name)
	}
	return names
}

// Planned is one scheduled occurrence of a fault.
type Planned struct {
	ID      int
	Kind    Kind
	Clients []int
	// At is when the fault starts, from the start of the run; it is
	// healed at At+Duration.
	At       time.Duration
	Duration time.Duration
}

// PlanOptions shape a schedule.
type PlanOptions struct {
	Clients int
	// Window is the part of the run in which faults may be active; every
	// fault is healed by its end.
	Window time.Duration
	// Interval is the mean quiet time between the end of one fault and the
	// start of the next.
	Interval time.Duration
	// MinDuration and MaxDuration, when positive, replace every kind's own
	// bounds on how long one occurrence lasts: a pause longer than a
	// locker's TTL, say.
	MinDuration, MaxDuration time.Duration
	// Lease is the run's lease (zero without one), for kinds that last
	// at least a few of them (Kind.MinLeases).
	Lease time.Duration
}

// Bounds is how long one fault of kind k may last under o.
func (o PlanOptions) Bounds(k Kind) (lo, hi time.Duration) {
	lo, hi = k.Min, k.Max
	if k.MinLeases > 0 && o.Lease > 0 {
		lo = time.Duration(k.MinLeases * float64(o.Lease))
		hi = 2 * lo
	}
	if o.MinDuration > 0 {
		lo = o.MinDuration
	}
	if o.MaxDuration > 0 {
		hi = max(o.MaxDuration, lo)
	}
	return lo, hi
}

// Room is the shortest window (o.Window is ignored) in which every seed's
// plan starts each of kinds at least once: the bag draws every kind
// before any repeats, each fault starts at most 1.5 intervals after the
// one before it ended, and lasts less than its longest.
func Room(kinds []Kind, o PlanOptions) time.Duration {
	var room time.Duration
	for _, k := range kinds {
		_, hi := o.Bounds(k)
		room += o.Interval*3/2 + hi
	}
	return room
}

// Plan draws a schedule from seed: faults one after another, each followed
// by a quiet period, kinds and targets chosen at random. The same seed and
// options always give the same plan.
func Plan(seed uint64, kinds []Kind, o PlanOptions) []Planned {
	if len(kinds) == 0 || o.Clients <= 0 || o.Window <= 0 {
		return nil
	}
	rng := rand.New(rand.NewPCG(seed, 0xfa017))
	between := func(lo, hi time.Duration) time.Duration {
		if hi <= lo {
			return lo
		}
		return lo + time.Duration(rng.Int64N(int64(hi-lo)))
	}
	var plan []Planned
	at := between(o.Interval/2, o.Interval*3/2)
	// Kinds are drawn from a bag, each once before any repeats, so a run
	// with room for as many faults as it has kinds runs every kind (see
	// Room). One kind draws as it always did.
	var bag []Kind
	for id := 1; ; id++ {
		if len(bag) == 0 {
			bag = slices.Clone(kinds)
		}
		i := rng.IntN(len(bag))
		k := bag[i]
		bag = slices.Delete(bag, i, i+1)
		lo, hi := o.Bounds(k)
		d := between(lo, hi)
		if at+d > o.Window {
			break
		}
		plan = append(plan, Planned{ID: id, Kind: k, Clients: []int{rng.IntN(o.Clients)}, At: at, Duration: d})
		at += d + between(o.Interval/2, o.Interval*3/2)
	}
	sort.SliceStable(plan, func(i, j int) bool { return plan[i].At < plan[j].At })
	return plan
}
