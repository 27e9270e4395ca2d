package models

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/lockcheck/lockcheck/history"
)

// Forever is the return time of an operation that may take effect at any
// time after its call: an indeterminate release, or the release of a lock
// whose holder crashed or walked away.
const Forever int64 = math.MaxInt64

// OpKind is what a model operation does to the lock.
type OpKind uint8

const (
	OpAcquire OpKind = iota + 1
	OpRelease
)

func (k OpKind) String() string {
	switch k {
	case OpAcquire:
		return history.Acquire
	case OpRelease:
		return history.Release
	}
	return "op(" + strconv.Itoa(int(k)) + ")"
}

// Origin says which part of the history a model operation stands for. The
// checker derives some releases from facts that are not release calls, and
// a reader of a counterexample needs to know which.
type Origin uint8

const (
	// FromCall: an acquire or release call that returned ok.
	FromCall Origin = iota + 1
	// FromIndeterminate: a release call whose outcome is unknown (info,
	// or still open when the history ends). It may take effect any time
	// after its invocation.
	FromIndeterminate
	// FromCrash: the holder crashed; a lease lock frees the lock at some
	// unknown time after the crash.
	FromCrash
	// FromLost: the holder was told its lease is gone, so the lock was
	// freed between the acquisition and the notice.
	FromLost
	// FromAbandon: the holder's release definitely failed, and it went on
	// without the lock; a lease it still held is freed at some unknown
	// time after the release was invoked.
	FromAbandon
	// FromCarry: not an event at all but the state carried across a cut:
	// the holder at the start of an independently checked segment.
	FromCarry
)

func (o Origin) String() string {
	switch o {
	case FromCall:
		return "call"
	case FromIndeterminate:
		return "indeterminate"
	case FromCrash:
		return "crash"
	case FromLost:
		return "lost"
	case FromAbandon:
		return "abandoned"
	case FromCarry:
		return "carried"
	}
	return "origin(" + strconv.Itoa(int(o)) + ")"
}

// LockOp is one operation of the owner-aware lock model, the Input of a
// porcupine.Operation (as a *LockOp; the Output is unused). Call and Return
// bound when the operation took effect, on the recorder's clock.
type LockOp struct {
	Kind   OpKind
	Origin Origin
	// hold ties an acquisition to the release that ends it (the same id
	// on both), -1 for an operation that belongs to no hold.
	hold    int32
	Key     string
	Process history.Process
	Client  int
	// Token is the fencing token of an acquisition, 0 if none.
	Token uint64
	// Event is the index of the history event the operation was read
	// from: the completion of a call, the crash or the lost notice; -1
	// for a carried state.
	Event int64
	Call  int64
	// Return is Forever for an operation that may take effect at any
	// later time.
	Return int64

	// start and end are the interval given to porcupine: [Call, Return]
	// narrowed by what the lock's structure implies, and for an
	// open-ended operation ending at the end of its segment (see
	// CheckLinearizable for why neither loses a legal order).
	start, end int64
}

// String reads like a line of a lab notebook, for counterexamples and the
// visualisation: "P3 acquire k0 → ok token 7".
func (op *LockOp) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "P%d ", op.Process)
	switch {
	case op.Origin == FromCarry:
		fmt.Fprintf(&b, "holds %s (carried over a cut)", op.Key)
	case op.Kind == OpAcquire:
		fmt.Fprintf(&b, "acquire %s → ok", op.Key)
		if op.Token != 0 {
			fmt.Fprintf(&b, " token %d", op.Token)
		}
	case op.Origin == FromCall:
		fmt.Fprintf(&b, "release %s → ok", op.Key)
	case op.Origin == FromIndeterminate:
		fmt.Fprintf(&b, "release %s → unknown outcome", op.Key)
	case op.Origin == FromCrash:
		fmt.Fprintf(&b, "crashed holding %s (freed some time later)", op.Key)
	case op.Origin == FromLost:
		fmt.Fprintf(&b, "lost %s (freed before the notice)", op.Key)
	case op.Origin == FromAbandon:
		fmt.Fprintf(&b, "gave up %s after a failed release (freed some time later)", op.Key)
	default:
		fmt.Fprintf(&b, "%s %s (%s)", op.Kind, op.Key, op.Origin)
	}
	return b.String()
}

// interval renders [Call, Return] with ∞ for an open end, and the
// interval searched when it is narrower.
func (op *LockOp) interval() string {
	if op.Origin == FromCarry {
		return "[before " + fmtTime(op.start+1) + "]"
	}
	s := "[" + fmtTime(op.Call) + ", " + fmtTimeOrForever(op.Return) + "]"
	if op.start != op.Call || op.end != op.Return {
		s += " searched as [" + fmtTime(op.start) + ", " + fmtTimeOrForever(op.end) + "]"
	}
	return s
}

// noOwner is the state of a free lock. Client processes are >= 0 and the
// nemesis is -1, so -2 never names a holder.
const noOwner history.Process = -2

// LockModel is the sequential specification of one lock with owners, for
// porcupine. The state is the owning process, or none:
//
//   - acquire by P is legal only when the lock is free, and makes P the
//     owner;
//   - release by P is legal only when P owns the lock, and frees it. A
//     release that returned ok to a process that did not own the lock is
//     illegal: the lock promised an owner check, so either it freed someone
//     else's lock or it lied about releasing.
//
// Inputs must be *LockOp. Partition splits a history by key, which is
// exact because keys are independent locks. [CheckLinearizable] goes
// further and cuts each key's history into independent segments before it
// calls porcupine; that is documented there.
func LockModel() porcupine.Model {
	return porcupine.Model{
		Partition:                 partitionByKey,
		Init:                      func() any { return noOwner },
		Step:                      stepLock,
		Hash:                      func(state any) uint64 { return uint64(state.(history.Process)) },
		DescribeOperation:         describeOperation,
		DescribeState:             describeState,
		DescribeOperationMetadata: describeMetadata,
	}
}

func stepLock(state, input, _ any) (bool, any) {
	owner := state.(history.Process)
	op := input.(*LockOp)
	switch op.Kind {
	case OpAcquire:
		if owner != noOwner {
			return false, state
		}
		return true, op.Process
	case OpRelease:
		if owner != op.Process {
			return false, state
		}
		return true, noOwner
	}
	return false, state
}

func partitionByKey(ops []porcupine.Operation) [][]porcupine.Operation {
	index := map[string]int{}
	var parts [][]porcupine.Operation
	for _, op := range ops {
		key := op.Input.(*LockOp).Key
		i, ok := index[key]
		if !ok {
			i = len(parts)
			index[key] = i
			parts = append(parts, nil)
		}
		parts[i] = append(parts[i], op)
	}
	return parts
}

func describeOperation(input, _ any) string {
	return input.(*LockOp).String()
}

func describeState(state any) string {
	owner := state.(history.Process)
	if owner == noOwner {
		return "free"
	}
	return fmt.Sprintf("owner: P%d", owner)
}

// visMeta rides in porcupine.Operation.Metadata when the checker builds a
// visualisation: which partition the operation belongs to, and a note for
// the tooltip.
type visMeta struct {
	part int
	note string
}

func describeMetadata(meta any) string {
	if m, ok := meta.(visMeta); ok {
		return m.note
	}
	if meta == nil {
		return ""
	}
	return fmt.Sprint(meta)
}

// visualModel partitions by visMeta, so that one LinearizationInfo can hold
// several independently checked segments side by side.
func visualModel() porcupine.Model {
	m := LockModel()
	m.Partition = func(ops []porcupine.Operation) [][]porcupine.Operation {
		var parts [][]porcupine.Operation
		for _, op := range ops {
			p := op.Metadata.(visMeta).part
			for len(parts) <= p {
				parts = append(parts, nil)
			}
			parts[p] = append(parts[p], op)
		}
		return parts
	}
	return m
}

// fmtTime renders a time since the run started.
func fmtTime(ns int64) string {
	return time.Duration(ns).String()
}
