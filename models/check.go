package models

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/lockcheck/lockcheck/history"
)

// DefaultMaxCounterexamples is how many violations a checker describes
// unless told otherwise; the counts cover all of them.
const DefaultMaxCounterexamples = 10

// Options tune the checkers. The zero value is ready to use: no time limit,
// default sizes.
type Options struct {
	// LinearizabilityTimeout bounds the porcupine search, in wall-clock
	// time; past it the linearizability verdict is unknown. Zero means
	// no bound.
	LinearizabilityTimeout time.Duration
	// ChunkOps caps the operations per porcupine search (default
	// DefaultChunkOps); a segment with no cut inside may exceed it.
	ChunkOps int
	// MaxCounterexamples caps the violations described per checker
	// (default DefaultMaxCounterexamples).
	MaxCounterexamples int
	// VisualizationOps caps the operations drawn by WriteVisualization
	// (default DefaultVisualizationOps).
	VisualizationOps int
	// Workers is how many porcupine searches run at once (default
	// GOMAXPROCS).
	Workers int
	// AcceptPartial judges a history that ends before its run's planned
	// end (killed or interrupted) on the part it holds. Without it such
	// a history is unknown: a valid verdict on 4 s of a 10 s run is no
	// claim about the rest.
	AcceptPartial bool

	_ struct{}

	// noCuts searches each key's history whole, with open-ended
	// operations ending at Forever: the reference the cuts must agree
	// with, for tests.
	noCuts bool
	// now replaces the wall clock, so tests can expire the time limit
	// without waiting for it.
	now func() time.Time
}

func (o Options) chunkOps() int {
	if o.ChunkOps > 0 {
		return o.ChunkOps
	}
	return DefaultChunkOps
}

func (o Options) maxCounterexamples() int {
	if o.MaxCounterexamples > 0 {
		return o.MaxCounterexamples
	}
	return DefaultMaxCounterexamples
}

func (o Options) visualizationOps() int {
	if o.VisualizationOps > 0 {
		return o.VisualizationOps
	}
	return DefaultVisualizationOps
}

func (o Options) clock() func() time.Time {
	if o.now != nil {
		return o.now
	}
	return time.Now
}

// CheckerResult is one checker's line in a report.
type CheckerResult struct {
	Name string `json:"name"`
	// Safety is true for checkers whose verdict makes the overall one.
	Safety          bool     `json:"safety"`
	Verdict         Verdict  `json:"verdict"`
	Summary         string   `json:"summary"`
	Counterexamples []string `json:"counterexamples,omitempty"`
}

// Report is everything the checkers found in one history.
type Report struct {
	// Verdict is the safety verdict: the merge of every safety checker's
	// (mutual exclusion, linearizability, and on register workloads the
	// data-level checkers). Liveness is reported on its own.
	Verdict         Verdict                `json:"verdict"`
	Checkers        []CheckerResult        `json:"checkers"`
	Mutex           *MutexResult           `json:"mutual_exclusion"`
	Linearizability *LinearizabilityResult `json:"linearizability"`
	Liveness        *LivenessResult        `json:"liveness"`
	// The data-level checkers and the request-release measure: nil, and
	// absent from Checkers, when the history is not of their workload. A
	// checker that does not apply has nothing to report, and listing it
	// as "not applicable" would read too much like a pass.
	LostUpdates             *LostUpdatesResult             `json:"lost_updates,omitempty"`
	RegisterLinearizability *RegisterLinearizabilityResult `json:"register_linearizability,omitempty"`
	Fencing                 *FencingResult                 `json:"fencing,omitempty"`
	// Tokens is nil when the locker claims no fencing or gave no token.
	Tokens *TokensResult `json:"fencing_tokens,omitempty"`
	// Audit is nil when the backend reported no writes.
	Audit *AuditResult `json:"backend_audit,omitempty"`
	// Notice is nil when the locker promises nothing about lost notices.
	Notice          *NoticeResult    `json:"lost_notice,omitempty"`
	ReleaseRequests *ReleaseRequests `json:"release_requests,omitempty"`
	Counts          Counts           `json:"counts"`
	// Truncated passes on history.History.Truncated: the run died
	// mid-write and its last line was dropped.
	Truncated bool `json:"truncated"`
	// Coverage says how much of the planned run the history holds.
	Coverage Coverage `json:"coverage"`
	// Faults accounts for every fault the run asked for: planned,
	// started, applied, at a holder. Nil when it asked for none.
	Faults *FaultsResult `json:"faults,omitempty"`
}

// CoverageName is the coverage check's name in reports.
const CoverageName = "coverage"

// Coverage is how much of its planned workload phase a history covers.
// A run killed at 4 s of 10 s leaves a history whose verdicts speak for 4
// s only: a valid verdict on it is no claim about the rest.
type Coverage struct {
	// Checked is the time of the last event of the workload phase (the
	// start of recovery, when the run got there); Planned the run's
	// duration from its header.
	Checked history.Duration `json:"checked"`
	Planned history.Duration `json:"planned"`
	// Partial: the history ends before its workload phase did, or the
	// run was interrupted (in its recovery phase, too).
	Partial bool `json:"partial"`
	// Interrupted: the history records that the run was cut short.
	Interrupted bool `json:"interrupted,omitempty"`
}

func (c Coverage) String() string {
	if !c.Partial {
		return ""
	}
	if c.Interrupted && c.Checked >= c.Planned {
		return fmt.Sprintf("the run was interrupted in its recovery phase, after all %.1f s of its workload: not every client had its chance to recover", time.Duration(c.Planned).Seconds())
	}
	if c.Interrupted {
		return fmt.Sprintf("interrupted at %.1f s of %.1f s: the verdicts speak for that much of the run", time.Duration(c.Checked).Seconds(), time.Duration(c.Planned).Seconds())
	}
	return fmt.Sprintf("checked %.1f s of %.1f s: the history ends before the run's planned end (killed or interrupted), so the verdicts speak for that much of it", time.Duration(c.Checked).Seconds(), time.Duration(c.Planned).Seconds())
}

// coverage measures h against its planned duration: a history that
// reached its recovery phase covers all of it.
func coverage(h *history.History) Coverage {
	c := Coverage{Planned: h.Header.Run.Duration}
	recovered := false
	for _, e := range h.Events {
		if e.Process == history.Nemesis && e.F == history.Interrupted {
			c.Interrupted = true
			if !recovered {
				c.Checked = history.Duration(e.Time)
			}
			break
		}
		if recovered {
			continue
		}
		if e.F == history.Recovery {
			c.Checked, recovered = c.Planned, true
			continue
		}
		c.Checked = history.Duration(e.Time)
	}
	c.Partial = c.Interrupted || (c.Planned > 0 && c.Checked < c.Planned)
	return c
}

// Check runs every checker on h. An error means the history could not be
// read as a run (it wraps ErrMalformed); the verdicts are in the report.
func Check(h *history.History, opts Options) (*Report, error) {
	d, err := newDigest(h)
	if err != nil {
		return nil, err
	}
	data, err := readRegisterData(h)
	if err != nil {
		return nil, err
	}
	r := &Report{Counts: d.counts, Truncated: d.truncated, Coverage: coverage(h)}
	r.Mutex = checkMutex(d, opts)
	r.Liveness = checkLiveness(d)
	r.Liveness.HandOffs, r.Liveness.HolderCrashes = measureRecovery(h)
	d.dropSections()
	r.Linearizability = checkLinearizable(d, opts)
	r.Verdict = r.Mutex.Verdict.Merge(r.Linearizability.Verdict)
	mx := CheckerResult{Name: MutexName, Safety: true, Verdict: r.Mutex.Verdict, Summary: r.Mutex.Summary}
	for _, o := range r.Mutex.Overlaps {
		mx.Counterexamples = append(mx.Counterexamples, o.Description)
	}
	lin := CheckerResult{Name: LinearizabilityName, Safety: true, Verdict: r.Linearizability.Verdict, Summary: r.Linearizability.Summary}
	for _, c := range r.Linearizability.Counterexamples {
		desc := c.Description
		if c.AfterViolation {
			desc = "(after an earlier violation of this key; may be its consequence) " + desc
		}
		lin.Counterexamples = append(lin.Counterexamples, desc)
	}
	live := CheckerResult{Name: LivenessName, Verdict: r.Liveness.Verdict, Summary: r.Liveness.Summary}
	r.Checkers = []CheckerResult{mx, lin, live}
	if r.Tokens = checkTokens(h, opts); r.Tokens != nil {
		r.addSafety(TokensName, r.Tokens.Verdict, r.Tokens.Summary, r.Tokens.Counterexamples)
	}
	if r.Audit = checkAudit(h, opts); r.Audit != nil {
		r.addSafety(AuditName, r.Audit.Verdict, r.Audit.Summary, r.Audit.Counterexamples)
	}
	if r.Notice = checkNotice(h, opts); r.Notice != nil {
		r.addSafety(NoticeName, r.Notice.Verdict, r.Notice.Summary, r.Notice.Counterexamples)
	}
	r.checkData(h, data, opts)
	if why := checkVacuity(h, r.Counts); why != "" {
		r.addSafety(VacuityName, Unknown, why, nil)
	}
	if r.Faults = checkFaults(h); r.Faults != nil {
		r.addSafety(FaultsName, r.Faults.Verdict, r.Faults.Summary, nil)
	}
	if r.Coverage.Partial && !opts.AcceptPartial {
		r.addSafety(CoverageName, Unknown, r.Coverage.String()+"; accept a partial history explicitly to judge the part it holds", nil)
	}
	return r, nil
}

// checkData runs the checkers that apply only to some workloads, appends
// their lines after the general ones, and merges the safety verdicts.
func (r *Report) checkData(h *history.History, data *registerData, opts Options) {
	if data.registerApplies() {
		r.LostUpdates = checkLostUpdates(data, opts)
		r.RegisterLinearizability = checkRegisterLinearizable(data, opts)
		r.addSafety(LostUpdatesName, r.LostUpdates.Verdict, r.LostUpdates.Summary, r.LostUpdates.Counterexamples)
		rl := r.RegisterLinearizability
		r.addSafety(RegisterLinearizabilityName, rl.Verdict, rl.Summary, rl.Counterexamples)
	}
	if data.workload == history.WorkloadFencedRegister {
		r.Fencing = checkFencing(data, opts)
		// Without tokens the check does not apply, like a checker of
		// another workload; its counts stay in r.Fencing.
		if !r.Fencing.NoTokens {
			r.addSafety(FencingName, r.Fencing.Verdict, r.Fencing.Summary, r.Fencing.Counterexamples)
		}
	}
	// Only the request-release workload's holders are meant to honour a
	// request; in the others a notice is a fact, not a promise.
	if data.workload == history.WorkloadRequestRelease {
		r.ReleaseRequests = measureReleaseRequests(h)
		r.Checkers = append(r.Checkers, CheckerResult{Name: ReleaseRequestsName, Verdict: r.ReleaseRequests.Verdict,
			Summary: r.ReleaseRequests.Summary})
	}
}

// UnknownCauses names each check whose verdict is unknown, with its
// reason: a checker out of time, a vacuous run, faults that never ran, a
// partial history. withLiveness counts an unknown liveness verdict too.
func (r *Report) UnknownCauses(withLiveness bool) []string {
	var out []string
	for _, c := range r.Checkers {
		if c.Verdict == Unknown && (c.Safety || withLiveness) {
			out = append(out, c.Name+": "+oneLine(c.Summary, 300))
		}
	}
	return out
}

func (r *Report) addSafety(name string, v Verdict, summary string, cx []string) {
	r.Checkers = append(r.Checkers, CheckerResult{Name: name, Safety: true, Verdict: v, Summary: summary, Counterexamples: cx})
	r.Verdict = r.Verdict.Merge(v)
}

// WriteVisualization draws the linearizability search; see
// LinearizabilityResult.WriteVisualization.
func (r *Report) WriteVisualization(path string) error {
	if r.Linearizability == nil {
		return errNothingToDraw
	}
	return r.Linearizability.WriteVisualization(path)
}

// Summary is a few lines for a person: the safety verdict with each
// checker's sentence, liveness figures, counts, and the first
// counterexample.
func (r *Report) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "safety: %s\n", r.Verdict)
	for _, c := range r.Checkers {
		if c.Safety {
			fmt.Fprintf(&b, "  %s: %s — %s\n", c.Name, c.Verdict, c.Summary)
		}
	}
	if l := r.Liveness; l != nil {
		fmt.Fprintf(&b, "liveness: %s — %s\n", l.Verdict, l.Summary)
		fmt.Fprintf(&b, "  acquire latency p50 %v, p95 %v, p99 %v, max %v; %.1f acquisitions/s; longest wait %v\n",
			l.LatencyP50, l.LatencyP95, l.LatencyP99, l.LatencyMax, l.AcquisitionsPerSecond, l.LongestWait)
		if ho := l.HandOffs; ho.Count+ho.Missed > 0 {
			fmt.Fprintf(&b, "  hand-off to a waiting client: %d, p50 %v, p99 %v, max %v; %d never happened\n", ho.Count, ho.P50, ho.P99, ho.Max, ho.Missed)
		}
		if rr := r.ReleaseRequests; rr != nil {
			fmt.Fprintf(&b, "  release requests: %s — %s\n", rr.Verdict, rr.Summary)
		}
		if hc := l.HolderCrashes; hc.Crashes > 0 {
			fmt.Fprintf(&b, "  holder crashes: %d; lock taken again after p50 %v, max %v", hc.Crashes, hc.P50, hc.Max)
			if hc.Never > 0 {
				fmt.Fprintf(&b, "; %d never (stuck at least %v)", hc.Never, hc.NeverFor)
			}
			b.WriteString("\n")
		}
	}
	c := r.Counts
	fmt.Fprintf(&b, "history: %d calls (%d acquired, %d failed, %d indeterminate, %d open at the end), %d lost notices, %d crashes, %d faults",
		c.Calls, c.Acquired, c.Failed, c.Indeterminate, c.OpenAtEnd, c.LostNotices, c.Crashes, c.Faults)
	if r.Truncated {
		b.WriteString("; truncated (the run died mid-write)")
	}
	b.WriteString("\n")
	if r.Coverage.Partial {
		b.WriteString(r.Coverage.String() + "\n")
	}
	for _, ch := range r.Checkers {
		if ch.Safety && len(ch.Counterexamples) > 0 {
			fmt.Fprintf(&b, "first counterexample (%s): %s\n", ch.Name, ch.Counterexamples[0])
			break
		}
	}
	return b.String()
}

// WriteTable prints one row per checker and the overall safety verdict.
func (r *Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CHECKER\tKIND\tVERDICT\tSUMMARY")
	for _, c := range r.Checkers {
		kind := "liveness"
		if c.Safety {
			kind = "safety"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", c.Name, kind, c.Verdict, oneLine(c.Summary, 120))
	}
	fmt.Fprintf(tw, "overall\tsafety\t%s\t\n", r.Verdict)
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("models: verdict table: %w", err)
	}
	return nil
}

func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}
