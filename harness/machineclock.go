package harness

import (
	"sync"
	"time"
)

// machineClock is the clock of a client's machine: real time plus an
// offset, running fast or slow by a drift rate. It outlives the client's
// incarnations, as a machine's clock outlives its processes, and clock
// faults change it.
type machineClock struct {
	real func() time.Time // time.Now, but for tests

	mu     sync.Mutex
	offset time.Duration // at anchor
	rate   float64       // extra seconds per real second; 0.5 runs 1.5× fast
	anchor time.Time     // real time at the last change
}

func newMachineClock() *machineClock { return &machineClock{real: time.Now} }

// now is the machine's time.
func (m *machineClock) now() time.Time {
	if m == nil {
		return time.Now()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	real := m.real()
	return real.Add(m.skewAt(real))
}

// skewAt is how far the machine's clock is ahead of real at real time t.
func (m *machineClock) skewAt(t time.Time) time.Duration {
	if m.rate == 0 {
		return m.offset
	}
	return m.offset + time.Duration(m.rate*float64(t.Sub(m.anchor)))
}

// realWait is how long in real time the machine's clock takes to advance
// d: shorter on a fast clock. A rate change during the wait is not taken
// into account.
func (m *machineClock) realWait(d time.Duration) time.Duration {
	if m == nil {
		return d
	}
	m.mu.Lock()
	rate := m.rate
	m.mu.Unlock()
	if rate == 0 || rate <= -1 {
		return d
	}
	return time.Duration(float64(d) / (1 + rate))
}

// shift steps the clock by delta, as an operator or NTP step would, and
// returns the new skew.
func (m *machineClock) shift(delta time.Duration) time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	real := m.real()
	m.offset, m.anchor = m.skewAt(real)+delta, real
	return m.offset
}

// drift makes the clock run at 1+rate real speed from now on, keeping the
// skew it has reached; it returns that skew.
func (m *machineClock) drift(rate float64) time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	real := m.real()
	m.offset, m.anchor, m.rate = m.skewAt(real), real, rate
	return m.offset
}

// state reports the skew now and the drift rate.
func (m *machineClock) state() (time.Duration, float64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.skewAt(m.real()), m.rate
}
