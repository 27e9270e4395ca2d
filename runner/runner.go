// Package runner is the one path from a scenario to a checked run
// directory: prepare the harness configuration, run it, record the
// scenario, check the history and write the results. verify run, replay,
// suite, compare, sim and shrink go through Run, and so does the Go API
// (package check); verify check and report re-check a saved run through
// Check and WriteResults.
//
// A run directory holds history.jsonl (streamed by the harness),
// scenario.json (what ran, with the seed used), result.json (the verdict,
// every checker's report, the versions), summary.txt, history.html
// (porcupine's view of the search) and report.html (the timeline).
package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/lockcheck/lockcheck/harness"
	"github.com/lockcheck/lockcheck/harness/worker"
	"github.com/lockcheck/lockcheck/history"
	"github.com/lockcheck/lockcheck/internal/bubble"
	"github.com/lockcheck/lockcheck/internal/report"
	"github.com/lockcheck/lockcheck/lockers"
	"github.com/lockcheck/lockcheck/models"
	"github.com/lockcheck/lockcheck/scenarios"
)

// Job is one run of a scenario on one seed.
type Job struct {
	// Spec is the scenario, normalized.
	Spec scenarios.Spec
	// Resolve finds the locker Spec names.
	Resolve scenarios.Resolve
	// Seed picks the workload and the fault schedule; nonzero.
	Seed uint64
	// Dir is the run directory to create; it must not exist yet.
	Dir string
	// Worker is the command of a built-in locker's process clients
	// (verify worker); nil when the scenario runs none.
	Worker func() (worker.Command, error)
	// Observers see every event as it is recorded (live progress).
	Observers []func(history.Event)
	// Log receives the run's diagnostics; nil discards them.
	Log lockers.Logger
	// ReportFailuresOnly writes result.json, summary.txt and the HTML
	// reports only for a run whose verdict is not valid: an exploration of
	// thousands of seeds keeps only its failures.
	ReportFailuresOnly bool
	// Bubbles runs a simulated scenario (Spec.Sim) in virtual time; nil
	// starts a pool of one for the run.
	Bubbles *bubble.Pool
}

// Result is a checked run.
type Result struct {
	Dir         string
	HistoryPath string
	// Outcome is what the harness reported: an interruption, clients
	// still inside a call, worker processes.
	Outcome *harness.Outcome
	History *history.History
	Report  *models.Report
	// Verdict is the run's verdict: safety, merged with liveness when
	// the scenario requires recovery.
	Verdict models.Verdict
	// Config is what the harness ran.
	Config harness.Config
	// Checked is how the history was judged.
	Checked CheckOptions
	// Warnings are the run's diagnostics (a locker that panicked, a fault
	// that failed to start or heal, a worker's stderr), at most
	// MaxWarnings of them, the number left out last; result.json keeps
	// them too.
	Warnings []string
}

// MaxWarnings bounds Result.Warnings.
const MaxWarnings = 100

// warnings collects a run's diagnostics and passes them on.
type warnings struct {
	mu      sync.Mutex
	list    []string
	dropped int
	next    lockers.Logger
}

func (w *warnings) Logf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	w.mu.Lock()
	if len(w.list) < MaxWarnings {
		w.list = append(w.list, msg)
	} else {
		w.dropped++
	}
	w.mu.Unlock()
	if w.next != nil {
		w.next.Logf("%s", msg)
	}
}

func (w *warnings) all() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := slices.Clone(w.list)
	if w.dropped > 0 {
		out = append(out, fmt.Sprintf("… and %d more", w.dropped))
	}
	return out
}

// ErrNotStarted matches (errors.Is) the error of a run that could not
// start: a bad scenario, a locker whose backend could not be set up.
// Nothing was recorded.
var ErrNotStarted = errors.New("the run did not start")

// notStarted is the error of a run that never started: its cause, as
// it is, matching ErrNotStarted too.
type notStarted struct{ err error }

func (n notStarted) Error() string        { return n.err.Error() }
func (n notStarted) Unwrap() error        { return n.err }
func (n notStarted) Is(target error) bool { return target == ErrNotStarted }

// Run prepares, runs, checks and writes one run. A nil Result (with an
// error wrapping ErrNotStarted) means the run never started; otherwise
// the Result holds whatever was recorded and checked, even when the
// error is set (an unwritable file, a worker that misbehaved). configured,
// when set, sees the harness configuration before the run starts.
func Run(ctx context.Context, j Job, configured func(harness.Config)) (*Result, error) {
	cfg, err := scenarios.Prepare(j.Spec, j.Resolve, j.Seed, j.Dir, j.Worker)
	if err != nil {
		return nil, notStarted{err}
	}
	cfg.Observers = append(cfg.Observers, j.Observers...)
	warn := &warnings{next: j.Log}
	cfg.Log = warn
	if configured != nil {
		configured(cfg)
	}
	out, runErr := execute(ctx, cfg, j.Bubbles)
	if out == nil {
		return nil, notStarted{runErr}
	}
	rec := j.Spec
	rec.Seeds = []uint64{j.Seed}
	// The first event wrote it already, unless the run recorded none.
	recErr := scenarios.WriteRecord(out.Dir, rec)
	res := &Result{Dir: out.Dir, HistoryPath: out.HistoryPath, Outcome: out, Config: cfg, Warnings: warn.all()}
	if errors.Is(runErr, harness.ErrWorker) || errors.Is(runErr, bubble.ErrStalled) {
		// A worker that broke the protocol recorded calls that mean
		// nothing, and a stalled simulation is still running; either
		// way the history is kept for `verify check`, with no verdict.
		return res, errors.Join(runErr, recErr)
	}
	o := CheckOptions{Timeout: time.Duration(j.Spec.CheckTimeout), RequireRecovery: j.Spec.RequireRecovery}
	h, rep, verdict, checkErr := Check(out.HistoryPath, o)
	if checkErr == nil {
		res.History, res.Report, res.Verdict, res.Checked = h, rep, verdict, o
		if !j.ReportFailuresOnly || verdict != models.Valid {
			checkErr = writeResults(out.Dir, h, rep, verdict, o, res.Warnings)
		}
	}
	return res, errors.Join(runErr, recErr, checkErr)
}

// LivenessCounts says whether r's liveness verdict is part of its verdict
// (the package's LivenessCounts rule).
func (r *Result) LivenessCounts() bool {
	if r.History == nil {
		return false
	}
	counts, _ := LivenessCounts(r.History.Header.Run, r.Checked)
	return counts
}

// CheckOptions are how a history is judged.
type CheckOptions struct {
	// Timeout bounds the linearizability search; past it the verdict is
	// unknown.
	Timeout time.Duration
	// RequireRecovery merges liveness into the verdict.
	RequireRecovery bool
	// AcceptPartial judges a history that ends before its planned end
	// (killed or interrupted) on the part it holds; without it such a
	// history is unknown.
	AcceptPartial bool
}

// Check reads and checks the history at path. The verdict is the safety
// verdict, merged with liveness when recovery is required: the one rule
// every command that judges a run follows.
func Check(path string, o CheckOptions) (*history.History, *models.Report, models.Verdict, error) {
	h, err := history.ReadFile(path)
	if err != nil {
		return nil, nil, "", fmt.Errorf("read history: %w", err)
	}
	rep, err := models.Check(h, models.Options{LinearizabilityTimeout: o.Timeout, AcceptPartial: o.AcceptPartial})
	if err != nil {
		return nil, nil, "", fmt.Errorf("check %s: %w", path, err)
	}
	verdict := rep.Verdict
	if counts, _ := LivenessCounts(h.Header.Run, o); counts && rep.Liveness != nil {
		verdict = verdict.Merge(rep.Liveness.Verdict)
	}
	return h, rep, verdict, nil
}

// LivenessCounts is the one rule for whether a run's liveness verdict is
// part of its verdict, in every command and the Go API, and why, in
// words for the verdict line. It counts when recovery is required, and
// when the locker has a lease and the recovery window is at least two of
// them: long enough for a lease abandoned by a crashed or paused holder
// to run out and be taken, so a client still stuck is the lock's fault,
// not the window's. A locker without a lease promises nothing to the
// clients of a key whose holder died, so its liveness counts only when
// required.
func LivenessCounts(run history.RunInfo, o CheckOptions) (bool, string) {
	switch {
	case o.RequireRecovery:
		return true, "recovery required"
	case run.Lease <= 0:
		return false, "no lease to outlast; -require-recovery counts it"
	case run.RecoveryTimeout >= 2*run.Lease:
		return true, fmt.Sprintf("the %v recovery window holds two %v leases", time.Duration(run.RecoveryTimeout), time.Duration(run.Lease))
	}
	return false, fmt.Sprintf("the %v recovery window is shorter than two %v leases; -require-recovery counts it", time.Duration(run.RecoveryTimeout), time.Duration(run.Lease))
}

// VerdictLine is a run's verdict as the last line of every output says
// it: the verdict, then what it rests on when that is not plain (why it
// is unknown; whether liveness counted; a partial history accepted).
func VerdictLine(verdict models.Verdict, run history.RunInfo, rep *models.Report, o CheckOptions) string {
	line := string(verdict)
	counts, why := LivenessCounts(run, o)
	var notes []string
	if verdict == models.Unknown {
		notes = append(notes, rep.UnknownCauses(counts)...)
	}
	if c := rep.Coverage; c.Partial && o.AcceptPartial {
		notes = append(notes, "partial history accepted: "+c.String())
	}
	if l := rep.Liveness; l != nil && l.Verdict != models.Valid {
		if counts {
			notes = append(notes, fmt.Sprintf("liveness %s, counted: %s", l.Verdict, why))
		} else {
			notes = append(notes, fmt.Sprintf("liveness %s, not counted: %s", l.Verdict, why))
		}
	}
	if len(notes) > 0 {
		line += " (" + strings.Join(notes, "; ") + ")"
	}
	return line
}

// ResultFile is result.json: everything a run found, and enough about the
// run to reproduce it.
type ResultFile struct {
	Verdict models.Verdict `json:"verdict"`
	// LivenessCounts says whether liveness was part of Verdict
	// (LivenessCounts).
	LivenessCounts bool              `json:"liveness_counts"`
	Run            history.RunInfo   `json:"scenario"`
	Seed           uint64            `json:"seed"`
	Start          time.Time         `json:"start"`
	Versions       map[string]string `json:"versions"`
	Checked        time.Time         `json:"checked"`
	Report         *models.Report    `json:"report"`
	// Warnings are the run's diagnostics (Result.Warnings); a re-check
	// of a saved history has none to add.
	Warnings []string `json:"warnings,omitempty"`
}

// ReadResult reads a run directory's result.json.
func ReadResult(path string) (*ResultFile, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r ResultFile
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &r, nil
}

// WriteResults writes result.json, summary.txt, history.html and
// report.html into dir.
func WriteResults(dir string, h *history.History, rep *models.Report, verdict models.Verdict, o CheckOptions) error {
	return writeResults(dir, h, rep, verdict, o, nil)
}

func writeResults(dir string, h *history.History, rep *models.Report, verdict models.Verdict, o CheckOptions, warn []string) error {
	counts, _ := LivenessCounts(h.Header.Run, o)
	res := ResultFile{
		Verdict: verdict, LivenessCounts: counts,
		Run: h.Header.Run, Seed: h.Header.Run.Seed, Start: h.Header.Start,
		Versions: Versions(), Checked: time.Now().UTC(), Report: rep, Warnings: warn,
	}
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return fmt.Errorf("result.json: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "result.json"), append(b, '\n'), 0o644); err != nil {
		return err
	}
	summary := fmt.Sprintf("run %s: locker %s, seed %d, %d clients, %d keys, %v, faults %v\n%s\nverdict: %s\n%s",
		h.Header.Run.ID, h.Header.Run.Locker, h.Header.Run.Seed, h.Header.Run.Clients, h.Header.Run.Keys,
		time.Duration(h.Header.Run.Duration), h.Header.Run.Faults, h.Header.Run.Settings(), VerdictLine(verdict, h.Header.Run, rep, o), rep.Summary())
	if len(warn) > 0 {
		summary += "warnings:\n  " + strings.Join(warn, "\n  ") + "\n"
	}
	if err := os.WriteFile(filepath.Join(dir, "summary.txt"), []byte(summary), 0o644); err != nil {
		return err
	}
	if err := rep.WriteVisualization(filepath.Join(dir, "history.html")); err != nil {
		return fmt.Errorf("history.html: %w", err)
	}
	meta := report.Meta{Verdict: verdict, LivenessCounts: counts, Checked: res.Checked, Versions: res.Versions}
	if err := report.Write(filepath.Join(dir, "report.html"), h, rep, meta); err != nil {
		return fmt.Errorf("report.html: %w", err)
	}
	return nil
}

// simWallLimit bounds one simulated run's wall time: a run of 10 virtual
// seconds takes well under one, so a run still going after this has
// stalled.
const simWallLimit = 5 * time.Minute

// seedLibraryRand seeds math/rand's global source from the run's seed.
// Libraries draw from it on their own, the storage client's retry jitter
// (gax-go's Backoff.Pause) among them: unseeded, a simulation whose
// requests are retried (lost replies, 503s) differs from run to run.
// rand.Seed has effect only in a binary built with //go:debug
// randseednop=0 (verify and its tests are); elsewhere it does nothing and
// the jitter stays an escape from the seed (internal/bubble's doc says
// so). Runs side by side in one process (verify sim -parallel, parallel
// tests) share the one source: this seeding waits for a run that owns it
// (bubble.LibraryRand, which the in-memory network reseeds it through at
// every failed request, where libraries draw), so it never lands between
// another run's reseed and its draws.
func seedLibraryRand(seed uint64) {
	bubble.SeedLibraryRand(int64(seed ^ 0x6a177e5))
}

// execute runs cfg: in a bubble of pool when it is a simulation, where
// the run's only context is its own (a context from outside the bubble
// would keep its clock from ever advancing); directly otherwise.
func execute(ctx context.Context, cfg harness.Config, pool *bubble.Pool) (*harness.Outcome, error) {
	if !cfg.InMemory {
		return harness.Run(ctx, cfg)
	}
	if pool == nil {
		pool = bubble.Start(1)
		defer pool.Close()
	}
	var out *harness.Outcome
	var runErr error
	err := pool.Run(func() {
		seedLibraryRand(cfg.Seed)
		out, runErr = harness.Run(context.Background(), cfg)
	}, simWallLimit)
	if errors.Is(err, bubble.ErrLeftBlocked) && out != nil {
		// The run and its history are complete; what stayed blocked is
		// the locker's (a lease it never stops), worth a word, not a
		// failed run.
		if cfg.Log != nil {
			cfg.Log.Logf("warning: %v", err)
		}
		err = nil
	}
	if errors.Is(err, bubble.ErrStalled) {
		// The run goes on in its stalled bubble; what it recorded is on
		// disk, with no verdict.
		return &harness.Outcome{Dir: cfg.Dir, HistoryPath: filepath.Join(cfg.Dir, "history.jsonl"), Interrupted: true}, err
	}
	return out, errors.Join(runErr, err)
}
