// Package scenarios holds named scenarios as data: what to run (a locker,
// its backend, a workload, faults, clients, keys, duration, time scale,
// seeds) and the verdict expected of it, with the reason. The files live
// next to this package and are embedded in the binary, so `verify suite`
// needs nothing but itself.
package scenarios

import (
	"encoding/json"
	"fmt"
	"time"
)

// Spec is one scenario.
type Spec struct {
	// Name is "<locker>/<workload>/<fault>" for the exploratory
	// cross-product and "regression/<defect>" for a pinned defect.
	Name    string `json:"name"`
	Summary string `json:"summary,omitempty"`

	// Locker names a built-in locker (verify list), or, with Worker, the
	// external worker's locker in reports (default "worker").
	Locker string `json:"locker"`
	// Worker, when set, runs every client as this external worker
	// process (protocol v1, package harness/worker): the program and
	// its arguments, e.g. ["node", "workers/node/worker.js"]. Clients
	// are then processes, and Backend says what the harness starts for
	// them.
	Worker []string `json:"worker,omitempty"`
	// Backend is "" (a built-in locker's embedded default) or
	// "redis-server" (a real redis-server started for the run); with
	// Worker, one of "gcs", "redis", "redis-server" or "none".
	Backend string `json:"backend,omitempty"`
	// Sim runs the scenario in simulation (verify sim): the backend in
	// memory, the whole run in virtual time inside a testing/synctest
	// bubble. Goroutine clients only.
	Sim       bool     `json:"sim,omitempty"`
	Workload  string   `json:"workload,omitempty"`   // default "mutex"
	ClientsAs string   `json:"clients_as,omitempty"` // default "goroutine"
	Faults    []string `json:"faults,omitempty"`
	Clients   int      `json:"clients,omitempty"` // default 8
	Keys      int      `json:"keys,omitempty"`    // default 2
	Duration  Duration `json:"duration,omitempty"`
	// TTL scales the locker so its lease lasts this long; zero runs it
	// as published (or at TimeScale).
	TTL       Duration `json:"ttl,omitempty"`
	TimeScale float64  `json:"time_scale,omitempty"`

	// Rate is each client's mean cycles per second; absent means 20, and
	// 0 means back to back (so it is a pointer: 0 is a setting).
	Rate           *float64 `json:"rate,omitempty"`
	HoldMin        Duration `json:"hold_min,omitempty"`
	HoldMax        Duration `json:"hold_max,omitempty"`
	AcquireTimeout Duration `json:"acquire_timeout,omitempty"`
	FaultInterval  Duration `json:"fault_interval,omitempty"`
	// FaultDuration is "D" or "MIN-MAX", as verify run's -fault-duration.
	FaultDuration string `json:"fault_duration,omitempty"`
	// FaultCoverage is "each" (the default: every kind of Faults must run,
	// or the verdict is unknown) or "any" (one is enough: an exploration
	// of a mix of faults, each seed trying some).
	FaultCoverage string `json:"fault_coverage,omitempty"`
	// FaultPlan, when set, is the fault schedule itself, in place of one
	// drawn from the seed: which fault (one of Faults) hits which client,
	// when and for how long, played one at a time in order. verify shrink
	// writes one, so that a shrunk counterexample keeps exactly the
	// faults it needs whatever the seed.
	FaultPlan       []PlannedFault `json:"fault_plan,omitempty"`
	ClockStep       Duration       `json:"clock_step,omitempty"`
	ClockSpread     Duration       `json:"clock_spread,omitempty"`
	RecoveryTimeout Duration       `json:"recovery_timeout,omitempty"`

	// Proxy, GCSBucket and RedisAddrs are verify run's -proxy, -gcs-bucket
	// and -redis-addr: where the backend is and how clients reach it.
	Proxy      bool     `json:"proxy,omitempty"`
	GCSBucket  string   `json:"gcs_bucket,omitempty"`
	RedisAddrs []string `json:"redis_addrs,omitempty"`

	// CheckTimeout bounds the linearizability search (default 1m; past
	// it the verdict is unknown). RequireRecovery counts clients that
	// never acquire in the recovery phase, and holders' keys never taken
	// again, as invalid: how a liveness defect is expressed.
	CheckTimeout    Duration `json:"check_timeout,omitempty"`
	RequireRecovery bool     `json:"require_recovery,omitempty"`

	Seeds []uint64 `json:"seeds"`
	// Attempts, on a live scenario expected invalid, is how many runs of
	// each seed a suite may make until one shows the defect (default 1). A
	// live run finds a race by luck, so a miss is reported in the result,
	// and only a seed that stays valid on every attempt has become safe.
	// One run is always enough to fail a scenario expected valid, and a
	// simulation repeats its history exactly, so neither takes attempts.
	Attempts int `json:"attempts,omitempty"`
	// SimSeed, on a regression scenario, is the seed on which its
	// simulation reproduces the defect: its sim form (SimForm), the same
	// history every time, in virtual time.
	SimSeed uint64 `json:"sim_seed,omitempty"`
	Expect  Expect `json:"expect"`
}

// Expect is the verdict a scenario should get, and why. A locker known to
// be unsafe under a fault is expected invalid; a scenario whose expectation
// stops holding (an unsafe locker found safe, or any Unknown) is reported.
//
// Verdict "either" marks a cell that was invalid on some seeds and valid
// on others when the comparison tables were made (a race the fault only
// sometimes wins): no verdict of it is a regression, and a suite reports
// it as a flaky expectation together with the verdict it got. Unknown is
// never what any expectation wants.
type Expect struct {
	Verdict string `json:"verdict"` // valid | invalid | either
	Reason  string `json:"reason"`
}

// DefaultExpectReason is the reason Normalize gives a spec that expects
// nothing: one written for a single run rather than for a suite.
const DefaultExpectReason = "no expectation given: a lock must keep mutual exclusion, so anything but valid is a finding"

// PlannedFault is one fault of a FaultPlan.
type PlannedFault struct {
	Kind string `json:"kind"`
	// Client is the target slot; a fault aimed at a holder
	// (pause-holder and the like) goes to whoever holds a lock when it
	// starts, and to Client only when nobody does.
	Client int `json:"client"`
	// At is when it starts, from the start of the run.
	At       Duration `json:"at"`
	Duration Duration `json:"duration"`
}

// Expected verdicts.
const (
	ExpectValid   = "valid"
	ExpectInvalid = "invalid"
	ExpectEither  = "either"
)

// Duration is a time.Duration written as a Go duration string ("1.5s").
type Duration time.Duration

func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("want a duration string like \"1.5s\", got %s", b)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}
