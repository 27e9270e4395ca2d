package worker

import (
	"errors"
	"fmt"
	"time"
)

// Protocol is the version of the protocol this package speaks, on both
// ends.
const Protocol = 1

// The ops a harness sends.
const (
	OpHello  = "hello"
	OpLock   = "lock"
	OpUnlock = "unlock"
	OpRead   = "read"
	OpWrite  = "write"
	OpClock  = "clock"
	OpCancel = "cancel"
	OpClose  = "close"
)

// The events a worker sends.
const (
	EventAttempt          = "attempt"
	EventLost             = "lost"
	EventReleaseRequested = "release-requested"
)

// The register stores a hello can ask for.
const (
	RegisterNone   = ""
	RegisterPlain  = "plain"
	RegisterFenced = "fenced"
)

// ErrExited is the error of every call that was pending when the worker's
// process exited or its output ended, and of every call made after. The
// call's outcome is unknown: the worker may have done it before it died.
var ErrExited = errors.New("worker: the worker process exited or closed its output; the call's outcome is unknown")

// maxLine bounds one protocol line. Real lines are a few hundred bytes; a
// longer one is a bug in the peer, refused without reading it into memory.
const maxLine = 1 << 20

// Hello is the first request: everything a worker needs to build its
// locker. The harness fills it; OpenFunc receives it.
type Hello struct {
	// Protocol is the version the harness speaks; Start sets it.
	Protocol int `json:"protocol"`
	// Locker names the locker to run, as the harness's catalog does.
	Locker string `json:"locker"`
	// TimeScale multiplies the locker's published durations.
	TimeScale float64 `json:"time_scale"`
	Identity  string  `json:"identity"`
	Seed      uint64  `json:"seed"`
	// Backend names the backend the harness started for the worker:
	// "gcs" (GCS is set), "redis" (Redis is set) or "none".
	Backend string `json:"backend,omitempty"`
	// GCS is set for GCS-backed lockers.
	GCS *GCS `json:"gcs,omitempty"`
	// Redis lists the Redis servers of Redis-backed lockers.
	Redis []string `json:"redis,omitempty"`
	// Redirect maps an address the locker dials to the address the worker
	// really dials: the client's own fault proxy.
	Redirect map[string]string `json:"redirect,omitempty"`
	// Register is RegisterNone, RegisterPlain or RegisterFenced.
	Register string `json:"register"`
	// Clock is where the worker's clock starts.
	Clock ClockState `json:"clock"`

	_ struct{}
}

// GCS locates the bucket of a GCS-backed locker.
type GCS struct {
	Endpoint string `json:"endpoint"`
	Bucket   string `json:"bucket"`

	_ struct{}
}

// ClockState is a clock's distance from real time: Skew ahead of it (behind
// when negative), gaining Drift seconds per real second from then on.
type ClockState struct {
	SkewNS int64   `json:"skew_ns"`
	Drift  float64 `json:"drift"`

	_ struct{}
}

func (c ClockState) check() error {
	if c.Drift <= -1 {
		return fmt.Errorf("clock drift must be greater than -1 (a clock that stops or runs backwards), got %v", c.Drift)
	}
	return nil
}

// request is one line from the harness. Which fields are set depends on
// Op; a hello's fields are decoded separately into Hello.
type request struct {
	ID        *int64  `json:"id,omitempty"`
	Op        string  `json:"op"`
	Key       string  `json:"key,omitempty"`
	Lease     uint64  `json:"lease,omitempty"`
	Token     uint64  `json:"token,omitempty"`
	Value     int64   `json:"value,omitempty"`
	TimeoutNS int64   `json:"timeout_ns,omitempty"`
	SkewNS    int64   `json:"skew_ns,omitempty"`
	Drift     float64 `json:"drift,omitempty"`
	Call      int64   `json:"call,omitempty"`
}

func (r request) timeout() time.Duration { return time.Duration(r.TimeoutNS) }

// message is one line from the worker: a response (ID set) or an event
// (Event set).
type message struct {
	ID    *int64 `json:"id,omitempty"`
	Event string `json:"event,omitempty"`

	OK       bool   `json:"ok,omitempty"`
	Error    string `json:"error,omitempty"`
	NoEffect bool   `json:"no_effect,omitempty"`
	Stale    bool   `json:"stale,omitempty"`

	Protocol int `json:"protocol,omitempty"`
	PID      int `json:"pid,omitempty"`

	Lease           uint64 `json:"lease,omitempty"`
	Token           uint64 `json:"token,omitempty"`
	ReleaseRequests bool   `json:"release_requests,omitempty"`
	Value           int64  `json:"value,omitempty"`

	Call    int64 `json:"call,omitempty"`
	AfterNS int64 `json:"after_ns,omitempty"`
}

func idPtr(id int64) *int64 { return &id }
