package scenarios

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	"github.com/lockcheck/lockcheck/faults"
	"github.com/lockcheck/lockcheck/harness"
	"github.com/lockcheck/lockcheck/history"
)

// Column is one column of verify compare's tables: a set of faults and
// what they act on, with durations measured in leases.
type Column struct {
	Name    string
	Summary string
	Faults  []string
	// LeaseMultiple, when positive, makes every fault last this many
	// leases (Plan.TTL), so it outlasts the lease; zero keeps each
	// fault's own duration range.
	LeaseMultiple float64
	// Workload, when set, replaces the base workload (history.Workload*).
	Workload string `json:",omitempty"`
	// Processes runs every client as a worker process, so pauses and
	// crashes are real SIGSTOP and SIGKILL.
	Processes bool `json:",omitempty"`
	// HoldLeases, when positive, lets holders keep a lock up to this
	// many leases instead of the base hold; HoldMinLeases, at least that
	// many, so that a holder is still at work when its lease runs out on
	// the server. The long columns hold 3 to 5 leases: a lock that waits
	// out a second of clock slack before a takeover (fenced) lets a waiter
	// in two leases after a 1 s holder's last refresh, and the holder must
	// still be working then.
	HoldLeases    float64 `json:",omitempty"`
	HoldMinLeases float64 `json:",omitempty"`
	// ClockSpreadLeases, when positive, sets every client's clock off by
	// a constant of up to this many leases either way for the whole run.
	ClockSpreadLeases float64 `json:",omitempty"`
	// Keys and Clients, when positive, replace the base run's: one key
	// and many clients is contention.
	Keys    int `json:",omitempty"`
	Clients int `json:",omitempty"`
}

// Columns are the standard columns: no faults, then one fault family
// each. DefaultColumns names the ones a comparison runs unless told.
func Columns() []Column {
	return []Column{
		{Name: "none", Summary: "no faults"},
		{Name: "latency", Summary: "100 ms ± 50 ms each way on one client's link at a time", Faults: []string{"latency"}},
		{Name: "partition", Summary: "a lock holder cut off from the backend, silently, for 2.5 leases", Faults: []string{"partition-holder"}, LeaseMultiple: 2.5},
		{Name: "lost-reply", Summary: "one client's requests are applied and its replies lost", Faults: []string{"lost-reply"}},
		{Name: "server-lost-reply", Summary: "the backend applies 30% of writes and loses the reply: a 503, or a dropped connection (GCS only)", Faults: []string{"server-lost-reply", "server-drop"}},
		{Name: "contended", Summary: "16 clients on one key, no faults", Keys: 1, Clients: 16},
		{Name: "429", Summary: "the backend refuses a second write to one object within a second (GCS only)", Faults: []string{"server-429"}},
		{Name: "pause", Summary: "a lock holder frozen, timers and network included, for 2.5 leases", Faults: []string{"pause-holder"}, LeaseMultiple: 2.5},
		{Name: "crash", Summary: "a lock holder killed, restarted later under a new process", Faults: []string{"crash-holder"}},
		{Name: "long-partition", Summary: "holds of 3 to 5 leases; a holder cut off from the backend, silently, for 3 leases while it works", Faults: []string{"partition-holder"}, LeaseMultiple: 3, HoldMinLeases: 3, HoldLeases: 5},
		{Name: "long-fail-fast", Summary: "holds of 3 to 5 leases; every request of a holder refused at once for 3 leases while it works", Faults: []string{"fail-fast-holder"}, LeaseMultiple: 3, HoldMinLeases: 3, HoldLeases: 5},
		{Name: "long-pause", Summary: "holds of 3 to 5 leases; a holder frozen for 3 leases, then working on", Faults: []string{"pause-holder"}, LeaseMultiple: 3, HoldMinLeases: 3, HoldLeases: 5},
		{Name: "deliver-late", Summary: "holds of 3 to 5 leases; a holder's requests delivered three leases late, after other clients have acted", Faults: []string{"deliver-late-holder"}, HoldMinLeases: 3, HoldLeases: 5},
		{Name: "clock", Summary: "one client's clock stepped three leases forward or back, or run at twice real speed", Faults: []string{"clock-jump-forward", "clock-jump-back", "clock-drift"}},
		{Name: "skew", Summary: "every client's clock off by a constant of up to three leases either way, holds up to half a lease", ClockSpreadLeases: 3, HoldLeases: 0.5},
		{Name: "register-pause", Summary: "register workload (an unguarded read-increment-write), a holder frozen for 2.5 leases", Workload: history.WorkloadRegister, Faults: []string{"pause-holder"}, LeaseMultiple: 2.5},
		{Name: "fenced-pause", Summary: "fenced-register workload (the store refuses stale tokens), a holder frozen for 2.5 leases", Workload: history.WorkloadFencedRegister, Faults: []string{"pause-holder"}, LeaseMultiple: 2.5},
		{Name: "sigstop", Summary: "process clients; a holder's process stopped with SIGSTOP for 2.5 leases, register workload", Workload: history.WorkloadRegister, Processes: true, Faults: []string{"pause-holder"}, LeaseMultiple: 2.5},
		{Name: "sigkill", Summary: "process clients; a holder's process killed with SIGKILL, restarted later under a new pid", Processes: true, Faults: []string{"crash-holder"}},
		{Name: "request-release", Summary: "holders keep a lock up to two leases unless another client asks for it", Workload: history.WorkloadRequestRelease, HoldLeases: 2},
	}
}

// Room is how long a run of column c must last for every seed to run each
// of its faults once (faults.Room), its leases ttl long and its faults
// interval apart: a run whose faults never ran would test nothing, so a
// shorter run is lengthened to it. Zero for a column without faults.
func (c Column) Room(ttl, interval time.Duration) time.Duration {
	kinds, err := faults.Lookup(c.Faults)
	if err != nil || len(kinds) == 0 {
		return 0
	}
	o := faults.PlanOptions{Interval: cmp.Or(interval, DefaultFaultInterval), Lease: ttl}
	if c.LeaseMultiple > 0 {
		o.MinDuration = time.Duration(c.LeaseMultiple * float64(ttl))
		o.MaxDuration = o.MinDuration
	}
	return faults.Room(kinds, o)
}

// Apply sets in s what column c changes of a run, its leases ttl long:
// fault durations, workload, process clients, holds, clock spread, keys
// and clients. The run's length is the caller's (Room).
func (c Column) Apply(s *Spec, ttl time.Duration) {
	lease := func(n float64) time.Duration { return time.Duration(n * float64(ttl)) }
	if c.LeaseMultiple > 0 {
		s.FaultDuration = lease(c.LeaseMultiple).String()
	}
	if c.Workload != "" {
		s.Workload = c.Workload
	}
	if c.Processes {
		s.ClientsAs = harness.ClientsAsProcesses
	}
	if c.HoldLeases > 0 {
		s.HoldMax = Duration(lease(c.HoldLeases))
	}
	if c.HoldMinLeases > 0 {
		s.HoldMin = Duration(lease(c.HoldMinLeases))
	}
	if c.ClockSpreadLeases > 0 {
		s.ClockSpread = Duration(lease(c.ClockSpreadLeases))
	}
	if c.Keys > 0 {
		s.Keys = c.Keys
	}
	if c.Clients > 0 {
		s.Clients = c.Clients
	}
}

// DefaultColumns are the columns of the standard comparison table.
var DefaultColumns = []string{"none", "contended", "latency", "partition", "lost-reply", "server-lost-reply", "429", "pause", "crash", "long-partition", "long-fail-fast", "long-pause", "deliver-late"}

// DataColumns are the columns of the second table: clocks, data, real
// processes, release requests.
var DataColumns = []string{"clock", "skew", "register-pause", "fenced-pause", "sigstop", "sigkill", "request-release"}

// LookupColumns finds columns by name.
func LookupColumns(names []string) ([]Column, error) {
	all := Columns()
	var out []Column
	for _, n := range names {
		i := slices.IndexFunc(all, func(s Column) bool { return s.Name == n })
		if i < 0 {
			var known []string
			for _, s := range all {
				known = append(known, s.Name)
			}
			return nil, fmt.Errorf("unknown scenario %q; known scenarios: %v", n, known)
		}
		out = append(out, all[i])
	}
	return out, nil
}
