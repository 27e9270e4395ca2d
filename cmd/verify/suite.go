package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lockcheck/lockcheck/catalog"
	"github.com/lockcheck/lockcheck/internal/suite"
	"github.com/lockcheck/lockcheck/models"
	"github.com/lockcheck/lockcheck/runner"
	"github.com/lockcheck/lockcheck/scenarios"
)

// lookupSuite finds a named suite's scenarios; tests replace it to run a
// suite small enough for them.
var lookupSuite = scenarios.Suite

// execJob runs a job; tests replace it to judge without running.
var execJob = runSuiteJob

func defaultSuiteParallel() int { return max(1, runtime.NumCPU()/2) }

func suiteCommand(args []string, stdout, stderr io.Writer) (int, error) {
	fs := flag.NewFlagSet("suite", flag.ContinueOnError)
	fs.SetOutput(stderr)
	shardFlag := fs.String("shard", "1/1", "run shard i of n (i/n): n machines given 1/n … n/n run every job exactly once between them")
	parallel := fs.Int("parallel", defaultSuiteParallel(), "runs at once (default: half the CPUs, at least 1)")
	out := fs.String("out", "results", "directory that receives the suite's directory, suite-<name>-<time>")
	junit := fs.String("junit", "", "also write the JUnit XML to this file")
	markdown := fs.String("markdown", "", "also write the Markdown summary to this file")
	seedsFlag := fs.String("seeds", "", "comma-separated seeds that replace every scenario's own (default: each scenario's)")
	only := fs.String("only", "", "comma-separated scenario names: run just these of the suite (as make regression/<defect> does)")
	list := fs.Bool("list", false, "print the jobs of this shard and exit without running them")
	asJSON := fs.Bool("json", false, "print results.json on stdout in place of the Markdown summary (what runs goes to stderr)")
	dirFlag := fs.String("dir", "", "run the scenario files in this `directory` (every *.json, each one scenario) instead of a named suite")
	workerFlag := fs.String("worker", "", "run every scenario's clients as this external worker `command` (protocol v1), on -backend")
	backendFlag := fs.String("backend", "", "with -worker: the backend the harness starts for the workers, `gcs`, redis, redis-server or none")
	fs.Usage = func() {
		fmt.Fprintf(stderr, `Usage: verify suite [flags] <%s>
       verify suite [flags] -dir DIR

Runs every scenario of a suite on each of its seeds, judges each run against
the verdict its scenario expects, and writes results/suite-<name>-<time>/:
one run directory per job, junit.xml, summary.md and results.json. A run is
judged on its expectation: a locker known to be unsafe must still be found
unsafe, and finding it safe ("became safe") fails the suite too.

Suites:
  quick       a few short scenarios, minutes: a smoke test before a merge
  nightly     every scenario on several seeds: shard it across machines
  regression  one scenario per pinned defect, each reproducing it
  regression-sim  the same defects in simulation, each on the seed that
              reproduces it in virtual time: the same history every run

Exit status: 0 every run as expected (or a flaky cell, either verdict);
1 a verdict differs from its expectation; 2 none differs, but a verdict is
unknown, a run could not be done, or the suite was interrupted; 3 bad
arguments.

Examples:
  verify suite quick
  verify suite nightly -shard 2/4 -junit junit.xml
  verify suite regression -parallel 2 -markdown summary.md
  verify suite regression -only regression/tus616-pause-stale-delete
  verify suite -dir ci/scenarios -junit junit.xml
  verify suite -dir ci/scenarios -worker 'node workers/node/worker.js' -backend redis

A scenario file is one JSON object with the fields of 'verify scenarios
-json' (unknown fields are errors); every field left out gets verify
run's default, and a file without "expect" expects valid.

Flags:
`, strings.Join(scenarios.Suites, "|"))
		fs.PrintDefaults()
	}
	// The suite's name may come before, between or after the flags; the
	// flag package stops at the first non-flag, so parse around it.
	var name string
	var extra []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return exitValid, nil
			}
			return 0, errUsage
		}
		if fs.NArg() == 0 {
			break
		}
		if name == "" {
			name = fs.Arg(0)
		} else {
			extra = append(extra, fs.Arg(0))
		}
		args = fs.Args()[1:]
	}
	switch {
	case name == "" && *dirFlag == "":
		fs.Usage()
		return 0, fmt.Errorf("name a suite: one of %s, or give -dir with scenario files", strings.Join(scenarios.Suites, ", "))
	case name != "" && *dirFlag != "":
		return 0, fmt.Errorf("suite %s and -dir %s both given; give one", name, *dirFlag)
	}
	if len(extra) > 0 {
		return 0, fmt.Errorf("unexpected arguments %q: name one suite (see verify help suite)", extra)
	}
	shardI, shardN, err := suite.ParseShard(*shardFlag)
	if err != nil {
		return 0, fmt.Errorf("-shard: %w", err)
	}
	if *parallel < 1 || *parallel > 64 {
		return 0, fmt.Errorf("-parallel %d: want 1..64", *parallel)
	}
	var seeds []uint64
	for _, s := range splitList(*seedsFlag) {
		n, err := strconv.ParseUint(s, 10, 63)
		if err != nil || n == 0 {
			return 0, fmt.Errorf("-seeds: %q is not a positive integer", s)
		}
		if slices.Contains(seeds, n) {
			return 0, fmt.Errorf("-seeds: %d is listed twice; each seed runs once per scenario (run the suite again to repeat it)", n)
		}
		seeds = append(seeds, n)
	}
	var specs []scenarios.Spec
	if *dirFlag != "" {
		if specs, err = scenarios.ReadDir(*dirFlag); err != nil {
			return 0, err
		}
		name = filepath.Base(filepath.Clean(*dirFlag))
	} else if specs, err = lookupSuite(name); err != nil {
		return 0, err
	}
	argv, err := workerArgv(*workerFlag, *backendFlag, false)
	if err != nil {
		return 0, err
	}
	if argv != nil {
		for k := range specs {
			specs[k].Worker, specs[k].Backend = argv, *backendFlag
			// The scenario's own locker becomes the worker's name in
			// reports, unless it names a built-in one: an external
			// worker is not that locker.
			if _, err := catalog.Lookup(specs[k].Locker); err == nil || specs[k].Locker == "" {
				specs[k].Locker = scenarios.DefaultWorkerLocker
			}
			specs[k].ClientsAs, specs[k].TTL = "", 0
		}
	}
	if specs, err = onlyScenarios(specs, name, splitList(*only)); err != nil {
		return 0, fmt.Errorf("-only: %w", err)
	}
	for k, s := range specs {
		if len(seeds) > 0 {
			s.Seeds = seeds
		}
		if specs[k], err = s.Normalize(resolveLocker); err != nil {
			return 0, err
		}
	}
	jobs, err := suite.Shard(suite.Expand(specs), shardI, shardN)
	if err != nil {
		return 0, err
	}
	if *list {
		for _, j := range jobs {
			fmt.Fprintf(stdout, "%s\texpect %s\t%v\n", j.Name(), j.Spec.Expect.Verdict, time.Duration(j.Spec.Duration))
		}
		return exitValid, nil
	}

	dirName := "suite-" + name + "-" + time.Now().UTC().Format("20060102-150405.000")
	if shardN > 1 {
		dirName += fmt.Sprintf("-shard%dof%d", shardI, shardN)
	}
	dir := filepath.Join(*out, dirName)
	// Its own directory, never another suite's: two suites started in the
	// same millisecond are refused rather than mixed.
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return 0, fmt.Errorf("-out: %w", err)
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		return 0, fmt.Errorf("suite directory: %w", err)
	}
	jsonStdout := stdout
	if *asJSON {
		stdout = stderr
	}
	fmt.Fprintf(stdout, "suite %s, shard %d/%d: %d runs, %d at a time; results in %s\n", name, shardI, shardN, len(jobs), *parallel, dir)

	ctx, stop := interruptible()
	defer stop()
	results, err := suite.Run(ctx, jobs, suite.Options{
		Parallel: *parallel, OutDir: dir, Exec: execJob,
		Progress: func(done, total int, r suite.Result) {
			fmt.Fprintf(stderr, "[%d/%d] %s: %s, %s, %.1fs\n", done, total, r.Job.Name(), r.Status, r.Detail, r.Outcome.Elapsed.Seconds())
		},
	})
	if err != nil {
		return 0, err
	}
	if err := writeSuiteReports(dir, name, results, *junit, *markdown); err != nil {
		return 0, err
	}
	if *asJSON {
		b, err := os.ReadFile(filepath.Join(dir, "results.json"))
		if err != nil {
			return 0, err
		}
		jsonStdout.Write(b)
	} else if err := suite.WriteMarkdown(stdout, results); err != nil {
		return 0, err
	}
	fmt.Fprintf(stdout, "\nresults in %s (junit.xml, summary.md, results.json)\n", dir)
	if ctx.Err() != nil {
		fmt.Fprintln(stdout, "interrupted: the reports hold the runs that finished; the rest are marked not run")
	}
	return suite.ExitCode(results), nil
}

// onlyScenarios keeps the specs named in names, in the suite's order; a
// name the suite lacks is an error listing what it has.
func onlyScenarios(specs []scenarios.Spec, suiteName string, names []string) ([]scenarios.Spec, error) {
	if len(names) == 0 {
		return specs, nil
	}
	var kept []scenarios.Spec
	var have []string
	for _, s := range specs {
		have = append(have, s.Name)
		if slices.Contains(names, s.Name) {
			kept = append(kept, s)
		}
	}
	for _, n := range names {
		if !slices.Contains(have, n) {
			return nil, fmt.Errorf("suite %s has no scenario %q; it has: %s", suiteName, n, strings.Join(have, ", "))
		}
	}
	return kept, nil
}

// suiteResult is one line of results.json: the job and how it went, for
// tools that want more than JUnit says.
type suiteResult struct {
	Scenario       string         `json:"scenario"`
	Locker         string         `json:"locker"`
	Seed           uint64         `json:"seed"`
	Expect         string         `json:"expect"`
	Verdict        models.Verdict `json:"verdict,omitempty"`
	Status         suite.Status   `json:"status"`
	BecameSafe     bool           `json:"became_safe,omitempty"`
	Detail         string         `json:"detail"`
	Counterexample string         `json:"counterexample,omitempty"`
	Dir            string         `json:"dir,omitempty"`
	Elapsed        time.Duration  `json:"elapsed_ns"`
	// Attempts is how many runs were made (the scenario's attempts);
	// Dir is the last one's.
	Attempts int `json:"attempts,omitempty"`
}

// writeSuiteReports writes junit.xml, summary.md and results.json into
// dir, and the copies asked for by -junit and -markdown.
func writeSuiteReports(dir, name string, results []suite.Result, junit, markdown string) error {
	write := writeRendered
	writeJUnit := func(w io.Writer) error { return suite.WriteJUnit(w, name, results) }
	writeMarkdown := func(w io.Writer) error { return suite.WriteMarkdown(w, results) }
	writeJSON := func(w io.Writer) error {
		var rs []suiteResult
		for _, r := range results {
			rs = append(rs, suiteResult{
				Scenario: r.Job.Spec.Name, Locker: r.Job.Spec.Locker, Seed: r.Job.Seed, Expect: r.Job.Spec.Expect.Verdict,
				Verdict: r.Outcome.Verdict, Status: r.Status, BecameSafe: r.BecameSafe(), Detail: r.Detail,
				Counterexample: r.Outcome.Counterexample, Dir: r.Outcome.Dir, Elapsed: r.Outcome.Elapsed, Attempts: r.Attempts,
			})
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(map[string]any{"suite": name, "exit_status": suite.ExitCode(results), "results": rs})
	}
	files := []struct {
		path   string
		render func(io.Writer) error
	}{
		{filepath.Join(dir, "junit.xml"), writeJUnit},
		{filepath.Join(dir, "summary.md"), writeMarkdown},
		{filepath.Join(dir, "results.json"), writeJSON},
	}
	if junit != "" {
		files = append(files, struct {
			path   string
			render func(io.Writer) error
		}{junit, writeJUnit})
	}
	if markdown != "" {
		files = append(files, struct {
			path   string
			render func(io.Writer) error
		}{markdown, writeMarkdown})
	}
	var errs []error
	for _, f := range files {
		errs = append(errs, write(f.path, f.render))
	}
	return errors.Join(errs...)
}

// runSuiteJob runs one scenario on one seed in dir and checks it as
// verify run does, writing result.json and the report there.
func runSuiteJob(ctx context.Context, j suite.Job, dir string) (suite.Outcome, error) {
	// suite.Run times the job, setup and check included.
	var o suite.Outcome
	res, err := runner.Run(ctx, runner.Job{Spec: j.Spec, Resolve: resolveLocker, Seed: j.Seed, Dir: dir, Worker: workerCommand}, nil)
	if res == nil {
		return o, err
	}
	o = suite.OutcomeOf(res.Report, res.Verdict, res.LivenessCounts())
	o.Dir = res.Dir
	if err != nil {
		return o, err
	}
	if res.Outcome.Interrupted {
		return o, errors.New("interrupted before the run finished")
	}
	return o, nil
}
