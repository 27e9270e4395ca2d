package lockertest

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/lockcheck/lockcheck/lockers"
)

// FakeClock is a [lockers.Clock] whose time moves only when the test calls
// Advance, so a test can put a locker exactly at, before or after one of its
// deadlines without waiting for any real time to pass.
//
// After with a duration of zero or less fires at once: lockers use it to
// pass through the client's clock without waiting, and a manual clock that
// held such a timer until the next Advance would deadlock them.
type FakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []fakeTimer
	// added is closed and replaced each time a timer is added, so
	// WaitForTimers can block on an event instead of polling.
	added chan struct{}
}

type fakeTimer struct {
	at time.Time
	ch chan time.Time
}

var _ lockers.Clock = (*FakeClock)(nil)

// NewFakeClock returns a clock that reads start until advanced.
func NewFakeClock(start time.Time) *FakeClock {
	return &FakeClock{now: start, added: make(chan struct{})}
}

// Now reads the clock.
func (c *FakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// After returns a channel that receives the clock's time once it has
// advanced by d.
func (c *FakeClock) After(d time.Duration) <-chan time.Time {
	ch := make(chan time.Time, 1)
	c.mu.Lock()
	defer c.mu.Unlock()
	if d <= 0 {
		ch <- c.now
		return ch
	}
	c.timers = append(c.timers, fakeTimer{at: c.now.Add(d), ch: ch})
	close(c.added)
	c.added = make(chan struct{})
	return ch
}

// Advance moves the clock forward by d and fires, in due order, every timer
// that comes due.
func (c *FakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	slices.SortStableFunc(c.timers, func(a, b fakeTimer) int { return a.at.Compare(b.at) })
	due := 0
	for due < len(c.timers) && !c.timers[due].at.After(c.now) {
		// Buffered with room for one value: never blocks.
		c.timers[due].ch <- c.timers[due].at
		due++
	}
	c.timers = slices.Delete(c.timers, 0, due)
}

// Pending counts the timers that have not fired yet.
func (c *FakeClock) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.timers)
}

// WaitForTimers blocks until at least n timers are pending or ctx ends. A
// test calls it before Advance to know the code under test has armed the
// timer the advance is meant to fire.
func (c *FakeClock) WaitForTimers(ctx context.Context, n int) error {
	for {
		c.mu.Lock()
		pending, added := len(c.timers), c.added
		c.mu.Unlock()
		if pending >= n {
			return nil
		}
		select {
		case <-added:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
