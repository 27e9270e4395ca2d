package models

import (
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/lockcheck/lockcheck/history"
)

// checker finds a checker's line in a report, or fails the test.
func checker(t *testing.T, r *Report, name string) CheckerResult {
	t.Helper()
	for _, c := range r.Checkers {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no %s line in the report:\n%s", name, r.Summary())
	return CheckerResult{}
}

func hasChecker(r *Report, name string) bool {
	for _, c := range r.Checkers {
		if c.Name == name {
			return true
		}
	}
	return false
}

func wantWords(t *testing.T, what, got string, want []string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Errorf("%s lacks %q:\n%s", what, w, got)
		}
	}
}

// The data-level fixtures, each with the verdict of every data checker that
// applies and what its first counterexample must say.
func TestRegisterFixtures(t *testing.T) {
	cases := []struct {
		name                  string
		lost, lin, fence      Verdict // fence "" when the checker must be absent
		overall               Verdict
		lostWant, linWant     []string
		fenceWant             []string
		acked, unknown, final int
		lostCount             int64
	}{
		// The third section's write has an unknown outcome and took
		// effect: 2 acknowledged, 1 unknown, final 3.
		{name: "register-good", lost: Valid, lin: Valid, overall: Valid, acked: 2, unknown: 1, final: 3},
		{name: "register-final-missing", lost: Unknown, lin: Valid, overall: Unknown, acked: 2, unknown: 1, final: 0},
		{name: "register-lost-update", lost: Invalid, lin: Invalid, overall: Invalid, acked: 2, final: 1, lostCount: 1,
			lostWant: []string{"key k0", "ends at 1", "2 writes were acknowledged", "at least 1",
				"client 0 (P0, token 1) read 0 at 14ms and its write of 1 was acknowledged at 20ms",
				"client 1 (P1, token 2) read the same 0 at 18ms and its write of 1 was acknowledged at 22ms"},
			linWant: []string{"key k0", "no serial order", "client 1 (P1, token 2) read 0 and wrote 1",
				"client 0 (P0, token 1) read 0 and wrote 1", "leaving the register at 1"}},
		// Mutual exclusion fails, and the fenced store saves the data.
		{name: "fenced-register-good", lost: Valid, lin: Valid, fence: Valid, overall: Invalid, acked: 1, final: 1},
		{name: "fenced-register-stale-accepted", lost: Invalid, lin: Invalid, fence: Invalid, overall: Invalid,
			acked: 2, final: 1, lostCount: 1,
			lostWant: []string{"client 1 (P1, token 2) read 0 at 22ms", "client 0 (P0, token 1) read the same 0 at 14ms",
				"acknowledged at 27ms"},
			linWant: []string{"client 0 (P0, token 1) read 0 and wrote 1 [13ms, 27ms]"},
			fenceWant: []string{"key k0", "client 0 (P0, token 1) wrote 1 with token 1, invoked at 26ms and acknowledged at 27ms",
				"client 1 (P1, token 2)'s read with the higher token 2 had returned ok at 22ms"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, err := Check(readFixture(t, c.name), Options{AcceptPartial: true})
			if err != nil {
				t.Fatal(err)
			}
			lost, lin := checker(t, r, LostUpdatesName), checker(t, r, RegisterLinearizabilityName)
			if lost.Verdict != c.lost || lin.Verdict != c.lin || r.LostUpdates.Verdict != c.lost ||
				r.RegisterLinearizability.Verdict != c.lin {
				t.Fatalf("lost updates %s, register linearizability %s; want %s, %s\n%s", lost.Verdict, lin.Verdict, c.lost, c.lin, r.Summary())
			}
			if r.Verdict != c.overall {
				t.Errorf("overall verdict %s, want %s\n%s", r.Verdict, c.overall, r.Summary())
			}
			if c.fence == "" {
				if hasChecker(r, FencingName) || r.Fencing != nil {
					t.Errorf("fencing checked on a %s history", r.Verdict)
				}
			} else if f := checker(t, r, FencingName); f.Verdict != c.fence {
				t.Errorf("fencing %s, want %s: %s", f.Verdict, c.fence, f.Summary)
			} else {
				expectCounterexample(t, "fencing", c.fence, f.Counterexamples, c.fenceWant)
			}
			expectCounterexample(t, "lost updates", c.lost, lost.Counterexamples, c.lostWant)
			expectCounterexample(t, "register linearizability", c.lin, lin.Counterexamples, c.linWant)
			k := r.LostUpdates.Keys[0]
			if k.Acknowledged != c.acked || k.Unknown != c.unknown || k.Final != int64(c.final) || k.Lost != c.lostCount {
				t.Errorf("key tally %+v; want %d acknowledged, %d unknown, final %d, %d lost", k, c.acked, c.unknown, c.final, c.lostCount)
			}
			if !strings.Contains(r.Summary(), "  "+LostUpdatesName+": "+string(c.lost)) {
				t.Errorf("summary lacks the lost-update line:\n%s", r.Summary())
			}
		})
	}
}

func TestRegisterFinalMissingSaysWhy(t *testing.T) {
	r, err := Check(readFixture(t, "register-final-missing"), Options{AcceptPartial: true})
	if err != nil {
		t.Fatal(err)
	}
	wantWords(t, "lost-update summary", r.LostUpdates.Summary, []string{"key k0", "no final value", "interrupted"})
}

func TestFencingCounts(t *testing.T) {
	r, err := Check(readFixture(t, "fenced-register-good"), Options{AcceptPartial: true})
	if err != nil {
		t.Fatal(err)
	}
	f := r.Fencing
	if f.Calls != 4 || f.Refused != 1 || f.UnjustifiedRefusals != 0 || f.StaleAccepted != 0 || f.NoTokens {
		t.Errorf("fencing %+v; want 4 calls, 1 refused, none unjustified, none accepted, tokens seen", f)
	}

	// The same refusal with no higher token anywhere is unjustified.
	h := readFixture(t, "fenced-register-good")
	for i := range h.Events {
		if e := &h.Events[i]; (e.F == history.ReadOp || e.F == history.WriteOp) && e.Token == 2 {
			e.Token = 1
		}
	}
	r, err = Check(h, Options{AcceptPartial: true})
	if err != nil {
		t.Fatal(err)
	}
	if r.Fencing.UnjustifiedRefusals != 1 || r.Fencing.Verdict != Valid {
		t.Errorf("fencing %+v; want the one refusal unjustified and a valid verdict", r.Fencing)
	}
	wantWords(t, "fencing summary", r.Fencing.Summary, []string{"1 call refused as stale", "1 of them with no higher token"})

	// A locker without tokens: the store cannot fence, and says so.
	for i := range h.Events {
		h.Events[i].Token = 0
	}
	r, err = Check(h, Options{AcceptPartial: true})
	if err != nil {
		t.Fatal(err)
	}
	if !r.Fencing.NoTokens || r.Fencing.Verdict != Unknown {
		t.Errorf("fencing %+v; want no tokens and unknown: a check that cannot fail is no pass", r.Fencing)
	}
	for _, c := range r.Checkers {
		if c.Name == FencingName {
			t.Errorf("the fencing checker is listed (%s) for a locker without tokens; it does not apply", c.Verdict)
		}
	}
	wantWords(t, "fencing summary", r.Fencing.Summary, []string{"the locker gives no tokens; the store cannot fence"})
}

// Mutex histories get no data checkers and no release-request measure:
// their reports are what they were.
func TestMutexHistoriesHaveNoDataCheckers(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".jsonl")
		h := readFixture(t, name)
		if h.Header.Run.Workload != history.WorkloadMutex {
			continue
		}
		seen++
		r, err := Check(h, Options{AcceptPartial: true})
		if err != nil {
			t.Fatal(err)
		}
		general := 3
		if r.Tokens != nil {
			general++ // the token checker runs on any workload of a fencing locker
		}
		if r.Faults != nil {
			general++ // the fault check runs on any run with faults
		}
		if len(r.Checkers) != general || r.LostUpdates != nil || r.RegisterLinearizability != nil || r.Fencing != nil || r.ReleaseRequests != nil {
			t.Errorf("%s: a mutex history got data checkers: %+v", name, r.Checkers)
		}
		want := r.Mutex.Verdict.Merge(r.Linearizability.Verdict)
		if r.Tokens != nil {
			want = want.Merge(r.Tokens.Verdict)
		}
		if r.Faults != nil {
			want = want.Merge(r.Faults.Verdict)
		}
		if r.Verdict != want {
			t.Errorf("%s: overall %s, want %s from mutual exclusion and linearizability alone", name, r.Verdict, want)
		}
		if strings.Contains(r.Summary(), "release requests") {
			t.Errorf("%s: summary mentions release requests:\n%s", name, r.Summary())
		}
	}
	if seen < 10 {
		t.Fatalf("only %d mutex fixtures found", seen)
	}
}

func TestRegisterNothingWritten(t *testing.T) {
	h := readFixture(t, "double-grant-good")
	h.Header.Run.Workload = history.WorkloadRegister
	r, err := Check(h, Options{AcceptPartial: true})
	if err != nil {
		t.Fatal(err)
	}
	if r.LostUpdates.Verdict != Unknown || r.RegisterLinearizability.Verdict != Unknown || r.Verdict != Unknown {
		t.Fatalf("lost updates %s, register linearizability %s, overall %s; want all unknown",
			r.LostUpdates.Verdict, r.RegisterLinearizability.Verdict, r.Verdict)
	}
	wantWords(t, "lost-update summary", r.LostUpdates.Summary, []string{"nothing was written"})
}

// Writes the store refused leave the register at 0, which proves nothing.
func TestRegisterEveryWriteRefused(t *testing.T) {
	h := readFixture(t, "register-good")
	refused := 0
	for i, e := range h.Events {
		if e.F == history.WriteOp && e.Type != history.Invoke {
			h.Events[i].Type, h.Events[i].Error = history.Fail, "refused"
			refused++
		}
	}
	h.Events[len(h.Events)-1].Value = json.RawMessage("0")
	if refused == 0 {
		t.Fatal("the fixture has no write completions to refuse")
	}
	r, err := Check(h, Options{AcceptPartial: true})
	if err != nil {
		t.Fatal(err)
	}
	if r.LostUpdates.Verdict != Unknown {
		t.Fatalf("lost updates %s (%s); want unknown when every write was refused", r.LostUpdates.Verdict, r.LostUpdates.Summary)
	}
	wantWords(t, "lost-update summary", r.LostUpdates.Summary, []string{"nothing was written", "all refused"})
}

func TestRegisterStoreInventsIncrements(t *testing.T) {
	h := readFixture(t, "register-good")
	h.Events[len(h.Events)-1].Value = json.RawMessage("7")
	r, err := Check(h, Options{AcceptPartial: true})
	if err != nil {
		t.Fatal(err)
	}
	if r.LostUpdates.Verdict != Invalid || r.RegisterLinearizability.Verdict != Invalid {
		t.Fatalf("lost updates %s, register linearizability %s; want both invalid", r.LostUpdates.Verdict, r.RegisterLinearizability.Verdict)
	}
	wantWords(t, "counterexample", r.LostUpdates.Counterexamples[0],
		[]string{"key k0", "ends at 7", "only 2 writes were acknowledged and 1 had an unknown outcome", "nobody made"})
}

func TestRegisterBadValue(t *testing.T) {
	h := readFixture(t, "register-good")
	for i := range h.Events {
		if e := &h.Events[i]; e.F == history.ReadOp && e.Type == history.OK {
			e.Value = json.RawMessage(`"zero"`)
			break
		}
	}
	if _, err := Check(h, Options{AcceptPartial: true}); err == nil || !strings.Contains(err.Error(), "integer it read") {
		t.Fatalf("error %v, want one naming the read's value", err)
	}
}

func regOp(kind regKind, read, wrote int64, maybe bool, call, ret int64) porcupine.Operation {
	op := &RegisterOp{Kind: kind, Key: "k0", Read: read, Wrote: wrote, Maybe: maybe, Call: call, Return: ret}
	return porcupine.Operation{Input: op, Call: call, Return: ret}
}

// The register model on small histories whose answer is known by hand,
// above all increments of unknown outcome: one that took effect and one
// that did not must both be legal, and one that cannot explain a value must
// not make it legal.
func TestRegisterModel(t *testing.T) {
	inc := func(r int64, call, ret int64) porcupine.Operation {
		return regOp(regIncrement, r, r+1, false, call, ret)
	}
	maybe := func(r int64, call int64) porcupine.Operation { return regOp(regIncrement, r, r+1, true, call, Forever) }
	read := func(v int64, call, ret int64) porcupine.Operation { return regOp(regRead, v, 0, false, call, ret) }
	final := func(v int64, at int64) porcupine.Operation { return regOp(regFinal, v, 0, false, at, at) }
	cases := []struct {
		name string
		ops  []porcupine.Operation
		want porcupine.CheckResult
	}{
		{"serial", []porcupine.Operation{inc(0, 1, 2), inc(1, 3, 4), final(2, 10)}, porcupine.Ok},
		{"concurrent increments in either order", []porcupine.Operation{inc(1, 3, 6), inc(0, 1, 5), final(2, 10)}, porcupine.Ok},
		{"unknown increment took effect", []porcupine.Operation{inc(0, 1, 2), maybe(1, 3), inc(2, 5, 6), final(3, 10)}, porcupine.Ok},
		{"unknown increment had no effect", []porcupine.Operation{inc(0, 1, 2), maybe(1, 3), inc(1, 5, 6), final(2, 10)}, porcupine.Ok},
		{"unknown increment took effect, seen only at the end", []porcupine.Operation{inc(0, 1, 2), maybe(1, 3), final(2, 10)}, porcupine.Ok},
		{"unknown increment had no effect, seen only at the end", []porcupine.Operation{inc(0, 1, 2), maybe(1, 3), final(1, 10)}, porcupine.Ok},
		{"lost update", []porcupine.Operation{inc(0, 1, 5), inc(0, 2, 6), final(1, 10)}, porcupine.Illegal},
		{"final too high", []porcupine.Operation{inc(0, 1, 2), maybe(1, 3), final(3, 10)}, porcupine.Illegal},
		{"unknown increment after a read the register never held", []porcupine.Operation{inc(0, 1, 2), maybe(999, 3), inc(1, 5, 6), final(2, 10)}, porcupine.Illegal},
		{"read from the future", []porcupine.Operation{read(1, 1, 2), inc(0, 3, 4), final(1, 10)}, porcupine.Illegal},
		{"read of a value the register never held", []porcupine.Operation{inc(0, 1, 2), read(5, 3, 4), inc(1, 5, 6)}, porcupine.Illegal},
		{"stale read after the increment returned", []porcupine.Operation{inc(0, 1, 2), read(0, 3, 4)}, porcupine.Illegal},
		{"blind write", []porcupine.Operation{inc(0, 1, 2), regOp(regSet, 0, 7, false, 3, 4), inc(7, 5, 6), final(8, 10)}, porcupine.Ok},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := porcupine.CheckOperationsTimeout(RegisterModel(), c.ops, 0); got != c.want {
				t.Errorf("porcupine says %s, want %s", got, c.want)
			}
		})
	}
}

// Serial increments with an unknown outcome now and then, every one of
// them open-ended, must stay legal whichever way each one went.
func TestRegisterModelManyUnknowns(t *testing.T) {
	for _, took := range []bool{false, true} {
		var ops []porcupine.Operation
		v := int64(0)
		for i := range 200 {
			call := int64(i * 10)
			if i%10 == 5 {
				ops = append(ops, regOp(regIncrement, v, v+1, true, call, Forever))
				if took {
					v++
				}
				continue
			}
			ops = append(ops, regOp(regIncrement, v, v+1, false, call, call+5))
			v++
		}
		ops = append(ops, regOp(regFinal, v, 0, false, 10_000, 10_000))
		if got := porcupine.CheckOperationsTimeout(RegisterModel(), ops, 10*time.Second); got != porcupine.Ok {
			t.Errorf("unknowns took effect %v: porcupine says %s, want Ok", took, got)
		}
	}
}

func TestRegisterLinearizabilityTimeout(t *testing.T) {
	// A clock on which every reading is an hour after the last: the limit
	// has passed before the first key is searched.
	at := time.Unix(0, 0)
	now := func() time.Time {
		at = at.Add(time.Hour)
		return at
	}
	r, err := Check(readFixture(t, "register-good"), Options{AcceptPartial: true, LinearizabilityTimeout: time.Second, now: now})
	if err != nil {
		t.Fatal(err)
	}
	if r.RegisterLinearizability.Verdict != Unknown || r.Verdict == Valid {
		t.Fatalf("register linearizability %s, overall %s; want unknown, never a pass", r.RegisterLinearizability.Verdict, r.Verdict)
	}
	wantWords(t, "summary", r.RegisterLinearizability.Summary, []string{"did not finish within the limit of 1s", "k0", "not a pass"})
}

func TestReleaseRequestFixtures(t *testing.T) {
	const ms = time.Millisecond
	cases := []struct {
		name string
		want ReleaseRequests
		says []string
	}{
		{"request-release-good", ReleaseRequests{Verdict: Valid, Contended: 1, Requested: 1, Notices: 1,
			LetGo:   Spread{Count: 1, P50: 3 * ms, P99: 3 * ms, Max: 3 * ms},
			HandOff: Spread{Count: 1, P50: 6 * ms, P99: 6 * ms, Max: 6 * ms}},
			[]string{"1 contended hold: 1 let go on request", "let go after p50 3ms", "handed off after p50 6ms"}},
		{"request-release-missed", ReleaseRequests{Verdict: Invalid, Contended: 1, Missed: 1},
			[]string{"1 held on with no request reaching the holder", "never recorded a release request"}},
		// The same hold, let go 37 ms after the waiter arrived: within
		// the grace, so it did not hold on, and nothing is measured.
		{"request-release-quick", ReleaseRequests{Verdict: Unknown, Quick: 1},
			[]string{"no contended hold lasted past the 50ms grace", "1 hold let go as a waiter arrived"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, err := Check(readFixture(t, c.name), Options{AcceptPartial: true})
			if err != nil {
				t.Fatal(err)
			}
			got := *r.ReleaseRequests
			got.Summary = ""
			if got != c.want {
				t.Errorf("release requests %+v, want %+v", got, c.want)
			}
			line := checker(t, r, ReleaseRequestsName)
			if line.Safety || line.Verdict != c.want.Verdict {
				t.Errorf("checker line %+v: want a liveness line with verdict %s", line, c.want.Verdict)
			}
			if r.Verdict != Valid {
				t.Errorf("overall %s, want valid: requests are liveness", r.Verdict)
			}
			wantWords(t, "summary", r.Summary(), append([]string{"release requests: " + string(c.want.Verdict)}, c.says...))
			if hasChecker(r, LostUpdatesName) || hasChecker(r, FencingName) {
				t.Errorf("data checkers on a request-release history: %+v", r.Checkers)
			}
		})
	}
}

// A crash event of a process client carries the OS pid; recovery is timed
// as for any other crash.
func TestHolderCrashWithPID(t *testing.T) {
	for _, name := range []string{"holder-crash-recovered", "holder-crash-stuck"} {
		plain, err := Check(readFixture(t, name), Options{AcceptPartial: true})
		if err != nil {
			t.Fatal(err)
		}
		h := readFixture(t, name)
		h.Header.Run.ClientsAs = "process"
		for i := range h.Events {
			if e := &h.Events[i]; e.F == history.Crash || e.F == history.Restart {
				var ref history.ClientRef
				if err := json.Unmarshal(e.Value, &ref); err != nil {
					t.Fatal(err)
				}
				ref.PID = 4000 + i
				e.Value, _ = json.Marshal(ref)
			}
		}
		withPID, err := Check(h, Options{AcceptPartial: true})
		if err != nil {
			t.Fatal(err)
		}
		if got, want := withPID.Liveness.HolderCrashes, plain.Liveness.HolderCrashes; got != want || got.Crashes != 1 {
			t.Errorf("%s: holder crashes with pids %+v, without %+v; want the same, one crash", name, got, want)
		}
	}
}

func TestReleaseRequestMustBeInfo(t *testing.T) {
	h := readFixture(t, "request-release-good")
	for i := range h.Events {
		if e := &h.Events[i]; e.F == history.ReleaseRequested {
			e.Type = history.OK
		}
	}
	if _, err := Check(h, Options{AcceptPartial: true}); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "must be an info event") {
		t.Fatalf("error %v, want a malformed history naming the release request", err)
	}
}

// A holder that crashes after it was asked neither let go nor missed the
// request.
func TestReleaseRequestInterruptedByCrash(t *testing.T) {
	h := readFixture(t, "request-release-good")
	var events []history.Event
	for _, e := range h.Events {
		if e.Time == 18_000_000 {
			events = append(events, history.Event{Time: e.Time, Process: history.Nemesis, Client: -1, Type: history.Info,
				F: history.Crash, Value: json.RawMessage(`{"client":0,"process":0,"pid":4242}`)})
			continue
		}
		if e.Process == 0 && e.Time > 18_000_000 {
			continue
		}
		events = append(events, e)
	}
	for i := range events {
		events[i].Index = int64(i)
	}
	h.Events = events
	r, err := Check(h, Options{AcceptPartial: true})
	if err != nil {
		t.Fatal(err)
	}
	if rr := r.ReleaseRequests; rr.Interrupted != 1 || rr.Contended != 0 || rr.Missed != 0 || rr.Verdict != Unknown {
		t.Errorf("release requests %+v; want one interrupted hold and nothing measured", rr)
	}
	if hc := r.Liveness.HolderCrashes; hc.Crashes != 1 || hc.Count != 1 {
		t.Errorf("holder crashes %+v; want one, recovered", hc)
	}
}
