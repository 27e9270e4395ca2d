package models

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/lockcheck/lockcheck/history"
)

// FaultsName is the fault check's name in reports.
const FaultsName = "faults"

// FaultsResult says whether the faults a run asked for ran: a run whose
// faults never ran, or never reached what they were aimed at, passes every
// safety checker without having tested what it was for. Its verdict is
// unknown then, never valid.
type FaultsResult struct {
	Verdict Verdict `json:"verdict"`
	Summary string  `json:"summary"`
	// Requested are the fault kinds the run asked for (its header).
	Requested []string `json:"requested"`
	// Kinds is one line per requested kind, in the header's order.
	Kinds []FaultKindRun `json:"kinds"`
	// Faults is every fault the plan held or the nemesis started, by ID.
	Faults []FaultRun `json:"faults"`
	// Problems are why the verdict is unknown, one sentence each.
	Problems []string `json:"problems,omitempty"`
	// Notes are the kinds that never ran in a run whose fault coverage
	// is "any" (one kind is enough), one sentence each.
	Notes []string `json:"notes,omitempty"`
}

// FaultKindRun counts one requested kind's faults.
type FaultKindRun struct {
	Kind string `json:"kind"`
	// Planned is how many the schedule held (0 in histories that do not
	// record their plan), Scheduled how many started, Applied how many
	// started without an injection error, HitHolder how many of those
	// reached a client holding a lock (for kinds aimed at one).
	Planned   int  `json:"planned"`
	Scheduled int  `json:"scheduled"`
	Applied   int  `json:"applied"`
	Aimed     bool `json:"aimed,omitempty"`
	HitHolder int  `json:"hit_holder,omitempty"`
}

// Ran reports whether the kind acted at least once where it was aimed.
func (k FaultKindRun) Ran() bool {
	return k.Applied > 0 && (!k.Aimed || k.HitHolder > 0)
}

// FaultRun is one fault of a run: planned, and what became of it.
type FaultRun struct {
	ID      int    `json:"id"`
	Kind    string `json:"kind"`
	Clients []int  `json:"clients,omitempty"`
	// At is the planned start; Duration the planned length.
	At       history.Duration `json:"at"`
	Duration history.Duration `json:"duration"`
	// Planned: the recorded plan held it.
	Planned bool `json:"planned"`
	// Scheduled: it started.
	Scheduled bool `json:"scheduled"`
	// Applied: it started and its injection did not fail.
	Applied bool `json:"applied"`
	// Aimed: its kind aims at a lock holder; HitHolder: it found one.
	Aimed     bool   `json:"aimed,omitempty"`
	HitHolder bool   `json:"hit_holder,omitempty"`
	Error     string `json:"error,omitempty"`
}

// NoFaultRan is how a report says that none of a run's requested faults
// acted: the words compare cells and suite rows show.
const NoFaultRan = "no fault ran"

// NoneRan reports whether the run asked for faults and not one of its
// kinds ran.
func (f *FaultsResult) NoneRan() bool {
	if f == nil || len(f.Requested) == 0 {
		return false
	}
	return !slices.ContainsFunc(f.Kinds, FaultKindRun.Ran)
}

// checkFaults accounts for every fault h's run asked for; nil when it
// asked for none and started none.
func checkFaults(h *history.History) *FaultsResult {
	res := &FaultsResult{Requested: h.Header.Run.Faults}
	byID := map[int]*FaultRun{}
	fault := func(f history.Fault) *FaultRun {
		r := byID[f.ID]
		if r == nil {
			r = &FaultRun{ID: f.ID, Kind: f.Kind, Clients: f.Clients, At: f.At, Duration: f.Duration}
			byID[f.ID] = r
		}
		// Histories written before kinds said so name holder-aimed
		// kinds by this suffix.
		r.Aimed = r.Aimed || f.Aimed || strings.HasSuffix(f.Kind, "-holder")
		return r
	}
	for _, e := range h.Events {
		if e.Process != history.Nemesis {
			continue
		}
		switch e.F {
		case history.FaultPlan:
			var f history.Fault
			if json.Unmarshal(e.Value, &f) != nil {
				continue
			}
			fault(f).Planned = true
		case history.FaultStart:
			var f history.Fault
			if json.Unmarshal(e.Value, &f) != nil {
				continue
			}
			r := fault(f)
			r.Scheduled, r.Applied = true, true
			r.HitHolder = f.AtHolder
			r.Clients = f.Clients
			if r.At == 0 {
				r.At = history.Duration(e.Time)
			}
		case history.FaultFailed:
			var f history.Fault
			if json.Unmarshal(e.Value, &f) != nil {
				continue
			}
			r := fault(f)
			r.Applied = false
			r.Error = f.Error
		}
	}
	if len(res.Requested) == 0 && len(byID) == 0 {
		return nil
	}
	for _, r := range byID {
		res.Faults = append(res.Faults, *r)
	}
	slices.SortFunc(res.Faults, func(a, b FaultRun) int { return a.ID - b.ID })
	kinds := slices.Clone(res.Requested)
	for _, f := range res.Faults {
		if !slices.Contains(kinds, f.Kind) {
			kinds = append(kinds, f.Kind)
		}
	}
	end := time.Duration(0)
	if n := len(h.Events); n > 0 {
		end = time.Duration(h.Events[n-1].Time)
	}
	var missing []string
	for _, kind := range kinds {
		k := FaultKindRun{Kind: kind}
		var lastError string
		var unreached []time.Duration
		for _, f := range res.Faults {
			if f.Kind != kind {
				continue
			}
			k.Aimed = k.Aimed || f.Aimed
			if f.Planned {
				k.Planned++
			}
			if f.Scheduled {
				k.Scheduled++
			} else {
				unreached = append(unreached, time.Duration(f.At))
			}
			if f.Applied {
				k.Applied++
				if f.HitHolder {
					k.HitHolder++
				}
			}
			if f.Error != "" {
				lastError = f.Error
				res.Problems = append(res.Problems, fmt.Sprintf("fault %d (%s) failed to start: %s", f.ID, f.Kind, f.Error))
			}
		}
		res.Kinds = append(res.Kinds, k)
		if k.Ran() {
			continue
		}
		var why string
		switch {
		case k.Planned == 0 && k.Scheduled == 0:
			why = fmt.Sprintf("the schedule held none: the %v run had no room for one (make the run longer, or the faults or the interval between them shorter)", time.Duration(h.Header.Run.Duration))
		case k.Scheduled == 0:
			why = fmt.Sprintf("%s planned, and the history ends at %v, before the first one's start at %v", plural(k.Planned, "1 was", "%d were"), end.Round(time.Millisecond), slices.Min(unreached))
		case k.Applied == 0:
			why = fmt.Sprintf("%s started and every injection failed (%s)", nOf(k.Scheduled, "fault"), lastError)
		default:
			why = fmt.Sprintf("%s started and none found a client holding a lock, so none reached what it was aimed at", nOf(k.Applied, "fault"))
		}
		missing = append(missing, fmt.Sprintf("%s never ran: %s", kind, why))
	}
	ran := 0
	for _, k := range res.Kinds {
		if k.Ran() {
			ran++
		}
	}
	switch {
	case len(missing) == 0:
	case h.Header.Run.FaultCoverage == history.FaultCoverageAny && ran > 0:
		// One kind is enough for this run; the others are noted.
		res.Notes = missing
	default:
		for _, m := range missing {
			res.Problems = append(res.Problems, NoFaultRan+": "+m)
		}
	}
	res.Verdict = Valid
	res.Summary = fmt.Sprintf("%d of %d fault kinds ran (%s)", ran, len(res.Kinds), res.kindCounts())
	if len(res.Notes) > 0 {
		res.Summary += "; coverage any: " + strings.Join(res.Notes, "; ")
	}
	if len(res.Problems) > 0 {
		res.Verdict = Unknown
		res.Summary = strings.Join(res.Problems, "; ")
	}
	return res
}

// kindCounts is "pause-holder 3 planned, 2 started, 2 applied, 1 at a
// holder; …".
func (f *FaultsResult) kindCounts() string {
	var parts []string
	for _, k := range f.Kinds {
		s := fmt.Sprintf("%s %d planned, %d started, %d applied", k.Kind, k.Planned, k.Scheduled, k.Applied)
		if k.Aimed {
			s += fmt.Sprintf(", %d at a holder", k.HitHolder)
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, "; ")
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return fmt.Sprintf(many, n)
}
