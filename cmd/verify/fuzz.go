package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/lockcheck/lockcheck/history"
	"github.com/lockcheck/lockcheck/models"
	"github.com/lockcheck/lockcheck/runner"
)

// The fuzz target's package and the environment it reads (fuzz/fuzz_test.go).
const (
	fuzzPackage     = "./fuzz"
	fuzzTarget      = "FuzzSim"
	fuzzScenarioEnv = "LOCKCHECK_FUZZ_SCENARIO"
	fuzzOutEnv      = "LOCKCHECK_FUZZ_OUT"
	lockcheckModule = "github.com/lockcheck/lockcheck"
)

func fuzzCommand(args []string, stdout, stderr io.Writer) (int, error) {
	fs, f := newRunFlags(stderr)
	fuzztime := fs.String("fuzztime", "1m", "how long to search: a `duration` (90s) or a number of inputs (500x), as go test's -fuzztime")
	workers := fs.Int("workers", 1, "fuzzing processes side by side, each simulating one input at a time (go test's -parallel)")
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage: verify fuzz [flags]

Searches a scenario in simulation with Go's coverage-guided fuzzing
(go test -fuzz): each input is a seed and a fault schedule (which fault, on
which client, when, for how long: package fuzz's Schedule), and the fuzzer
keeps the inputs that reach code of the locker, its client library or the
simulated backend that no earlier input reached, and mutates those. Random
seeds (verify sim) draw every schedule from one distribution; the fuzzer can
move a fault a few milliseconds at a time towards a window that only a rare
schedule opens.

It stops at the first input whose run is invalid. That run's directory is
an ordinary run directory, with the schedule in its scenario.json: verify
replay and verify shrink take it as they take a simulated seed's.

The scenario is verify run's flags (or -scenario), in simulation; faults
default to -fault-coverage any, since one input's schedule need not run
every kind. It needs the Go toolchain and lockcheck's source: it runs go
test in the lockcheck module that holds the working directory (the fuzzer
also writes the failing input under fuzz/testdata/fuzz there, as go test
does).

Examples:
  verify fuzz -locker mutant-blind-extend -ttl 1s -faults deliver-late-holder,pause-holder -fuzztime 2m
  verify fuzz -locker fenced -ttl 1s -faults partition,lost-reply,fail-fast-holder -fuzztime 10m -workers 2

Exit codes: 0 no violation found in the time given, 1 an input invalid,
2 interrupted or some inputs unknown (their run directories are kept),
3 bad flags, no lockcheck source here, or go test could not run.

Flags:
`)
		fs.PrintDefaults()
	}
	if help, err := parseFlagsOnly(fs, args); help || err != nil {
		return exitValid, err
	}
	set := flagsSet(fs)
	if *workers < 1 || *workers > 64 {
		return 0, fmt.Errorf("-workers %d: want 1..64", *workers)
	}
	if !regexp.MustCompile(`^([0-9]+x|[0-9.]+(ns|us|µs|ms|s|m|h)([0-9.]+(ns|us|µs|ms|s|m|h))*)$`).MatchString(*fuzztime) {
		return 0, fmt.Errorf("-fuzztime %q: want a duration (90s, 10m) or a count of inputs (500x)", *fuzztime)
	}
	spec, err := simSpec(f, set, "fuzz", "verify fuzz with flags")
	if err != nil {
		return 0, err
	}
	if f.scenario == "" && !set["fault-coverage"] {
		spec.FaultCoverage = history.FaultCoverageAny
	}
	root, err := lockcheckRoot()
	if err != nil {
		return 0, err
	}
	out, err := filepath.Abs(filepath.Join(f.out, "fuzz-"+safeDirName(spec.Locker)+"-"+time.Now().UTC().Format("20060102-150405.000")))
	if err != nil {
		return 0, err
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return 0, fmt.Errorf("-out: %w", err)
	}
	target := filepath.Join(out, "target.json")
	b, err := json.MarshalIndent(spec, "", "  ")
	if err != nil {
		return 0, err
	}
	if err := os.WriteFile(target, append(b, '\n'), 0o644); err != nil {
		return 0, err
	}
	fmt.Fprintf(stdout, "fuzz %s: locker %s, %d clients, %d keys, %v of virtual time per input, faults [%s], for %s, %d worker(s)\n",
		out, spec.Locker, spec.Clients, spec.Keys, time.Duration(spec.Duration), strings.Join(spec.Faults, ","), *fuzztime, *workers)

	ctx, stop := interruptible()
	defer stop()
	start := time.Now()
	goOut, runErr := runGoFuzz(ctx, root, target, out, *fuzztime, *workers, f.quiet, stderr)
	wall := time.Since(start)

	invalid, unknown := fuzzFindings(out)
	for _, dir := range invalid {
		fmt.Fprintf(stdout, "\ninvalid input: %s\n  run directory: %s\n  replay: verify replay %s\n  shrink: verify shrink %s\n", lastVerdictLine(dir), dir, dir, dir)
	}
	for _, dir := range unknown {
		fmt.Fprintf(stdout, "\nunknown input: %s\n  run directory: %s\n", lastVerdictLine(dir), dir)
	}
	execs := ""
	if m := regexp.MustCompile(`execs: (\d+)`).FindAllStringSubmatch(goOut, -1); m != nil {
		execs = m[len(m)-1][1] + " inputs, "
	}
	switch {
	case len(invalid) > 0:
		fmt.Fprintf(stdout, "\nverdict: invalid (the fuzzer found an input that breaks %s after %v)\n", spec.Locker, wall.Round(time.Millisecond))
		return exitInvalid, nil
	case ctx.Err() != nil:
		fmt.Fprintf(stdout, "\nverdict: unknown (interrupted after %v, %sno violation found until then)\n", wall.Round(time.Millisecond), execs)
		return exitUnknown, nil
	case runErr != nil:
		return 0, fmt.Errorf("go test -fuzz: %v\n%s", runErr, tail(goOut, 20))
	case len(unknown) > 0:
		fmt.Fprintf(stdout, "\nverdict: unknown (%d inputs gave no verdict; no violation found in %s%v)\n", len(unknown), execs, wall.Round(time.Millisecond))
		return exitUnknown, nil
	}
	fmt.Fprintf(stdout, "\nno violation found in %s%v of fuzzing (a search that found nothing, not a proof)\n", execs, wall.Round(time.Millisecond))
	return exitValid, nil
}

// lockcheckRoot is the root of the lockcheck module that holds the
// working directory: the fuzz target is compiled from its source.
func lockcheckRoot() (string, error) {
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("verify fuzz needs the Go toolchain (go env GOMOD: %v)", err)
	}
	mod := strings.TrimSpace(string(gomod))
	b, err := os.ReadFile(mod)
	if mod == "" || mod == os.DevNull || err != nil || !regexp.MustCompile(`(?m)^module `+regexp.QuoteMeta(lockcheckModule)+`\s*$`).Match(b) {
		return "", fmt.Errorf("verify fuzz compiles its fuzz target from lockcheck's source: run it inside a checkout of %s (this directory's module: %q)", lockcheckModule, mod)
	}
	return filepath.Dir(mod), nil
}

// runGoFuzz runs the fuzz target on target's scenario, its output on
// stderr as it comes (unless quiet), and returns that output. An
// interruption reaches go test as SIGINT, which ends the search cleanly.
func runGoFuzz(ctx context.Context, root, target, out, fuzztime string, workers int, quiet bool, stderr io.Writer) (string, error) {
	cmd := exec.Command("go", "test", "-vet=off", "-run", "^$", "-fuzz", "^"+fuzzTarget+"$", "-fuzztime", fuzztime,
		"-fuzzminimizetime", "0", "-parallel", fmt.Sprint(workers), fuzzPackage)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), fuzzScenarioEnv+"="+target, fuzzOutEnv+"="+out)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		return "", err
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return "", err
	}
	stopped := make(chan struct{})
	defer close(stopped)
	go func() {
		select {
		case <-ctx.Done():
			syscall.Kill(-cmd.Process.Pid, syscall.SIGINT)
		case <-stopped:
		}
	}()
	var all strings.Builder
	sc := bufio.NewScanner(pipe)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		all.WriteString(line + "\n")
		if !quiet {
			fmt.Fprintln(stderr, line)
		}
	}
	return all.String(), cmd.Wait()
}

// fuzzFindings are the run directories the fuzz target kept under out:
// inputs whose verdict was invalid, and those with no verdict.
func fuzzFindings(out string) (invalid, unknown []string) {
	entries, _ := os.ReadDir(out)
	for _, e := range entries {
		dir := filepath.Join(out, e.Name())
		if !e.IsDir() {
			continue
		}
		res, err := runner.ReadResult(filepath.Join(dir, "result.json"))
		switch {
		case err == nil && res.Verdict == models.Invalid:
			invalid = append(invalid, dir)
		case err == nil && res.Verdict == models.Valid:
		default:
			unknown = append(unknown, dir)
		}
	}
	slices.Sort(invalid)
	slices.Sort(unknown)
	return invalid, unknown
}

// lastVerdictLine is a kept run directory's verdict as its last line
// said it.
func lastVerdictLine(dir string) string {
	res, err := runner.ReadResult(filepath.Join(dir, "result.json"))
	if err != nil || res.Report == nil {
		return "no verdict recorded (the run did not finish)"
	}
	var o runner.CheckOptions
	if counts, _ := runner.LivenessCounts(res.Run, o); res.LivenessCounts && !counts {
		o.RequireRecovery = true // the only other reason liveness counts
	}
	return runner.VerdictLine(res.Verdict, res.Run, res.Report, o)
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
