package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lockcheck/lockcheck/history"
	"github.com/lockcheck/lockcheck/runner"
)

// TestMain lets the test binary stand in for verify when the harness starts
// it as a worker (-clients-as process runs os.Executable() worker).
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && (os.Args[1] == "worker" || os.Args[1] == simLaneCommand) {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

func verify(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(args, &out, &errb)
	return code, out.String(), errb.String()
}

// runOnce runs a short run and returns its directory.
func runOnce(t *testing.T, args ...string) (dir string, code int, stdout string) {
	t.Helper()
	results := t.TempDir()
	code, stdout, stderr := verify(t, append([]string{"run", "-q", "-out", results, "-duration", "1500ms", "-recovery-timeout", "3s"}, args...)...)
	entries, err := os.ReadDir(results)
	if err != nil || len(entries) != 1 {
		t.Fatalf("want one run directory in %s, got %v (%v)\nstdout:\n%s\nstderr:\n%s", results, entries, err, stdout, stderr)
	}
	return filepath.Join(results, entries[0].Name()), code, stdout
}

func TestRunValidLockerExitsZeroAndWritesEveryArtifact(t *testing.T) {
	t.Parallel()
	// Pauses of 300 ms, 200 ms apart on average: the 1.5 s run has room
	// for one (faults.Room), so the verdict rests on a fault that ran.
	dir, code, stdout := runOnce(t, "-locker", "memory-owner", "-clients", "4", "-keys", "2", "-faults", "pause", "-fault-interval", "200ms", "-fault-duration", "300ms", "-seed", "5")
	if code != exitValid {
		t.Fatalf("exit %d, want 0\n%s", code, stdout)
	}
	for _, f := range []string{"history.jsonl", "result.json", "summary.txt", "history.html"} {
		if st, err := os.Stat(filepath.Join(dir, f)); err != nil || st.Size() == 0 {
			t.Errorf("%s missing or empty: %v", f, err)
		}
	}
	res, err := runner.ReadResult(filepath.Join(dir, "result.json"))
	if err != nil {
		t.Fatal(err)
	}
	if res.Verdict != "valid" || res.Seed != 5 || res.Run.Locker != "memory-owner" || res.Versions["go"] == "" || len(res.Report.Checkers) != 4 {
		t.Errorf("result.json: verdict %q seed %d locker %q versions %v checkers %d", res.Verdict, res.Seed, res.Run.Locker, res.Versions, len(res.Report.Checkers))
	}
	// Every planned fault is accounted for: scheduled, applied.
	if f := res.Report.Faults; f == nil || len(f.Faults) == 0 || !f.Faults[0].Planned || !f.Faults[0].Scheduled || !f.Faults[0].Applied || f.Verdict != "valid" {
		t.Errorf("result.json faults: %+v, want each planned fault scheduled and applied", f)
	}
	if res.Run.FaultMin != history.Duration(300*time.Millisecond) || res.Run.RecoveryTimeout != history.Duration(3*time.Second) {
		t.Errorf("result.json does not state the settings used: %+v", res.Run)
	}
	if !strings.Contains(stdout, "verdict: valid") || !strings.Contains(stdout, "mutual-exclusion") {
		t.Errorf("stdout lacks the verdict table:\n%s", stdout)
	}
}

func TestRunBrokenLockerExitsOneAndCheckReproducesIt(t *testing.T) {
	t.Parallel()
	// Every hold outlasts the mutant's 30 ms lease and one key is
	// contended back to back, so the silent expiry shows; in simulation on
	// a fixed seed, so a catch asserted never hangs on a loaded machine.
	dir, code, stdout := runOnce(t, "-sim", "-seed", "3", "-locker", "mutant-silent-expiry", "-time-scale", "1", "-clients", "4", "-keys", "1", "-rate", "0", "-hold-min", "40ms", "-hold-max", "60ms")
	if code != exitInvalid {
		t.Fatalf("exit %d, want 1\n%s", code, stdout)
	}
	if !strings.Contains(stdout, "first counterexample") {
		t.Errorf("no counterexample printed:\n%s", stdout)
	}
	code, stdout, _ = verify(t, "check", dir)
	if code != exitInvalid || !strings.Contains(stdout, "saved verdict invalid: reproduced") {
		t.Errorf("check: exit %d\n%s", code, stdout)
	}
}

func TestCheckTruncatedHistoryChecksWhatIsThere(t *testing.T) {
	t.Parallel()
	dir, _, _ := runOnce(t, "-locker", "memory-owner", "-clients", "2", "-keys", "1")
	b, err := os.ReadFile(filepath.Join(dir, "history.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	cut := filepath.Join(t.TempDir(), "cut.jsonl")
	if err := os.WriteFile(cut, b[:len(b)-20], 0o644); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := verify(t, "check", cut)
	if code != exitValid {
		t.Fatalf("exit %d\n%s%s", code, stdout, stderr)
	}
	if !strings.Contains(stdout, "was cut off") || !strings.Contains(stdout, "truncated") {
		t.Errorf("truncation not reported:\n%s", stdout)
	}
}

// A run killed at 40% of its duration leaves a history that checks as
// what it is: the verdict line says how much of the run it covers.
func TestCheckOfAKilledRunSaysHowMuchItCovers(t *testing.T) {
	t.Parallel()
	dir, _, _ := runOnce(t, "-locker", "memory-owner", "-clients", "2", "-keys", "1")
	b, err := os.ReadFile(filepath.Join(dir, "history.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	h, err := history.ReadFile(filepath.Join(dir, "history.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	// Keep the header and the events of the first 40% of the run.
	cutAt := int64(h.Header.Run.Duration) * 4 / 10
	lines := strings.SplitAfter(string(b), "\n")
	kept := lines[0]
	for i, e := range h.Events {
		if e.Time > cutAt {
			break
		}
		kept += lines[i+1]
	}
	killed := filepath.Join(t.TempDir(), "killed.jsonl")
	if err := os.WriteFile(killed, []byte(kept), 0o644); err != nil {
		t.Fatal(err)
	}
	// Unknown unless told to judge the part it holds: a valid verdict on
	// 40% of a run is no claim about the rest.
	code, stdout, stderr := verify(t, "check", killed)
	if code != exitUnknown {
		t.Fatalf("exit %d, want 2 for a partial history\n%s%s", code, stdout, stderr)
	}
	if !regexp.MustCompile(`verdict: unknown \(coverage: checked [0-9.]+ s of [0-9.]+ s: the history ends before the run's planned end`).MatchString(stdout) {
		t.Errorf("the verdict line does not say the history is partial:\n%s", stdout)
	}
	code, stdout, stderr = verify(t, "check", "-partial", killed)
	if code != exitValid {
		t.Fatalf("-partial: exit %d\n%s%s", code, stdout, stderr)
	}
	if !regexp.MustCompile(`verdict: valid \(partial history accepted: checked [0-9.]+ s of [0-9.]+ s`).MatchString(stdout) {
		t.Errorf("-partial: the verdict line does not say the history is partial:\n%s", stdout)
	}
}

func TestBadInputExitsThreeSayingWhatToFix(t *testing.T) {
	t.Parallel()
	garbage := filepath.Join(t.TempDir(), "garbage.jsonl")
	os.WriteFile(garbage, []byte("this is not json\n"), 0o644)
	notHistory := filepath.Join(t.TempDir(), "other.json")
	b, _ := json.Marshal(map[string]int{"a": 1})
	os.WriteFile(notHistory, append(b, '\n'), 0o644)
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"check", garbage}, "not a history header"},
		{[]string{"check", notHistory}, "is this a lockcheck history.jsonl"},
		{[]string{"check", filepath.Join(t.TempDir(), "missing")}, "no such file"},
		{[]string{"check"}, "want exactly one"},
		{[]string{"run", "-locker", "nope"}, `unknown locker "nope"; known lockers: memory`},
		{[]string{"run", "-faults", "pause,meteor"}, `unknown fault "meteor"`},
		{[]string{"run", "-clients", "0"}, "-clients 0: want a positive value, or leave -clients out for its default"},
		{[]string{"run", "-clients", "2000"}, "clients must be between 1 and 1024"},
		{[]string{"run", "-duration", "-1s"}, "-duration -1s: want a positive value"},
		{[]string{"run", "-keys", "0"}, "-keys 0: want a positive value"},
		{[]string{"run", "-time-scale", "0"}, "-time-scale 0: want a positive value"},
		{[]string{"run", "-acquire-timeout", "0s"}, "-acquire-timeout 0s: want a positive value"},
		{[]string{"run", "-ttl", "0s"}, "-ttl 0s: want a positive value"},
		{[]string{"run", "extra"}, "unexpected arguments"},
		{[]string{"run", "-no-such-flag"}, "flag provided but not defined"},
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"run", "-workload", "queue"}, `unknown workload "queue"; known workloads: mutex, register`},
		{[]string{"run", "-clients-as", "thread"}, `clients-as must be "goroutine" or "process"`},
		{[]string{"run", "-clients-as", "process", "-locker", "memory"}, "process clients need a backend another process can reach"},
		{[]string{"worker", "extra"}, "unexpected arguments"},
		{[]string{"run", "-worker", "node w.js"}, "-worker: give -backend too"},
		{[]string{"run", "-worker", "node 'w.js", "-backend", "redis"}, "the ' quote is never closed"},
		{[]string{"run", "-worker", "node w.js", "-backend", "etcd"}, `backend: "etcd": an external worker needs the backend`},
		{[]string{"run", "-worker", "node w.js", "-backend", "redis", "-ttl", "1s"}, "ttl: an external worker's lease is unknown"},
		{[]string{"run", "-scenario", "no/such/file.json"}, "scenario file: open no/such/file.json: no such file"},
		{[]string{"suite", "-dir", "no/such/dir"}, "scenario directory: stat no/such/dir: no such file"},
		{[]string{"suite", "quick", "-dir", "x"}, "suite quick and -dir x both given"},
		{nil, "Usage:"},
		{[]string{"help", "run", "sim"}, "want at most one command"},
		{[]string{"sim", "-faults", "bandwidth"}, "bandwidth shapes bytes on a socket, which only a live run has: run it with verify run"},
		{[]string{"sim", "-faults", "slicer,limit-data"}, "slicer shapes bytes on a socket"},
		{[]string{"sim", "-seed", "7"}, "drop -seed, -json and -sim"},
		{[]string{"sim", "-json"}, "drop -seed, -json and -sim"},
		{[]string{"run", "-locker", "redis", "-faults", "server-503"}, "acts on the backend's HTTP front, which locker redis does not have (its backend is not GCS); choose a GCS locker"},
	}
	for _, c := range cases {
		code, stdout, stderr := verify(t, c.args...)
		if code != exitCouldNot {
			t.Errorf("%v: exit %d, want 3", c.args, code)
		}
		if !strings.Contains(stdout+stderr, c.want) {
			t.Errorf("%v: output does not say %q:\n%s%s", c.args, c.want, stdout, stderr)
		}
	}
}

func TestHelpAndListTeach(t *testing.T) {
	t.Parallel()
	// Help of help is the usage, not a loop that overflows the stack.
	for _, args := range [][]string{{"help", "help"}, {"help", "-h"}, {"-h", "-h"}, {"--help", "help"}} {
		if code, stdout, _ := verify(t, args...); code != exitValid || !strings.Contains(stdout, "Usage:") {
			t.Errorf("%v: exit %d, want the usage\n%s", args, code, stdout)
		}
	}
	code, stdout, stderr := verify(t, "help", "run")
	if code != exitValid || !strings.Contains(stderr, "Examples:") || !strings.Contains(stderr, "-faults") {
		t.Errorf("help run: exit %d\n%s%s", code, stdout, stderr)
	}
	code, stdout, _ = verify(t, "list")
	for _, want := range []string{"memory-owner", "mutant-double-grant", "pause", "crash", "mutex"} {
		if code != exitValid || !strings.Contains(stdout, want) {
			t.Errorf("list lacks %q:\n%s", want, stdout)
		}
	}
}

func TestWorkerRefusesAProtocolItDoesNotSpeak(t *testing.T) {
	t.Parallel()
	var out, errb bytes.Buffer
	code, err := workerMain(nil, strings.NewReader(`{"id":0,"op":"hello","protocol":99}`+"\n"), &out, &errb)
	if err != nil || code != exitValid {
		t.Fatalf("worker: exit %d, %v\n%s", code, err, errb.String())
	}
	if !strings.Contains(out.String(), `"id":0`) || !strings.Contains(out.String(), "protocol") || strings.Contains(out.String(), `"ok":true`) {
		t.Fatalf("worker answered a hello of protocol 99 with %s", out.String())
	}
}

func TestRunWithProcessClients(t *testing.T) {
	t.Parallel()
	// A 2 s lease: the watchdog extends it every second. At 500 ms, one
	// clean-clone run of make test had a live holder's extend come a
	// quarter second late on the loaded machine, the key expire under it,
	// and the next client take it (the locker's known exposure to pauses).
	// A crash of the planned client, not one aimed at a holder: whether a
	// holder is found in time depends on the machine's load, and this
	// test asserts only what holds under load. Crashes of 300 ms, 300 ms
	// apart on average, leave the 1.5 s run room for one (faults.Room).
	// A recovery window under two leases: whether each worker process
	// acquires again within it depends on the machine's load (one clean
	// clone under two busy loops had a client miss a 6 s window), so its
	// liveness is reported, not counted, and the exit is safety's. A 4 s
	// run: in 1.5 s, under -race beside a simulation and two busy loops,
	// the worker processes once wrote nothing at all, and a register check
	// that saw no write is unknown.
	dir, code, stdout := runOnce(t, "-locker", "redis", "-ttl", "2s", "-duration", "4s", "-recovery-timeout", "3s", "-clients", "3", "-keys", "1", "-workload", "register",
		"-clients-as", "process", "-faults", "crash", "-fault-interval", "300ms", "-fault-duration", "300ms", "-seed", "1")
	// A killed holder's Redis lease expires; the killed process can
	// write nothing more, so nothing is lost.
	if code != exitValid {
		t.Fatalf("exit %d\n%s", code, stdout)
	}
	// The planned crash ran: its process was killed.
	h, err := history.ReadFile(filepath.Join(dir, "history.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(h.Events, func(e history.Event) bool { return e.F == history.Crash }) {
		t.Fatalf("no client was killed:\n%s", stdout)
	}
	res, err := runner.ReadResult(filepath.Join(dir, "result.json"))
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, c := range res.Report.Checkers {
		names[c.Name] = true
	}
	if res.Run.ClientsAs != "process" || !names["lost-updates"] || !names["register-linearizability"] {
		t.Fatalf("result.json: clients as %q, checkers %v", res.Run.ClientsAs, names)
	}
}

// verify version names the build and the modules a verdict depends on;
// verify list -json is one JSON object scripts can read; help works for
// every command.
func TestVersionListJSONAndHelp(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"version"}, {"-version"}, {"--version"}} {
		code, stdout, _ := verify(t, args...)
		if code != exitValid || !strings.HasPrefix(stdout, "lockcheck ") || !strings.Contains(stdout, "github.com/anishathalye/porcupine v") {
			t.Errorf("%v: exit %d\n%s", args, code, stdout)
		}
	}
	code, stdout, _ := verify(t, "list", "-json")
	var list struct {
		Lockers []struct {
			Name    string
			Fencing bool
		}
		Faults    []struct{ Name string }
		Workloads []struct{ Name string }
	}
	if err := json.Unmarshal([]byte(stdout), &list); code != exitValid || err != nil || len(list.Lockers) < 10 || len(list.Faults) < 10 || len(list.Workloads) != 4 {
		t.Errorf("list -json: exit %d, %v\n%s", code, err, stdout)
	}
	for _, cmd := range []string{"run", "check", "replay", "scenarios", "compare", "sim", "shrink", "suite", "report", "list", "version", "worker"} {
		if code, _, stderr := verify(t, "help", cmd); code != exitValid || !strings.Contains(stderr, "Usage: verify "+cmd) {
			t.Errorf("help %s: exit %d\n%s", cmd, code, stderr)
		}
	}
}
