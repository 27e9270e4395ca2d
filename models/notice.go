package models

import (
	"fmt"
	"time"

	"github.com/lockcheck/lockcheck/history"
)

// NoticeName is the lost-notice check's name in reports.
const NoticeName = "lost-notice"

// NoticeResult judges a locker's promise of how soon a holder learns it
// lost its lock (history.RunInfo.LostNotice). With
// history.NoticeBeforeLeaseEnd, a holder must be told (Lost), or have
// let go, before its lease ends on the backend: the lease starts when the
// backend accepts the write that won the lock, each accepted extend of
// that lock before it ends moves its end a lease on, and the first
// instant it lapses is its end. A holder still at work past it was never
// told in time, whether or not a waiter took the lock meanwhile: the
// harm of a late notice need not show as an overlap.
//
// Nil when the locker promises nothing, the run has no lease, or the
// backend reported no writes (the lease's end is read off them).
type NoticeResult struct {
	Verdict Verdict `json:"verdict"`
	Summary string  `json:"summary"`
	// Holds counts the holds judged; Late those that went on past their
	// lease's end.
	Holds           int      `json:"holds"`
	Late            int      `json:"late"`
	Counterexamples []string `json:"counterexamples,omitempty"`
}

// checkNotice judges h's holds against the locker's notice promise.
func checkNotice(h *history.History, opts Options) *NoticeResult {
	lease := int64(h.Header.Run.Lease)
	if h.Header.Run.LostNotice != history.NoticeBeforeLeaseEnd || lease <= 0 {
		return nil
	}
	tr := readTrail(h)
	if tr == nil {
		return nil
	}
	// The extends of each incarnation, in time order.
	extends := map[incarnation][]auditWrite{}
	for _, aw := range tr.writes {
		if aw.w.Op == "update" && aw.w.Before != 0 {
			inc := incarnation{aw.w.Object, aw.w.Before}
			extends[inc] = append(extends[inc], aw)
		}
	}
	res := &NoticeResult{}
	for _, hd := range tr.holds {
		inc, ok := tr.won[hd]
		if !ok {
			continue
		}
		res.Holds++
		end := hd.created + lease
		for _, aw := range extends[inc] {
			if aw.time <= hd.created {
				continue
			}
			if aw.time > end {
				break // the lease had lapsed; a late extend does not undo that
			}
			end = aw.time + lease
		}
		if hd.end <= end {
			continue
		}
		res.Late++
		if len(res.Counterexamples) < opts.maxCounterexamples() {
			res.Counterexamples = append(res.Counterexamples, fmt.Sprintf(
				"client %d (P%d) acquired key %s at %v; its lease ended on the backend at %v (a %v lease from the last extend the backend accepted), and it was still holding %v later, %s",
				hd.client, hd.process, hd.key, at(hd.ok), at(end), time.Duration(lease), time.Duration(min(hd.end, h.Events[len(h.Events)-1].Time)-end).Round(time.Millisecond), toldAt(hd.end)))
		}
	}
	if res.Late > 0 {
		res.Verdict = Invalid
		res.Summary = fmt.Sprintf("%d of %d holders went on past their lease's end on the backend without being told", res.Late, res.Holds)
	} else {
		res.Verdict = Valid
		res.Summary = fmt.Sprintf("each of %d holders was told, or let go, before its lease ended on the backend", res.Holds)
	}
	return res
}

func toldAt(end int64) string {
	if end == maxTime {
		return "and was never told"
	}
	return "until " + at(end).String()
}
