package models

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/lockcheck/lockcheck/history"
)

// withFaults is the double-grant-good fixture (a correct hand-over) with
// the given faults requested in its header, events appended around its
// calls, and a recovery phase so that it covers its whole run.
func withFaults(t *testing.T, requested []string, events ...history.Event) *history.History {
	t.Helper()
	h := readFixture(t, "double-grant-good")
	h.Header.Run.Faults = requested
	h.Events = append(h.Events, events...)
	h.Events = append(h.Events, history.Event{Time: 60_000_000, Process: history.Nemesis, Client: -1, Type: history.Info, F: history.Recovery})
	for i := range h.Events {
		h.Events[i].Index = int64(i)
	}
	return h
}

func nemesisAt(t *testing.T, ns int64, f string, v any) history.Event {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return history.Event{Time: ns, Process: history.Nemesis, Client: -1, Type: history.Info, F: f, Value: b}
}

// Paired cases: a run whose fault ran where it was aimed is judged on its
// calls; every way a requested fault can fail to run makes it unknown,
// with the reason, never valid.
func TestFaultsThatDidNotRunAreNotAPass(t *testing.T) {
	pause := history.Fault{ID: 1, Kind: "pause-holder", Clients: []int{0}, At: history.Duration(20_000_000), Duration: history.Duration(5_000_000), Aimed: true}
	hit := pause
	hit.AtHolder = true
	failed := hit
	failed.Error = "process group 42 had threads still running"
	plan := pause
	cases := []struct {
		name      string
		requested []string
		events    []history.Event
		want      Verdict
		why       string
	}{
		{"ran at a holder", []string{"pause-holder"}, []history.Event{
			nemesisAt(t, 1, history.FaultPlan, plan),
			nemesisAt(t, 20_000_000, history.FaultStart, hit),
			nemesisAt(t, 25_000_000, history.FaultStop, pause),
		}, Valid, "1 of 1 fault kinds ran"},
		{"never scheduled", []string{"pause-holder"}, nil, Unknown, "pause-holder never ran: the schedule held none"},
		{"planned, not reached", []string{"pause-holder"}, []history.Event{
			nemesisAt(t, 1, history.FaultPlan, history.Fault{ID: 1, Kind: "pause-holder", Clients: []int{0}, At: history.Duration(900_000_000), Duration: history.Duration(50_000_000), Aimed: true}),
		}, Unknown, "1 was planned, and the history ends at 60ms, before the first one's start at 900ms"},
		{"injection failed", []string{"pause-holder"}, []history.Event{
			nemesisAt(t, 1, history.FaultPlan, plan),
			nemesisAt(t, 20_000_000, history.FaultStart, hit),
			nemesisAt(t, 20_000_001, history.FaultFailed, failed),
			nemesisAt(t, 25_000_000, history.FaultStop, pause),
		}, Unknown, "fault 1 (pause-holder) failed to start: process group 42"},
		{"found no holder", []string{"pause-holder"}, []history.Event{
			nemesisAt(t, 1, history.FaultPlan, plan),
			nemesisAt(t, 20_000_000, history.FaultStart, pause),
			nemesisAt(t, 25_000_000, history.FaultStop, pause),
		}, Unknown, "none found a client holding a lock"},
		{"one kind of two ran", []string{"pause-holder", "crash"}, []history.Event{
			nemesisAt(t, 1, history.FaultPlan, plan),
			nemesisAt(t, 20_000_000, history.FaultStart, hit),
			nemesisAt(t, 25_000_000, history.FaultStop, pause),
		}, Unknown, "crash never ran"},
		{"one kind of two ran, coverage any", []string{"pause-holder", "crash", history.FaultCoverageAny}, []history.Event{
			nemesisAt(t, 1, history.FaultPlan, plan),
			nemesisAt(t, 20_000_000, history.FaultStart, hit),
			nemesisAt(t, 25_000_000, history.FaultStop, pause),
		}, Valid, "1 of 2 fault kinds ran (pause-holder 1 planned, 1 started, 1 applied, 1 at a holder; crash 0 planned, 0 started, 0 applied); coverage any: crash never ran"},
		{"none ran, coverage any", []string{"pause-holder", "crash", history.FaultCoverageAny}, nil, Unknown, "no fault ran: pause-holder never ran"},
		{"injection failed, coverage any", []string{"pause-holder", "crash", history.FaultCoverageAny}, []history.Event{
			nemesisAt(t, 1, history.FaultPlan, plan),
			nemesisAt(t, 20_000_000, history.FaultStart, hit),
			nemesisAt(t, 20_000_001, history.FaultFailed, failed),
			nemesisAt(t, 25_000_000, history.FaultStop, pause),
		}, Unknown, "fault 1 (pause-holder) failed to start"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			requested := c.requested
			coverage := ""
			if n := len(requested); n > 0 && requested[n-1] == history.FaultCoverageAny {
				requested, coverage = requested[:n-1], history.FaultCoverageAny
			}
			h := withFaults(t, requested, c.events...)
			h.Header.Run.FaultCoverage = coverage
			r, err := Check(h, Options{})
			if err != nil {
				t.Fatal(err)
			}
			if r.Verdict != c.want || r.Faults == nil || r.Faults.Verdict != c.want || !strings.Contains(r.Faults.Summary, c.why) {
				t.Fatalf("verdict %s, want %s with %q\n%s", r.Verdict, c.want, c.why, r.Summary())
			}
			if c.want == Unknown && !strings.Contains(r.Summary(), "faults: unknown") {
				t.Errorf("the summary does not name the fault check as the cause:\n%s", r.Summary())
			}
		})
	}
	t.Run("records each planned fault", func(t *testing.T) {
		r, err := Check(withFaults(t, []string{"pause-holder"}, cases[4].events...), Options{})
		if err != nil {
			t.Fatal(err)
		}
		got := r.Faults.Faults
		if len(got) != 1 || !got[0].Planned || !got[0].Scheduled || !got[0].Applied || got[0].HitHolder || !got[0].Aimed {
			t.Errorf("faults = %+v, want one planned, scheduled, applied, aimed fault that hit no holder", got)
		}
		if !r.Faults.NoneRan() {
			t.Error("NoneRan = false for a run whose only fault missed every holder")
		}
	})
}

// A history that ends before its planned end is unknown unless a partial
// history is accepted; then it is judged on what it holds.
func TestPartialHistoryIsUnknownUnlessAccepted(t *testing.T) {
	h := readFixture(t, "double-grant-good") // 52 ms of a 1 s run, no recovery
	r, err := Check(h, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if r.Verdict != Unknown || !strings.Contains(r.Summary(), "coverage: unknown — checked 0.1 s of 1.0 s") {
		t.Errorf("a partial history: %s\n%s", r.Verdict, r.Summary())
	}
	r, err = Check(h, Options{AcceptPartial: true})
	if err != nil {
		t.Fatal(err)
	}
	if r.Verdict != Valid {
		t.Errorf("a partial history, accepted: %s, want valid\n%s", r.Verdict, r.Summary())
	}
	whole := withFaults(t, nil)
	if r, err = Check(whole, Options{}); err != nil || r.Verdict != Valid {
		t.Errorf("the same calls with a recovery phase: %v, %v; want valid", r.Verdict, err)
	}
	// Interrupted in its recovery phase: every workload second is there,
	// and still the run is not whole.
	cut := withFaults(t, nil)
	cut.Events = append(cut.Events, nemesisAt(t, 70_000_000, history.Interrupted, nil))
	cut.Events[len(cut.Events)-1].Index = int64(len(cut.Events) - 1)
	if r, err = Check(cut, Options{}); err != nil || r.Verdict != Unknown || !strings.Contains(r.Summary(), "interrupted in its recovery phase") {
		t.Errorf("a run interrupted in recovery: %v, %v; want unknown saying so\n%s", r.Verdict, err, r.Summary())
	}
}
