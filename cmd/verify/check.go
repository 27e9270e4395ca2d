package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/lockcheck/lockcheck/models"
	"github.com/lockcheck/lockcheck/runner"
)

func checkCommand(args []string, stdout, stderr io.Writer) (int, error) {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o runner.CheckOptions
	var write, asJSON bool
	fs.DurationVar(&o.Timeout, "check-timeout", time.Minute, "time limit of the linearizability search; past it the verdict is unknown")
	fs.BoolVar(&o.RequireRecovery, "require-recovery", false, "count clients that never acquire in the recovery phase as a failure (exit 1) whatever the lease; without it liveness counts when the locker has a lease and the recovery window holds two of them")
	fs.BoolVar(&o.AcceptPartial, "partial", false, "judge a history that ends before its run's planned end (a killed or interrupted run) on the part it holds; without it such a history is unknown (exit 2)")
	fs.BoolVar(&write, "write", false, "rewrite result.json, summary.txt, history.html and report.html in the run directory")
	fs.BoolVar(&asJSON, "json", false, "print the verdict and every checker's report as one JSON object, not the table")
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage: verify check [flags] <run dir | history.jsonl>

Re-checks a saved history. Given a run directory, it also compares the
verdict with the one saved in its result.json and says whether it
reproduced. A history whose last line was cut off (a run that died
mid-write) is checked up to that line, and the output says so.

A history that ends before its run's planned end, or that records an
interruption, is unknown (exit 2): its verdict would speak for part of
the run only. -partial judges that part, and the verdict line says so.

Examples:
  verify check results/20261124-101500.000-memory-owner-s7
  verify check -check-timeout 5m path/to/history.jsonl

Flags:
`)
		fs.PrintDefaults()
	}
	path, help, err := parseFlagsAndOne(fs, args, "run directory or history file")
	if help || err != nil {
		return exitValid, err
	}
	dir := ""
	if st, err := os.Stat(path); err != nil {
		return 0, err
	} else if st.IsDir() {
		dir, path = path, filepath.Join(path, "history.jsonl")
	}
	var saved *runner.ResultFile
	if dir != "" {
		saved, _ = runner.ReadResult(filepath.Join(dir, "result.json"))
	}
	writeDir := ""
	if write {
		writeDir = dir
	}
	code, err := checkAndReport(path, writeDir, o, asJSON, stdout)
	if err == nil && saved != nil && !asJSON {
		now := verdictOfCode(code)
		if now == saved.Verdict {
			fmt.Fprintf(stdout, "saved verdict %s: reproduced\n", saved.Verdict)
		} else {
			fmt.Fprintf(stdout, "saved verdict %s, this check %s: NOT reproduced\n", saved.Verdict, now)
		}
	}
	return code, err
}

func writeVerdictJSON(res *runner.Result, w io.Writer) {
	out := struct {
		Dir       string         `json:"dir,omitempty"`
		History   string         `json:"history"`
		Verdict   models.Verdict `json:"verdict"`
		Truncated bool           `json:"truncated"`
		Report    *models.Report `json:"report"`
	}{res.Dir, res.HistoryPath, res.Verdict, res.History.Truncated, res.Report}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(out)
}

// checkAndReport checks the history at path, prints the verdict table and
// summary, and, when dir is set, writes result.json, summary.txt and
// history.html and report.html there. The exit code follows the verdict.
func checkAndReport(path, dir string, o runner.CheckOptions, asJSON bool, stdout io.Writer) (int, error) {
	h, rep, verdict, err := runner.Check(path, o)
	if err != nil {
		return 0, err
	}
	if dir != "" {
		if err := runner.WriteResults(dir, h, rep, verdict, o); err != nil {
			return 0, err
		}
	}
	return printVerdict(&runner.Result{Dir: dir, HistoryPath: path, History: h, Report: rep, Verdict: verdict, Checked: o}, stdout, asJSON), nil
}

// printVerdict prints a checked run: a note on a cut-off history, the
// verdict table, the summary, where the results are, and the verdict
// line; asJSON (-json on run and check) prints one JSON object in its
// place (the verdict, coverage and every checker's report: result.json's
// content), for scripts. It returns the exit code the verdict calls for.
func printVerdict(res *runner.Result, stdout io.Writer, asJSON bool) int {
	if asJSON {
		writeVerdictJSON(res, stdout)
		return exitCodeOf(res.Verdict)
	}
	if res.History.Truncated {
		fmt.Fprintf(stdout, "note: the last line of %s was cut off (the run died mid-write); checking the %d complete events before it\n", res.HistoryPath, len(res.History.Events))
	}
	fmt.Fprintln(stdout)
	res.Report.WriteTable(stdout)
	fmt.Fprintf(stdout, "\n%s", res.Report.Summary())
	if res.Dir != "" {
		fmt.Fprintf(stdout, "results in %s\n", res.Dir)
	}
	fmt.Fprintf(stdout, "verdict: %s\n", runner.VerdictLine(res.Verdict, res.History.Header.Run, res.Report, res.Checked))
	return exitCodeOf(res.Verdict)
}

func exitCodeOf(v models.Verdict) int {
	switch v {
	case models.Valid:
		return exitValid
	case models.Invalid:
		return exitInvalid
	default:
		return exitUnknown
	}
}

func verdictOfCode(code int) models.Verdict {
	switch code {
	case exitValid:
		return models.Valid
	case exitInvalid:
		return models.Invalid
	default:
		return models.Unknown
	}
}
