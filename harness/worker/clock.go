package worker

import (
	"sync"
	"time"

	"github.com/lockcheck/lockcheck/lockers"
)

// clock is the worker's machine clock as the harness sets it: real time
// plus a skew, running fast or slow by a drift rate. Unlike a shift, a
// clock request sets the whole state, so a lost or repeated request cannot
// leave the worker's clock anywhere the harness did not ask for.
type clock struct {
	real func() time.Time

	mu     sync.Mutex
	skew   time.Duration // at anchor
	drift  float64       // extra seconds per real second
	anchor time.Time     // real time of the last set
}

var _ lockers.Clock = (*clock)(nil)

func newClock(real func() time.Time, s ClockState) *clock {
	c := &clock{real: real}
	c.set(s)
	return c
}

func (c *clock) set(s ClockState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.skew, c.drift, c.anchor = time.Duration(s.SkewNS), s.Drift, c.real()
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	real := c.real()
	return real.Add(c.skew + time.Duration(c.drift*float64(real.Sub(c.anchor))))
}

// After waits the real time this clock takes to advance d. A change of
// drift during the wait is not taken into account, as with the harness's
// own machine clocks.
func (c *clock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	drift := c.drift
	c.mu.Unlock()
	if drift != 0 && drift > -1 {
		d = time.Duration(float64(d) / (1 + drift))
	}
	ch := make(chan time.Time, 1)
	time.AfterFunc(d, func() { ch <- c.Now() })
	return ch
}
