package models

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/lockcheck/lockcheck/history"
)

func readFixture(t *testing.T, name string) *history.History {
	t.Helper()
	h, err := history.ReadFile(filepath.Join("testdata", name+".jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// Each fixture pins one way a lock keeps or breaks its promise; the good
// and bad files of a pair differ only where the promise is broken. want
// lists words the first counterexample must contain, so that a checker
// that fails for the wrong reason does not pass.
func TestFixtures(t *testing.T) {
	cases := []struct {
		name               string
		mutex, lin, live   Verdict
		mutexWant, linWant []string
	}{
		{name: "double-grant-good", mutex: Valid, lin: Valid, live: Unknown},
		{name: "double-grant-bad", mutex: Invalid, lin: Invalid, live: Unknown,
			mutexWant: []string{"key k0", "client 0 (P0)", "(token 1)", "client 1 (P1)", "(token 2)", "20ms", "30ms"},
			linWant:   []string{"key k0", "P1 acquire k0 → ok token 2", "granted k0 to P1 while P0 held it"}},
		{name: "non-owner-release-good", mutex: Valid, lin: Valid, live: Unknown},
		// The clients never overlapped, so only the model sees it.
		{name: "non-owner-release-bad", mutex: Valid, lin: Invalid, live: Unknown,
			linWant: []string{"P1 release k0 → ok", "P1 released k0, which P0 held"}},
		{name: "indeterminate-overlap-good", mutex: Valid, lin: Valid, live: Unknown},
		{name: "indeterminate-overlap-bad", mutex: Invalid, lin: Invalid, live: Unknown,
			mutexWant: []string{"client 1 (P1) acquired it at 25ms"},
			linWant:   []string{"while P0 held it"}},
		{name: "crash-takeover-good", mutex: Valid, lin: Valid, live: Unknown},
		{name: "crash-takeover-bad", mutex: Invalid, lin: Invalid, live: Unknown,
			mutexWant: []string{"until 20ms (crash)"},
			linWant:   []string{"while P0 held it"}},
		{name: "lost-takeover-good", mutex: Valid, lin: Valid, live: Unknown},
		{name: "lost-takeover-bad", mutex: Invalid, lin: Invalid, live: Unknown,
			mutexWant: []string{"until 35ms (release invoked)"},
			linWant:   []string{"while P0 held it"}},
		{name: "failed-release-good", mutex: Valid, lin: Valid, live: Unknown},
		{name: "failed-release-bad", mutex: Invalid, lin: Invalid, live: Unknown,
			linWant: []string{"while P0 held it"}},
		{name: "liveness-good", mutex: Valid, lin: Valid, live: Valid},
		{name: "liveness-bad", mutex: Valid, lin: Valid, live: Invalid},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, err := Check(readFixture(t, c.name), Options{AcceptPartial: true})
			if err != nil {
				t.Fatal(err)
			}
			if r.Mutex.Verdict != c.mutex || r.Linearizability.Verdict != c.lin || r.Liveness.Verdict != c.live {
				t.Fatalf("verdicts mutex %s, linearizability %s, liveness %s; want %s, %s, %s\n%s",
					r.Mutex.Verdict, r.Linearizability.Verdict, r.Liveness.Verdict, c.mutex, c.lin, c.live, r.Summary())
			}
			if want := c.mutex.Merge(c.lin); r.Verdict != want {
				t.Errorf("overall verdict %s, want %s: liveness must not enter it", r.Verdict, want)
			}
			expectCounterexample(t, "mutual exclusion", c.mutex, r.Checkers[0].Counterexamples, c.mutexWant)
			expectCounterexample(t, "linearizability", c.lin, r.Checkers[1].Counterexamples, c.linWant)
		})
	}
}

func expectCounterexample(t *testing.T, checker string, v Verdict, got, want []string) {
	t.Helper()
	if v != Invalid {
		if len(got) > 0 {
			t.Errorf("%s: %s yet counterexamples %q", checker, v, got)
		}
		return
	}
	if len(got) == 0 {
		t.Fatalf("%s: invalid without a counterexample", checker)
	}
	for _, w := range want {
		if !strings.Contains(got[0], w) {
			t.Errorf("%s counterexample lacks %q:\n%s", checker, w, got[0])
		}
	}
}

func TestLivenessFixtureFigures(t *testing.T) {
	r, err := CheckLiveness(readFixture(t, "liveness-bad"))
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Recovery) != 1 {
		t.Fatalf("%d recovery phases, want 1", len(r.Recovery))
	}
	ph := r.Recovery[0]
	// Client 3 crashed and never came back: it is not expected to acquire.
	if got, want := ph.Live, []int{0, 1, 2}; !equalInts(got, want) {
		t.Errorf("live at recovery %v, want %v", got, want)
	}
	if !equalInts(r.Stuck, []int{1}) {
		t.Errorf("stuck %v, want [1]", r.Stuck)
	}
	// P1's recovery acquire waited from 60ms to its failure at 80ms.
	if r.LongestWait.Milliseconds() != 20 {
		t.Errorf("longest wait %v, want 20ms", r.LongestWait)
	}
	if r.Acquired != 4 || r.LatencyMax.Milliseconds() != 2 {
		t.Errorf("acquired %d with max latency %v, want 4 and 2ms", r.Acquired, r.LatencyMax)
	}

	good, err := CheckLiveness(readFixture(t, "liveness-good"))
	if err != nil {
		t.Fatal(err)
	}
	// The last live client (slot 2, as P4) acquired at 67ms, 17ms after
	// recovery began.
	if got := good.Recovery[0].RecoveredIn.Milliseconds(); got != 17 {
		t.Errorf("recovered in %dms, want 17ms", got)
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
