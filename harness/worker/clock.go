package worker

import (
	"time"

	"github.com/lockcheck/lockcheck/harness/internal/skewclock"
	"github.com/lockcheck/lockcheck/lockers"
)

// clock is the worker's machine clock as the harness sets it. Unlike a
// shift, a clock request sets the whole state, so a lost or repeated
// request cannot leave the worker's clock anywhere the harness did not ask
// for.
type clock struct {
	*skewclock.Clock
}

var _ lockers.Clock = clock{}

func newClock(real func() time.Time, s ClockState) clock {
	c := clock{skewclock.New(real)}
	c.set(s)
	return c
}

func (c clock) set(s ClockState) { c.Set(time.Duration(s.SkewNS), s.Drift) }

// After waits the real time this clock takes to advance d. A change of
// drift during the wait is not taken into account, as with the harness's
// own machine clocks.
func (c clock) After(d time.Duration) <-chan time.Time {
	ch := make(chan time.Time, 1)
	time.AfterFunc(c.RealWait(d), func() { ch <- c.Now() })
	return ch
}
