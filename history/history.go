// Package history is the schema of a run's history: one JSON object per line,
// appended as it happens, so that a run that crashes still leaves a history
// the checkers can read.
//
// The first line is a [Header]; every later line is an [Event]. A client's
// call is an invoke event followed by one completion (ok, fail or info) from
// the same process. After an info completion the outcome is unknown and the
// client continues under a new process id, as in Jepsen, so a process never
// has more than one call open. The exception is an info completion of a
// read or write inside a critical section: the client still holds its lock
// in the same process, so it carries on there; only that data call's
// effect is in doubt. Events of the fault plane use the process
// [Nemesis].
package history

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Schema and Version identify the format in each history's header. A reader
// refuses a version it does not know rather than guess.
const (
	Schema  = "lockcheck-history"
	Version = 1
)

// The largest run: a harness refuses more clients or keys, and a reader
// refuses a history that claims more.
const (
	MaxClients = 1024
	MaxKeys    = 1 << 16
)

// Type is the kind of an event.
type Type string

const (
	// Invoke opens a call.
	Invoke Type = "invoke"
	// OK completes a call that took effect.
	OK Type = "ok"
	// Fail completes a call that definitely had no effect.
	Fail Type = "fail"
	// Info completes a call whose effect is unknown, or records a fact
	// that is not a call (a lost lease, a fault starting or healing).
	Info Type = "info"
)

// The functions a history can hold. Lockers' calls are Acquire and Release;
// Lost is a notice, recorded as a single info event, that the holder learned
// its lease is gone. The rest are the nemesis's.
const (
	Acquire = "acquire"
	Release = "release"
	Lost    = "lost"

	// ReleaseRequested is a single info event by a holder's process: it
	// was asked to let go of Key (the request-release workload), and
	// stops its work to unlock.
	ReleaseRequested = "release-requested"

	// ReadOp and WriteOp are the data calls of the register workloads: inside
	// its critical section a client reads Key's register and writes it
	// back incremented. On both invokes Token is the lease's fencing
	// token (0 when the locker has none). A read's ok carries the value
	// read in Value; a write's invoke and ok carry the value written.
	// A fail is a store's definite refusal (a fenced store refusing a
	// stale token, Error says so); an info, as ever, an unknown outcome.
	ReadOp  = "read"
	WriteOp = "write"
	// Final is the register's value read by the harness itself once the
	// recovery phase is over, one nemesis info event per key: Key, and
	// Value the number.
	Final = "final"

	// Crash: a client died; its process never acts again and any lock it
	// held is abandoned. Value is a ClientRef.
	Crash = "crash"
	// Restart: a crashed client is back under a new process. Value is a
	// ClientRef.
	Restart = "restart"
	// Clock: a client's machine clock changed (a step or a new drift
	// rate). Value is a ClockChange.
	Clock = "clock"
	// FaultPlan is one fault of the run's schedule, every one recorded
	// before the first fault starts: Value is a Fault with its planned
	// start (At). A fault planned and never started is a fault that did
	// not run, which the history must be able to show.
	FaultPlan = "fault-plan"
	// FaultStart / FaultStop bracket one fault. Value is a Fault.
	FaultStart = "fault-start"
	FaultStop  = "fault-stop"
	// FaultFailed: a started fault's injection failed, so it did not act
	// (or acted on only some of its clients). Value is a Fault whose
	// Error says why; its FaultStop still follows.
	FaultFailed = "fault-failed"
	// ServerFault: the backend's fault middleware faulted one request.
	ServerFault = "server-fault"
	// BackendWrite: the backend accepted a write to an object (the
	// backend audit, on the embedded GCS). Value is a Write.
	BackendWrite = "backend-write"
	// Interrupted: the run was cut short (Ctrl-C, SIGTERM, a cancelled
	// context) at this event's time, its faults healed; what follows it,
	// if anything, is the harness winding down.
	Interrupted = "interrupted"
	// Recovery marks the start of the recovery phase: every fault is
	// healed and every live client must acquire once.
	Recovery = "recovery"
)

// Process identifies who performed an event: a client process (>= 0) or the
// nemesis. It encodes as a JSON number, or as the string "nemesis".
type Process int

// Nemesis is the process of fault-plane events.
const Nemesis Process = -1

func (p Process) MarshalJSON() ([]byte, error) {
	if p == Nemesis {
		return []byte(`"nemesis"`), nil
	}
	if p < 0 {
		return nil, fmt.Errorf("history: invalid process %d", int(p))
	}
	return strconv.AppendInt(nil, int64(p), 10), nil
}

func (p *Process) UnmarshalJSON(b []byte) error {
	if string(b) == `"nemesis"` {
		*p = Nemesis
		return nil
	}
	n, err := strconv.ParseInt(string(b), 10, 32)
	if err != nil || n < 0 {
		return fmt.Errorf("process must be a non-negative integer or \"nemesis\", got %s", b)
	}
	*p = Process(n)
	return nil
}

func (p Process) String() string {
	if p == Nemesis {
		return "nemesis"
	}
	return strconv.Itoa(int(p))
}

// Event is one line of a history after the header.
type Event struct {
	// Index is the event's position, from 0, with no gaps.
	Index int64 `json:"index"`
	// Time is nanoseconds since the run started, on the recorder's
	// monotonic clock: never the clients' (possibly skewed) clocks.
	Time    int64   `json:"time"`
	Process Process `json:"process"`
	// Client is the client slot the process runs in; -1 for the nemesis.
	Client int    `json:"client"`
	Type   Type   `json:"type"`
	F      string `json:"f"`
	Key    string `json:"key,omitempty"`
	// Value is the call's argument or result, or the nemesis's details.
	Value json.RawMessage `json:"value,omitempty"`
	// Token is the fencing token of a successful acquire.
	Token uint64 `json:"token,omitempty"`
	// Attempt, on a successful acquire, is when the winning attempt
	// started (same clock as Time): the acquisition took effect no
	// earlier. Zero when the locker does not report attempts.
	Attempt int64  `json:"attempt,omitempty"`
	Error   string `json:"error,omitempty"`
}

// Header is the first line of every history.
type Header struct {
	Schema  string `json:"schema"`
	Version int    `json:"version"`
	// Start is the wall-clock time the run started, for people; event
	// times are relative to it on a monotonic clock.
	Start time.Time `json:"start"`
	Run   RunInfo   `json:"run"`
}

// RunInfo describes the run that produced a history, enough to re-run it.
type RunInfo struct {
	ID     string `json:"id"`
	Locker string `json:"locker"`
	// Workload is one of the Workload* names.
	Workload string `json:"workload"`
	// ClientsAs is "goroutine" or "process"; empty in older histories
	// (goroutines).
	ClientsAs string   `json:"clients_as,omitempty"`
	Seed      uint64   `json:"seed"`
	Clients   int      `json:"clients"`
	Keys      int      `json:"keys"`
	Duration  Duration `json:"duration"`
	Faults    []string `json:"faults"`
	// Fencing says whether the locker claims its tokens increase.
	Fencing bool `json:"fencing"`
	// LostNotice is what the locker promises about telling a holder it
	// lost its lock: NoticeBeforeLeaseEnd, or empty for nothing.
	LostNotice string `json:"lost_notice,omitempty"`
	// TimeScale multiplied the locker's published durations; 0 in
	// histories written before it was recorded.
	TimeScale float64 `json:"time_scale,omitempty"`
	// Lease is the locker's lease as the run used it (its published TTL
	// times TimeScale); 0 for a locker without one, and in older
	// histories.
	Lease Duration `json:"lease,omitempty"`
	// FaultMin and FaultMax bound how long each fault lasted, when the
	// run set them; zero: each kind's own range. FaultInterval is the
	// mean quiet time between faults; RecoveryTimeout each client's
	// chance to acquire once after every fault healed.
	FaultMin        Duration `json:"fault_min,omitempty"`
	FaultMax        Duration `json:"fault_max,omitempty"`
	FaultInterval   Duration `json:"fault_interval,omitempty"`
	RecoveryTimeout Duration `json:"recovery_timeout,omitempty"`
	// FaultCoverage is how many of Faults' kinds must run for the run
	// to count: FaultCoverageEach (the default, "" too) or
	// FaultCoverageAny.
	FaultCoverage string `json:"fault_coverage,omitempty"`
}

// Fault coverage: every requested kind must run (each), or at least one
// of them (any: an exploration of a mix of faults, in which each seed
// tries some).
const (
	FaultCoverageEach = "each"
	FaultCoverageAny  = "any"
)

// Settings is one line of the settings that decide what a run tested:
// its lease and time scale, duration, and fault timings.
func (r RunInfo) Settings() string {
	var b strings.Builder
	if r.Lease > 0 {
		fmt.Fprintf(&b, "lease %v, ", time.Duration(r.Lease))
	} else {
		b.WriteString("no lease, ")
	}
	if r.TimeScale > 0 {
		fmt.Fprintf(&b, "time scale %g, ", r.TimeScale)
	}
	fmt.Fprintf(&b, "duration %v", time.Duration(r.Duration))
	if len(r.Faults) > 0 {
		switch {
		case r.FaultMin > 0 && r.FaultMax > r.FaultMin:
			fmt.Fprintf(&b, ", faults last %v-%v", time.Duration(r.FaultMin), time.Duration(r.FaultMax))
		case r.FaultMin > 0:
			fmt.Fprintf(&b, ", faults last %v", time.Duration(r.FaultMin))
		default:
			b.WriteString(", faults last their own range")
		}
		if r.FaultInterval > 0 {
			fmt.Fprintf(&b, ", %v apart on average", time.Duration(r.FaultInterval))
		}
	}
	if r.RecoveryTimeout > 0 {
		fmt.Fprintf(&b, ", recovery window %v", time.Duration(r.RecoveryTimeout))
	}
	return b.String()
}

// The workloads a run can drive, named in RunInfo.Workload.
const (
	// WorkloadMutex: acquire, hold, release.
	WorkloadMutex = "mutex"
	// WorkloadRegister: the critical section increments an unprotected
	// register (ReadOp, then WriteOp of the value plus one).
	WorkloadRegister = "register"
	// WorkloadFencedRegister: as WorkloadRegister, on a store that refuses
	// a token lower than the highest it has accepted, reads included.
	WorkloadFencedRegister = "fenced-register"
	// WorkloadRequestRelease: long holds that end early when another
	// client asks for the lock (ReleaseRequested).
	WorkloadRequestRelease = "request-release"
)

// ClientRef is the value of Crash and Restart events.
type ClientRef struct {
	Client  int     `json:"client"`
	Process Process `json:"process"`
	// PID is the operating-system process of a process client (0 for a
	// goroutine client): a restart has a new one.
	PID int `json:"pid,omitempty"`
}

// ClockChange is the value of Clock events: where a client's clock stands
// after the change.
type ClockChange struct {
	Client int `json:"client"`
	// Skew is how far the client's clock is ahead of real time (negative:
	// behind).
	Skew Duration `json:"skew"`
	// Drift is the rate it gains (or, negative, loses) per real second.
	Drift float64 `json:"drift,omitempty"`
}

// Fault is the value of FaultStart and FaultStop events.
type Fault struct {
	// ID pairs a start with its stop.
	ID      int    `json:"id"`
	Kind    string `json:"kind"`
	Clients []int  `json:"clients,omitempty"`
	// Duration is the planned length, on FaultStart.
	Duration Duration `json:"duration,omitempty"`
	// At is the planned start, from the start of the run, in a
	// FaultPlan.
	At Duration `json:"at,omitempty"`
	// Aimed says the fault's kind aims at a lock holder.
	Aimed bool `json:"aimed,omitempty"`
	// AtHolder, on FaultStart of a fault aimed at a holder, says its
	// target held a lock when it started (false: nobody did in time, and
	// the planned client was hit instead).
	AtHolder bool `json:"at_holder,omitempty"`
	// Error, on FaultFailed, is why the injection failed.
	Error string `json:"error,omitempty"`
}

// Duration is a time.Duration that reads and writes as a Go duration string
// ("1.5s"), so a history stays readable.
type Duration time.Duration

func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string like \"1.5s\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// Write is one write a backend accepted, as its audit saw it: who sent it,
// and which version of the object it acted on and left (an object's
// generation on GCS; on Redis, where keys have none, the number the
// embedded server gives each value a key takes). A client's
// writes are told apart by its slot, since its process changes after each
// indeterminate call while its background work (a refresher) goes on.
type Write struct {
	Object string `json:"object"`
	// Op is "write" (a new generation), "update" (metadata) or "delete".
	Op string `json:"op"`
	// Client is the writer's slot; -1 when the request did not say.
	Client int `json:"client"`
	// Before is the version the write acted on (0: none); After the
	// one it left (0: none, after a delete).
	Before int64 `json:"before,omitempty"`
	After  int64 `json:"after,omitempty"`
}

// NoticeBeforeLeaseEnd is the promise that a holder is told it lost its
// lock before its lease can have ended on the backend.
const NoticeBeforeLeaseEnd = "before-lease-end"
