package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/lockcheck/lockcheck/internal/bubble"
	"github.com/lockcheck/lockcheck/models"
	"github.com/lockcheck/lockcheck/scenarios"
	"github.com/lockcheck/lockcheck/shrink"
)

// shrinkFlags bound a shrink; verify shrink and verify sim -shrink share
// them.
type shrinkFlags struct {
	runs  int
	seeds int
}

func (f *shrinkFlags) register(fs *flag.FlagSet) {
	fs.IntVar(&f.runs, "shrink-runs", 300, "at most this many simulations while shrinking")
	fs.IntVar(&f.seeds, "shrink-seeds", 3, "seeds each smaller candidate is tried on before it is judged not to fail")
}

func (f shrinkFlags) validate() error {
	if f.runs < 2 || f.runs > 100_000 {
		return fmt.Errorf("-shrink-runs %d: want 2..100000", f.runs)
	}
	if f.seeds < 1 || f.seeds > 100 {
		return fmt.Errorf("-shrink-seeds %d: want 1..100", f.seeds)
	}
	return nil
}

func shrinkCommand(args []string, stdout, stderr io.Writer) (int, error) {
	fset := flag.NewFlagSet("shrink", flag.ContinueOnError)
	fset.SetOutput(stderr)
	var sf shrinkFlags
	sf.register(fset)
	quiet := fset.Bool("q", false, "no progress output")
	out := fset.String("out", "", "directory that receives the shrink's directory (default: the run's parent)")
	fset.Usage = func() {
		fmt.Fprint(stderr, `Usage: verify shrink [flags] <run dir>

Reduces a failing simulated run (one that verify sim kept) to a smaller run
that fails the same way: fewer clients, keys, operations and faults, and a
shorter run. Every smaller candidate is simulated again; the fault schedule
is made explicit and delta-debugged fault by fault.

It writes <run dir>-shrunk/ holding shrunk/ (the small run's directory,
report.html included) and shrunk.json (its scenario, fault schedule and
seed: verify run -scenario shrunk.json runs it again, the same way).

A live run (one not simulated) is simulated on its seed first; a race that
live timing found may not occur in simulation, and then there is nothing
to shrink (exit 3).

Example:
  verify sim -locker tus616 -faults pause-holder -ttl 1s -seeds 1-500
  verify shrink results/sim-tus616-…/s17

Exit codes: 1 shrunk (the small run is invalid, as the original), 3 the run
does not fail in simulation or cannot be read.

Flags:
`)
		fset.PrintDefaults()
	}
	runDir, help, err := parseFlagsAndOne(fset, args, "run directory")
	if help || err != nil {
		return exitValid, err
	}
	if err := sf.validate(); err != nil {
		return 0, err
	}
	old := filepath.Clean(runDir)
	spec, err := readRunRecord(old, "give a run directory that verify sim or verify run wrote")
	if err != nil {
		return 0, err
	}
	if !spec.Sim {
		fmt.Fprintf(stdout, "%s was a live run; shrinking its simulation on seed %d\n", old, spec.Seeds[0])
		spec.Sim = true
	}
	if err := spec.Validate(resolveLocker); err != nil {
		return 0, fmt.Errorf("%s: %w", filepath.Join(old, scenarios.RecordFile), err)
	}
	dir := old + "-shrunk"
	if *out != "" {
		dir = filepath.Join(*out, filepath.Base(old)+"-shrunk")
	}
	ctx, stop := interruptible()
	defer stop()
	pool := bubble.Start(1)
	defer pool.Close()
	return runShrink(ctx, spec, spec.Seeds[0], dir, sf, pool, *quiet, stdout, stderr)
}

// runShrink shrinks spec on seed into dir and prints what it found.
func runShrink(ctx context.Context, spec scenarios.Spec, seed uint64, dir string, sf shrinkFlags, pool *bubble.Pool, quiet bool, stdout, stderr io.Writer) (int, error) {
	start := time.Now()
	fmt.Fprintf(stdout, "shrinking %s seed %d into %s (at most %d simulations, %d seeds per candidate)\n", spec.Name, seed, dir, sf.runs, sf.seeds)
	last := time.Time{}
	progress := func(st shrink.Step) {
		if quiet || (!st.Failed && time.Since(last) < 2*time.Second) {
			return
		}
		last = time.Now()
		mark := "  "
		if st.Failed {
			mark = "✓ "
		}
		fmt.Fprintf(stderr, "  %srun %d, %s: %s\n", mark, st.Run, st.Pass, st.Current)
	}
	res, err := shrink.Shrink(ctx, spec, seed, shrink.Options{
		Resolve: resolveLocker, Dir: dir, Runs: sf.runs, Seeds: sf.seeds, Bubbles: pool, Progress: progress,
	})
	if err != nil {
		return 0, err
	}
	fmt.Fprintf(stdout, "shrunk in %d simulations, %v:\n  before: %s\n  after:  %s (seed %d)\n",
		res.Runs, time.Since(start).Round(time.Millisecond), res.Before, res.After, res.Seed)
	if res.Exhausted {
		fmt.Fprintf(stdout, "  (stopped at -shrink-runs %d; more runs might shrink it further)\n", sf.runs)
	}
	for _, c := range res.Run.Report.Checkers {
		if c.Verdict == models.Invalid && len(c.Counterexamples) > 0 {
			fmt.Fprintf(stdout, "counterexample (%s): %s\n", c.Name, c.Counterexamples[0])
			break
		}
	}
	fmt.Fprintf(stdout, "run directory: %s (report.html)\nscenario file: %s\n  run it again: verify run -scenario %s\n",
		res.Run.Dir, res.ScenarioFile, res.ScenarioFile)
	fmt.Fprintf(stdout, "verdict: %s\n", res.Run.Verdict)
	return exitCodeOf(res.Run.Verdict), nil
}
