package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// The scenarios the fuzz table searches: one mix of faults per kind of
// backend, the same for every mutant of that kind and for both searches,
// with the default workload (holds of at most 50 ms) and liveness counted
// only by the lease rule. Neither is any mutant's own column: there, and
// even under these mixes with holds of three leases and recovery
// required, random seeds find every mutant on seed 1. Short holds make a
// holder rarely still at work when its lease is in danger, so each
// defect's window is rare, which is what a search is for.
var (
	fuzzNetworkMix = []string{"-ttl", "1s", "-fault-coverage", "any",
		"-faults", "pause-holder,partition-holder,lost-reply-holder,deliver-late-holder,fail-fast-holder,server-lost-reply"}
	fuzzInProcessMix = []string{"-fault-coverage", "any",
		"-faults", "pause-holder,crash-holder,clock-jump-forward"}
)

// fuzzRow is one mutant's two searches.
type fuzzRow struct {
	name     string
	settings []string
	random   simResult
	fuzz     fuzzResult
}

// fuzzResult is one verify fuzz.
type fuzzResult struct {
	found  bool
	inputs string // the fuzzer's count of inputs run, as it last printed it
	wall   time.Duration
	err    string
}

// runFuzzTable measures, for every planted mutant, random seeds (verify
// sim -parallel 1) against coverage-guided fuzzing (verify fuzz -workers
// 1) on the same scenario, each with budget of wall time, one command at
// a time: the wall time to the first violation, or what each covered.
func runFuzzTable(ctx context.Context, stdout, log io.Writer, budget time.Duration) error {
	began := time.Now()
	h, cleanup, err := newHarness(ctx, log, budget)
	if err != nil {
		return err
	}
	defer cleanup()
	r := h.run(ctx, "list")
	if r.err != nil || r.code != 0 {
		return fmt.Errorf("verify list: %s", r.failure())
	}
	mutants := parseMutants(r.stdout)
	if len(mutants) == 0 {
		return errors.New("verify list shows no planted mutant")
	}
	// The fuzz target's instrumented build is made once here, so that no
	// row's budget pays for it.
	fmt.Fprintln(log, "building the fuzz target (go test -fuzz compiles everything with coverage)")
	if w := h.runFor(ctx, 20*time.Minute, "fuzz", "-q", "-out", h.out, "-locker", "lease", "-fuzztime", "1x"); w.err != nil || w.code != 0 {
		return fmt.Errorf("verify fuzz (warm-up): %s\n%s", w.failure(), tail(w.stdout+w.stderr, 20))
	}
	var rows []fuzzRow
	for _, m := range mutants {
		settings, err := h.fuzzSettings(ctx, m)
		if err != nil {
			return err
		}
		target := append([]string{"-locker", m}, settings...)
		row := fuzzRow{name: m, settings: settings}
		row.random = h.randomSearch(ctx, m, budget, target)
		row.fuzz = h.fuzzSearch(ctx, m, budget, target)
		rows = append(rows, row)
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	fmt.Fprint(stdout, fuzzMarkdown(rows, budget))
	fmt.Fprintf(log, "fuzz table: %d rows in %v\n", len(rows), time.Since(began).Round(time.Second))
	return nil
}

// fuzzSettings picks the network mix for a mutant with a network between
// its clients and its backend, and the in-process mix for one without
// (verify refuses a network fault there).
func (h *harness) fuzzSettings(ctx context.Context, mutant string) ([]string, error) {
	args := append([]string{"sim", "-q", "-out", h.out, "-locker", mutant, "-seeds", "1", "-duration", "1s"}, fuzzNetworkMix...)
	r := h.run(ctx, args...)
	switch {
	case r.err != nil:
		return nil, fmt.Errorf("%s: %s", mutant, r.failure())
	case r.code != 3:
		return fuzzNetworkMix, nil
	case strings.Contains(r.stdout+r.stderr, "does not apply"):
		return fuzzInProcessMix, nil
	}
	return nil, fmt.Errorf("%s: the network mix could not run: %s", mutant, r.failure())
}

// randomSearch runs verify sim from seed 1 until the first violation or
// the budget.
func (h *harness) randomSearch(ctx context.Context, name string, budget time.Duration, target []string) simResult {
	args := append([]string{"sim", "-q", "-parallel", "1", "-out", h.out, "-seeds", "1-1000000"}, target...)
	r := h.runFor(ctx, budget, args...)
	s := simResult{wall: r.wall}
	o, err := parseSim(r.stdout)
	switch {
	case err == nil && r.err == nil:
		s.simOutcome = o
	case errors.Is(r.err, errTimedOut):
		// Stopped at the budget: it says how many seeds it finished,
		// each of them valid, or that one failed just then.
		s.simOutcome, err = parseInterruptedSim(r.stdout)
		if err != nil {
			s.err = fmt.Sprintf("%v: %v", r.err, err)
		}
	case r.err != nil:
		s.err = r.err.Error()
	default:
		s.err = fmt.Sprintf("exit %d: %v", r.code, err)
	}
	s.log(h.log, "random %-30s", name)
	return s
}

var (
	fuzzFoundRE  = regexp.MustCompile(`(?m)^verdict: invalid \(the fuzzer found`)
	fuzzNoneRE   = regexp.MustCompile(`(?m)^no violation found in (?:(\d+) inputs, )?`)
	fuzzInputsRE = regexp.MustCompile(`execs: (\d+)`)
)

// fuzzSearch runs verify fuzz for the budget (with room for the fuzz
// binary's link and the engine's start).
func (h *harness) fuzzSearch(ctx context.Context, name string, budget time.Duration, target []string) fuzzResult {
	args := append([]string{"fuzz", "-out", h.out, "-workers", "1", "-fuzztime", budget.String()}, target...)
	r := h.runFor(ctx, budget+5*time.Minute, args...)
	f := fuzzResult{wall: r.wall}
	if m := fuzzInputsRE.FindAllStringSubmatch(r.stderr, -1); m != nil {
		f.inputs = m[len(m)-1][1]
	}
	switch {
	case r.err != nil:
		f.err = r.err.Error()
	case r.code == 1 && fuzzFoundRE.MatchString(r.stdout):
		f.found = true
	case r.code == 0 && fuzzNoneRE.MatchString(r.stdout):
		if m := fuzzNoneRE.FindStringSubmatch(r.stdout); m[1] != "" {
			f.inputs = m[1]
		}
	default:
		f.err = fmt.Sprintf("%s: %s", r.failure(), lastLine(r.stdout))
	}
	switch {
	case f.err != "":
		fmt.Fprintf(h.log, "fuzz   %-30s error after %v: %s\n", name, fmtDur(f.wall), f.err)
	case f.found:
		fmt.Fprintf(h.log, "fuzz   %-30s invalid input after %v (%s inputs)\n", name, fmtDur(f.wall), f.inputsOr("?"))
	default:
		fmt.Fprintf(h.log, "fuzz   %-30s no violation in %v (%s inputs)\n", name, fmtDur(f.wall), f.inputsOr("?"))
	}
	return f
}

func (f fuzzResult) inputsOr(none string) string {
	if f.inputs == "" {
		return none
	}
	return f.inputs
}

func fuzzMarkdown(rows []fuzzRow, budget time.Duration) string {
	var b strings.Builder
	var notes []string
	note := func(what, text string) string {
		notes = append(notes, fmt.Sprintf("%s: %s", what, text))
		return fmt.Sprintf("error (note %d)", len(notes))
	}
	fmt.Fprintf(&b, "| mutant | faults | random: first failing seed | random: wall time to first violation | fuzz: wall time to first violation | fuzz: inputs run |\n")
	b.WriteString("|---|---|---|---|---|---|\n")
	randomFound, fuzzFound := 0, 0
	for _, r := range rows {
		faults := "network mix"
		if strings.Join(r.settings, " ") == strings.Join(fuzzInProcessMix, " ") {
			faults = "in-process mix"
		}
		var seed, rwall string
		switch s := r.random; {
		case s.err != "":
			seed, rwall = note(r.name+" (random)", s.err), "—"
		case s.found():
			seed, rwall = strconv.FormatUint(s.FailedSeed, 10), fmtDur(s.wall)
			randomFound++
		case s.FailedSeed != 0:
			seed, rwall = fmt.Sprintf("none (seed %d %s, where verify sim stops)", s.FailedSeed, s.Verdict), fmtDur(s.wall)
		default:
			seed, rwall = fmt.Sprintf("none in %d seeds", s.Explored), fmt.Sprintf("none in %s", fmtDur(s.wall))
		}
		var fwall string
		switch f := r.fuzz; {
		case f.err != "":
			fwall = note(r.name+" (fuzz)", f.err)
		case f.found:
			fwall = fmtDur(f.wall)
			fuzzFound++
		default:
			fwall = fmt.Sprintf("none in %s", fmtDur(f.wall))
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s | %s | %s |\n", r.name, faults, seed, rwall, fwall, r.fuzz.inputsOr("—"))
	}
	fmt.Fprintf(&b, "| found | | %d of %d | | %d of %d | |\n", randomFound, len(rows), fuzzFound, len(rows))
	fmt.Fprintf(&b, "\nEach search had %v of wall time on one core (verify sim -parallel 1; verify fuzz -workers 1, whose time includes linking the fuzz binary and the engine's start). Network mix: `%s`. In-process mix: `%s`.\n",
		budget, strings.Join(fuzzNetworkMix, " "), strings.Join(fuzzInProcessMix, " "))
	if len(notes) > 0 {
		b.WriteString("\n")
		for i, n := range notes {
			fmt.Fprintf(&b, "%d. %s\n", i+1, strings.ReplaceAll(n, "\n", " "))
		}
	}
	return b.String()
}

// parseInterruptedSim reads what verify sim printed when the budget
// interrupted it: the seeds it finished, and a failing one if it found one
// just then.
func parseInterruptedSim(out string) (simOutcome, error) {
	if o, err := parseSim(out); err == nil {
		return o, nil
	}
	m := exploredRE.FindStringSubmatch(out)
	if m == nil || !interruptedRE.MatchString(out) {
		return simOutcome{}, errors.New(`no "explored N of M seeds" line and "interrupted" verdict`)
	}
	var o simOutcome
	o.Explored, _ = strconv.Atoi(m[1])
	o.Total, _ = strconv.Atoi(m[2])
	o.Verdict = "valid"
	return o, nil
}

var interruptedRE = regexp.MustCompile(`(?m)^verdict: unknown \(interrupted after \d+ of \d+ seeds, each of them valid`)

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
