package models

import (
	"cmp"
	"fmt"
	"slices"

	"github.com/lockcheck/lockcheck/history"
)

// FencingName is the fencing checker's name in reports.
const FencingName = "fencing"

// FencingResult is the verdict of the fencing checker, on fenced-register
// histories: did the store refuse every stale token?
//
// A write with token t is stale if a read or write of the same key with a
// token above t had returned ok before the write was invoked: the store
// had accepted the higher token, so it must refuse t. A stale write that
// returned ok is a violation (invalid), whatever the lock did. Refusals are
// counted too: a refusal is unjustified when no call of the key with a
// higher token had been invoked by the time it was refused, which is a
// store refusing work it should have done (counted, not a safety
// violation). When every call carries token 0 the locker has no fencing
// tokens and the store cannot fence anything; the verdict is then valid
// (nothing stale was accepted) and the summary says why.
type FencingResult struct {
	Verdict Verdict `json:"verdict"`
	Summary string  `json:"summary"`
	// Calls counts reads and writes; Refused those the store refused.
	Calls               int `json:"calls"`
	Refused             int `json:"refused"`
	UnjustifiedRefusals int `json:"unjustified_refusals"`
	StaleAccepted       int `json:"stale_accepted"`
	// NoTokens: every call had token 0.
	NoTokens        bool     `json:"no_tokens"`
	Counterexamples []string `json:"counterexamples,omitempty"`
}

func checkFencing(r *registerData, opts Options) *FencingResult {
	res := &FencingResult{NoTokens: true}
	for _, k := range r.keys {
		calls := k.calls
		res.Calls += len(calls)
		for _, c := range calls {
			if c.token != 0 {
				res.NoTokens = false
			}
		}
		// Prefix maxima of tokens, over calls by invocation and over
		// accepted calls by completion: "the highest token invoked (or
		// accepted) before t" is then a binary search, not a scan.
		byInvoke := slices.Clone(calls)
		slices.SortStableFunc(byInvoke, func(a, b *dataCall) int { return cmp.Compare(a.invoke, b.invoke) })
		invoked := prefixMax(byInvoke, func(c *dataCall) int64 { return c.invoke })
		var acked []*dataCall
		for _, c := range calls {
			if c.outcome == history.OK {
				acked = append(acked, c)
			}
		}
		slices.SortStableFunc(acked, func(a, b *dataCall) int { return cmp.Compare(a.done, b.done) })
		accepted := prefixMax(acked, func(c *dataCall) int64 { return c.done })
		for _, c := range calls {
			switch {
			case c.outcome == history.Fail:
				res.Refused++
				if h := invoked.before(c.done, true); h == nil || h.token <= c.token {
					res.UnjustifiedRefusals++
				}
			case c.outcome == history.OK && c.f == history.WriteOp:
				higher := accepted.before(c.invoke, false)
				if higher == nil || higher.token <= c.token {
					continue
				}
				res.StaleAccepted++
				if len(res.Counterexamples) < opts.maxCounterexamples() {
					res.Counterexamples = append(res.Counterexamples, fmt.Sprintf(
						"key %s: the store accepted a stale write: %s wrote %d with token %d, invoked at %s and acknowledged at %s, "+
							"after %s's %s with the higher token %d had returned ok at %s.",
						k.name, c.who(), c.value, c.token, fmtTime(c.invoke), fmtTime(c.done),
						higher.who(), higher.f, higher.token, fmtTime(higher.done)))
				}
			}
		}
	}
	refusals := fmt.Sprintf("%s refused as stale", nOf(res.Refused, "call"))
	if res.UnjustifiedRefusals > 0 {
		refusals += fmt.Sprintf(", %d of them with no higher token seen yet (unjustified)", res.UnjustifiedRefusals)
	}
	switch {
	case res.Calls == 0:
		res.Verdict = Unknown
		res.Summary = "no reads or writes; the check saw nothing."
	case res.StaleAccepted > 0:
		res.Verdict = Invalid
		res.Summary = fmt.Sprintf("the store accepted %s of %s; %s.", nOf(res.StaleAccepted, "stale write"), nOf(res.Calls, "call"), refusals)
	case res.NoTokens:
		// With every token 0 no write can be judged stale: a check that
		// cannot fail, so it is no pass, and the report leaves it out.
		res.Verdict = Unknown
		res.Summary = fmt.Sprintf("the locker gives no tokens; the store cannot fence, and no write can be judged stale (%s, all with token 0; %s).", nOf(res.Calls, "call"), refusals)
	default:
		res.Verdict = Valid
		res.Summary = fmt.Sprintf("no stale write was accepted in %s; %s.", nOf(res.Calls, "call"), refusals)
	}
	return res
}

// tokenPrefix holds calls sorted by a time, and for each position the
// call with the highest token up to it.
type tokenPrefix struct {
	times []int64
	best  []*dataCall
}

func prefixMax(calls []*dataCall, at func(*dataCall) int64) tokenPrefix {
	p := tokenPrefix{times: make([]int64, len(calls)), best: make([]*dataCall, len(calls))}
	for i, c := range calls {
		p.times[i] = at(c)
		p.best[i] = c
		if i > 0 && p.best[i-1].token >= c.token {
			p.best[i] = p.best[i-1]
		}
	}
	return p
}

// before is the call with the highest token among those at or before t
// (inclusive) or strictly before t; nil if none.
func (p tokenPrefix) before(t int64, inclusive bool) *dataCall {
	n, _ := slices.BinarySearch(p.times, t)
	if inclusive {
		for n < len(p.times) && p.times[n] == t {
			n++
		}
	}
	if n == 0 {
		return nil
	}
	return p.best[n-1]
}

// nOf is "1 call", "2 calls": summaries are read by people.
func nOf(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
