package models

import (
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/lockcheck/lockcheck/history"
)

// dataCall is one read or write of a register workload.
type dataCall struct {
	f       string
	proc    history.Process
	client  int
	key     string
	token   uint64
	invoke  int64
	done    int64 // completion time; meaningless while outcome is ""
	outcome history.Type
	// value is what a read returned (on ok) or what a write wrote.
	value    int64
	hasValue bool
	index    int64 // the invoke's event index
}

// increment is one critical section's read and the write that followed it
// on the same process and key; write is nil when none did. A write that
// no read by its process preceded has read nil (the workload never does
// this, but a history may).
type increment struct {
	read  *dataCall
	write *dataCall
}

type registerKey struct {
	name  string
	calls []*dataCall // in invoke order
	incs  []*increment
	// final is the harness's own read once the run was over.
	final     int64
	hasFinal  bool
	finalTime int64
	finalIdx  int64
}

// registerData is a history's register calls, read once for the data-level
// checkers.
type registerData struct {
	workload string
	keys     []*registerKey
	index    map[string]*registerKey
	reads    int
	writes   int
	// requests counts release-requested notices, for the request-release
	// measure's "does it apply".
	requests int
}

func (r *registerData) key(name string) *registerKey {
	k := r.index[name]
	if k == nil {
		k = &registerKey{name: name}
		r.index[name] = k
		r.keys = append(r.keys, k)
	}
	return k
}

// registerApplies says whether the lost-update and register linearizability
// checkers have anything to say: a register workload, or any data calls.
func (r *registerData) registerApplies() bool {
	return r.workload == history.WorkloadRegister || r.workload == history.WorkloadFencedRegister ||
		r.reads+r.writes > 0
}

func intValue(raw json.RawMessage) (int64, bool) {
	if len(raw) == 0 {
		return 0, false
	}
	var v int64
	if json.Unmarshal(raw, &v) != nil {
		return 0, false
	}
	return v, true
}

// readRegisterData collects the data calls of h. It expects a history the
// digest has already accepted, so it only checks what the digest does not:
// the values.
func readRegisterData(h *history.History) (*registerData, error) {
	r := &registerData{workload: h.Header.Run.Workload, index: map[string]*registerKey{}}
	open := map[history.Process]*dataCall{}
	lastRead := map[history.Process]*increment{}
	for i := range h.Events {
		e := &h.Events[i]
		if e.Process == history.Nemesis {
			switch e.F {
			case history.Final:
				v, ok := intValue(e.Value)
				if !ok || e.Key == "" {
					return nil, malformed(*e, "a final event needs a key and an integer value, got key %q value %s", e.Key, e.Value)
				}
				k := r.key(e.Key)
				k.final, k.hasFinal, k.finalTime, k.finalIdx = v, true, e.Time, e.Index
			case history.Crash:
				var ref history.ClientRef
				if json.Unmarshal(e.Value, &ref) == nil {
					if c := open[ref.Process]; c != nil {
						c.outcome, c.done = history.Info, e.Time
						delete(open, ref.Process)
					}
				}
			}
			continue
		}
		if e.F == history.ReleaseRequested {
			r.requests++
			continue
		}
		if e.F != history.ReadOp && e.F != history.WriteOp {
			continue
		}
		if e.Type == history.Invoke {
			c := &dataCall{f: e.F, proc: e.Process, client: e.Client, key: e.Key, token: e.Token, invoke: e.Time, index: e.Index}
			if e.F == history.WriteOp {
				c.value, c.hasValue = intValue(e.Value)
			}
			if e.Key == "" {
				return nil, malformed(*e, "%s needs a key", e.F)
			}
			k := r.key(e.Key)
			k.calls = append(k.calls, c)
			open[e.Process] = c
			if e.F == history.ReadOp {
				r.reads++
				delete(lastRead, e.Process)
				continue
			}
			r.writes++
			if inc := lastRead[e.Process]; inc != nil && inc.write == nil && inc.read.key == e.Key {
				inc.write = c
				delete(lastRead, e.Process)
			} else {
				k.incs = append(k.incs, &increment{write: c})
			}
			continue
		}
		c := open[e.Process]
		if c == nil || c.f != e.F {
			continue
		}
		delete(open, e.Process)
		c.outcome, c.done = e.Type, e.Time
		if e.Type == history.OK {
			v, ok := intValue(e.Value)
			switch {
			case ok:
				c.value, c.hasValue = v, true
			case e.F == history.ReadOp:
				return nil, malformed(*e, "a read that returned ok needs the integer it read in value, got %s", e.Value)
			}
		}
		if e.F == history.WriteOp && !c.hasValue {
			return nil, malformed(*e, "a write needs the integer it wrote in value")
		}
		if e.F == history.ReadOp && e.Type == history.OK {
			inc := &increment{read: c}
			k := r.key(c.key)
			k.incs = append(k.incs, inc)
			lastRead[e.Process] = inc
		}
	}
	return r, nil
}

// who names a call's client for a person.
func (c *dataCall) who() string {
	s := fmt.Sprintf("client %d (P%d", c.client, c.proc)
	if c.token != 0 {
		s += fmt.Sprintf(", token %d", c.token)
	}
	return s + ")"
}

// LostUpdatesName is the lost-update checker's name in reports.
const LostUpdatesName = "lost-updates"

// RegisterKeyCount is one key's tally of increments.
type RegisterKeyCount struct {
	Key string `json:"key"`
	// Acknowledged counts writes that returned ok; Unknown those whose
	// outcome is unknown (info, or open when the history ended); Refused
	// those the store definitely refused.
	Acknowledged int `json:"acknowledged"`
	Unknown      int `json:"unknown"`
	Refused      int `json:"refused"`
	// Final is the register's value read after the run; HasFinal is false
	// when the history has none for the key.
	Final    int64 `json:"final"`
	HasFinal bool  `json:"has_final"`
	// Lost is Acknowledged minus Final when positive: a lower bound on the
	// acknowledged increments that the register does not hold.
	Lost int64 `json:"lost"`
}

// LostUpdatesResult is the verdict of the lost-update checker.
//
// In a register workload each holder reads the key's register and writes
// back the value plus one, so if mutual exclusion held, every acknowledged
// write added one and the final value is at least the number of
// acknowledged writes, and at most that plus the writes of unknown outcome.
// The verdict, merged over keys:
//   - invalid if a key ends below its acknowledged writes (updates were
//     lost: two holders read the same value) or above its acknowledged and
//     unknown writes together (the register holds increments nobody made,
//     which is the store's fault, not the lock's);
//   - unknown if a key that was written has no final value (the run was
//     cut short before the harness read it), or if nothing was written at
//     all: a register run that wrote nothing tested nothing;
//   - valid otherwise.
type LostUpdatesResult struct {
	Verdict         Verdict            `json:"verdict"`
	Summary         string             `json:"summary"`
	Keys            []RegisterKeyCount `json:"keys"`
	Acknowledged    int                `json:"acknowledged"`
	Lost            int64              `json:"lost"`
	Counterexamples []string           `json:"counterexamples,omitempty"`
}

func checkLostUpdates(r *registerData, opts Options) *LostUpdatesResult {
	res := &LostUpdatesResult{Verdict: Valid}
	var missingFinal []string
	var extra []string
	mayHaveWritten := 0 // acknowledged writes and writes of unknown outcome
	for _, k := range r.keys {
		kc := RegisterKeyCount{Key: k.name, Final: k.final, HasFinal: k.hasFinal}
		for _, c := range k.calls {
			if c.f != history.WriteOp {
				continue
			}
			switch c.outcome {
			case history.OK:
				kc.Acknowledged++
			case history.Fail:
				kc.Refused++
			default:
				kc.Unknown++
			}
		}
		res.Acknowledged += kc.Acknowledged
		mayHaveWritten += kc.Acknowledged + kc.Unknown
		written := kc.Acknowledged+kc.Unknown > 0
		switch {
		case !k.hasFinal:
			if written {
				missingFinal = append(missingFinal, k.name)
			}
		case k.final < int64(kc.Acknowledged):
			kc.Lost = int64(kc.Acknowledged) - k.final
			res.Lost += kc.Lost
			res.Verdict = Invalid
			if len(res.Counterexamples) < opts.maxCounterexamples() {
				res.Counterexamples = append(res.Counterexamples, describeLost(k, kc))
			}
		case k.final > int64(kc.Acknowledged+kc.Unknown):
			res.Verdict = Invalid
			s := fmt.Sprintf("key %s: the register ends at %d, but only %d writes were acknowledged and %d had an unknown outcome: "+
				"it holds increments nobody made, which points at the store, not the lock", k.name, k.final, kc.Acknowledged, kc.Unknown)
			extra = append(extra, k.name)
			if len(res.Counterexamples) < opts.maxCounterexamples() {
				res.Counterexamples = append(res.Counterexamples, s)
			}
		}
		res.Keys = append(res.Keys, kc)
	}
	switch {
	case res.Verdict == Invalid:
		var parts []string
		if res.Lost > 0 {
			parts = append(parts, fmt.Sprintf("%d of %d acknowledged increments lost", res.Lost, res.Acknowledged))
		}
		if len(extra) > 0 {
			parts = append(parts, fmt.Sprintf("key %s holds more increments than were made", strings.Join(extra, ", ")))
		}
		res.Summary = strings.Join(parts, "; ") + "."
		if len(missingFinal) > 0 {
			res.Summary += fmt.Sprintf(" Key %s has no final value and was not counted.", strings.Join(missingFinal, ", "))
		}
	case len(missingFinal) > 0:
		res.Verdict = Unknown
		res.Summary = fmt.Sprintf("key %s was written but has no final value (the run was interrupted before the harness read it); "+
			"its lost updates cannot be counted.", strings.Join(missingFinal, ", "))
	case mayHaveWritten == 0:
		// Refused writes change nothing, so a register that still holds
		// 0 proves nothing about the lock.
		res.Verdict = Unknown
		res.Summary = fmt.Sprintf("nothing was written: no write was acknowledged or of unknown outcome (%s, all refused); the check saw nothing.", nOf(r.writes, "write"))
	default:
		res.Summary = fmt.Sprintf("every key holds all of its acknowledged increments (%s on %s).", nOf(res.Acknowledged, "increment"), nOf(len(res.Keys), "key"))
	}
	return res
}

// describeLost explains a key's lost updates with the first two sections
// whose acknowledged writes started from the same value.
func describeLost(k *registerKey, kc RegisterKeyCount) string {
	s := fmt.Sprintf("key %s: the register ends at %d, but %d writes were acknowledged, so at least %s went missing",
		k.name, k.final, kc.Acknowledged, nOf(int(kc.Lost), "increment"))
	first := map[int64]*increment{}
	var a, b *increment
	var acked []*increment
	for _, inc := range k.incs {
		if inc.read != nil && inc.write != nil && inc.write.outcome == history.OK {
			acked = append(acked, inc)
		}
	}
	// In the order the writes were acknowledged: the second of the pair is
	// the write that overwrote the first.
	slices.SortStableFunc(acked, func(x, y *increment) int { return cmp.Compare(x.write.done, y.write.done) })
	for _, inc := range acked {
		if prev, ok := first[inc.read.value]; ok {
			a, b = prev, inc
			break
		}
		first[inc.read.value] = inc
	}
	if a == nil {
		return s + "; no two acknowledged writes started from the same read, so the loss came from a write that built on a stale read some other way."
	}
	return s + fmt.Sprintf(". First: %s read %d at %s and its write of %d was acknowledged at %s; "+
		"%s read the same %d at %s and its write of %d was acknowledged at %s, overwriting the first increment.",
		a.read.who(), a.read.value, fmtTime(a.read.done), a.write.value, fmtTime(a.write.done),
		b.read.who(), b.read.value, fmtTime(b.read.done), b.write.value, fmtTime(b.write.done))
}
