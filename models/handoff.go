package models

import (
	"encoding/json"
	"slices"
	"time"

	"github.com/lockcheck/lockcheck/history"
)

// Spread summarises a set of durations.
type Spread struct {
	Count int           `json:"count"`
	P50   time.Duration `json:"p50_ns"`
	P99   time.Duration `json:"p99_ns"`
	Max   time.Duration `json:"max_ns"`
}

func spreadOf(ds []int64) Spread {
	if len(ds) == 0 {
		return Spread{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return Spread{Count: len(s), P50: time.Duration(percentile(s, 50)),
		P99: time.Duration(percentile(s, 99)), Max: time.Duration(s[len(s)-1])}
}

// HandOffs measures how quickly a released lock reaches a client that was
// waiting for it: from a release that returned ok, while another client's
// acquire of the key was open, to the next successful acquire of the key.
// Missed counts such releases after which the key was never acquired again.
type HandOffs struct {
	Spread
	Missed int `json:"missed"`
}

// HolderCrashes measures recovery from abandoned locks: from the crash of
// a client that held a key to the next successful acquire of that key by
// anyone. Never counts crashed holders whose key nobody acquired again
// before the history ended: a stuck lock. NeverFor is the shortest time
// such a key stayed stuck, from its crash to the end of the history.
type HolderCrashes struct {
	Spread
	Crashes  int           `json:"crashes"`
	Never    int           `json:"never"`
	NeverFor time.Duration `json:"never_for_ns"`
}

// measureRecovery reads h once for hand-offs and holder crashes. It goes
// by what clients observed (acquire ok, release invoked or ok, lost
// notices), as a user of the lock would time it.
func measureRecovery(h *history.History) (HandOffs, HolderCrashes) {
	holders := map[string]map[history.Process]bool{}
	waiting := map[string]map[history.Process]bool{}
	released := map[string]int64{} // key → release ok with a waiter, not yet handed off
	crashed := map[string]int64{}  // key → crash of its holder, not yet recovered
	var handoffs, recoveries []int64
	var hc HolderCrashes
	set := func(m map[string]map[history.Process]bool, k string) map[history.Process]bool {
		if m[k] == nil {
			m[k] = map[history.Process]bool{}
		}
		return m[k]
	}
	var end int64
	for _, e := range h.Events {
		end = e.Time
		switch {
		case e.F == history.Acquire && e.Type == history.Invoke:
			set(waiting, e.Key)[e.Process] = true
		case e.F == history.Acquire:
			delete(set(waiting, e.Key), e.Process)
			if e.Type != history.OK {
				continue
			}
			set(holders, e.Key)[e.Process] = true
			if t, ok := released[e.Key]; ok {
				handoffs = append(handoffs, e.Time-t)
				delete(released, e.Key)
			}
			if t, ok := crashed[e.Key]; ok {
				recoveries = append(recoveries, e.Time-t)
				delete(crashed, e.Key)
			}
		case e.F == history.Release && e.Type == history.Invoke, e.F == history.Lost:
			delete(set(holders, e.Key), e.Process)
		case e.F == history.Release && e.Type == history.OK:
			if len(waiting[e.Key]) > 0 && len(holders[e.Key]) == 0 {
				if _, pending := released[e.Key]; !pending {
					released[e.Key] = e.Time
				}
			}
		case e.F == history.Crash:
			var ref history.ClientRef
			if json.Unmarshal(e.Value, &ref) != nil {
				continue
			}
			for k, hs := range holders {
				if !hs[ref.Process] {
					continue
				}
				delete(hs, ref.Process)
				hc.Crashes++
				if _, pending := crashed[k]; !pending {
					crashed[k] = e.Time
				}
			}
			for _, ws := range waiting {
				delete(ws, ref.Process)
			}
		}
	}
	ho := HandOffs{Spread: spreadOf(handoffs), Missed: len(released)}
	hc.Spread = spreadOf(recoveries)
	hc.Never = len(crashed)
	for _, t := range crashed {
		if d := time.Duration(end - t); hc.NeverFor == 0 || d < hc.NeverFor {
			hc.NeverFor = d
		}
	}
	return ho, hc
}
