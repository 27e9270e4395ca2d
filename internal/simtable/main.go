// Command simtable measures how fast simulation (verify sim) and live mode
// (verify run) find the first violation of every regression scenario and
// every planted mutant, and prints the comparison as a Markdown table for
// README.md (make sim-table). It exists so the README's sim-versus-live
// figures come from one repeatable measurement on the machine at hand,
// not from numbers typed in by hand.
//
// It builds ./cmd/verify once into a temporary directory, then runs one
// command at a time (simulations with -parallel 1, so it shares a small
// machine politely), each under a time limit, with -out in a temporary
// directory that it removes at the end. Wall times are measured here,
// around each command, process start included. A row that finds no
// violation within its budget says so ("none in N seeds"); a command that
// fails or times out is shown as an error, with its text under the table.
// Progress goes to stderr, the table to stdout.
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// errTimedOut is the error of a command that ran into its time limit.
var errTimedOut = errors.New("timed out")

// noSimForm is what the sim cells of a regression scenario without a sim
// form say.
const noSimForm = "no sim form"

func main() {
	simSeeds := flag.String("sim-seeds", "1-200", "seeds each verify sim explores (its -seeds)")
	liveSeeds := flag.Int("live-seeds", 5, "live runs per row at most, on seeds 1..N")
	timeout := flag.Duration("timeout", 3*time.Minute, "time limit of each command")
	fuzzBudget := flag.Duration("fuzz", 0, "instead of the sim-versus-live table: random seeds (verify sim) against coverage-guided fuzzing (verify fuzz) for every planted mutant, each search given this much wall time on one core")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	if *fuzzBudget > 0 {
		err = runFuzzTable(ctx, os.Stdout, os.Stderr, *fuzzBudget)
	} else {
		err = run(ctx, os.Stdout, os.Stderr, *simSeeds, *liveSeeds, *timeout)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "simtable:", err)
		stop()
		os.Exit(1)
	}
}

func run(ctx context.Context, stdout, log io.Writer, simSeeds string, liveSeeds int, timeout time.Duration) error {
	began := time.Now()
	if liveSeeds < 1 {
		return fmt.Errorf("-live-seeds %d: want at least 1", liveSeeds)
	}
	h, cleanup, err := newHarness(ctx, log, timeout)
	if err != nil {
		return err
	}
	defer cleanup()

	r := h.run(ctx, "scenarios")
	if r.err != nil || r.code != 0 {
		return fmt.Errorf("verify scenarios: %s", r.failure())
	}
	regressions, hasSim := parseScenarios(r.stdout)
	r = h.run(ctx, "list")
	if r.err != nil || r.code != 0 {
		return fmt.Errorf("verify list: %s", r.failure())
	}
	mutants := parseMutants(r.stdout)
	if len(regressions) == 0 || len(mutants) == 0 {
		return fmt.Errorf("found %d regression scenarios and %d mutants; want some of each", len(regressions), len(mutants))
	}
	fmt.Fprintf(log, "%d regression scenarios (%d with a sim form), %d mutants\n", len(regressions), len(hasSim), len(mutants))

	var rows []row
	for _, name := range regressions {
		rw := row{name: name}
		if hasSim[name] {
			// The scenario itself, explored in simulation from seed 1, is
			// what compares with live mode; its sim form, pinned (and for
			// some shrunk), is what make test runs.
			rw.sim = h.sim(ctx, rw.name, simSeeds, "-scenario", name)
			rw.form = h.sim(ctx, rw.name+"/sim", "", "-scenario", name+"/sim")
		} else {
			rw.noSim = true
		}
		rw.live = h.live(ctx, rw.name, liveSeeds, "-scenario", name)
		rows = append(rows, rw)
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	for _, m := range mutants {
		rw := row{name: m}
		target := append([]string{"-locker", m}, mutantFlags(m)...)
		rw.sim = h.sim(ctx, m, simSeeds, target...)
		rw.live = h.live(ctx, m, liveSeeds, target...)
		rows = append(rows, rw)
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	fmt.Fprint(stdout, markdown(rows, liveSeeds))
	fmt.Fprintf(log, "simtable: %d rows in %v\n", len(rows), time.Since(began).Round(time.Second))
	return nil
}

// mutantFlags are the settings under which a planted mutant's defect can
// show: recovery required (a lock that never lets go is caught by
// liveness alone), the GCS mutants on a one-second lease, and the fault
// and holds that trigger each (its compare column's). The same for
// simulation and live mode.
func mutantFlags(name string) []string {
	flags := []string{"-require-recovery"}
	switch name {
	case "mutant-blind-delete":
		flags = append(flags, "-ttl", "1s", "-faults", "server-lost-reply")
	case "mutant-metageneration-token", "mutant-unlock-keeps":
		flags = append(flags, "-ttl", "1s")
	case "mutant-failed-extend-counts", "mutant-deadline-on-send":
		// The long-fail-fast column: a holder still at work when every
		// request of its own fails at once for longer than its lease.
		flags = append(flags, "-ttl", "1s", "-faults", "fail-fast-holder", "-fault-duration", "3s", "-hold-min", "3s", "-hold-max", "5s")
	case "mutant-blind-extend", "mutant-redis-blind-extend":
		// The deliver-late column: a holder's refreshes land three leases
		// late, on the next holder's lock.
		flags = append(flags, "-ttl", "1s", "-faults", "deliver-late-holder", "-hold-min", "3s", "-hold-max", "5s")
	}
	return flags
}

// moduleRoot is the directory of the go.mod of the working directory.
func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("not inside a Go module: run simtable from the lockcheck module")
	}
	return filepath.Dir(mod), nil
}

// newHarness builds ./cmd/verify into a temporary directory, which
// cleanup removes with every run directory under it.
func newHarness(ctx context.Context, log io.Writer, timeout time.Duration) (h *harness, cleanup func(), err error) {
	root, err := moduleRoot(ctx)
	if err != nil {
		return nil, nil, err
	}
	tmp, err := os.MkdirTemp("", "simtable-")
	if err != nil {
		return nil, nil, err
	}
	cleanup = func() { os.RemoveAll(tmp) }
	h = &harness{root: root, bin: filepath.Join(tmp, "verify"), out: filepath.Join(tmp, "out"), timeout: timeout, log: log}
	fmt.Fprintf(log, "building ./cmd/verify into %s\n", tmp)
	build := exec.CommandContext(ctx, "go", "build", "-o", h.bin, "./cmd/verify")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		cleanup()
		return nil, nil, fmt.Errorf("go build ./cmd/verify: %v\n%s", err, out)
	}
	return h, cleanup, nil
}

// harness runs the built verify binary, in the module's root (verify
// fuzz compiles its target there).
type harness struct {
	root     string
	bin, out string
	timeout  time.Duration
	log      io.Writer
}

// cmdResult is one command's run.
type cmdResult struct {
	stdout, stderr string
	code           int // exit code, -1 when it did not exit by itself
	wall           time.Duration
	err            error // could not start, timed out or interrupted
}

// failure says why a command did not give a usable answer.
func (r cmdResult) failure() string {
	if r.err != nil {
		return r.err.Error()
	}
	msg := fmt.Sprintf("exit %d", r.code)
	if t := lastLine(r.stderr); t != "" {
		msg += ": " + t
	}
	return msg
}

func (h *harness) run(ctx context.Context, args ...string) cmdResult {
	return h.runFor(ctx, h.timeout, args...)
}

// runFor runs the built verify binary for at most limit. At the limit its
// process group gets SIGINT, so verify says what it covered before it
// exits, and SIGKILL 15 s later if it has not.
func (h *harness) runFor(ctx context.Context, limit time.Duration, args ...string) cmdResult {
	cctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	cmd := exec.CommandContext(cctx, h.bin, args...)
	cmd.Dir = h.root
	// Its own process group, so a timeout also ends whatever it started.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGINT)
		go func() {
			time.Sleep(15 * time.Second) // a grace period on the wall clock, not a synchronisation
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		}()
		return nil
	}
	cmd.WaitDelay = 20 * time.Second
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	err := cmd.Run()
	r := cmdResult{wall: time.Since(start), stdout: out.String(), stderr: errb.String(), code: -1}
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil:
		r.err = fmt.Errorf("interrupted: %w", ctx.Err())
	case errors.Is(cctx.Err(), context.DeadlineExceeded):
		r.err = fmt.Errorf("%w after %v", errTimedOut, limit)
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		r.err = err
	default:
		r.code = 0
	}
	return r
}

// simResult is one row's simulation.
type simResult struct {
	simOutcome
	wall time.Duration
	err  string
}

// sim runs verify sim once for a row.
func (h *harness) sim(ctx context.Context, name, seeds string, target ...string) simResult {
	args := []string{"sim", "-q", "-parallel", "1", "-out", h.out}
	if seeds != "" {
		args = append(args, "-seeds", seeds)
	}
	args = append(args, target...)
	r := h.run(ctx, args...)
	s := simResult{wall: r.wall}
	switch {
	case r.err != nil:
		s.err = r.err.Error()
	case r.code == 3 || r.code < 0:
		s.err = r.failure()
	default:
		o, err := parseSim(r.stdout)
		if err != nil {
			s.err = fmt.Sprintf("exit %d: %v", r.code, err)
			break
		}
		s.simOutcome = o
	}
	s.log(h.log, "sim  %-50s", name)
	return s
}

// log writes one line of progress: label (a format for name) and what
// the simulation found.
func (s simResult) log(w io.Writer, label, name string) {
	head := fmt.Sprintf(label, name)
	switch {
	case s.err != "":
		fmt.Fprintf(w, "%s error after %v: %s\n", head, fmtDur(s.wall), s.err)
	case s.found():
		fmt.Fprintf(w, "%s seed %d invalid, %d seeds explored, %v\n", head, s.FailedSeed, s.Explored, fmtDur(s.wall))
	default:
		fmt.Fprintf(w, "%s no violation (%s), %d seeds explored, %v\n", head, s.Verdict, s.Explored, fmtDur(s.wall))
	}
}

// found says the simulation found a violation.
func (s simResult) found() bool { return s.err == "" && s.FailedSeed != 0 && s.Verdict == "invalid" }

// liveResult is one row's live runs.
type liveResult struct {
	seedsRun   int
	failedSeed uint64 // 0: none
	wall       time.Duration
	unknown    []uint64 // seeds whose verdict was unknown
	err        string
}

// live runs verify run on seeds 1, 2, ... until the first invalid verdict.
func (h *harness) live(ctx context.Context, name string, seeds int, target ...string) liveResult {
	var l liveResult
	for s := 1; s <= seeds; s++ {
		args := append([]string{"run", "-q", "-out", h.out}, target...)
		args = append(args, "-seed", strconv.Itoa(s))
		r := h.run(ctx, args...)
		l.seedsRun++
		l.wall += r.wall
		if r.err != nil || r.code == 3 || r.code < 0 {
			l.err = fmt.Sprintf("seed %d: %s", s, r.failure())
			break
		}
		verdict, err := parseRunVerdict(r.stdout)
		if err != nil {
			l.err = fmt.Sprintf("seed %d: exit %d: %v", s, r.code, err)
			break
		}
		fmt.Fprintf(h.log, "live %-50s seed %d %s (exit %d), %v\n", name, s, verdict, r.code, fmtDur(r.wall))
		if r.code == 1 && verdict == "invalid" {
			l.failedSeed = uint64(s)
			break
		}
		if verdict == "unknown" {
			l.unknown = append(l.unknown, uint64(s))
		}
	}
	if l.err != "" {
		fmt.Fprintf(h.log, "live %-50s error: %s\n", name, l.err)
	}
	return l
}

// simOutcome is what verify sim printed.
type simOutcome struct {
	Explored, Total int
	Reported        time.Duration // the wall time verify sim reported for its seeds
	FailedSeed      uint64        // the first seed whose verdict was not valid; 0 when none
	Verdict         string        // that seed's verdict; "valid" when none failed
}

var (
	exploredRE = regexp.MustCompile(`(?m)^explored (\d+) of (\d+) seeds in (\S+):`)
	failedRE   = regexp.MustCompile(`(?m)^first failing seed: (\d+), verdict (\w+)$`)
	allValidRE = regexp.MustCompile(`(?m)^verdict: valid on every seed explored$`)
	verdictRE  = regexp.MustCompile(`(?m)^verdict: (\w+)$`)
)

// parseSim reads verify sim's stdout: how many seeds it explored, in what
// time, and the first failing seed if there was one.
func parseSim(out string) (simOutcome, error) {
	var o simOutcome
	m := exploredRE.FindStringSubmatch(out)
	if m == nil {
		return o, errors.New(`no "explored N of M seeds" line`)
	}
	o.Explored, _ = strconv.Atoi(m[1])
	o.Total, _ = strconv.Atoi(m[2])
	d, err := time.ParseDuration(m[3])
	if err != nil {
		return o, fmt.Errorf("explored line: %w", err)
	}
	o.Reported = d
	if f := failedRE.FindStringSubmatch(out); f != nil {
		seed, err := strconv.ParseUint(f[1], 10, 64)
		if err != nil || seed == 0 {
			return o, fmt.Errorf("first failing seed %q", f[1])
		}
		o.FailedSeed, o.Verdict = seed, f[2]
		return o, nil
	}
	if allValidRE.MatchString(out) {
		o.Verdict = "valid"
		return o, nil
	}
	return o, errors.New("neither a first failing seed nor valid on every seed")
}

// parseRunVerdict reads the verdict on verify run's last "verdict:" line.
func parseRunVerdict(out string) (string, error) {
	all := verdictRE.FindAllStringSubmatch(out, -1)
	if len(all) == 0 {
		return "", errors.New(`no "verdict:" line`)
	}
	return all[len(all)-1][1], nil
}

// parseScenarios reads verify scenarios: the live regression scenarios in
// order, and which of them have a sim form (NAME/sim).
func parseScenarios(out string) (live []string, hasSim map[string]bool) {
	hasSim = map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || !strings.HasPrefix(f[0], "regression/") {
			continue
		}
		if base, ok := strings.CutSuffix(f[0], "/sim"); ok {
			hasSim[base] = true
		} else if !slices.Contains(live, f[0]) {
			live = append(live, f[0])
		}
	}
	for name := range hasSim {
		if !slices.Contains(live, name) {
			delete(hasSim, name)
		}
	}
	return live, hasSim
}

// parseMutants reads verify list: the lockers whose summary says they are
// BROKEN on purpose.
func parseMutants(out string) []string {
	var names []string
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		f := strings.Fields(line)
		if len(f) > 0 && strings.Contains(line, "BROKEN on purpose") && !slices.Contains(names, f[0]) {
			names = append(names, f[0])
		}
	}
	return names
}

// row is one line of the table.
type row struct {
	name  string
	noSim bool
	sim   simResult
	// form is the regression scenario's sim form on its pinned seed.
	form simResult
	live liveResult
}

func markdown(rows []row, liveSeeds int) string {
	var b strings.Builder
	var notes []string
	note := func(what, text string) string {
		notes = append(notes, fmt.Sprintf("%s: %s", what, text))
		return fmt.Sprintf("error (note %d)", len(notes))
	}
	b.WriteString("| row | sim first failing seed | sim seeds explored | sim wall time to first violation | live first failing seed | live seeds explored | live wall time to first violation | sim form on its pinned seed |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|\n")
	var simWalls, liveWalls, formWalls []time.Duration
	for _, r := range rows {
		var sc [3]string
		switch s := r.sim; {
		case r.noSim:
			sc = [3]string{noSimForm, noSimForm, noSimForm}
		case s.err != "":
			e := note(r.name+" (sim)", s.err)
			sc = [3]string{e, "—", fmt.Sprintf("— (%s spent)", fmtDur(s.wall))}
		case s.found():
			sc = [3]string{strconv.FormatUint(s.FailedSeed, 10), strconv.Itoa(s.Explored), fmtDur(s.wall)}
			simWalls = append(simWalls, s.wall)
		case s.FailedSeed != 0: // stopped on an unknown verdict
			sc = [3]string{fmt.Sprintf("none (seed %d %s, where verify sim stops)", s.FailedSeed, s.Verdict), strconv.Itoa(s.Explored),
				fmt.Sprintf("none (%d seeds took %s)", s.Explored, fmtDur(s.wall))}
		default:
			sc = [3]string{fmt.Sprintf("none in %d seeds", s.Explored), strconv.Itoa(s.Explored),
				fmt.Sprintf("none in %d seeds (%s spent)", s.Explored, fmtDur(s.wall))}
		}
		var lc [3]string
		l := r.live
		explored := strconv.Itoa(l.seedsRun)
		if len(l.unknown) > 0 {
			explored += fmt.Sprintf(" (unknown on %s)", joinSeeds(l.unknown))
		}
		switch {
		case l.err != "":
			lc = [3]string{note(r.name+" (live)", l.err), explored, fmt.Sprintf("— (%s spent)", fmtDur(l.wall))}
		case l.failedSeed != 0:
			lc = [3]string{strconv.FormatUint(l.failedSeed, 10), explored, fmtDur(l.wall)}
			liveWalls = append(liveWalls, l.wall)
		default:
			lc = [3]string{fmt.Sprintf("none in %d seeds", l.seedsRun), explored,
				fmt.Sprintf("none in %d seeds (%s spent)", l.seedsRun, fmtDur(l.wall))}
		}
		form := "—"
		switch f := r.form; {
		case r.noSim:
			form = noSimForm
		case !strings.HasPrefix(r.name, "regression/"):
		case f.err != "":
			form = note(r.name+" (sim form)", f.err)
		case f.found():
			form = fmt.Sprintf("seed %d: %s", f.FailedSeed, fmtDur(f.wall))
			formWalls = append(formWalls, f.wall)
		default:
			form = fmt.Sprintf("did not reproduce (%s, %s)", f.Verdict, fmtDur(f.wall))
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s | %s | %s | %s | %s |\n", r.name, sc[0], sc[1], sc[2], lc[0], lc[1], lc[2], form)
	}
	fmt.Fprintf(&b, "| median | | | %s | | | %s | %s |\n", medianCell(simWalls, len(rows)), medianCell(liveWalls, len(rows)), medianCell(formWalls, len(formWalls)))
	if len(notes) > 0 {
		b.WriteString("\n")
		for i, n := range notes {
			fmt.Fprintf(&b, "%d. %s\n", i+1, strings.ReplaceAll(n, "\n", " "))
		}
	}
	return b.String()
}

// medianCell is the median of the rows that found a violation, saying how
// many rows that is.
func medianCell(walls []time.Duration, rows int) string {
	if len(walls) == 0 {
		return fmt.Sprintf("— (no row of %d found a violation)", rows)
	}
	s := slices.Clone(walls)
	slices.Sort(s)
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return fmt.Sprintf("%s (of the %d rows that found one)", fmtDur(m), len(s))
}

func joinSeeds(seeds []uint64) string {
	var parts []string
	for _, s := range seeds {
		parts = append(parts, strconv.FormatUint(s, 10))
	}
	return strings.Join(parts, ",")
}

// fmtDur writes a wall time as the README does: 48 ms, 16.3 s.
func fmtDur(d time.Duration) string {
	if d < time.Second {
		return fmt.Sprintf("%d ms", d.Milliseconds())
	}
	return fmt.Sprintf("%.1f s", d.Seconds())
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}
