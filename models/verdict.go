package models

import "github.com/anishathalye/porcupine"

// Verdict is the three-valued outcome of a checker. Unknown means the checker
// could not decide (it ran out of time, or the history holds no evidence
// either way); it is never a pass.
type Verdict string

const (
	Valid   Verdict = "valid"
	Invalid Verdict = "invalid"
	Unknown Verdict = "unknown"
)

// Merge combines two verdicts about one history: a single violation makes
// the whole invalid, and one undecided part keeps the whole from being
// valid. Anything that is not one of the three verdicts (the zero value, a
// misspelt string from a JSON file) counts as unknown, so that it can never
// turn into a pass.
func (v Verdict) Merge(other Verdict) Verdict {
	if v.rank() >= other.rank() {
		return v.normal()
	}
	return other.normal()
}

// MergeVerdicts merges any number of verdicts; with none it is unknown,
// because nothing was checked.
func MergeVerdicts(vs ...Verdict) Verdict {
	if len(vs) == 0 {
		return Unknown
	}
	out := Valid
	for _, v := range vs {
		out = out.Merge(v)
	}
	return out
}

func (v Verdict) rank() int {
	switch v {
	case Valid:
		return 0
	case Invalid:
		return 2
	default:
		return 1
	}
}

func (v Verdict) normal() Verdict {
	if v != Valid && v != Invalid {
		return Unknown
	}
	return v
}

// verdictOf reads porcupine's result without reinterpreting it: a timeout
// stays unknown.
func verdictOf(r porcupine.CheckResult) Verdict {
	switch r {
	case porcupine.Ok:
		return Valid
	case porcupine.Illegal:
		return Invalid
	default:
		return Unknown
	}
}
