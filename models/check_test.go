package models

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/lockcheck/lockcheck/history"
	"github.com/lockcheck/lockcheck/models/synth"
)

func TestVerdictMerge(t *testing.T) {
	cases := []struct{ a, b, want Verdict }{
		{Valid, Valid, Valid},
		{Valid, Unknown, Unknown},
		{Unknown, Valid, Unknown},
		{Valid, Invalid, Invalid},
		{Unknown, Invalid, Invalid},
		{Invalid, Unknown, Invalid},
		{Invalid, Valid, Invalid},
		{"", Valid, Unknown},
		{Valid, "passed", Unknown},
		{"", Invalid, Invalid},
	}
	for _, c := range cases {
		if got := c.a.Merge(c.b); got != c.want {
			t.Errorf("%q.Merge(%q) = %q, want %q", c.a, c.b, got, c.want)
		}
	}
	if got := MergeVerdicts(); got != Unknown {
		t.Errorf("merge of nothing = %q, want unknown: nothing checked is no pass", got)
	}
	if got := MergeVerdicts(Valid, Valid, Unknown, Valid); got != Unknown {
		t.Errorf("MergeVerdicts = %q, want unknown", got)
	}
}

// A search that runs out of time says unknown, and the report does not
// read it as a pass. The clock is fake: the deadline has passed before the
// first chunk is searched, whatever the machine's speed.
func TestTimeLimitGivesUnknown(t *testing.T) {
	h := readFixture(t, "double-grant-good")
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	calls := 0
	opts := Options{LinearizabilityTimeout: time.Second, now: func() time.Time {
		calls++
		if calls == 1 {
			return start
		}
		return start.Add(time.Hour)
	}}
	r, err := Check(h, opts)
	if err != nil {
		t.Fatal(err)
	}
	lin := r.Linearizability
	if lin.Result != porcupine.Unknown || lin.Verdict != Unknown || lin.UnknownChunks != lin.Chunks || lin.Chunks == 0 {
		t.Fatalf("result %s, verdict %s, %d of %d chunks unknown", lin.Result, lin.Verdict, lin.UnknownChunks, lin.Chunks)
	}
	if r.Mutex.Verdict != Valid || r.Verdict != Unknown {
		t.Errorf("mutex %s, overall %s; want valid and unknown", r.Mutex.Verdict, r.Verdict)
	}
	if !strings.Contains(lin.Summary, "not a pass") || !strings.Contains(lin.Summary, "1s") {
		t.Errorf("summary does not say the limit was hit: %q", lin.Summary)
	}
	// Nothing was searched to the end, so there is nothing to draw but
	// the page itself; writing it must still work.
	if err := r.WriteVisualization(filepath.Join(t.TempDir(), "unknown.html")); err != nil {
		t.Error(err)
	}
}

// Unknown in one chunk does not hide Illegal in another: porcupine's
// answer is Illegal, and it is passed on as it is.
func TestIllegalBeatsUnknown(t *testing.T) {
	h := readFixture(t, "crash-takeover-bad")
	r, err := CheckLinearizable(h, Options{ChunkOps: 1})
	if err != nil {
		t.Fatal(err)
	}
	if r.Result != porcupine.Illegal || r.IllegalChunks == 0 {
		t.Fatalf("result %s with %d illegal chunks", r.Result, r.IllegalChunks)
	}
}

func TestMalformedHistories(t *testing.T) {
	ev := func(p history.Process, typ history.Type, f string, time int64) history.Event {
		return history.Event{Time: time, Process: p, Client: int(p), Type: typ, F: f, Key: "k0"}
	}
	crash := history.Event{Time: 5, Process: history.Nemesis, Client: -1, Type: history.Info, F: history.Crash, Value: json.RawMessage(`"zero"`)}
	late := ev(0, history.OK, history.Acquire, 4)
	late.Attempt = 9
	cases := []struct {
		name   string
		events []history.Event
		want   string
	}{
		{"completion without call", []history.Event{ev(0, history.OK, history.Acquire, 1)}, "without an open call"},
		{"two open calls", []history.Event{ev(0, history.Invoke, history.Acquire, 1), ev(0, history.Invoke, history.Release, 2)}, "still open"},
		{"acts after info", []history.Event{ev(0, history.Invoke, history.Acquire, 1), ev(0, history.Info, history.Acquire, 2),
			ev(0, history.Invoke, history.Acquire, 3)}, "after its indeterminate call"},
		{"time runs back", []history.Event{ev(0, history.Invoke, history.Acquire, 5), ev(0, history.OK, history.Acquire, 4)}, "before the process's previous event"},
		{"attempt after ok", []history.Event{ev(0, history.Invoke, history.Acquire, 1), late}, "attempt"},
		{"wrong completion", []history.Event{ev(0, history.Invoke, history.Acquire, 1), ev(0, history.OK, history.Release, 2)}, "open call is acquire"},
		{"bad crash value", []history.Event{crash}, "client reference"},
		{"lost as a call", []history.Event{ev(0, history.Invoke, history.Lost, 1)}, "lost notice"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for i := range c.events {
				c.events[i].Index = int64(i)
			}
			_, err := Check(&history.History{Events: c.events}, Options{AcceptPartial: true})
			if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "models: ") {
				t.Fatalf("error %v, want ErrMalformed saying %q", err, c.want)
			}
		})
	}
	if _, err := Check(nil, Options{AcceptPartial: true}); !errors.Is(err, ErrMalformed) {
		t.Errorf("nil history: %v", err)
	}
}

func TestReportJSONSummaryAndTable(t *testing.T) {
	r, err := Check(readFixture(t, "double-grant-bad"), Options{AcceptPartial: true})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var back struct {
		Verdict  Verdict `json:"verdict"`
		Checkers []struct {
			Name            string   `json:"name"`
			Safety          bool     `json:"safety"`
			Verdict         Verdict  `json:"verdict"`
			Counterexamples []string `json:"counterexamples"`
		} `json:"checkers"`
		Linearizability struct {
			Result string `json:"porcupine"`
		} `json:"linearizability"`
		Liveness struct {
			Stuck []int `json:"stuck"`
		} `json:"liveness"`
		Counts    Counts `json:"counts"`
		Truncated *bool  `json:"truncated"`
	}
	if err := json.Unmarshal(raw, &back); err != nil {
		t.Fatal(err)
	}
	// result.json is read back by the CLI as a Report.
	var again Report
	if err := json.Unmarshal(raw, &again); err != nil {
		t.Fatalf("result.json does not read back as a Report: %v", err)
	}
	if again.Verdict != r.Verdict || again.Mutex.Overlaps[0].Held.Process != r.Mutex.Overlaps[0].Held.Process ||
		again.Linearizability.Result != r.Linearizability.Result || len(again.Checkers) != 4 || again.Tokens == nil {
		t.Errorf("report changed on its way through JSON")
	}
	if back.Verdict != Invalid || len(back.Checkers) != 4 || back.Linearizability.Result != "Illegal" ||
		back.Counts.Acquired != 2 || back.Truncated == nil || back.Liveness.Stuck == nil {
		t.Fatalf("result.json lost something:\n%s", raw)
	}
	for i, want := range []struct {
		name   string
		safety bool
	}{{MutexName, true}, {LinearizabilityName, true}, {LivenessName, false}, {TokensName, true}} {
		if c := back.Checkers[i]; c.Name != want.name || c.Safety != want.safety {
			t.Errorf("checker %d is %s (safety %v), want %s (%v)", i, c.Name, c.Safety, want.name, want.safety)
		}
	}

	sum := r.Summary()
	for _, want := range []string{"safety: invalid", "mutual-exclusion: invalid", "linearizability: invalid",
		"liveness: unknown", "4 calls", "first counterexample (mutual-exclusion): key k0"} {
		if !strings.Contains(sum, want) {
			t.Errorf("summary lacks %q:\n%s", want, sum)
		}
	}
	var table bytes.Buffer
	if err := r.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(table.String()), "\n")
	if len(lines) != 6 || !strings.HasPrefix(lines[0], "CHECKER") || !strings.HasPrefix(lines[5], "overall") ||
		!strings.Contains(lines[5], "invalid") || !strings.Contains(lines[3], "liveness") || !strings.HasPrefix(lines[4], "fencing-tokens") {
		t.Errorf("table:\n%s", table.String())
	}
}

func TestTruncatedHistory(t *testing.T) {
	// The run died while writing the failure of client 1's recovery
	// acquire: its last line is cut short.
	raw, err := os.ReadFile(filepath.Join("testdata", "liveness-bad.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	h, err := history.Read(bytes.NewReader(raw[:len(raw)-20]))
	if err != nil {
		t.Fatal(err)
	}
	if !h.Truncated {
		t.Fatal("reader did not see the cut")
	}
	r, err := Check(h, Options{AcceptPartial: true})
	if err != nil {
		t.Fatal(err)
	}
	// Client 1 may have been about to acquire: no proof either way.
	if !r.Truncated || r.Liveness.Verdict != Unknown || r.Counts.OpenAtEnd != 1 || !equalInts(r.Liveness.Stuck, []int{1}) {
		t.Fatalf("truncated %v, liveness %s, open %d, stuck %v", r.Truncated, r.Liveness.Verdict, r.Counts.OpenAtEnd, r.Liveness.Stuck)
	}
	if !strings.Contains(r.Summary(), "truncated") {
		t.Errorf("summary hides the truncation:\n%s", r.Summary())
	}
}

func TestWriteVisualization(t *testing.T) {
	dir := t.TempDir()
	r, err := Check(readFixture(t, "crash-takeover-bad"), Options{AcceptPartial: true})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "bad.html")
	if err := r.WriteVisualization(path); err != nil {
		t.Fatal(err)
	}
	page, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"P1 acquire k0 → ok token 2", "P0 holds k0 (carried over a cut)", "owner: P0"} {
		if !bytes.Contains(page, []byte(want)) {
			t.Errorf("visualisation lacks %q", want)
		}
	}
	// Twice: the kept search info must not collect annotations twice.
	if err := r.WriteVisualization(path); err != nil {
		t.Fatal(err)
	}
	again, _ := os.ReadFile(path)
	if !bytes.Equal(page, again) {
		t.Error("second drawing differs from the first")
	}

	// A valid history is drawn with the faults around it.
	good, err := Check(readFixture(t, "crash-takeover-good"), Options{AcceptPartial: true})
	if err != nil {
		t.Fatal(err)
	}
	path = filepath.Join(dir, "good.html")
	if err := good.WriteVisualization(path); err != nil {
		t.Fatal(err)
	}
	page, _ = os.ReadFile(path)
	for _, want := range []string{"P0 crashed holding k0", "client 0 (P0) crashed", "client 0 restarted as P2", "fault 1: crash on clients [0]", "free"} {
		if !bytes.Contains(page, []byte(want)) {
			t.Errorf("visualisation lacks %q", want)
		}
	}
}

// A large valid history is drawn in part, never whole.
func TestVisualizationIsBounded(t *testing.T) {
	res := generate(t, synth.Realistic(3, 6, 2, 4000))
	r, err := Check(res.History, Options{AcceptPartial: true, VisualizationOps: 300, ChunkOps: 100})
	if err != nil {
		t.Fatal(err)
	}
	if r.Verdict != Valid {
		t.Fatalf("verdict %s:\n%s", r.Verdict, r.Summary())
	}
	path := filepath.Join(t.TempDir(), "valid.html")
	if err := r.WriteVisualization(path); err != nil {
		t.Fatal(err)
	}
	page, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	drawn := bytes.Count(page, []byte(`"OriginalStart"`))
	if drawn == 0 || drawn > 300 {
		t.Errorf("drew %d operations of %d, want between 1 and 300", drawn, r.Linearizability.Operations)
	}
}

// LiveMutex, which the CLI shows while a run goes, counts what CheckMutex
// counts afterwards.
func TestLiveMutexAgreesWithCheckMutex(t *testing.T) {
	var hs []*history.History
	for _, name := range []string{"double-grant-bad", "crash-takeover-bad", "lost-takeover-good", "lost-takeover-bad", "liveness-good"} {
		hs = append(hs, readFixture(t, name))
	}
	for seed := uint64(1); seed <= 4; seed++ {
		cfg := stressed(seed, 5, 2, 1500)
		cfg.Bug, cfg.BugAt = synth.Bug(seed%2), 0.3
		hs = append(hs, generate(t, cfg).History)
	}
	sawViolation := false
	for _, h := range hs {
		live := NewLiveMutex()
		for _, e := range h.Events {
			live.Observe(e)
		}
		r, err := CheckMutex(h, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if live.Violations() != r.Violations {
			t.Errorf("%s: live count %d, checker %d", h.Header.Run.ID, live.Violations(), r.Violations)
		}
		sawViolation = sawViolation || r.Violations > 0
	}
	if !sawViolation {
		t.Error("no history had a violation to count")
	}
}

// After a double grant the owner at the next cut is a guess; what follows
// is still searched, but findings that may only echo the first violation
// say so, and the first one is always the certain one.
func TestFindingsAfterAViolationAreMarked(t *testing.T) {
	ev := func(p history.Process, typ history.Type, f string, at, attempt int64) history.Event {
		return history.Event{Time: at, Process: p, Client: int(p), Type: typ, F: f, Key: "k0", Attempt: attempt}
	}
	events := []history.Event{
		ev(0, history.Invoke, history.Acquire, 10, 0), ev(0, history.OK, history.Acquire, 12, 11),
		ev(1, history.Invoke, history.Acquire, 13, 0), ev(1, history.OK, history.Acquire, 15, 14),
		ev(0, history.Invoke, history.Release, 30, 0), ev(0, history.OK, history.Release, 32, 0),
		ev(1, history.Invoke, history.Release, 40, 0), ev(1, history.OK, history.Release, 42, 0),
	}
	for i := range events {
		events[i].Index = int64(i)
	}
	r, err := Check(&history.History{Events: events}, Options{AcceptPartial: true, ChunkOps: 1})
	if err != nil {
		t.Fatal(err)
	}
	cxs := r.Linearizability.Counterexamples
	if r.Linearizability.Verdict != Invalid || len(cxs) < 2 {
		t.Fatalf("verdict %s with %d counterexamples", r.Linearizability.Verdict, len(cxs))
	}
	if cxs[0].AfterViolation || !strings.Contains(cxs[0].Description, "granted k0 to P1 while P0 held it") {
		t.Errorf("first counterexample is not the double grant: %+v", cxs[0])
	}
	for _, cx := range cxs[1:] {
		if !cx.AfterViolation {
			t.Errorf("a finding after the violation is not marked: %s", cx.Description)
		}
	}
	if lines := r.Checkers[1].Counterexamples; !strings.HasPrefix(lines[1], "(after an earlier violation") {
		t.Errorf("report does not warn: %q", lines[1])
	}
}

// Evidence too large to draw leaves a page that says so; the check itself
// does not fail over it.
func TestTooLargeToDraw(t *testing.T) {
	saved := maxVisualOps
	maxVisualOps = 1
	t.Cleanup(func() { maxVisualOps = saved })
	r, err := Check(readFixture(t, "double-grant-bad"), Options{AcceptPartial: true})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "bad.html")
	if err := r.WriteVisualization(path); err != nil {
		t.Fatal(err)
	}
	page, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(page, []byte("more than the 1 a readable drawing can hold")) || bytes.Contains(page, []byte("P1 acquire k0")) {
		t.Error("page neither explains nor omits the evidence")
	}
}
