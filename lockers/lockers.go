// Package lockers defines the contract every lock algorithm under test
// implements, and the environment the harness hands to each one.
//
// A locker knows nothing of the harness. It gets everything that touches time,
// the network or randomness through an [Env], so the harness can skew its
// clock, pause it, partition it or crash it without the locker's cooperation.
package lockers

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"
)

// ErrNoEffect marks an error after which the caller knows the call
// definitely had no effect: the lock was definitely not acquired, or
// definitely not released. Only a locker can know this, so only a locker
// wraps it; every other error (timeout, reset, 5xx) is indeterminate, and the
// checkers must allow the call to have taken effect.
var ErrNoEffect = errors.New("definitely had no effect")

// A Locker acquires named locks. Each simulated client owns one Locker.
type Locker interface {
	// Lock blocks until it holds key, ctx ends, or the algorithm gives up.
	// An error wrapping ErrNoEffect means the lock is definitely not held.
	Lock(ctx context.Context, key string) (Lease, error)
}

// A Lease is one acquisition of a lock.
type Lease interface {
	// Token is the fencing token of this acquisition, or 0 when the
	// algorithm has none. Tokens of one key increase with each acquisition
	// in algorithms that claim fencing.
	Token() uint64
	// Lost is closed when the holder learns the lease is gone. It is never
	// closed by an algorithm that cannot tell.
	Lost() <-chan struct{}
	// Unlock releases the lease. An error wrapping ErrNoEffect means the
	// lock was definitely not released by this call (for instance because
	// the caller no longer held it).
	Unlock(ctx context.Context) error
}

// ReleaseRequester is a Lease whose holder can be asked to let go, as tus
// lockers do: another client that wants the lock signals the holder, and the
// holder is expected to finish quickly and unlock.
type ReleaseRequester interface {
	// ReleaseRequested is closed when another client asked for the lock.
	ReleaseRequested() <-chan struct{}
}

// A Clock is the only source of time a locker may use. The harness's clocks
// can be offset, can jump, and stop while a client is paused.
type Clock interface {
	Now() time.Time
	// After behaves like time.After on this clock.
	After(d time.Duration) <-chan time.Time
}

// Sleep waits d on clock, or until ctx ends.
func Sleep(ctx context.Context, clock Clock, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	select {
	case <-clock.After(d):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Logger is satisfied by *testing.T and by the harness's run log.
type Logger interface {
	Logf(format string, args ...any)
}

// Env is everything a locker may use to reach the outside world.
type Env struct {
	// Clock is the client's clock; never call time.Now or time.Sleep.
	Clock Clock
	// HTTP carries every HTTP request the locker makes; never use
	// http.DefaultClient. Its transport is where per-client network faults
	// are injected.
	HTTP *http.Client
	// Dial opens every non-HTTP connection the locker makes.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Identity names this client; it is stable across the client's
	// restarts and unique within a run.
	Identity string
	// Seed seeds any randomness the algorithm uses (jitter, tokens), so a
	// run can be replayed.
	Seed uint64
	// Log receives the locker's diagnostics.
	Log Logger
	// AttemptStarted, when set, is called by Lock immediately before each
	// attempt to take the lock, but only while every earlier attempt of
	// the same Lock call definitely had no effect. The checkers then know
	// that a successful Lock took effect no earlier than its last
	// reported attempt, which keeps a long blocking wait from overlapping
	// every other call in the history. A locker that cannot promise this
	// never calls it.
	AttemptStarted func()
}

// MarkAttempt reports the start of an acquisition attempt, if anyone listens.
func (e Env) MarkAttempt() {
	if e.AttemptStarted != nil {
		e.AttemptStarted()
	}
}

// Logf logs through e.Log, if set.
func (e Env) Logf(format string, args ...any) {
	if e.Log != nil {
		e.Log.Logf(format, args...)
	}
}

// SystemClock is the real clock, for lockers run outside the harness.
type SystemClock struct{}

func (SystemClock) Now() time.Time                         { return time.Now() }
func (SystemClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

var _ Clock = SystemClock{}
