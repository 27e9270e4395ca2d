package models

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/lockcheck/lockcheck/history"
)

// AuditName is the backend audit's name in reports.
const AuditName = "backend-audit"

// AuditResult is the verdict of the backend audit: the writes the backend
// itself accepted (history.BackendWrite, recorded by the embedded GCS and
// the embedded Redis) judged against who held each lock by the history. A lock object written
// during a client's successful acquire is that hold's incarnation, from
// the write until the holder releases it, is told it lost it, or crashes;
// a write that another client got accepted on that incarnation while the
// hold lasted is a violation: a late delete, an extend without a
// precondition, a takeover too eager. Mutual exclusion sees only what the
// clients said; this sees what reached the store, so it catches a stray
// write whose harm hides behind a failure the history already shows, or
// does not show at all.
//
// Nil when the history has no backend writes: a backend that reports none
// (a real bucket, a real redis-server) is not audited, nor is a write
// whose sender is unknown (a worker process's own requests). A lock held
// on several servers at once (Redlock) is followed on the server whose
// write won it last.
type AuditResult struct {
	Verdict Verdict `json:"verdict"`
	Summary string  `json:"summary"`
	// Writes counts the accepted writes whose writer is known; Holds
	// the lock incarnations the audit tied to a hold.
	Writes          int      `json:"writes"`
	Holds           int      `json:"holds"`
	Violations      int      `json:"violations"`
	Counterexamples []string `json:"counterexamples,omitempty"`
}

// auditHold is one successful acquisition, as the audit follows it.
type auditHold struct {
	client     int
	process    history.Process
	key        string
	invoke, ok int64
	end        int64 // math.MaxInt64 while it lasts to the end of the history
	// created is when the backend accepted the write that won the lock.
	created int64
}

type auditWrite struct {
	time int64
	w    history.Write
}

type incarnation struct {
	object string
	gen    int64
}

// trail is what the backend audit and the lost-notice check read off a
// history: the accepted writes with a known writer, the holds, and the
// lock incarnation each hold won.
type trail struct {
	writes []auditWrite
	holds  []*auditHold
	owner  map[incarnation]*auditHold
	won    map[*auditHold]incarnation
}

// readTrail follows h's holds and backend writes; nil when it has no
// backend writes.
func readTrail(h *history.History) *trail {
	tr := &trail{owner: map[incarnation]*auditHold{}, won: map[*auditHold]incarnation{}}
	invoked := map[history.Process]int64{}
	open := map[[2]any]*auditHold{} // client, key → the hold it is in
	endHold := func(client int, key string, at int64) {
		k := [2]any{client, key}
		if hd := open[k]; hd != nil {
			hd.end = at
			delete(open, k)
		}
	}
	for _, e := range h.Events {
		switch {
		case e.F == history.BackendWrite:
			var w history.Write
			if json.Unmarshal(e.Value, &w) == nil && w.Client >= 0 {
				tr.writes = append(tr.writes, auditWrite{e.Time, w})
			}
		case e.F == history.Crash:
			var ref history.ClientRef
			if json.Unmarshal(e.Value, &ref) == nil {
				for k, hd := range open {
					if k[0] == ref.Client {
						hd.end = e.Time
						delete(open, k)
					}
				}
			}
		case e.F == history.Acquire && e.Type == history.Invoke:
			invoked[e.Process] = e.Time
		case e.F == history.Acquire && e.Type == history.OK:
			hd := &auditHold{client: e.Client, process: e.Process, key: e.Key, invoke: invoked[e.Process], ok: e.Time, end: math.MaxInt64}
			tr.holds = append(tr.holds, hd)
			open[[2]any{e.Client, e.Key}] = hd
		case e.F == history.Release && e.Type == history.Invoke, e.F == history.Lost:
			endHold(e.Client, e.Key, e.Time)
		}
	}
	if len(tr.writes) == 0 {
		return nil
	}
	// A hold's incarnation is the last object generation its client's
	// writes made during its acquire call: the winning write. Earlier ones
	// of the call are a waiter's own (a release request, an attempt that
	// lost).
	// Each client's generation-making writes, in time order: a hold looks
	// up the last one in its acquire call by binary search, so a long run
	// costs holds × log(writes), not holds × writes.
	made := map[int][]*auditWrite{}
	for i := range tr.writes {
		if aw := &tr.writes[i]; aw.w.Op == "write" && aw.w.After != 0 {
			made[aw.w.Client] = append(made[aw.w.Client], aw)
		}
	}
	for _, hd := range tr.holds {
		mine := made[hd.client]
		i := sort.Search(len(mine), func(i int) bool { return mine[i].time > hd.ok })
		var won *auditWrite
		if i > 0 && mine[i-1].time >= hd.invoke {
			won = mine[i-1]
		}
		if won != nil {
			inc := incarnation{won.w.Object, won.w.After}
			tr.owner[inc] = hd
			tr.won[hd] = inc
			hd.created = won.time
		}
	}
	return tr
}

// checkAudit audits h's backend writes; nil when it has none.
func checkAudit(h *history.History, opts Options) *AuditResult {
	tr := readTrail(h)
	if tr == nil {
		return nil
	}
	res := &AuditResult{Writes: len(tr.writes), Holds: len(tr.owner)}
	for _, aw := range tr.writes {
		if aw.w.Before == 0 {
			continue
		}
		hd := tr.owner[incarnation{aw.w.Object, aw.w.Before}]
		if hd == nil || hd.client == aw.w.Client || aw.time >= hd.end {
			continue
		}
		res.Violations++
		if len(res.Counterexamples) < opts.maxCounterexamples() {
			res.Counterexamples = append(res.Counterexamples, fmt.Sprintf(
				"at %v the backend accepted client %d's %s of %s at version %d, the lock client %d (P%d) acquired on key %s at %v and held %s: a write from a client that did not hold the lock",
				at(aw.time), aw.w.Client, aw.w.Op, aw.w.Object, aw.w.Before, hd.client, hd.process, hd.key, at(hd.ok), until(hd.end)))
		}
	}
	if res.Violations > 0 {
		res.Verdict = Invalid
		res.Summary = fmt.Sprintf("%d of %d accepted writes hit a lock another client held", res.Violations, res.Writes)
	} else {
		res.Verdict = Valid
		res.Summary = fmt.Sprintf("%d accepted writes, none on a lock another client held (%d holds' lock objects followed)", res.Writes, res.Holds)
	}
	return res
}

func at(t int64) time.Duration { return time.Duration(t).Round(time.Millisecond) }

// maxTime stands for a hold that lasts to the end of the history.
const maxTime = math.MaxInt64

func until(end int64) string {
	if end == maxTime {
		return "to the end of the run"
	}
	return "until " + at(end).String()
}
