package models

import (
	"cmp"
	"fmt"
	"slices"

	"github.com/lockcheck/lockcheck/history"
)

// MutexName is the mutual-exclusion checker's name in reports.
const MutexName = "mutual-exclusion"

// MutexResult is the verdict of the mutual-exclusion checker.
//
// A holder's critical section runs from its acquire-ok to the first of: its
// release invocation, its lost notice, its crash, the end of the history.
// The harness stamps an acquire's ok after the lock was granted and a
// release's invocation before it took effect, so each measured section lies
// inside the time the holder really held the lock: two measured sections of
// one key that overlap mean two clients held it at once, never a false alarm
// (except that a lease which expired unnoticed is counted, on purpose:
// the holder acted as if it still held the lock, which is the harm a lock
// exists to prevent).
//
// Sections are sorted by start and swept once per key: O(n log n).
type MutexResult struct {
	Verdict Verdict `json:"verdict"`
	Summary string  `json:"summary"`
	// Sections counts critical sections over all keys.
	Sections int `json:"sections"`
	// Violations counts sections that began while another section of
	// the same key was open.
	Violations int `json:"violations"`
	// Overlaps holds the first few violations, in time order per key.
	Overlaps []Overlap `json:"overlaps,omitempty"`
	// Spans is every violation, described or not, as the stretch both
	// holders held the key: what a timeline marks. At most MaxSpans.
	Spans []ViolationSpan `json:"violation_spans,omitempty"`
}

// ViolationSpan is when one violation's two holders both held the key.
type ViolationSpan struct {
	Key     string `json:"key"`
	From    int64  `json:"from_ns"`
	To      int64  `json:"to_ns"`
	Held    int    `json:"held_client"`
	Entered int    `json:"entered_client"`
}

// MaxSpans bounds MutexResult.Spans: a history with more violations than
// this is broken all over, and its timeline shows the first MaxSpans.
const MaxSpans = 100_000

// Section is one critical section as its holder saw it.
type Section struct {
	Key     string          `json:"key"`
	Client  int             `json:"client"`
	Process history.Process `json:"process"`
	// Start is when the acquire returned ok; End when the section ended,
	// for the reason in EndedBy. Both in ns since the run started.
	Start   int64  `json:"start_ns"`
	End     int64  `json:"end_ns"`
	EndedBy string `json:"ended_by"`
	Token   uint64 `json:"token,omitempty"`
	// Event is the index of the acquire-ok event.
	Event int64 `json:"event"`
}

// Overlap is one violation: Entered began while Held was open.
type Overlap struct {
	Key         string  `json:"key"`
	Held        Section `json:"held"`
	Entered     Section `json:"entered"`
	Description string  `json:"description"`
}

// CheckMutex runs the mutual-exclusion checker alone.
func CheckMutex(h *history.History, opts Options) (*MutexResult, error) {
	d, err := newDigest(h)
	if err != nil {
		return nil, err
	}
	return checkMutex(d, opts), nil
}

func checkMutex(d *digest, opts Options) *MutexResult {
	limit := opts.maxCounterexamples()
	r := &MutexResult{}
	for _, k := range d.keys {
		secs := k.sections
		r.Sections += len(secs)
		order := make([]int32, len(secs))
		for i := range order {
			order[i] = int32(i)
		}
		// Stable on event index, so the report is the same every time.
		slices.SortFunc(order, func(a, b int32) int {
			if c := cmp.Compare(secs[a].start, secs[b].start); c != 0 {
				return c
			}
			return cmp.Compare(secs[a].event, secs[b].event)
		})
		cover := int32(-1) // the section seen so far that ends last
		for _, i := range order {
			s := &secs[i]
			if cover >= 0 {
				c := &secs[cover]
				if s.start < c.end && c.start < s.end {
					r.Violations++
					if len(r.Spans) < MaxSpans {
						r.Spans = append(r.Spans, ViolationSpan{Key: k.name, From: s.start, To: min(c.end, s.end), Held: c.client, Entered: s.client})
					}
					if len(r.Overlaps) < limit {
						r.Overlaps = append(r.Overlaps, newOverlap(k.name, c, s))
					}
				}
			}
			if cover < 0 || s.end > secs[cover].end {
				cover = i
			}
		}
	}
	if r.Violations == 0 {
		r.Verdict = Valid
		r.Summary = fmt.Sprintf("no two of %d critical sections on %d keys overlap.", r.Sections, len(d.keys))
		return r
	}
	r.Verdict = Invalid
	r.Summary = fmt.Sprintf("%d of %d critical sections began while another holder of the same key was inside its own; first: %s",
		r.Violations, r.Sections, r.Overlaps[0].Description)
	return r
}

func publicSection(key string, s *section) Section {
	return Section{Key: key, Client: s.client, Process: s.proc, Start: s.start, End: s.end,
		EndedBy: s.reason.String(), Token: s.token, Event: s.event}
}

func newOverlap(key string, held, entered *section) Overlap {
	o := Overlap{Key: key, Held: publicSection(key, held), Entered: publicSection(key, entered)}
	until := min(held.end, entered.end)
	if held.proc == entered.proc {
		o.Description = fmt.Sprintf("key %s: client %d (P%d) held it from %s%s and acquired it again at %s%s while still inside; "+
			"the two sections overlap from %s to %s.",
			key, held.client, held.proc, fmtTime(held.start), tokenNote(held.token),
			fmtTime(entered.start), tokenNote(entered.token), fmtTime(entered.start), fmtTime(until))
		return o
	}
	o.Description = fmt.Sprintf("key %s: client %d (P%d) held it from %s%s until %s (%s), "+
		"but client %d (P%d) acquired it at %s%s and held it until %s (%s): both held %s from %s to %s.",
		key, held.client, held.proc, fmtTime(held.start), tokenNote(held.token), fmtTime(held.end), held.reason,
		entered.client, entered.proc, fmtTime(entered.start), tokenNote(entered.token), fmtTime(entered.end), entered.reason,
		key, fmtTime(entered.start), fmtTime(until))
	return o
}

func tokenNote(token uint64) string {
	if token == 0 {
		return " (no token)"
	}
	return fmt.Sprintf(" (token %d)", token)
}
