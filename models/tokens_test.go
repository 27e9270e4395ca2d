package models

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/lockcheck/lockcheck/history"
)

// The good and bad token fixtures differ only in the second holder's
// token: larger (good), the same (a metageneration used as a token) or
// smaller; a locker that claims no fencing is not judged on its tokens.
func TestTokensFixtures(t *testing.T) {
	for _, c := range []struct {
		name string
		want Verdict // "" means the checker must not run
		says string
	}{
		{"tokens-good", Valid, "all 2 acquisitions with a token carried a token of their own"},
		{"tokens-repeated", Invalid, "key k0: client 1 (P1) acquired it at 33ms with token 1, the token client 0 (P0) had been given at 12ms"},
		{"tokens-decreasing", Invalid, "with token 3 (invoked at 15ms), after client 0 (P0) had acquired it with the larger token 5"},
		{"tokens-unclaimed", "", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			r, err := Check(readFixture(t, c.name), Options{AcceptPartial: true})
			if err != nil {
				t.Fatal(err)
			}
			if c.want == "" {
				if r.Tokens != nil {
					t.Fatalf("a locker claiming no fencing was judged on its tokens: %+v", r.Tokens)
				}
				return
			}
			if r.Tokens == nil || r.Tokens.Verdict != c.want {
				t.Fatalf("tokens %+v, want %s", r.Tokens, c.want)
			}
			text := r.Tokens.Summary + strings.Join(r.Tokens.Counterexamples, " ")
			if !strings.Contains(text, c.says) {
				t.Errorf("does not say %q:\n%s", c.says, text)
			}
			if c.want == Invalid && r.Verdict != Invalid {
				t.Errorf("overall verdict %s: a repeated token is a safety violation", r.Verdict)
			}
			if r.Mutex.Verdict != Valid {
				t.Errorf("mutual exclusion %s: the fixture's holders never overlap, only its tokens are wrong", r.Mutex.Verdict)
			}
		})
	}
}

// A history that stops before its planned end says how much of the run it
// covers; one that reached its recovery phase covers all of it.
func TestCoverageSaysAKilledRunIsPartial(t *testing.T) {
	r, err := Check(readFixture(t, "double-grant-good"), Options{AcceptPartial: true})
	if err != nil {
		t.Fatal(err)
	}
	if !r.Coverage.Partial || !strings.Contains(r.Summary(), "checked 0.1 s of 1.0 s") {
		t.Errorf("a history ending at 52 ms of a 1 s run: coverage %+v, summary:\n%s", r.Coverage, r.Summary())
	}
	r, err = Check(readFixture(t, "liveness-good"), Options{AcceptPartial: true})
	if err != nil {
		t.Fatal(err)
	}
	if r.Coverage.Partial || r.Coverage.Checked != r.Coverage.Planned || strings.Contains(r.Summary(), "checked ") {
		t.Errorf("a history that reached recovery: coverage %+v", r.Coverage)
	}
}

// A run that never granted a lock, or whose faults aimed at holders never
// found one, proves nothing: unknown, never valid.
func TestVacuousRunsAreNotValid(t *testing.T) {
	h := readFixture(t, "double-grant-good")
	var none []history.Event
	for _, e := range h.Events {
		if e.Type != history.OK || e.F != history.Acquire {
			none = append(none, e)
		}
	}
	// The acquires never return: no lock granted.
	h.Events = nil
	for _, e := range none {
		if e.F == history.Acquire {
			h.Events = append(h.Events, e)
		}
	}
	for i := range h.Events {
		h.Events[i].Index = int64(i)
	}
	r, err := Check(h, Options{AcceptPartial: true})
	if err != nil {
		t.Fatal(err)
	}
	if r.Verdict != Unknown || !strings.Contains(r.Summary(), "no lock was ever granted") {
		t.Errorf("a run with no grant: %s\n%s", r.Verdict, r.Summary())
	}
	good, err := Check(readFixture(t, "double-grant-good"), Options{AcceptPartial: true})
	if err != nil {
		t.Fatal(err)
	}
	if good.Verdict != Valid {
		t.Errorf("the fixture with grants: %s, want valid", good.Verdict)
	}
	missed := readFixture(t, "double-grant-good")
	v, _ := json.Marshal(history.Fault{ID: 1, Kind: "pause-holder", Clients: []int{0}})
	missed.Events = append(missed.Events, history.Event{Index: int64(len(missed.Events)), Time: 60_000_000, Process: history.Nemesis, Client: -1, Type: history.Info, F: history.FaultStart, Value: v})
	r, err = Check(missed, Options{AcceptPartial: true})
	if err != nil {
		t.Fatal(err)
	}
	if r.Verdict != Unknown || !strings.Contains(r.Summary(), "none found a client holding a lock") {
		t.Errorf("a holder fault that hit nobody: %s\n%s", r.Verdict, r.Summary())
	}
}
