package compare

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/lockcheck/lockcheck/models"
)

// Summary is a cell's runs reduced to one row.
type Summary struct {
	Locker   string `json:"locker"`
	Scenario string `json:"scenario"`
	// Valid, Invalid and Unknown count the seeds by safety verdict;
	// NotApplicable and Errors count seeds that gave none.
	Valid         int `json:"valid"`
	Invalid       int `json:"invalid"`
	Unknown       int `json:"unknown"`
	NotApplicable int `json:"not_applicable"`
	Errors        int `json:"errors"`
	// NoFaultRan counts the unknown seeds whose faults never ran.
	NoFaultRan int `json:"no_fault_ran"`
	// Violations is the mutual-exclusion overlaps over every seed.
	Violations int `json:"mutex_violations"`
	// The durations are medians over the seeds that measured them.
	AcquireP50    time.Duration `json:"acquire_p50_ns"`
	AcquireP99    time.Duration `json:"acquire_p99_ns"`
	HandOffP50    time.Duration `json:"hand_off_p50_ns"`
	CrashRecovery time.Duration `json:"crash_recovery_p50_ns"`
	// HolderCrashes and NeverRecovered are summed over the seeds.
	HolderCrashes  int `json:"holder_crashes"`
	NeverRecovered int `json:"crash_never_recovered"`
	Stuck          int `json:"stuck_clients"`
	// LivenessInvalid counts the seeds whose liveness verdict was
	// invalid (clients stuck, a key never taken again).
	LivenessInvalid int `json:"liveness_invalid"`
	LivenessValid   int `json:"liveness_valid"`
	Seeds           int `json:"seeds"`
	// CaughtBy counts, per safety checker, the seeds it found invalid.
	CaughtBy map[string]int `json:"caught_by,omitempty"`
	// Data and release-request figures, summed over the seeds that
	// measured them (see Run).
	DataChecked       bool          `json:"data_checked,omitempty"`
	Increments        int           `json:"increments,omitempty"`
	LostUpdates       int64         `json:"lost_updates,omitempty"`
	StaleRefused      int           `json:"stale_refused,omitempty"`
	StaleAccepted     int           `json:"stale_accepted,omitempty"`
	ReleaseContended  int           `json:"release_contended,omitempty"`
	ReleaseMissed     int           `json:"release_missed,omitempty"`
	ReleaseHandOffP50 time.Duration `json:"release_hand_off_p50_ns,omitempty"`
}

// Summarize reduces a cell.
func (c Cell) Summarize() Summary {
	s := Summary{Locker: c.Locker, Scenario: c.Scenario, Seeds: len(c.Runs)}
	var p50, p99, hand, rec, onRequest []time.Duration
	for _, r := range c.Runs {
		switch {
		case r.NotApplicable != "":
			s.NotApplicable++
			continue
		case r.Verdict == models.Valid && r.Error == "":
			s.Valid++
		case r.Verdict == models.Invalid:
			// An invalid verdict stands even for a run that was cut
			// short: what it recorded already broke the promise.
			s.Invalid++
		case r.Error != "" && r.Verdict != models.Valid:
			s.Errors++
		default:
			s.Unknown++
			if r.NoFaultRan {
				s.NoFaultRan++
			}
		}
		s.Violations += r.Violations
		s.Stuck += r.Stuck
		for _, name := range r.CaughtBy {
			if s.CaughtBy == nil {
				s.CaughtBy = map[string]int{}
			}
			s.CaughtBy[name]++
		}
		switch r.Liveness {
		case models.Invalid:
			s.LivenessInvalid++
		case models.Valid:
			s.LivenessValid++
		}
		s.HolderCrashes += r.HolderCrashes
		s.NeverRecovered += r.CrashNeverRecovered
		if r.DataChecked {
			s.DataChecked = true
			s.Increments += r.Increments
			s.LostUpdates += r.LostUpdates
			s.StaleRefused += r.StaleRefused
			s.StaleAccepted += r.StaleAccepted
		}
		s.ReleaseContended += r.ReleaseContended
		s.ReleaseMissed += r.ReleaseMissed
		if r.ReleaseHandOffP50 > 0 {
			onRequest = append(onRequest, r.ReleaseHandOffP50)
		}
		p50 = append(p50, r.AcquireP50)
		p99 = append(p99, r.AcquireP99)
		if r.HandOffs > 0 {
			hand = append(hand, r.HandOffP50)
		}
		if r.HolderCrashes > r.CrashNeverRecovered {
			rec = append(rec, r.CrashRecoveryP50)
		}
	}
	s.AcquireP50, s.AcquireP99 = median(p50), median(p99)
	s.HandOffP50, s.CrashRecovery = median(hand), median(rec)
	s.ReleaseHandOffP50 = median(onRequest)
	return s
}

// caughtBy lists the checkers that found the cell's violations, the most
// seeds first, or "–".
func (s Summary) caughtBy() string {
	if len(s.CaughtBy) == 0 {
		return "–"
	}
	names := slices.Collect(maps.Keys(s.CaughtBy))
	slices.SortFunc(names, func(a, b string) int {
		if d := s.CaughtBy[b] - s.CaughtBy[a]; d != 0 {
			return d
		}
		return strings.Compare(a, b)
	})
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = fmt.Sprintf("%s %d", n, s.CaughtBy[n])
	}
	return strings.Join(parts, ", ")
}

// data says what happened to the protected register, or "–" when the
// cell had none.
func (s Summary) data() string {
	if !s.DataChecked {
		return "–"
	}
	out := fmt.Sprintf("%d of %d lost", s.LostUpdates, s.Increments)
	if s.StaleRefused > 0 || s.StaleAccepted > 0 {
		out += fmt.Sprintf("; %d stale refused", s.StaleRefused)
		if s.StaleAccepted > 0 {
			out += fmt.Sprintf(", **%d stale accepted**", s.StaleAccepted)
		}
	}
	return out
}

// onRequest says how holders answered release requests, or "–".
func (s Summary) onRequest() string {
	if s.ReleaseContended == 0 {
		return "–"
	}
	if s.ReleaseMissed == 0 {
		return fmt.Sprintf("%s; all %d honoured", ms(s.ReleaseHandOffP50), s.ReleaseContended)
	}
	return fmt.Sprintf("%s; **missed %d of %d**", ms(s.ReleaseHandOffP50), s.ReleaseMissed, s.ReleaseContended)
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[(len(s)-1)/2]
}

// Verdict says the cell's safety verdict in a word and its seed count:
// invalid if any seed was, unknown if any was and none invalid; and, when
// any seed's liveness was invalid, or a holder let a release request go
// unanswered, that too: a lock that never lets go is safe and useless.
func (s Summary) Verdict() string {
	v := s.safety()
	if s.LivenessInvalid > 0 {
		v += fmt.Sprintf("; **liveness invalid** %d/%d", s.LivenessInvalid, s.Valid+s.Invalid+s.Unknown+s.Errors)
	}
	if s.ReleaseMissed > 0 {
		v += fmt.Sprintf("; **release requests missed** %d/%d", s.ReleaseMissed, s.ReleaseContended)
	}
	return v
}

func (s Summary) safety() string {
	judged := s.Valid + s.Invalid + s.Unknown + s.Errors
	switch {
	case judged == 0 && s.NotApplicable > 0:
		return "n/a"
	case s.Invalid > 0:
		return fmt.Sprintf("**invalid** %d/%d", s.Invalid, judged)
	case s.Errors > 0:
		return fmt.Sprintf("error %d/%d", s.Errors, judged)
	case s.Unknown > 0 && s.NoFaultRan == s.Unknown:
		return fmt.Sprintf("%s %d/%d", models.NoFaultRan, s.NoFaultRan, judged)
	case s.Unknown > 0:
		return fmt.Sprintf("unknown %d/%d", s.Unknown, judged)
	default:
		return fmt.Sprintf("valid %d/%d", s.Valid, judged)
	}
}

func ms(d time.Duration) string {
	switch {
	case d == 0:
		return "–"
	case d < time.Millisecond:
		return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond))
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
	case d < 10*time.Second:
		return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%.1f s", d.Seconds())
	}
}

// WriteMarkdown writes an overview matrix (verdicts only) and the full
// table, one row per locker and scenario.
func (t *Table) WriteMarkdown(w io.Writer) error {
	cells := t.Cells()
	sums := map[[2]string]Summary{}
	for _, c := range cells {
		sums[[2]string{c.Locker, c.Scenario}] = c.Summarize()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Every locker scaled to a %v lease; seeds %v.", t.TTL, t.Seeds)
	if t.Interrupted {
		b.WriteString(" **Interrupted: the table holds only the runs that finished.**")
	}
	b.WriteString("\n\n| locker |")
	for _, s := range t.Scenarios {
		fmt.Fprintf(&b, " %s |", s.Name)
	}
	b.WriteString("\n|---|")
	for range t.Scenarios {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	for _, l := range t.Lockers {
		fmt.Fprintf(&b, "| %s |", l)
		for _, s := range t.Scenarios {
			sum, ok := sums[[2]string{l, s.Name}]
			v := "not run"
			if ok {
				v = sum.Verdict()
			}
			fmt.Fprintf(&b, " %s |", v)
		}
		b.WriteString("\n")
	}
	b.WriteString("\n| locker | scenario | safety | caught by | liveness | overlaps | acquire p50 / p99 | hand-off p50 | holder crash → next acquire | stuck clients | register | release on request | runs |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, c := range cells {
		s := sums[[2]string{c.Locker, c.Scenario}]
		if s.safety() == "n/a" {
			continue
		}
		crash := "–"
		if s.HolderCrashes > 0 {
			switch {
			case s.NeverRecovered == s.HolderCrashes:
				crash = fmt.Sprintf("never (%d of %d)", s.NeverRecovered, s.HolderCrashes)
			case s.NeverRecovered > 0:
				crash = fmt.Sprintf("%s; never %d of %d", ms(s.CrashRecovery), s.NeverRecovered, s.HolderCrashes)
			default:
				crash = ms(s.CrashRecovery)
			}
		}
		judged := s.Valid + s.Invalid + s.Unknown + s.Errors
		live := fmt.Sprintf("valid %d/%d", s.LivenessValid, judged)
		switch {
		case s.LivenessInvalid > 0:
			live = fmt.Sprintf("**invalid** %d/%d", s.LivenessInvalid, judged)
		case s.LivenessValid < judged:
			live = fmt.Sprintf("unknown %d/%d", judged-s.LivenessValid, judged)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %d | %s / %s | %s | %s | %d | %s | %s | %s |\n",
			s.Locker, s.Scenario, s.safety(), s.caughtBy(), live, s.Violations, ms(s.AcquireP50), ms(s.AcquireP99),
			ms(s.HandOffP50), crash, s.Stuck, s.data(), s.onRequest(), t.runLinks(c))
	}
	b.WriteString("\nsafety: seeds judged invalid (or valid) of those run; caught by: the checkers that judged them invalid, with their seeds; liveness: seeds where a client could not acquire once in the recovery phase, or a holder's key was never taken again; overlaps: critical sections that began while another client's was open, over all seeds; " +
		"latencies: median over seeds of each run's figure; hand-off: from a release to the next acquire by a client that was waiting; " +
		"holder crash: from the kill of a holder to the next acquire of its key (never: still taken when the run ended); stuck: clients that could not acquire once in the recovery phase, over all seeds; " +
		"register: acknowledged increments the register's final value lacks, and calls a fenced store refused as stale (accepted stale calls are a fencing violation), over all seeds; " +
		"release on request: median from a waiter's request to the next acquire, and contended holds that ended without honouring the request.\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// runLinks links each seed of a cell to its run's report, relative to the
// comparison's directory, so compare.md leads to the evidence.
func (t *Table) runLinks(c Cell) string {
	var links []string
	for _, r := range c.Runs {
		if r.Dir == "" {
			continue
		}
		rel, err := filepath.Rel(t.Dir, r.Dir)
		if err != nil || t.Dir == "" {
			rel = r.Dir
		}
		links = append(links, fmt.Sprintf("[s%d](%s)", r.Seed, filepath.ToSlash(filepath.Join(rel, "report.html"))))
	}
	if len(links) == 0 {
		return "–"
	}
	return strings.Join(links, " ")
}

// WriteJSON writes the table with every run and every cell's summary.
func (t *Table) WriteJSON(w io.Writer) error {
	var sums []Summary
	for _, c := range t.Cells() {
		sums = append(sums, c.Summarize())
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(struct {
		*Table
		Cells []Summary `json:"cells"`
	}{t, sums})
}
