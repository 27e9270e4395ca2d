package models

import (
	"testing"
	"time"
)

// Each pair differs only in whether the lock reached the next client.
func TestHandOffsAndHolderCrashes(t *testing.T) {
	ms := time.Millisecond
	cases := []struct {
		name string
		ho   HandOffs
		hc   HolderCrashes
	}{
		{"handoff-good", HandOffs{Spread: Spread{Count: 1, P50: 3 * ms, P99: 3 * ms, Max: 3 * ms}}, HolderCrashes{}},
		{"handoff-missed", HandOffs{Missed: 1}, HolderCrashes{}},
		{"holder-crash-recovered", HandOffs{}, HolderCrashes{Crashes: 1, Spread: Spread{Count: 1, P50: 12 * ms, P99: 12 * ms, Max: 12 * ms}}},
		{"holder-crash-stuck", HandOffs{}, HolderCrashes{Crashes: 1, Never: 1, NeverFor: 40 * ms}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, err := Check(readFixture(t, c.name), Options{AcceptPartial: true})
			if err != nil {
				t.Fatal(err)
			}
			if r.Verdict != Valid {
				t.Errorf("safety verdict %v, want valid: these fixtures only differ in liveness", r.Verdict)
			}
			if got := r.Liveness.HandOffs; got != c.ho {
				t.Errorf("hand-offs %+v, want %+v", got, c.ho)
			}
			if got := r.Liveness.HolderCrashes; got != c.hc {
				t.Errorf("holder crashes %+v, want %+v", got, c.hc)
			}
		})
	}
}
