// Package skewclock is a machine's clock as the harness fakes it: real time
// plus a skew, running fast or slow by a drift rate. The harness keeps one
// per client machine, and a worker process keeps one set by the harness,
// so that goroutine and process clients see the same clock faults.
package skewclock

import (
	"sync"
	"time"
)

// Clock is real time plus a skew that grows by rate extra seconds per real
// second (0.5 runs 1.5× fast). A nil *Clock is real time.
type Clock struct {
	real func() time.Time // time.Now, but for tests

	mu     sync.Mutex
	skew   time.Duration // at anchor
	rate   float64
	anchor time.Time // real time at the last change
}

// New is a clock at real time (as real tells it) with no skew or drift.
func New(real func() time.Time) *Clock { return &Clock{real: real, anchor: real()} }

// Now is the clock's time.
func (c *Clock) Now() time.Time {
	if c == nil {
		return time.Now()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	real := c.real()
	return real.Add(c.skewAt(real))
}

// skewAt is how far the clock is ahead of real time t.
func (c *Clock) skewAt(t time.Time) time.Duration {
	if c.rate == 0 {
		return c.skew
	}
	return c.skew + time.Duration(c.rate*float64(t.Sub(c.anchor)))
}

// RealWait is how long in real time the clock takes to advance d: shorter
// on a fast clock. A rate change during the wait is not taken into account.
func (c *Clock) RealWait(d time.Duration) time.Duration {
	if c == nil {
		return d
	}
	c.mu.Lock()
	rate := c.rate
	c.mu.Unlock()
	if rate == 0 || rate <= -1 {
		return d
	}
	return time.Duration(float64(d) / (1 + rate))
}

// Set puts the clock at skew ahead of real time from now on, running at
// 1+rate real speed: the whole state, so that a lost or repeated request
// to set it cannot leave it anywhere it was not asked to be.
func (c *Clock) Set(skew time.Duration, rate float64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.skew, c.rate, c.anchor = skew, rate, c.real()
}

// Shift steps the clock by delta, as an operator or NTP step would, and
// returns the new skew.
func (c *Clock) Shift(delta time.Duration) time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	real := c.real()
	c.skew, c.anchor = c.skewAt(real)+delta, real
	return c.skew
}

// Drift makes the clock run at 1+rate real speed from now on, keeping the
// skew it has reached; it returns that skew.
func (c *Clock) Drift(rate float64) time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	real := c.real()
	c.skew, c.anchor, c.rate = c.skewAt(real), real, rate
	return c.skew
}

// State reports the skew now and the drift rate.
func (c *Clock) State() (time.Duration, float64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.skewAt(c.real()), c.rate
}
