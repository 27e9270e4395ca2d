package models

import (
	"fmt"
	"slices"

	"github.com/lockcheck/lockcheck/history"
)

// TokensName is the fencing-token checker's name in reports.
const TokensName = "fencing-tokens"

// TokensResult is the verdict of the fencing-token checker, on any
// workload of a locker that claims fencing (history.RunInfo.Fencing): a
// fencing token is worth something only if a later holder's is larger, so
// of two successful acquisitions of one key the one invoked after the
// other returned must carry the larger token, and no two may carry the
// same one. A lock whose token is, say, a metageneration that every new
// lock object starts at 1 hands the same token to every holder; a store
// refusing only lower tokens would take the stale holder's writes.
//
// Acquisitions with token 0 are not judged (the lock gave none that
// time); when every one has token 0 the check does not apply, like a
// checker of another workload.
type TokensResult struct {
	Verdict Verdict `json:"verdict"`
	Summary string  `json:"summary"`
	// Acquisitions counts the successful acquisitions with a token.
	Acquisitions int `json:"acquisitions"`
	// Repeated counts acquisitions whose token an earlier one of the
	// same key had; NotIncreasing those that came after another one had
	// returned and carry a token no larger than its.
	Repeated        int      `json:"repeated"`
	NotIncreasing   int      `json:"not_increasing"`
	Counterexamples []string `json:"counterexamples,omitempty"`
}

type tokenGrant struct {
	key             string
	token           uint64
	process         history.Process
	client          int
	invoke, return_ int64
}

func (g tokenGrant) who() string {
	return fmt.Sprintf("client %d (P%d)", g.client, g.process)
}

// checkTokens judges h's tokens; nil when the locker claims no fencing or
// gave no token at all.
func checkTokens(h *history.History, opts Options) *TokensResult {
	if !h.Header.Run.Fencing {
		return nil
	}
	invoked := map[history.Process]int64{}
	byKey := map[string][]tokenGrant{}
	var keys []string
	for _, e := range h.Events {
		if e.F != history.Acquire {
			continue
		}
		switch e.Type {
		case history.Invoke:
			invoked[e.Process] = e.Time
		case history.OK:
			if e.Token == 0 {
				continue
			}
			if _, seen := byKey[e.Key]; !seen {
				keys = append(keys, e.Key)
			}
			byKey[e.Key] = append(byKey[e.Key], tokenGrant{key: e.Key, token: e.Token, process: e.Process, client: e.Client, invoke: invoked[e.Process], return_: e.Time})
		}
	}
	res := &TokensResult{}
	for _, k := range keys {
		res.Acquisitions += len(byKey[k])
	}
	if res.Acquisitions == 0 {
		return nil
	}
	add := func(format string, args ...any) {
		if len(res.Counterexamples) < opts.maxCounterexamples() {
			res.Counterexamples = append(res.Counterexamples, fmt.Sprintf(format, args...))
		}
	}
	for _, k := range keys {
		grants := byKey[k]
		first := map[uint64]tokenGrant{}
		// grants are in order of return, so those that returned before g
		// was invoked are a prefix of them: a binary search, and the
		// prefix's largest token, not a scan of every earlier grant.
		var returned []int64
		var largest []tokenGrant
		for _, g := range grants {
			if prev, dup := first[g.token]; dup {
				res.Repeated++
				add("key %s: %s acquired it at %s with token %d, the token %s had been given at %s: two holders with one fencing token, which no store can tell apart.",
					k, g.who(), fmtTime(g.return_), g.token, prev.who(), fmtTime(prev.return_))
			} else {
				first[g.token] = g
			}
			if n, _ := slices.BinarySearch(returned, g.invoke); n > 0 && largest[n-1].token > g.token {
				r := largest[n-1]
				res.NotIncreasing++
				add("key %s: %s acquired it with token %d (invoked at %s), after %s had acquired it with the larger token %d (returned at %s): tokens must grow from one holder to the next.",
					k, g.who(), g.token, fmtTime(g.invoke), r.who(), r.token, fmtTime(r.return_))
			}
			best := g
			if n := len(largest); n > 0 && largest[n-1].token >= g.token {
				best = largest[n-1]
			}
			returned, largest = append(returned, g.return_), append(largest, best)
		}
	}
	switch {
	case res.Repeated+res.NotIncreasing > 0:
		res.Verdict = Invalid
		res.Summary = fmt.Sprintf("of %d acquisitions with a token, %d carried a token an earlier holder of the key had, and %d a token no larger than a holder's before them.",
			res.Acquisitions, res.Repeated, res.NotIncreasing)
	default:
		res.Verdict = Valid
		res.Summary = fmt.Sprintf("all %d acquisitions with a token carried a token of their own, larger than every earlier holder's of the key.", res.Acquisitions)
	}
	return res
}
