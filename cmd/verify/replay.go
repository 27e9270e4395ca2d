package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"

	"github.com/lockcheck/lockcheck/models"
	"github.com/lockcheck/lockcheck/runner"
	"github.com/lockcheck/lockcheck/scenarios"
)

func replayCommand(args []string, stdout, stderr io.Writer) (int, error) {
	fset := flag.NewFlagSet("replay", flag.ContinueOnError)
	fset.SetOutput(stderr)
	out := fset.String("out", "", "directory that receives the new run's directory (default: the old run's parent)")
	quiet := fset.Bool("q", false, "no progress output")
	fset.Usage = func() {
		fmt.Fprint(stderr, `Usage: verify replay [flags] <run dir>

Runs again what a run directory recorded in scenario.json (the scenario and
its seed: the same workload choices and fault schedule), into a new run
directory, checks it, and says whether the verdict saved in the old
result.json was reproduced. Seeds fix the schedule, not the timing: a race
may go the other way.

Exit codes: the new run's verdict (0 valid, 1 invalid, 2 unknown), or 3
when the directory has no scenario.json or the run cannot start.

Flags:
`)
		fset.PrintDefaults()
	}
	runDir, help, err := parseFlagsAndOne(fset, args, "run directory")
	if help || err != nil {
		return exitValid, err
	}
	old := filepath.Clean(runDir)
	spec, err := readRunRecord(old, "it was made before runs recorded their scenario, or is not a run directory; re-run it with verify run and the flags in its result.json")
	if err != nil {
		return 0, err
	}
	if err := spec.Validate(resolveLocker); err != nil {
		return 0, fmt.Errorf("%s: %w", filepath.Join(old, scenarios.RecordFile), err)
	}
	saved := models.Unknown
	haveSaved := false
	if res, err := runner.ReadResult(filepath.Join(old, "result.json")); err == nil {
		saved, haveSaved = res.Verdict, true
	}
	dir := *out
	if dir == "" {
		dir = filepath.Dir(old)
	}
	ctx, stop := interruptible()
	defer stop()
	code, newRes, err := runSpec(ctx, spec, spec.Seeds[0], dir, *quiet, false, stdout, stderr)
	if newRes == nil {
		return code, err
	}
	newDir := newRes.Dir
	now := verdictOfCode(code)
	if err != nil {
		now = models.Unknown
	}
	switch {
	case !haveSaved:
		fmt.Fprintf(stdout, "replayed %s as %s: verdict %s, no saved verdict (no readable result.json)\n", old, newDir, now)
	case now == saved:
		fmt.Fprintf(stdout, "replayed %s as %s: verdict %s, saved %s: reproduced\n", old, newDir, now, saved)
	default:
		fmt.Fprintf(stdout, "replayed %s as %s: did not reproduce (saved %s, now %s)\n", old, newDir, saved, now)
	}
	return code, err
}

// readRunRecord reads the scenario a run directory recorded, which names
// the one seed it used; missing says what to do when there is none.
func readRunRecord(dir, missing string) (scenarios.Spec, error) {
	spec, err := scenarios.ReadRecord(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return spec, fmt.Errorf("%s has no %s: %s", dir, scenarios.RecordFile, missing)
	}
	if err != nil {
		return spec, err
	}
	if len(spec.Seeds) != 1 {
		return spec, fmt.Errorf("%s: seeds %v: a run records the one seed it used", filepath.Join(dir, scenarios.RecordFile), spec.Seeds)
	}
	return spec, nil
}
