package models

import (
	"encoding/json"
	"sync"

	"github.com/lockcheck/lockcheck/history"
)

// LiveMutex counts mutual-exclusion violations while a run is recorded, for
// progress output. It applies the rule of [CheckMutex] to events as they
// arrive: an acquire-ok on a key that another open section holds is one
// violation. The recorder stamps and writes under one lock, so arrival
// order is time order; the one difference from CheckMutex is a section that
// ends at the very nanosecond another begins, which CheckMutex does not
// count and LiveMutex may. The report's verdict comes from CheckMutex.
// It is safe for concurrent use.
type LiveMutex struct {
	mu         sync.Mutex
	open       map[string]map[history.Process]int // key → holder → open sections
	violations int
}

// NewLiveMutex returns a counter with nothing open.
func NewLiveMutex() *LiveMutex {
	return &LiveMutex{open: map[string]map[history.Process]int{}}
}

// Observe takes the next event of the history.
func (m *LiveMutex) Observe(e history.Event) {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case e.Process == history.Nemesis:
		if e.F != history.Crash {
			return
		}
		var ref history.ClientRef
		if json.Unmarshal(e.Value, &ref) != nil {
			return
		}
		for key, holders := range m.open {
			delete(holders, ref.Process)
			if len(holders) == 0 {
				delete(m.open, key)
			}
		}
	case e.F == history.Acquire && e.Type == history.OK:
		holders := m.open[e.Key]
		if holders == nil {
			holders = map[history.Process]int{}
			m.open[e.Key] = holders
		}
		if len(holders) > 0 {
			m.violations++
		}
		holders[e.Process]++
	case (e.F == history.Release && e.Type == history.Invoke) || e.F == history.Lost:
		holders := m.open[e.Key]
		if holders[e.Process] == 0 {
			return
		}
		if e.F == history.Lost || holders[e.Process] == 1 {
			delete(holders, e.Process)
		} else {
			holders[e.Process]--
		}
		if len(holders) == 0 {
			delete(m.open, e.Key)
		}
	}
}

// Violations is the number counted so far.
func (m *LiveMutex) Violations() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.violations
}
