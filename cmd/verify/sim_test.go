package main

import (
	"os"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/lockcheck/lockcheck/models"
	"github.com/lockcheck/lockcheck/scenarios"
)

// verify sim finds a planted bug on an early seed, keeps that seed's run
// directory with its report, and verify replay runs it again with the very
// same history.
func TestSimFindsAPlantedBugAndReplaysItExactly(t *testing.T) {
	// Not parallel: a simulation seeds math/rand's global source, which
	// the other tests' runs draw from too, and its history must be exact.
	out := t.TempDir()
	code, stdout, stderr := verify(t, "sim", "-q", "-out", out, "-locker", "mutant-unlock-any", "-time-scale", "1", "-seeds", "1-50", "-duration", "5s")
	if code != exitInvalid {
		t.Fatalf("exit %d, want 1\n%s\n%s", code, stdout, stderr)
	}
	m := regexp.MustCompile(`first failing seed: (\d+), verdict invalid\n  run directory: (\S+)\n  replay: verify replay (\S+)`).FindStringSubmatch(stdout)
	if m == nil {
		t.Fatalf("no failing seed, run directory and replay command in:\n%s", stdout)
	}
	dir := m[2]
	for _, f := range []string{"history.jsonl", "scenario.json", "result.json", "report.html"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("the failing seed's directory lacks %s: %v", f, err)
		}
	}
	replays := t.TempDir()
	code, stdout, _ = verify(t, "replay", "-q", "-out", replays, dir)
	if code != exitInvalid || !strings.Contains(stdout, "saved invalid: reproduced") {
		t.Fatalf("replay: exit %d\n%s", code, stdout)
	}
	again, _ := filepath.Glob(filepath.Join(replays, "*"))
	if len(again) != 1 {
		t.Fatalf("replay directories %v, want one", again)
	}
	if diff := compareHistories(filepath.Join(dir, "history.jsonl"), filepath.Join(again[0], "history.jsonl")); diff != "" {
		t.Errorf("the replay's history is not the original's: %s", diff)
	}
}

// Every seed run twice gives the same history, byte for byte, for an
// in-process lease and for a GCS lock under network and server faults,
// and the correct locks are valid on every seed. (A Redis locker is not
// asserted deterministic: see TestSimRunsARedisLocker.)
func TestSimIsDeterministic(t *testing.T) {
	// Not parallel: a simulation seeds math/rand's global source, which
	// the other tests' runs draw from too, and its history must be exact.
	for _, args := range [][]string{
		{"-locker", "lease", "-seeds", "1-4", "-duration", "5s"},
		// Room for each of the three faults once: 3 × (1.5 intervals + 500 ms).
		{"-locker", "fenced", "-ttl", "1s", "-faults", "partition,lost-reply,server-503", "-fault-duration", "500ms", "-seeds", "1-2", "-duration", "6s"},
	} {
		code, stdout, stderr := verify(t, append([]string{"sim", "-q", "-out", t.TempDir(), "-determinism", "-all"}, args...)...)
		if code != exitValid {
			t.Errorf("%v: exit %d, want 0\n%s\n%s", args, code, stdout, stderr)
			continue
		}
		if !regexp.MustCompile(`determinism self-check: 0 of \d+ seeds ran twice with a different history`).MatchString(stdout) {
			t.Errorf("%v: a history differed between two runs of a seed:\n%s", args, stdout)
		}
	}
}

// A Redis locker runs valid in simulation under partitions and crashes.
// Its histories are not asserted equal run to run: byte streams get no
// latency of their own in memnet, so a reply can fall at the instant of
// another event. The recorder now writes the events of different clients
// at one instant in one order (a fault-stop and a client's EOF at one
// instant once differed in CI), but two goroutines of one client woken at
// one instant still draw their library's retry jitter in the scheduler's
// order; the determinism self-check reports such a seed.
func TestSimRunsARedisLocker(t *testing.T) {
	t.Parallel()
	code, stdout, stderr := verify(t, "sim", "-q", "-out", t.TempDir(), "-all", "-locker", "redis", "-ttl", "1s", "-faults", "partition,crash", "-fault-duration", "500ms", "-seeds", "1", "-duration", "4s")
	if code != exitValid || !strings.Contains(stdout, "verdict: valid on every seed explored") {
		t.Errorf("exit %d, want 0\n%s\n%s", code, stdout, stderr)
	}
}

// A locker whose waiters poll with no delay (memory: the source's
// setImmediate) keeps virtual time moving in every workload while a paused
// holder works on: before simulated timers had a floor (SimMinWait) the
// waiters' polls at one instant kept the bubble from ever blocking, and
// no seed finished.
func TestSimExploresEveryWorkloadWithAZeroDelayPoller(t *testing.T) {
	t.Parallel()
	for _, workload := range []string{"mutex", "register", "request-release"} {
		code, stdout, stderr := verify(t, "sim", "-q", "-out", t.TempDir(), "-locker", "memory", "-workload", workload, "-faults", "pause-holder", "-seeds", "1-2", "-duration", "3s")
		if code != exitValid || !strings.Contains(stdout, "explored 2 of 2 seeds") {
			t.Errorf("%s: exit %d, want both seeds explored and valid\n%s\n%s", workload, code, stdout, stderr)
		}
	}
}

func TestSimRefusesWhatItCannotSimulate(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"sim", "-seeds", "0-3"}, "-seeds: \"0-3\": want A-B with 1 <= A <= B"},
		{[]string{"sim", "-seeds", "1,1"}, "1 is listed twice"},
		{[]string{"sim", "-worker", "node w.js"}, "verify sim runs goroutine clients on an in-memory backend"},
		{[]string{"sim", "-locker", "fenced", "-clients-as", "process"}, "drop -worker, -clients-as"},
		{[]string{"sim", "-parallel", "0"}, "-parallel 0: want 1..64"},
	} {
		code, stdout, stderr := verify(t, c.args...)
		if code != exitCouldNot || !strings.Contains(stdout+stderr, c.want) {
			t.Errorf("%v: exit %d, output does not say %q:\n%s%s", c.args, code, c.want, stdout, stderr)
		}
	}
}

// verify sim -shrink shrinks the first failing seed into a small run and a
// scenario file; verify shrink does the same from the run directory, and
// verify run -scenario runs the file to the same verdict.
func TestSimShrinksTheFirstFailingSeed(t *testing.T) {
	// Not parallel: a simulation seeds math/rand's global source, which
	// the other tests' runs draw from too, and its history must be exact.
	out := t.TempDir()
	code, stdout, stderr := verify(t, "sim", "-q", "-out", out, "-locker", "mutant-unlock-any", "-time-scale", "1", "-seeds", "1-50", "-duration", "5s", "-shrink", "-shrink-runs", "60")
	if code != exitInvalid {
		t.Fatalf("exit %d, want 1\n%s\n%s", code, stdout, stderr)
	}
	m := regexp.MustCompile(`before: (\d+) clients, .*, (\d+) operations, .*\n  after:  (\d+) clients?, .*, (\d+) operations?, `).FindStringSubmatch(stdout)
	file := regexp.MustCompile(`scenario file: (\S+)`).FindStringSubmatch(stdout)
	if m == nil || file == nil {
		t.Fatalf("no before, after and scenario file in:\n%s", stdout)
	}
	if m[4] >= m[2] && len(m[4]) >= len(m[2]) {
		t.Errorf("operations before %s, after %s: not smaller", m[2], m[4])
	}
	// The file expects invalid; run -scenario judges it as a suite does:
	// the defect found again is a pass.
	code, stdout, stderr = verify(t, "run", "-q", "-out", t.TempDir(), "-scenario", file[1])
	if code != exitValid || !strings.Contains(stdout, "verdict: invalid") || !strings.Contains(stdout, "scenario sim/shrunk: pass (expected invalid, got invalid") {
		t.Errorf("verify run -scenario %s: exit %d\n%s\n%s", file[1], code, stdout, stderr)
	}
	failing := regexp.MustCompile(`  run directory: (\S+)\n  replay`).FindStringSubmatch(stdout)
	_ = failing
	code, _, stderr = verify(t, "shrink", filepath.Join(out, "nope"))
	if code != exitCouldNot || !strings.Contains(stderr, "has no scenario.json") {
		t.Errorf("verify shrink of a missing directory: exit %d\n%s", code, stderr)
	}
}

// verify sim collects garbage less often while it runs, unless GOGC says
// otherwise, and puts the target back when it is done.
func TestSimRelaxesTheGCUnlessGOGCIsSet(t *testing.T) {
	t.Setenv("GOGC", "") // restored after the test
	os.Unsetenv("GOGC")
	previous := debug.SetGCPercent(100)
	defer debug.SetGCPercent(previous)
	restore := relaxGC()
	if got := debug.SetGCPercent(simGCPercent); got != simGCPercent {
		t.Errorf("GOGC unset: target %d, want %d", got, simGCPercent)
	}
	restore()
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("after: target %d, want the previous 100", got)
	}
	t.Setenv("GOGC", "100")
	restore = relaxGC()
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("GOGC=100 set: target %d, want it left at 100", got)
	}
	restore()
}

// A seed's history is the same at any -parallel: more than one lane runs
// each in a process of its own (verify sim-lane), as -parallel 1 runs in
// this one.
func TestSimParallelLanesRepeatTheSerialHistories(t *testing.T) {
	// Not parallel: a simulation seeds math/rand's global source.
	dirs := map[string]string{}
	for _, p := range []string{"1", "2"} {
		out := t.TempDir()
		code, stdout, stderr := verify(t, "sim", "-q", "-keep", "-all", "-out", out, "-locker", "redsync", "-ttl", "1s", "-faults", "partition,lost-reply,reset", "-fault-duration", "500ms", "-duration", "6s", "-seeds", "1-2", "-parallel", p)
		if code != exitValid {
			t.Fatalf("-parallel %s: exit %d\n%s\n%s", p, code, stdout, stderr)
		}
		m := regexp.MustCompile(`sim (\S+): locker`).FindStringSubmatch(stdout)
		if m == nil {
			t.Fatalf("no sim directory in:\n%s", stdout)
		}
		dirs[p] = m[1]
	}
	for _, seed := range []string{"s1", "s2"} {
		if diff := compareHistories(filepath.Join(dirs["1"], seed, "history.jsonl"), filepath.Join(dirs["2"], seed, "history.jsonl")); diff != "" {
			t.Errorf("seed %s at -parallel 2 is not its history at -parallel 1: %s", seed, diff)
		}
	}
}

// The determinism self-check finds two histories of a seed that part, and
// leaves alone two that differ only in their headers (which name their run
// directories).
func TestCompareHistoriesFindsWhereTwoRunsPart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	events := "{\"t\":1,\"op\":\"acquire\"}\n{\"t\":2,\"op\":\"release\"}\n"
	a := write("a.jsonl", "{\"dir\":\"s1\"}\n"+events)
	same := write("same.jsonl", "{\"dir\":\"s1-again\"}\n"+events)
	other := write("other.jsonl", "{\"dir\":\"s1-again\"}\n{\"t\":1,\"op\":\"acquire\"}\n{\"t\":3,\"op\":\"release\"}\n")
	short := write("short.jsonl", "{\"dir\":\"s1-again\"}\n{\"t\":1,\"op\":\"acquire\"}\n")
	if d := compareHistories(a, same); d != "" {
		t.Errorf("histories equal but for their headers: %q, want none", d)
	}
	if d := compareHistories(a, other); !strings.Contains(d, "event line 2 differs") {
		t.Errorf("histories parting at the second event: %q", d)
	}
	if d := compareHistories(a, short); d != "2 events, then 1" {
		t.Errorf("a history cut short: %q", d)
	}
}

// An exploration whose seeds were all valid is a pass only if every seed
// repeated: a seed that gave a different history when run again makes it
// unknown (exit 2), and a failing seed's verdict says a replay may differ.
func TestSimDeterminismMismatchIsNotAPass(t *testing.T) {
	t.Parallel()
	flags := simFlags{determinism: true}
	var repeated, parted strings.Builder
	code, err := summary{explored: 3, total: 3}.print(&repeated, scenarios.Spec{}, flags)
	if err != nil || code != exitValid || !strings.Contains(repeated.String(), "verdict: valid on every seed explored (3 of 3)") {
		t.Errorf("every seed repeated: exit %d, %v\n%s", code, err, repeated.String())
	}
	mismatch := seedResult{seed: 2, mismatch: "event line 7 differs"}
	code, err = summary{explored: 3, total: 3, mismatches: []seedResult{mismatch}}.print(&parted, scenarios.Spec{}, flags)
	last := lastLine(parted.String())
	if err != nil || code != exitUnknown || !strings.HasPrefix(last, "verdict: unknown (determinism self-check: 1 of 3 seeds") {
		t.Errorf("one seed parted: exit %d, %v, last line %q\n%s", code, err, last, parted.String())
	}
	var failedToo strings.Builder
	failed := seedResult{seed: 1, verdict: models.Invalid}
	code, _ = summary{explored: 3, total: 3, failed: &failed, mismatches: []seedResult{mismatch}}.print(&failedToo, scenarios.Spec{}, flags)
	if code != exitInvalid || !strings.Contains(failedToo.String(), "a replay may not show the same") || !strings.HasPrefix(lastLine(failedToo.String()), "verdict: invalid") {
		t.Errorf("a failing seed and one that parted: exit %d\n%s", code, failedToo.String())
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return lines[len(lines)-1]
}
