package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/lockcheck/lockcheck/harness/history"
	"github.com/lockcheck/lockcheck/internal/report"
	"github.com/lockcheck/lockcheck/models"
)

type checkOptions struct {
	timeout         time.Duration
	requireRecovery bool
}

func checkCommand(args []string, stdout, stderr io.Writer) (int, error) {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o checkOptions
	var write bool
	fs.DurationVar(&o.timeout, "check-timeout", time.Minute, "time limit of the linearizability search; past it the verdict is unknown")
	fs.BoolVar(&o.requireRecovery, "require-recovery", false, "count clients that never acquire in the recovery phase as a failure (exit 1)")
	fs.BoolVar(&write, "write", false, "rewrite result.json, summary.txt, history.html and report.html in the run directory")
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage: verify check [flags] <run dir | history.jsonl>

Re-checks a saved history. Given a run directory, it also compares the
verdict with the one saved in its result.json and says whether it
reproduced. A history whose last line was cut off (a run that died
mid-write) is checked up to that line, and the output says so.

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
	var saved *resultFile
	if dir != "" {
		saved, _ = readResult(filepath.Join(dir, "result.json"))
	}
	writeDir := ""
	if write {
		writeDir = dir
	}
	code, err := checkAndReport(path, writeDir, o, stdout)
	if err == nil && saved != nil {
		now := verdictOfCode(code)
		if now == saved.Verdict {
			fmt.Fprintf(stdout, "saved verdict %s: reproduced\n", saved.Verdict)
		} else {
			fmt.Fprintf(stdout, "saved verdict %s, this check %s: NOT reproduced\n", saved.Verdict, now)
		}
	}
	return code, err
}

// resultFile is result.json: everything a run found, and enough about the
// run to reproduce it.
type resultFile struct {
	Verdict models.Verdict `json:"verdict"`
	// LivenessCounts says whether liveness was part of Verdict
	// (-require-recovery).
	LivenessCounts bool              `json:"liveness_counts"`
	Run            history.RunInfo   `json:"scenario"`
	Seed           uint64            `json:"seed"`
	Start          time.Time         `json:"start"`
	Versions       map[string]string `json:"versions"`
	Checked        time.Time         `json:"checked"`
	Report         *models.Report    `json:"report"`
}

func readResult(path string) (*resultFile, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r resultFile
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &r, nil
}

// checkAndReport checks the history at path, prints the verdict table and
// summary, and, when dir is set, writes result.json, summary.txt and
// history.html and report.html there. The exit code follows the verdict.
func checkAndReport(path, dir string, o checkOptions, stdout io.Writer) (int, error) {
	h, rep, verdict, err := checkHistory(path, o.timeout, o.requireRecovery)
	if err != nil {
		return 0, err
	}
	if h.Truncated {
		fmt.Fprintf(stdout, "note: the last line of %s was cut off (the run died mid-write); checking the %d complete events before it\n", path, len(h.Events))
	}
	fmt.Fprintln(stdout)
	if err := rep.WriteTable(stdout); err != nil {
		return 0, err
	}
	fmt.Fprintf(stdout, "\n%s", rep.Summary())
	if dir != "" {
		if err := writeResults(dir, h, rep, verdict, o); err != nil {
			return 0, err
		}
		fmt.Fprintf(stdout, "results in %s\n", dir)
	}
	fmt.Fprintf(stdout, "verdict: %s\n", verdict)
	return exitCodeOf(verdict), nil
}

// checkHistory reads and checks the history at path. The verdict is the
// safety verdict, merged with liveness when recovery is required: the one
// rule every command that judges a run follows.
func checkHistory(path string, timeout time.Duration, requireRecovery bool) (*history.History, *models.Report, models.Verdict, error) {
	h, err := history.ReadFile(path)
	if err != nil {
		return nil, nil, "", fmt.Errorf("read history: %w", err)
	}
	rep, err := models.Check(h, models.Options{LinearizabilityTimeout: timeout})
	if err != nil {
		return nil, nil, "", fmt.Errorf("check %s: %w", path, err)
	}
	verdict := rep.Verdict
	if requireRecovery && rep.Liveness != nil {
		verdict = verdict.Merge(rep.Liveness.Verdict)
	}
	return h, rep, verdict, nil
}

func writeResults(dir string, h *history.History, rep *models.Report, verdict models.Verdict, o checkOptions) error {
	res := resultFile{
		Verdict: verdict, LivenessCounts: o.requireRecovery,
		Run: h.Header.Run, Seed: h.Header.Run.Seed, Start: h.Header.Start,
		Versions: versions(), Checked: time.Now().UTC(), Report: rep,
	}
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return fmt.Errorf("result.json: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "result.json"), append(b, '\n'), 0o644); err != nil {
		return err
	}
	summary := fmt.Sprintf("run %s: locker %s, seed %d, %d clients, %d keys, %v, faults %v\nverdict: %s\n%s",
		h.Header.Run.ID, h.Header.Run.Locker, h.Header.Run.Seed, h.Header.Run.Clients, h.Header.Run.Keys,
		time.Duration(h.Header.Run.Duration), h.Header.Run.Faults, verdict, rep.Summary())
	if err := os.WriteFile(filepath.Join(dir, "summary.txt"), []byte(summary), 0o644); err != nil {
		return err
	}
	if err := rep.WriteVisualization(filepath.Join(dir, "history.html")); err != nil {
		return fmt.Errorf("history.html: %w", err)
	}
	meta := report.Meta{Verdict: verdict, LivenessCounts: o.requireRecovery, Checked: res.Checked, Versions: res.Versions}
	if err := report.Write(filepath.Join(dir, "report.html"), h, rep, meta); err != nil {
		return fmt.Errorf("report.html: %w", err)
	}
	return nil
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
