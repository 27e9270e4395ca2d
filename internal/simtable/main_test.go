package main

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// Outputs as verify printed them (run directories shortened).
const (
	simFailed = `sim /tmp/o/sim-mutant-unlock-any-20261203-163649.277: locker mutant-unlock-any, 8 clients, 2 keys, 10s of virtual time per seed, faults [], 200 seeds, 1 at a time

explored 1 of 200 seeds in 128ms: 7.8 seeds/s, 79x real time (10.187s of virtual time)
first failing seed: 1, verdict invalid
  run directory: /tmp/o/sim-mutant-unlock-any-20261203-163649.277/s1
  replay: verify replay /tmp/o/sim-mutant-unlock-any-20261203-163649.277/s1
verdict: invalid
`
	simNoneFailed = `sim /tmp/o/sim-lease-20261203-163649.854: locker lease, 8 clients, 2 keys, 10s of virtual time per seed, faults [], 3 seeds, 1 at a time

explored 3 of 3 seeds in 310ms: 9.7 seeds/s, 98x real time (30.377s of virtual time)
verdict: valid on every seed explored
`
	simUnknown = `explored 7 of 200 seeds in 1m2.5s: 0.1 seeds/s, 2x real time (2m0s of virtual time)
first failing seed: 7, verdict unknown
  run directory: /tmp/o/sim-fenced/s7
  replay: verify replay /tmp/o/sim-fenced/s7
verdict: unknown
`
	// A seed that could not be simulated: the summary, then the error on stderr.
	simErrored = `explored 1 of 200 seeds in 4ms: 250.0 seeds/s, 0x real time (0s of virtual time)
`
	runInvalid = `run 20261203-163704.149-mutant-silent-expiry-s1
  locker mutant-silent-expiry, 8 clients, 2 keys, 10s, faults [], seed 1

CHECKER           KIND      VERDICT  SUMMARY
mutual-exclusion  safety    invalid  262 of 739 critical sections began while another holder of the same key was inside its own; first: key k0: client 6 (P6…
overall           safety    invalid  

safety: invalid
liveness: valid — all 8 live clients acquired after recovery began at 10.195975485s, the last 12.115398ms later.
results in /tmp/o/20261203-163704.149-mutant-silent-expiry-s1
verdict: invalid
`
)

func TestParseSim(t *testing.T) {
	for _, tc := range []struct {
		name string
		out  string
		want simOutcome
	}{
		{"failed", simFailed, simOutcome{Explored: 1, Total: 200, Reported: 128 * time.Millisecond, FailedSeed: 1, Verdict: "invalid"}},
		{"none failed", simNoneFailed, simOutcome{Explored: 3, Total: 3, Reported: 310 * time.Millisecond, Verdict: "valid"}},
		{"unknown", simUnknown, simOutcome{Explored: 7, Total: 200, Reported: 62500 * time.Millisecond, FailedSeed: 7, Verdict: "unknown"}},
	} {
		got, err := parseSim(tc.out)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if got != tc.want {
			t.Errorf("%s: got %+v, want %+v", tc.name, got, tc.want)
		}
	}
	if _, err := parseSim(simErrored); err == nil {
		t.Error("a summary without a verdict accepted")
	}
	if _, err := parseSim("verify sim: -seeds: bad\n"); err == nil {
		t.Error("output without a summary accepted")
	}
}

func TestParseRunVerdict(t *testing.T) {
	if v, err := parseRunVerdict(runInvalid); err != nil || v != "invalid" {
		t.Errorf("got %q, %v; want invalid", v, err)
	}
	if v, err := parseRunVerdict("run x\nverdict: valid\n"); err != nil || v != "valid" {
		t.Errorf("got %q, %v; want valid", v, err)
	}
	if _, err := parseRunVerdict("history kept in /tmp/x (no verdict: the run could not be judged)\n"); err == nil {
		t.Error("output without a verdict line accepted")
	}
}

func TestParseScenarios(t *testing.T) {
	out := `quick/memory-owner-pause                             valid    1      control
regression/gcslock-crash-never-released               invalid  1      liveness: clients never acquire the crashed holder's key again
regression/redis-pause-frozen-watchdog                invalid  1      mutual exclusion and updates lost
regression/tus616-pause-stale-delete                  invalid  1      mutual exclusion lost: a waiter deletes the paused holder's lock as stale (steps 6 and 3)
regression/gcslock-crash-never-released/sim           invalid  1      liveness: clients never acquire the crashed holder's key again
regression/tus616-pause-stale-delete/sim              invalid  1      mutual exclusion lost
`
	live, hasSim := parseScenarios(out)
	if want := []string{"regression/gcslock-crash-never-released", "regression/redis-pause-frozen-watchdog", "regression/tus616-pause-stale-delete"}; !slices.Equal(live, want) {
		t.Errorf("live %v, want %v", live, want)
	}
	if len(hasSim) != 2 || !hasSim["regression/gcslock-crash-never-released"] || !hasSim["regression/tus616-pause-stale-delete"] || hasSim["regression/redis-pause-frozen-watchdog"] {
		t.Errorf("sim forms %v", hasSim)
	}
}

func TestParseMutants(t *testing.T) {
	out := `LOCKERS                 FENCING  TTL    
  memory-owner          no       none   tus MemoryLocker with an owner check on unlock
  lease                 yes      200ms  correct in-memory TTL lease with refresher, lost signal and owner check: the mutants' control
  mutant-double-grant   yes      200ms  BROKEN on purpose: sometimes grants a held lock
  mutant-unlock-any     yes      30ms   BROKEN on purpose: unlock frees whoever holds the lock

FAULTS (-faults a,b)  ACTS ON    
  pause               clients    freeze one client (lasts 200ms..2s)
`
	if got, want := parseMutants(out), []string{"mutant-double-grant", "mutant-unlock-any"}; !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestParseInterruptedSim(t *testing.T) {
	const interrupted = `sim /tmp/rr/sim-lease-20261207-225859.947: locker lease, 8 clients, 2 keys, 8s of virtual time per seed, faults [], 100000 seeds, 1 at a time

explored 24 of 100000 seeds in 2.689s: 8.9 seeds/s, 73x real time (3m16.089s of virtual time)
interrupted: the seeds above are those that finished
verdict: unknown (interrupted after 24 of 100000 seeds, each of them valid; the rest were not run)
`
	o, err := parseInterruptedSim(interrupted)
	if err != nil || o.Explored != 24 || o.FailedSeed != 0 || o.Verdict != "valid" {
		t.Errorf("interrupted, all valid: %+v, %v", o, err)
	}
	if o, err := parseInterruptedSim(simFailed); err != nil || o.FailedSeed != 1 {
		t.Errorf("a failing seed: %+v, %v", o, err)
	}
	if _, err := parseInterruptedSim(simErrored); err == nil {
		t.Error("a summary with neither a verdict nor an interruption parsed")
	}
}

func TestFuzzMarkdownCountsOnlyFindings(t *testing.T) {
	rows := []fuzzRow{
		{name: "found-both", settings: fuzzNetworkMix, random: simResult{simOutcome: simOutcome{Explored: 3, FailedSeed: 3, Verdict: "invalid"}, wall: 2 * time.Second}, fuzz: fuzzResult{found: true, inputs: "40", wall: 9 * time.Second}},
		{name: "found-neither", settings: fuzzInProcessMix, random: simResult{simOutcome: simOutcome{Explored: 500, Verdict: "valid"}, wall: time.Minute}, fuzz: fuzzResult{inputs: "700", wall: time.Minute}},
		{name: "broke", settings: fuzzNetworkMix, random: simResult{err: "exit 3: boom"}, fuzz: fuzzResult{err: "go test failed"}},
	}
	md := fuzzMarkdown(rows, time.Minute)
	for _, want := range []string{
		"| `found-both` | network mix | 3 | 2.0 s | 9.0 s | 40 |",
		"| `found-neither` | in-process mix | none in 500 seeds | none in 60.0 s | none in 60.0 s | 700 |",
		"| found | | 1 of 3 | | 1 of 3 | |",
		"1. broke (random): exit 3: boom",
		"2. broke (fuzz): go test failed",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("the table lacks %q:\n%s", want, md)
		}
	}
}
