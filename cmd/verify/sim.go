package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/lockcheck/lockcheck/faults"
	"github.com/lockcheck/lockcheck/internal/bubble"
	"github.com/lockcheck/lockcheck/models"
	"github.com/lockcheck/lockcheck/runner"
	"github.com/lockcheck/lockcheck/scenarios"
)

// simFlags are verify sim's own flags, beside the run flags that say
// what each seed runs.
type simFlags struct {
	seeds       string
	parallel    int
	all         bool
	determinism bool
	keep        bool
	shrink      bool
	shrinkFlags
}

func simCommand(args []string, stdout, stderr io.Writer) (int, error) {
	fs, f := newRunFlags(stderr)
	var sf simFlags
	fs.StringVar(&sf.seeds, "seeds", "1-100", "seeds to explore: `A-B` or a comma list (1-10000, or 3,17,42); with -scenario, the scenario's own seeds unless given")
	fs.IntVar(&sf.parallel, "parallel", 1, "seeds simulated at once")
	fs.BoolVar(&sf.all, "all", false, "explore every seed, not only until the first violation")
	fs.BoolVar(&sf.determinism, "determinism", false, "run every seed twice and compare the histories byte for byte (the determinism self-check)")
	fs.BoolVar(&sf.keep, "keep", false, "keep every seed's run directory (by default only failing seeds' are kept)")
	fs.BoolVar(&sf.shrink, "shrink", false, "shrink the first failing seed's run to a small one that still fails (as verify shrink does)")
	sf.shrinkFlags.register(fs)
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage: verify sim [flags]

Runs the locker in simulation, seed after seed: the backend (the embedded
GCS with its fidelity layer, or Redis) in memory, the network in memory
with a seeded latency on every request, and the whole run (clients,
workload, faults, backend, recorder) in virtual time inside a
testing/synctest bubble, faster than real time (about 250x for an in-process
locker, 15-400x for a GCS or Redis one, as many requests as its retry loop
sends: see the README). The same
locker code runs as in verify run; it sees only its lockers.Env.

It stops at the first seed whose verdict is not valid (or explores every
seed with -all) and says which seed failed, where its run directory is,
and the command that replays it. The settings are verify run's flags;
faults that need sockets (bandwidth, slicer, limit-data) or processes
are refused.

Examples:
  verify sim -locker mutant-unlock-any -seeds 1-1000
  verify sim -locker tus616 -faults pause-holder -ttl 1s -seeds 1-500 -parallel 2
  verify sim -locker fenced -faults partition,lost-reply,server-503 -fault-coverage any -seeds 1-10000 -all
  verify sim -locker lease -seeds 1-1000 -determinism
  verify sim -locker lai -faults crash -seeds 1-200 -shrink

Unless GOGC is set, the garbage collector runs a quarter as often as Go's
default while seeds run (GOGC=400): a seed allocates much and keeps
little, and this made fenced 1.4x faster at -parallel 2 on 2 cores, for
about 25 MB more memory.

Exit codes: 0 every seed valid, 1 a seed invalid, 2 a seed unknown,
3 bad flags or a seed that could not run.

Flags:
`)
		fs.PrintDefaults()
	}
	if help, err := parseFlagsOnly(fs, args); help || err != nil {
		return exitValid, err
	}
	set := flagsSet(fs)
	seeds, err := parseSeeds(sf.seeds)
	if err != nil {
		return 0, fmt.Errorf("-seeds: %w", err)
	}
	if err := sf.shrinkFlags.validate(); err != nil {
		return 0, err
	}
	if sf.parallel < 1 || sf.parallel > 64 {
		return 0, fmt.Errorf("-parallel %d: want 1..64", sf.parallel)
	}
	defer relaxGC()()
	spec, err := simSpec(f, set, "sim", "verify sim with flags")
	if err != nil {
		return 0, err
	}
	if f.scenario != "" && !set["seeds"] {
		// A scenario pinned to its seeds (a sim form, a shrunk
		// counterexample) runs on them unless told otherwise.
		seeds = spec.Seeds
	}
	dir := filepath.Join(f.out, "sim-"+safeDirName(spec.Locker)+"-"+time.Now().UTC().Format("20060102-150405.000"))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, fmt.Errorf("-out: %w", err)
	}
	ctx, stop := interruptible()
	defer stop()
	fmt.Fprintf(stdout, "sim %s: locker %s, %d clients, %d keys, %v of virtual time per seed, faults [%s], %d seeds, %d at a time\n",
		dir, spec.Locker, spec.Clients, spec.Keys, time.Duration(spec.Duration), strings.Join(spec.Faults, ","), len(seeds), sf.parallel)
	ex := &explorer{spec: spec, dir: dir, flags: sf, stderr: stderr, quiet: f.quiet}
	sum := ex.explore(ctx, seeds)
	code, err := sum.print(stdout, spec, sf)
	if err != nil || !sf.shrink || sum.failed == nil || ctx.Err() != nil {
		return code, err
	}
	fmt.Fprintln(stdout)
	pool := bubble.Start(1)
	defer pool.Close()
	return runShrink(ctx, spec, sum.failed.seed, sum.failed.dir+"-shrunk", sf.shrinkFlags, pool, f.quiet, stdout, stderr)
}

// explorer runs seeds in simulation.
type explorer struct {
	spec   scenarios.Spec
	dir    string
	flags  simFlags
	stderr io.Writer
	quiet  bool
}

// seedResult is one seed's simulation.
type seedResult struct {
	seed    uint64
	dir     string
	verdict models.Verdict
	err     error
	virtual time.Duration
	// mismatch, with -determinism, says how the second run's history
	// differed from the first's ("" when byte for byte the same).
	mismatch string
	// line is the verdict as the last line says it, with its causes.
	line string
}

// summary is what an exploration found.
type summary struct {
	explored, total int
	wall            time.Duration
	virtual         time.Duration
	failed          *seedResult
	errs            []seedResult
	mismatches      []seedResult
	interrupted     bool
}

func (ex *explorer) explore(ctx context.Context, seeds []uint64) summary {
	// One lane runs here; more run each in a process of its own
	// (simchild.go), so that no two seeds share a process.
	pool := bubble.Start(1)
	defer pool.Close()
	start := time.Now()
	var mu sync.Mutex
	sum := summary{total: len(seeds)}
	stopped := false
	next := 0
	var wg sync.WaitGroup
	prog := newSeedProgress(ex.stderr, len(seeds), ex.quiet)
	for i := range ex.flags.parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			run := func(seed uint64) seedResult { return ex.runSeed(ctx, pool, seed) }
			if ex.flags.parallel > 1 {
				l, err := startLane(ex)
				if err != nil {
					mu.Lock()
					sum.errs = append(sum.errs, seedResult{err: fmt.Errorf("lane %d: %w", i, err)})
					stopped = true
					mu.Unlock()
					return
				}
				defer l.close()
				run = l.run
			}
			for {
				mu.Lock()
				if stopped || next >= len(seeds) || ctx.Err() != nil {
					mu.Unlock()
					return
				}
				seed := seeds[next]
				next++
				mu.Unlock()
				r := run(seed)
				mu.Lock()
				sum.explored++
				sum.virtual += r.virtual
				switch {
				case r.err != nil:
					sum.errs = append(sum.errs, r)
					stopped = true
				case r.mismatch != "":
					sum.mismatches = append(sum.mismatches, r)
				}
				if r.err == nil && r.verdict != models.Valid {
					if sum.failed == nil || r.seed < sum.failed.seed {
						failed := r
						sum.failed = &failed
					}
					stopped = stopped || !ex.flags.all
				}
				prog.update(sum.explored, sum.failed != nil, time.Since(start))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	prog.stop()
	sum.wall = time.Since(start)
	sum.interrupted = ctx.Err() != nil
	return sum
}

// runSeed simulates one seed (twice with -determinism) and keeps its run
// directory only when it failed or -keep asks.
func (ex *explorer) runSeed(ctx context.Context, pool *bubble.Pool, seed uint64) seedResult {
	r := seedResult{seed: seed, dir: filepath.Join(ex.dir, fmt.Sprintf("s%d", seed))}
	res, err := runner.Run(ctx, runner.Job{Spec: ex.spec, Resolve: resolveLocker, Seed: seed, Dir: r.dir, Bubbles: pool, ReportFailuresOnly: !ex.flags.keep}, nil)
	if res == nil || res.Report == nil {
		r.err = err
		if r.err == nil {
			r.err = errors.New("no verdict")
		}
		return r
	}
	r.verdict, r.err = res.Verdict, err
	r.line = runner.VerdictLine(res.Verdict, res.History.Header.Run, res.Report, res.Checked)
	if n := len(res.History.Events); n > 0 {
		r.virtual = time.Duration(res.History.Events[n-1].Time)
	}
	if ex.flags.determinism {
		again := r.dir + "-again"
		res2, err := runner.Run(ctx, runner.Job{Spec: ex.spec, Resolve: resolveLocker, Seed: seed, Dir: again, Bubbles: pool, ReportFailuresOnly: true}, nil)
		switch {
		case err != nil && res2 == nil:
			r.mismatch = "the second run did not start: " + err.Error()
		default:
			r.mismatch = compareHistories(res.HistoryPath, res2.HistoryPath)
		}
		if r.mismatch == "" || !ex.flags.keep {
			os.RemoveAll(again)
		}
	}
	if r.err == nil && r.verdict == models.Valid && r.mismatch == "" && !ex.flags.keep {
		os.RemoveAll(r.dir)
		r.dir = ""
	}
	return r
}

// compareHistories says where two histories of one seed part, leaving
// out their headers (which name their run directories), or "" when every
// event line is the same.
func compareHistories(a, b string) string {
	la, err := eventLines(a)
	if err != nil {
		return err.Error()
	}
	lb, err := eventLines(b)
	if err != nil {
		return err.Error()
	}
	for i := range min(len(la), len(lb)) {
		if !bytes.Equal(la[i], lb[i]) {
			return fmt.Sprintf("event line %d differs:\n      %s\n      %s", i+1, la[i], lb[i])
		}
	}
	if len(la) != len(lb) {
		return fmt.Sprintf("%d events, then %d", len(la), len(lb))
	}
	return ""
}

func eventLines(path string) ([][]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var lines [][]byte
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for first := true; sc.Scan(); first = false {
		if !first {
			lines = append(lines, append([]byte(nil), sc.Bytes()...))
		}
	}
	return lines, sc.Err()
}

func (s summary) print(w io.Writer, spec scenarios.Spec, f simFlags) (int, error) {
	rate := float64(s.explored) / max(s.wall.Seconds(), 1e-9)
	fmt.Fprintf(w, "\nexplored %d of %d seeds in %v: %.1f seeds/s, %.0fx real time (%v of virtual time)\n",
		s.explored, s.total, s.wall.Round(time.Millisecond), rate, s.virtual.Seconds()/max(s.wall.Seconds(), 1e-9), s.virtual.Round(time.Millisecond))
	if f.determinism {
		fmt.Fprintf(w, "determinism self-check: %d of %d seeds ran twice with a different history\n", len(s.mismatches), s.explored)
		for i, m := range s.mismatches {
			if i == 5 {
				fmt.Fprintf(w, "  … and %d more\n", len(s.mismatches)-5)
				break
			}
			fmt.Fprintf(w, "  seed %d: %s\n", m.seed, m.mismatch)
		}
	}
	if s.interrupted {
		fmt.Fprintln(w, "interrupted: the seeds above are those that finished")
	}
	if len(s.errs) > 0 {
		e := s.errs[0]
		return 0, fmt.Errorf("seed %d could not be simulated: %w", e.seed, e.err)
	}
	if s.failed == nil {
		if len(s.mismatches) > 0 {
			// A seed that does not repeat is not evidence: its verdict may
			// not come out the same on replay, nor on a gate's next run.
			fmt.Fprintf(w, "verdict: unknown (determinism self-check: %d of %d seeds gave a different history when run again, so their verdicts may not replay; each was valid)\n", len(s.mismatches), s.explored)
			return exitUnknown, nil
		}
		if s.interrupted {
			// An interrupted exploration showed nothing about the seeds
			// it never ran: never a pass.
			fmt.Fprintf(w, "verdict: unknown (interrupted after %d of %d seeds, each of them valid; the rest were not run)\n", s.explored, s.total)
			return exitUnknown, nil
		}
		fmt.Fprintf(w, "verdict: valid on every seed explored (%d of %d)\n", s.explored, s.total)
		return exitValid, nil
	}
	fmt.Fprintf(w, "first failing seed: %d, verdict %s\n  run directory: %s\n  replay: verify replay %s\n",
		s.failed.seed, s.failed.verdict, s.failed.dir, s.failed.dir)
	line := s.failed.verdict
	if s.failed.line != "" {
		line = models.Verdict(s.failed.line)
	}
	if len(s.mismatches) > 0 {
		fmt.Fprintf(w, "  the determinism self-check found %d seeds that gave a different history when run again: a replay may not show the same\n", len(s.mismatches))
	}
	fmt.Fprintf(w, "verdict: %s (seed %d)\n", line, s.failed.seed)
	return exitCodeOf(s.failed.verdict), nil
}

// parseSeeds reads "A-B" or "a,b,c".
func parseSeeds(s string) ([]uint64, error) {
	if a, b, ok := strings.Cut(s, "-"); ok && !strings.Contains(s, ",") {
		lo, err1 := strconv.ParseUint(strings.TrimSpace(a), 10, 63)
		hi, err2 := strconv.ParseUint(strings.TrimSpace(b), 10, 63)
		if err1 != nil || err2 != nil || lo == 0 || hi < lo {
			return nil, fmt.Errorf("%q: want A-B with 1 <= A <= B, e.g. 1-10000", s)
		}
		if hi-lo >= 10_000_000 {
			return nil, fmt.Errorf("%q: at most ten million seeds at once", s)
		}
		var out []uint64
		for v := lo; v <= hi; v++ {
			out = append(out, v)
		}
		return out, nil
	}
	var out []uint64
	for _, p := range splitList(s) {
		v, err := strconv.ParseUint(p, 10, 63)
		if err != nil || v == 0 {
			return nil, fmt.Errorf("%q is not a positive integer", p)
		}
		if slices.Contains(out, v) {
			return nil, fmt.Errorf("%d is listed twice", v)
		}
		out = append(out, v)
	}
	if len(out) == 0 {
		return nil, errors.New("none given; e.g. -seeds 1-1000")
	}
	return out, nil
}

func safeDirName(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '/' || r == ' ' || r == os.PathSeparator {
			return '_'
		}
		return r
	}, s)
}

// seedProgress is the exploration's progress bar: redrawn on a terminal,
// a line every 5 s otherwise.
type seedProgress struct {
	w        io.Writer
	total    int
	terminal bool
	quiet    bool
	last     time.Time
}

func newSeedProgress(w io.Writer, total int, quiet bool) *seedProgress {
	return &seedProgress{w: w, total: total, terminal: isTerminal(w), quiet: quiet}
}

func (p *seedProgress) update(done int, failed bool, elapsed time.Duration) {
	if p.quiet {
		return
	}
	every := 5 * time.Second
	if p.terminal {
		every = 100 * time.Millisecond
	}
	if time.Since(p.last) < every && done < p.total {
		return
	}
	p.last = time.Now()
	const width = 30
	filled := width * done / max(p.total, 1)
	bar := strings.Repeat("#", filled) + strings.Repeat(".", width-filled)
	line := fmt.Sprintf("[%s] %d/%d seeds  %.1f seeds/s  %v", bar, done, p.total, float64(done)/max(elapsed.Seconds(), 1e-9), elapsed.Round(time.Second))
	if failed {
		line += "  violation found"
	}
	if p.terminal {
		fmt.Fprintf(p.w, "\r%s", line)
	} else {
		fmt.Fprintln(p.w, line)
	}
}

func (p *seedProgress) stop() {
	if p.terminal && !p.quiet {
		fmt.Fprintln(p.w)
	}
}

// simGCPercent is the garbage collector's target while verify sim runs
// seeds, unless GOGC is set. A seed allocates much and keeps little (its
// run directory is on disk once it ends), so collecting a quarter as often
// as the default 100 made fenced 1.4x faster at -parallel 2 on 2 cores
// (medians of three runs of 40 seeds: 5.7 to 8.0 seeds/s) for 23 MB more
// resident memory (60 to 83 MB).
const simGCPercent = 400

// relaxGC sets simGCPercent unless GOGC is set, and returns what puts the
// previous target back.
func relaxGC() (restore func()) {
	if _, set := os.LookupEnv("GOGC"); set {
		return func() {}
	}
	previous := debug.SetGCPercent(simGCPercent)
	return func() { debug.SetGCPercent(previous) }
}

// simSpec is the scenario a simulating command (sim, fuzz) runs: the named
// -scenario, or the run flags, for simulation, refusing what a simulation
// cannot run.
func simSpec(f *runFlags, set map[string]bool, name, summary string) (scenarios.Spec, error) {
	var spec scenarios.Spec
	var err error
	if f.scenario != "" {
		s, err := lookupScenario(f.scenario)
		if err != nil {
			return spec, fmt.Errorf("-scenario: %w", err)
		}
		s.Sim = true
		if spec, err = s.Normalize(resolveLocker); err != nil {
			return spec, err
		}
	} else {
		if set["worker"] || set["clients-as"] || set["gcs-bucket"] || set["redis-addr"] || set["backend"] {
			return spec, fmt.Errorf("verify %s runs goroutine clients on an in-memory backend; drop -worker, -clients-as, -gcs-bucket, -redis-addr and -backend", name)
		}
		if set["seed"] || set["json"] || set["sim"] {
			how := "explores -seeds (one seed: -seeds 7)"
			if name == "fuzz" {
				how = "lets the fuzzer choose the seeds"
			}
			return spec, fmt.Errorf("verify %s %s in simulation and prints a summary; drop -seed, -json and -sim", name, how)
		}
		if spec, err = f.spec(set); err != nil {
			return spec, err
		}
		spec.Name, spec.Summary, spec.Sim = name, summary, true
		if spec, err = spec.Normalize(resolveLocker); err != nil {
			return spec, fmt.Errorf("flags: %w", err)
		}
	}
	kinds, err := faults.Lookup(spec.Faults)
	if err != nil {
		return spec, fmt.Errorf("-faults: %w", err)
	}
	for _, k := range kinds {
		if k.Shapes {
			return spec, fmt.Errorf("-faults: %s shapes bytes on a socket, which only a live run has: run it with verify run (the simulation's network carries whole requests)", k.Name)
		}
	}
	return spec, nil
}
