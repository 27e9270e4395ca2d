package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/lockcheck/lockcheck/history"
	"github.com/lockcheck/lockcheck/internal/report"
	"github.com/lockcheck/lockcheck/runner"
	"github.com/lockcheck/lockcheck/scenarios"
)

// reportDepth bounds how deep below the results directory run directories
// are looked for: runs sit directly in it, and a compare nests each four
// levels down (compare-…/locker/column/seed); a directory tree deeper
// than this is not one verify wrote.
const reportDepth = 16

func reportCommand(args []string, stdout, stderr io.Writer) (int, error) {
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o runner.CheckOptions
	var rebuild bool
	fs.DurationVar(&o.Timeout, "check-timeout", time.Minute, "time limit of the linearizability search when a page has to be rebuilt from its history")
	fs.BoolVar(&rebuild, "rebuild", false, "rebuild every run's report.html, not only the missing ones")
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage: verify report [flags] <results dir>

Writes <results dir>/index.html: every run directory under it (runs of
verify compare and verify suite included) with its locker, workload,
faults, seed, verdict and start time, newest first, each linking to the
run's report.html. A run without a report.html gets one, rebuilt from its
history.jsonl and result.json.

Examples:
  verify report results
  verify report -rebuild results/compare-20261124

Flags:
`)
		fs.PrintDefaults()
	}
	root, help, err := parseFlagsAndOne(fs, args, "results directory")
	if help || err != nil {
		return exitValid, err
	}
	st, err := os.Stat(root)
	if err != nil {
		return 0, fmt.Errorf("results directory: %w; give the directory verify run -out wrote to (default results)", err)
	}
	if !st.IsDir() {
		return 0, fmt.Errorf("%s is a file; give the directory that holds run directories", root)
	}
	dirs, err := findRunDirs(root)
	if err != nil {
		return 0, err
	}
	if len(dirs) == 0 {
		return 0, fmt.Errorf("no run directories under %s (a run directory holds history.jsonl and result.json; make one with verify run -out %s)", root, root)
	}
	var runs []report.Run
	for _, d := range dirs {
		r := indexRun(root, d, rebuild, o)
		if r.Problem != "" {
			fmt.Fprintf(stderr, "%s: %s\n", d, r.Problem)
		}
		runs = append(runs, r)
	}
	index := filepath.Join(root, "index.html")
	title := "lockcheck runs in " + filepath.Base(filepath.Clean(root))
	if err := report.WriteIndex(index, title, runs); err != nil {
		return 0, err
	}
	fmt.Fprintf(stdout, "index of %d runs: %s\n", len(runs), index)
	return exitValid, nil
}

func isRunDir(dir string) bool {
	for _, f := range []string{"history.jsonl", "result.json"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
			return true
		}
	}
	return false
}

// findRunDirs lists run directories under root, root itself included when
// it is one, without descending into a run.
func findRunDirs(root string) ([]string, error) {
	var out []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("read %s: %w", path, err)
		}
		if !d.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(root, path)
		depth := 0
		if rel != "." {
			depth = strings.Count(filepath.ToSlash(rel), "/") + 1
			if strings.HasPrefix(d.Name(), ".") {
				return fs.SkipDir
			}
		}
		if isRunDir(path) {
			out = append(out, path)
			return fs.SkipDir
		}
		if depth >= reportDepth {
			return fs.SkipDir
		}
		return nil
	})
	return out, err
}

// indexRun reads one run directory for the index, building its page when
// it has none (or rebuild is set).
func indexRun(root, dir string, rebuild bool, o runner.CheckOptions) report.Run {
	rel, _ := filepath.Rel(root, dir)
	r := report.Run{Dir: filepath.ToSlash(rel), ID: filepath.Base(dir)}
	saved, err := runner.ReadResult(filepath.Join(dir, "result.json"))
	if err != nil {
		r.Problem = fmt.Sprintf("no readable result.json (%v)", err)
	} else {
		r.ID, r.Locker, r.Workload, r.Faults = saved.Run.ID, saved.Run.Locker, saved.Run.Workload, saved.Run.Faults
		r.Seed, r.Verdict, r.Start = saved.Seed, saved.Verdict, saved.Start
	}
	if b, err := os.ReadFile(filepath.Join(dir, "scenario.json")); err == nil {
		var spec scenarios.Spec
		if json.Unmarshal(b, &spec) == nil {
			r.Scenario, r.Expect = spec.Name, spec.Expect.Verdict
		}
	}
	page := filepath.Join(dir, "report.html")
	if _, err := os.Stat(page); err != nil || rebuild {
		if err := rebuildPage(dir, page, saved, o); err != nil {
			r.Problem = strings.TrimPrefix(r.Problem+"; ", "; ") + "no report.html: " + err.Error()
		}
	}
	if _, err := os.Stat(page); err == nil {
		r.Report = filepath.ToSlash(filepath.Join(rel, "report.html"))
	}
	if saved == nil {
		if h, err := history.ReadFile(filepath.Join(dir, "history.jsonl")); err == nil {
			run := h.Header.Run
			r.ID, r.Locker, r.Workload, r.Faults, r.Seed, r.Start = run.ID, run.Locker, run.Workload, run.Faults, run.Seed, h.Header.Start
		}
	}
	return r
}

// rebuildPage re-checks a run's history to draw its page: result.json keeps
// the verdicts but not the search that porcupine draws.
func rebuildPage(dir, page string, saved *runner.ResultFile, o runner.CheckOptions) error {
	h, rep, now, err := runner.Check(filepath.Join(dir, "history.jsonl"), runner.CheckOptions{Timeout: o.Timeout, RequireRecovery: saved != nil && saved.LivenessCounts})
	if err != nil {
		return err
	}
	meta := report.Meta{Note: "Page rebuilt by verify report from history.jsonl."}
	if saved != nil {
		meta.Verdict, meta.LivenessCounts, meta.Checked, meta.Versions = saved.Verdict, saved.LivenessCounts, saved.Checked, saved.Versions
		if now != saved.Verdict {
			meta.Note += fmt.Sprintf(" The saved verdict is %s; the re-check for this page found %s.", saved.Verdict, now)
		}
	}
	return report.Write(page, h, rep, meta)
}
