package models

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/lockcheck/lockcheck/history"
)

// RegisterLinearizabilityName is the register linearizability checker's
// name in reports.
const RegisterLinearizabilityName = "register-linearizability"

type regKind uint8

const (
	// regIncrement: a read of r and the write of r+1 that followed it,
	// as one atomic step, which is what the lock promised them.
	regIncrement regKind = iota + 1
	// regRead: a read that no write followed: it only observes.
	regRead
	// regSet: a write no read of its process preceded: it sets blindly.
	regSet
	// regFinal: the harness's read after the run.
	regFinal
)

// RegisterOp is one operation of the register model, the Input of a
// porcupine.Operation.
type RegisterOp struct {
	Kind regKind
	Key  string
	// Read is the value read (increment, read, final); Wrote the value
	// written (increment, set).
	Read, Wrote int64
	// Maybe marks a write of unknown outcome: it may or may not have taken
	// effect, any time after its call.
	Maybe   bool
	Process history.Process
	Client  int
	Token   uint64
	Call    int64
	Return  int64
}

func (op *RegisterOp) String() string {
	who := fmt.Sprintf("client %d (P%d", op.Client, op.Process)
	if op.Token != 0 {
		who += fmt.Sprintf(", token %d", op.Token)
	}
	who += ")"
	span := "[" + fmtTime(op.Call) + ", " + fmtTimeOrForever(op.Return) + "]"
	switch op.Kind {
	case regIncrement:
		s := fmt.Sprintf("%s read %d and wrote %d", who, op.Read, op.Wrote)
		if op.Maybe {
			s += " (outcome unknown)"
		}
		return s + " " + span
	case regRead:
		return fmt.Sprintf("%s read %d %s", who, op.Read, span)
	case regSet:
		s := fmt.Sprintf("%s wrote %d without reading first", who, op.Wrote)
		if op.Maybe {
			s += " (outcome unknown)"
		}
		return s + " " + span
	case regFinal:
		return fmt.Sprintf("the final read found %d at %s", op.Read, fmtTime(op.Call))
	}
	return "?"
}

// regState is the set of values the register may hold, sorted, without
// repeats: more than one only after writes of unknown outcome.
type regState []int64

// RegisterModel is the sequential specification of one key's register
// under a lock, for porcupine. The register starts at 0; an increment that
// read r is legal only when the register holds r, and leaves r+1 (the read
// and the write happened with nobody else in between); a read or the final
// read of r is legal only when it holds r; a blind write of v leaves v. A
// write of unknown outcome may have taken effect or not, so the state is
// the set of values the register may hold (a power-set construction of the
// nondeterministic model, with hashing): such an increment leaves {r, r+1}
// from r, and is illegal from any other value, since its read of r did
// happen: an unknown write must not excuse the read before it.
func RegisterModel() porcupine.Model {
	return porcupine.Model{
		Init: func() any { return regState{0} },
		Step: stepRegister,
		Equal: func(a, b any) bool {
			return slices.Equal(a.(regState), b.(regState))
		},
		Hash: func(s any) uint64 {
			var h uint64 = 14695981039346656037
			for _, v := range s.(regState) {
				h = (h ^ uint64(v)) * 1099511628211
			}
			return h
		},
		DescribeOperation: func(in, _ any) string { return in.(*RegisterOp).String() },
		DescribeState:     func(s any) string { return describeRegState(s.(regState)) },
	}
}

func stepRegister(state, input, _ any) (bool, any) {
	op := input.(*RegisterOp)
	var next regState
	for _, v := range state.(regState) {
		switch op.Kind {
		case regIncrement:
			if v == op.Read {
				next = append(next, op.Wrote)
				if op.Maybe {
					next = append(next, v)
				}
			}
		case regRead, regFinal:
			if v == op.Read {
				next = append(next, v)
			}
		case regSet:
			next = append(next, op.Wrote)
			if op.Maybe {
				next = append(next, v)
			}
		}
	}
	if len(next) == 0 {
		return false, state
	}
	slices.Sort(next)
	return true, slices.Compact(next)
}

func describeRegState(s regState) string {
	if len(s) == 1 {
		return fmt.Sprintf("%d", s[0])
	}
	parts := make([]string, len(s))
	for i, v := range s {
		parts[i] = fmt.Sprintf("%d", v)
	}
	return "one of " + strings.Join(parts, ", ")
}

// registerOps turns one key's data calls into model operations. Calls
// that definitely had no effect are dropped: a refused or failed read,
// and the write after it never came; a refused write (its read still
// observed the value, so it stays as a read). A read of unknown outcome
// is dropped: it changes nothing and returned nothing.
func registerOps(k *registerKey) (ops []porcupine.Operation, dropped int) {
	add := func(op *RegisterOp) {
		ops = append(ops, porcupine.Operation{ClientId: int(op.Process), Input: op, Call: op.Call, Return: op.Return})
	}
	for _, inc := range k.incs {
		r, w := inc.read, inc.write
		switch {
		case r == nil:
			if w.outcome == history.Fail {
				dropped++
				continue
			}
			op := &RegisterOp{Kind: regSet, Key: k.name, Wrote: w.value, Process: w.proc, Client: w.client, Token: w.token,
				Call: w.invoke, Return: w.done, Maybe: w.outcome != history.OK}
			if op.Maybe {
				op.Return = Forever
			}
			add(op)
		case w == nil || w.outcome == history.Fail:
			if w != nil {
				dropped++
			}
			add(&RegisterOp{Kind: regRead, Key: k.name, Read: r.value, Process: r.proc, Client: r.client, Token: r.token,
				Call: r.invoke, Return: r.done})
		default:
			op := &RegisterOp{Kind: regIncrement, Key: k.name, Read: r.value, Wrote: w.value, Process: r.proc, Client: r.client,
				Token: r.token, Call: r.invoke, Return: w.done, Maybe: w.outcome != history.OK}
			if op.Maybe {
				op.Return = Forever
			}
			add(op)
		}
	}
	for _, c := range k.calls {
		if c.f == history.ReadOp && c.outcome != history.OK {
			dropped++
		}
	}
	if k.hasFinal {
		// The harness reads the final value after every client has
		// stopped, so it comes after every call that returned.
		add(&RegisterOp{Kind: regFinal, Key: k.name, Read: k.final, Process: history.Nemesis, Client: -1,
			Call: k.finalTime, Return: k.finalTime})
	}
	return ops, dropped
}

// RegisterLinearizabilityResult is the verdict of the register
// linearizability checker: whether each key's increments, reads and final
// value have a serial order in which every increment found the register at
// the value it read. It catches what the lost-update count catches, and
// also reads no serial order explains. Porcupine searches each key's
// operations whole: an increment of unknown outcome may take effect at any
// later time, so no point in the history cuts it into independent parts.
// Past [Options.LinearizabilityTimeout] the verdict is unknown.
type RegisterLinearizabilityResult struct {
	Verdict Verdict `json:"verdict"`
	// Result is porcupine's answer merged over keys, unaltered.
	Result     porcupine.CheckResult `json:"porcupine"`
	Summary    string                `json:"summary"`
	Keys       int                   `json:"keys"`
	Operations int                   `json:"operations"`
	Dropped    int                   `json:"dropped"`
	// UnknownKeys lists the keys whose search ran out of time.
	UnknownKeys     []string      `json:"unknown_keys,omitempty"`
	Elapsed         time.Duration `json:"elapsed_ns"`
	Counterexamples []string      `json:"counterexamples,omitempty"`
}

func checkRegisterLinearizable(r *registerData, opts Options) *RegisterLinearizabilityResult {
	now := opts.clock()
	began := now()
	res := &RegisterLinearizabilityResult{Result: porcupine.Ok}
	model := RegisterModel()
	for _, k := range r.keys {
		ops, dropped := registerOps(k)
		res.Dropped += dropped
		if len(ops) == 0 {
			continue
		}
		res.Keys++
		res.Operations += len(ops)
		var timeout time.Duration
		if opts.LinearizabilityTimeout > 0 {
			timeout = opts.LinearizabilityTimeout - now().Sub(began)
			if timeout <= 0 {
				res.UnknownKeys = append(res.UnknownKeys, k.name)
				continue
			}
		}
		verdict, info := porcupine.CheckOperationsVerbose(model, ops, timeout)
		switch verdict {
		case porcupine.Illegal:
			res.Result = porcupine.Illegal
			if len(res.Counterexamples) < opts.maxCounterexamples() {
				res.Counterexamples = append(res.Counterexamples, describeRegister(k.name, ops, info))
			}
		case porcupine.Unknown:
			res.UnknownKeys = append(res.UnknownKeys, k.name)
		}
	}
	if res.Result != porcupine.Illegal && len(res.UnknownKeys) > 0 {
		res.Result = porcupine.Unknown
	}
	res.Verdict = verdictOf(res.Result)
	res.Elapsed = now().Sub(began)
	switch {
	case res.Operations == 0:
		res.Verdict = Unknown
		res.Summary = "no reads or writes to order; the check saw nothing."
	case res.Result == porcupine.Ok:
		res.Summary = fmt.Sprintf("all %s (increments and reads) on %s have a serial order (%s dropped as having no effect).",
			nOf(res.Operations, "operation"), nOf(res.Keys, "key"), nOf(res.Dropped, "call"))
	case res.Result == porcupine.Illegal:
		res.Summary = "increments or reads that no serial order explains; first: " + res.Counterexamples[0]
	default:
		limit := "no time limit"
		if opts.LinearizabilityTimeout > 0 {
			limit = "the limit of " + opts.LinearizabilityTimeout.String()
		}
		res.Summary = fmt.Sprintf("the search did not finish within %s on key %s; no violation found in the rest, which is not a pass.",
			limit, strings.Join(res.UnknownKeys, ", "))
	}
	return res
}

// describeRegister words an illegal key: where the longest serial order
// porcupine found stops, the value it leaves, and the operations one of
// which had to come next.
func describeRegister(key string, ops []porcupine.Operation, info porcupine.LinearizationInfo) string {
	var longest []porcupine.Operation
	for _, part := range info.PartialLinearizationsOperations() {
		for _, p := range part {
			if len(p) > len(longest) {
				longest = p
			}
		}
	}
	in := map[*RegisterOp]bool{}
	var state any = regState{0}
	for _, op := range longest {
		rop := op.Input.(*RegisterOp)
		in[rop] = true
		_, state = stepRegister(state, rop, nil)
	}
	from, to := Forever, int64(0)
	first := Forever
	for _, op := range ops {
		from, to = min(from, op.Call), max(to, op.Return)
		if rop := op.Input.(*RegisterOp); !in[rop] {
			first = min(first, op.Return)
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "key %s: the %d increments and reads from %s to %s have no serial order in which each increment finds the register at the value it read. ",
		key, len(ops), fmtTime(from), fmtTimeOrForever(to))
	if len(longest) == 0 {
		b.WriteString("Not even the first fits: the register starts at 0")
	} else {
		var tail []string
		for _, op := range longest[max(0, len(longest)-3):] {
			tail = append(tail, op.Input.(*RegisterOp).String())
		}
		fmt.Fprintf(&b, "The longest order found ends with %s, leaving the register at %s", strings.Join(tail, ", then "),
			describeRegState(state.(regState)))
	}
	var next []string
	for _, op := range ops {
		if rop := op.Input.(*RegisterOp); !in[rop] && op.Call <= first {
			next = append(next, rop.String())
		}
	}
	if len(next) > 0 {
		fmt.Fprintf(&b, "; one of %s must come next, and none can", strings.Join(next, "; "))
	}
	b.WriteString(".")
	return b.String()
}
