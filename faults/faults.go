// Package faults plans and injects the faults of a run.
//
// A plan is data: drawn from the run's seed before the run starts, so the
// same seed gives the same schedule and a run can be replayed. Each fault
// kind is a named value in an explicit list ([Kinds]); injecting one returns
// the heal that undoes it, and the run heals every fault before it ends.
package faults

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"time"
)

// Clients is what in-process faults act on: the run's simulated clients.
type Clients interface {
	// Pause freezes a client, background work included, until Resume.
	Pause(client int) error
	Resume(client int) error
	// Crash kills a client's current incarnation: whatever it holds is
	// abandoned. Restart brings the client back under a new process.
	Crash(client int) error
	Restart(client int) error
}

// A Kind is one sort of fault.
type Kind struct {
	Name    string
	Summary string
	// Min and Max bound how long one occurrence lasts before its heal.
	Min, Max time.Duration
	// Inject starts the fault on the given clients and returns its heal.
	Inject func(c Clients, targets []int) (heal func() error, err error)
}

// Kinds lists every fault a run can schedule, by name.
func Kinds() []Kind {
	return []Kind{
		{
			Name:    "pause",
			Summary: "freeze one client, its timers and network included, then resume it (SIGSTOP/SIGCONT for goroutine clients)",
			Min:     200 * time.Millisecond, Max: 2 * time.Second,
			Inject: func(c Clients, targets []int) (func() error, error) {
				return each(targets, c.Pause, c.Resume)
			},
		},
		{
			Name:    "crash",
			Summary: "kill one client, abandoning any lock it holds, and restart it later under a new process",
			Min:     200 * time.Millisecond, Max: 2 * time.Second,
			Inject: func(c Clients, targets []int) (func() error, error) {
				return each(targets, c.Crash, c.Restart)
			},
		},
	}
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
	for id := 1; ; id++ {
		k := kinds[rng.IntN(len(kinds))]
		d := between(k.Min, k.Max)
		if at+d > o.Window {
			break
		}
		plan = append(plan, Planned{ID: id, Kind: k, Clients: []int{rng.IntN(o.Clients)}, At: at, Duration: d})
		at += d + between(o.Interval/2, o.Interval*3/2)
	}
	sort.SliceStable(plan, func(i, j int) bool { return plan[i].At < plan[j].At })
	return plan
}
