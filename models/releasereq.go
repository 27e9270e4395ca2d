package models

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/lockcheck/lockcheck/history"
)

// ReleaseRequestsName is the request-release measure's name in reports.
const ReleaseRequestsName = "release-requests"

// ReleaseRequests measures the request-release workload: holders hold
// long and are meant to let go early when another client asks. A hold is
// contended from the moment another client's acquire of its key is open
// during it (the hold's start, if the acquire was already waiting). For
// each contended hold that ended by its holder invoking release:
//   - if the holder recorded a release request first, LetGo times the
//     contention to the release's invocation, and HandOff the contention
//     to the key's next successful acquire by anyone (NeverHandedOff
//     counts those after which nobody acquired the key again);
//   - if not, the request never reached the holder: Missed.
//
// A contended hold released within ReleaseGrace of its contention, asked
// or not, is Quick: it did not hold on, whatever the reason (a hold that
// ended as a waiter arrived; the end of the workload). Holds that ended by
// a lost notice or a crash are Interrupted, and those still held when the
// history ended Unfinished: neither says anything about requests. Holds
// taken in the recovery phase (brief by design) are not counted.
// Unprompted counts requests recorded while no other client was waiting.
type ReleaseRequests struct {
	Verdict Verdict `json:"verdict"`
	Summary string  `json:"summary"`
	// Contended counts contended holds ended by a release, Requested those
	// of them whose holder was asked first.
	Contended      int    `json:"contended"`
	Requested      int    `json:"requested"`
	Missed         int    `json:"missed"`
	LetGo          Spread `json:"let_go"`
	HandOff        Spread `json:"hand_off"`
	NeverHandedOff int    `json:"never_handed_off"`
	Interrupted    int    `json:"interrupted"`
	Unfinished     int    `json:"unfinished"`
	Unprompted     int    `json:"unprompted"`
	Quick          int    `json:"quick"`
	// Notices counts release-requested events in the history.
	Notices int `json:"notices"`
}

// ReleaseGrace is how soon after a waiter arrives a holder may let go
// without having been asked and still not count as holding on: the time a
// request takes to arrive is no fault of the holder's.
const ReleaseGrace = 50 * time.Millisecond

type rrHold struct {
	start     int64
	contended int64 // -1 while nobody waits
	asked     bool
}

type rrKey struct {
	holders map[history.Process]*rrHold
	waiting map[history.Process]int64
	// handOff lists the contention times of holds let go on request
	// that the key's next acquisition ends.
	handOff []int64
}

// measureReleaseRequests reads h once, by what clients observed.
func measureReleaseRequests(h *history.History) *ReleaseRequests {
	r := &ReleaseRequests{}
	keys := map[string]*rrKey{}
	key := func(name string) *rrKey {
		k := keys[name]
		if k == nil {
			k = &rrKey{holders: map[history.Process]*rrHold{}, waiting: map[history.Process]int64{}}
			keys[name] = k
		}
		return k
	}
	var letGo, handOff []int64
	end := func(k *rrKey, proc history.Process, t int64, released bool) {
		hd := k.holders[proc]
		if hd == nil {
			return
		}
		delete(k.holders, proc)
		switch {
		case hd.contended < 0:
		case !released:
			r.Interrupted++
		case !hd.asked && t-hd.contended <= int64(ReleaseGrace):
			r.Quick++
		case hd.asked:
			r.Contended++
			r.Requested++
			letGo = append(letGo, t-hd.contended)
			k.handOff = append(k.handOff, hd.contended)
		default:
			r.Contended++
			r.Missed++
		}
	}
	recovering := false
	for _, e := range h.Events {
		switch {
		case e.Process == history.Nemesis:
			if e.F == history.Recovery {
				recovering = true
			}
			if e.F != history.Crash {
				continue
			}
			var ref history.ClientRef
			if json.Unmarshal(e.Value, &ref) != nil {
				continue
			}
			for _, k := range keys {
				delete(k.waiting, ref.Process)
				end(k, ref.Process, e.Time, false)
			}
		case e.F == history.Acquire && e.Type == history.Invoke:
			k := key(e.Key)
			k.waiting[e.Process] = e.Time
			for p, hd := range k.holders {
				if p != e.Process && hd.contended < 0 {
					hd.contended = e.Time
				}
			}
		case e.F == history.Acquire:
			k := key(e.Key)
			delete(k.waiting, e.Process)
			if e.Type != history.OK {
				continue
			}
			for _, c := range k.handOff {
				handOff = append(handOff, e.Time-c)
			}
			k.handOff = k.handOff[:0]
			if recovering {
				continue
			}
			hd := &rrHold{start: e.Time, contended: -1}
			for p := range k.waiting {
				if p != e.Process {
					hd.contended = e.Time
				}
			}
			k.holders[e.Process] = hd
		case e.F == history.ReleaseRequested:
			r.Notices++
			if hd := key(e.Key).holders[e.Process]; hd != nil && hd.contended >= 0 {
				hd.asked = true
			} else {
				r.Unprompted++
			}
		case e.F == history.Release && e.Type == history.Invoke:
			end(key(e.Key), e.Process, e.Time, true)
		case e.F == history.Lost:
			end(key(e.Key), e.Process, e.Time, false)
		}
	}
	for _, k := range keys {
		for _, hd := range k.holders {
			if hd.contended >= 0 {
				r.Unfinished++
			}
		}
		r.NeverHandedOff += len(k.handOff)
	}
	r.LetGo, r.HandOff = spreadOf(letGo), spreadOf(handOff)
	r.judge()
	return r
}

func (r *ReleaseRequests) judge() {
	switch {
	case r.Contended == 0:
		r.Verdict = Unknown
		r.Summary = "no hold was contended and ended by a release; nothing to measure."
		if r.Quick > 0 {
			r.Summary = fmt.Sprintf("no contended hold lasted past the %v grace (%s let go as a waiter arrived); nothing to measure.", ReleaseGrace, nOf(r.Quick, "hold"))
		}
		return
	case r.Missed > 0:
		r.Verdict = Invalid
	default:
		r.Verdict = Valid
	}
	r.Summary = fmt.Sprintf("%s: %d let go on request", nOf(r.Contended, "contended hold"), r.Requested)
	if r.Requested > 0 {
		r.Summary += fmt.Sprintf(" (let go after p50 %v, max %v; handed off after p50 %v, max %v)",
			r.LetGo.P50, r.LetGo.Max, r.HandOff.P50, r.HandOff.Max)
	}
	if r.Missed > 0 {
		r.Summary += fmt.Sprintf(", %d held on with no request reaching the holder", r.Missed)
	}
	if r.NeverHandedOff > 0 {
		r.Summary += fmt.Sprintf(", %d let go but never taken again", r.NeverHandedOff)
	}
	r.Summary += "."
	if r.Notices == 0 {
		r.Summary += " The locker never recorded a release request (it may not support them)."
	}
}
