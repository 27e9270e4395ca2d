package report

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/lockcheck/lockcheck/history"
	"github.com/lockcheck/lockcheck/models"
)

// page checks a fixture and writes its page, returning the HTML.
func page(t *testing.T, fixture string, meta Meta) (string, *models.Report) {
	t.Helper()
	h, err := history.ReadFile(filepath.Join("..", "..", "models", "testdata", fixture))
	if err != nil {
		t.Fatal(err)
	}
	rep, err := models.Check(h, models.Options{LinearizabilityTimeout: time.Minute, AcceptPartial: true})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "report.html")
	if err := Write(path, h, rep, meta); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// The temporary porcupine file must not be left behind.
	if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 1 {
		t.Errorf("want only report.html in the directory, got %v", entries)
	}
	return string(b), rep
}

var externalURL = regexp.MustCompile(`(?i)(src|href)\s*=\s*["']?\s*(https?:|//)|url\(\s*["']?(https?:|//)|@import`)

func assertSelfContained(t *testing.T, html string) {
	t.Helper()
	if m := externalURL.FindString(html); m != "" {
		t.Errorf("page refers to something outside itself: %q", m)
	}
}

func TestBadRunPageShowsVerdictCounterexampleAndOverlap(t *testing.T) {
	html, rep := page(t, "crash-takeover-bad.jsonl", Meta{})
	if rep.Verdict != models.Invalid {
		t.Fatalf("fixture verdict %s, want invalid", rep.Verdict)
	}
	for _, want := range []string{
		`class="verdict invalid"`, "INVALID", "the lock broke its promise",
		"Counterexamples", `class="fault"`, `id="latency-plot"><svg`, `id="throughput-plot"><svg`,
		"<iframe", "srcdoc=",
	} {
		if !strings.Contains(html, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	var cx string
	for _, c := range rep.Checkers {
		if len(c.Counterexamples) > 0 {
			cx = c.Counterexamples[0]
			break
		}
	}
	if cx == "" || !strings.Contains(html, esc(cx)) {
		t.Errorf("page lacks the first counterexample %q", cx)
	}
	if len(rep.Mutex.Overlaps) > 0 && !strings.Contains(html, `class="overlap"`) {
		t.Error("a mutual-exclusion violation is not highlighted on the timeline")
	}
	if n := strings.Count(html, "<svg"); n < 3 {
		t.Errorf("%d SVG images, want the timeline and two plots at least", n)
	}
	assertSelfContained(t, html)
}

func TestGoodRunPageSaysValidWithNoCounterexample(t *testing.T) {
	html, rep := page(t, "crash-takeover-good.jsonl", Meta{Note: "a note for people"})
	if rep.Verdict != models.Valid {
		t.Fatalf("fixture verdict %s, want valid", rep.Verdict)
	}
	for _, want := range []string{`class="verdict valid"`, "VALID", "no safety checker found a violation", `class="fault"`, "a note for people", "crash<"} {
		if !strings.Contains(html, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	for _, not := range []string{"Counterexamples", `class="overlap"`, "timeline-capped"} {
		if strings.Contains(html, not) {
			t.Errorf("valid page holds %q", not)
		}
	}
	assertSelfContained(t, html)
}

func TestFaultLabelNamesKindAndTargets(t *testing.T) {
	html, _ := page(t, "liveness-good.jsonl", Meta{})
	if !strings.Contains(html, "→ clients [") {
		t.Error("no fault label names its target clients")
	}
}

func TestTimelineIsCappedAndKeepsTheCounterexample(t *testing.T) {
	h, err := history.ReadFile(filepath.Join("..", "..", "models", "testdata", "crash-takeover-bad.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	rep, err := models.Check(h, models.Options{AcceptPartial: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Mutex.Overlaps) == 0 {
		t.Fatal("fixture has no overlap to keep")
	}
	// A budget of four events forces a cut; the overlap must stay drawn.
	var b strings.Builder
	writeTimeline(&b, h, rep, 4)
	out := b.String()
	if !strings.Contains(out, "timeline-capped") {
		t.Error("a capped timeline does not say so")
	}
	if !strings.Contains(out, `class="overlap"`) {
		t.Error("the capped timeline lost the counterexample")
	}
}

func TestIndexNewestFirst(t *testing.T) {
	base := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	runs := []Run{
		{Dir: "old", ID: "old", Start: base, Verdict: models.Valid, Report: "old/report.html"},
		{Dir: "new", ID: "new", Start: base.Add(2 * time.Hour), Verdict: models.Invalid, Report: "new/report.html"},
		{Dir: "mid", ID: "mid", Start: base.Add(time.Hour), Verdict: "", Problem: "no result.json"},
	}
	path := filepath.Join(t.TempDir(), "index.html")
	if err := WriteIndex(path, "runs", runs); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	html := string(b)
	iNew, iMid, iOld := strings.Index(html, ">new<"), strings.Index(html, ">mid<"), strings.Index(html, ">old<")
	if iNew < 0 || iMid < 0 || iOld < 0 || !(iNew < iMid && iMid < iOld) {
		t.Errorf("want new, mid, old in that order; positions %d %d %d\n%s", iNew, iMid, iOld, html)
	}
	if !strings.Contains(html, `<a href="new/report.html">`) || !strings.Contains(html, "1 valid, 1 invalid, 1 unknown") {
		t.Errorf("index lacks a link or the counts:\n%s", html)
	}
	assertSelfContained(t, html)
}

// A run is coloured by whether its verdict met its scenario's
// expectation: a pinned defect found again is green, a control that broke
// is red; a run that expects either verdict (a compare cell) is coloured
// by its verdict, so an invalid one is never green.
func TestIndexColoursByExpectation(t *testing.T) {
	runs := []Run{
		{Dir: "caught", Verdict: models.Invalid, Expect: "invalid"},
		{Dir: "broke", Verdict: models.Invalid, Expect: "valid"},
		{Dir: "missed", Verdict: models.Valid, Expect: "invalid"},
		{Dir: "fine", Verdict: models.Valid},
		{Dir: "either", Verdict: models.Invalid, Expect: "either"},
	}
	path := filepath.Join(t.TempDir(), "index.html")
	if err := WriteIndex(path, "runs", runs); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	for dir, class := range map[string]string{"caught": "valid", "broke": "invalid", "missed": "invalid", "fine": "valid", "either": "invalid"} {
		row := regexp.MustCompile(`<tr class="run">.*>` + dir + `<.*\n`).FindString(string(b))
		if !strings.Contains(row, `class="`+class+`"`) {
			t.Errorf("%s: row not coloured %s:\n%s", dir, class, row)
		}
	}
}

func TestExternalURLDetectorCatchesLinks(t *testing.T) {
	for _, bad := range []string{`<img src="http://x/y.png">`, `<a href='https://x'>`, `<script src=//cdn.x/y.js>`, `url(https://x/f.ttf)`} {
		if !externalURL.MatchString(bad) {
			t.Errorf("detector misses %q", bad)
		}
	}
	if externalURL.MatchString(`<svg xmlns="http://www.w3.org/2000/svg"><a href="run/report.html">`) {
		t.Error("detector flags a namespace or a relative link")
	}
}

func TestLatencyScatterIsBoundedAndKeepsTheWorst(t *testing.T) {
	var acq []acquisition
	for i := range 50000 {
		acq = append(acq, acquisition{done: int64(i) * 1e6, latency: int64(i%97) * 1e5})
	}
	acq[31337].latency = 9e9
	pts := scatterPoints(acq, acq[len(acq)-1].done)
	if len(pts) > maxScatter {
		t.Errorf("%d points, want at most %d", len(pts), maxScatter)
	}
	worst := 0.0
	for _, p := range pts {
		worst = max(worst, p.Y)
	}
	if worst != 9000 {
		t.Errorf("the slowest acquisition (9000 ms) was dropped; worst kept %v ms", worst)
	}
	if small := scatterPoints(acq[:10], acq[9].done); len(small) != 10 {
		t.Errorf("a short run lost points: %d of 10", len(small))
	}
}

func TestTinyTimelineBudgetDoesNotBreak(t *testing.T) {
	h, err := history.ReadFile(filepath.Join("..", "..", "models", "testdata", "crash-takeover-bad.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	rep, err := models.Check(h, models.Options{AcceptPartial: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{1, 2, 3} {
		var b strings.Builder
		writeTimeline(&b, h, rep, n)
		if !strings.Contains(b.String(), `class="overlap"`) {
			t.Errorf("budget %d: the counterexample is not drawn", n)
		}
	}
}

// Every violation is marked on the timeline, not only the described ones,
// with their count, and the whole-run overview shades where they began.
func TestEveryViolationIsMarked(t *testing.T) {
	h := &history.History{Header: history.Header{Run: history.RunInfo{ID: "many", Locker: "x", Duration: history.Duration(time.Second), Clients: 2, Keys: 1}}}
	rep := &models.Report{Verdict: models.Invalid, Mutex: &models.MutexResult{Verdict: models.Invalid, Violations: 150}}
	for i := range 150 {
		from := int64(i) * 6_000_000
		rep.Mutex.Spans = append(rep.Mutex.Spans, models.ViolationSpan{Key: "k0", From: from, To: from + 1_000_000, Held: 0, Entered: 1})
		for _, c := range []int{0, 1} {
			h.Events = append(h.Events,
				history.Event{Index: int64(len(h.Events)), Time: from, Process: history.Process(c), Client: c, Type: history.Invoke, F: history.Acquire, Key: "k0"},
				history.Event{Index: int64(len(h.Events) + 1), Time: from + 1, Process: history.Process(c), Client: c, Type: history.OK, F: history.Acquire, Key: "k0"})
		}
	}
	var b strings.Builder
	writeTimeline(&b, h, rep, 100_000)
	page := b.String()
	if n := strings.Count(page, `class="overlap"`); n != 300 {
		t.Errorf("%d overlap marks, want 150 violations x 2 lanes", n)
	}
	if !strings.Contains(page, "150 mutual-exclusion violations") || !strings.Contains(page, "(150 violations in the run, each marked)") {
		t.Errorf("the count of violations is not on the page")
	}
	if n := strings.Count(page, `class="density"`); n < 100 {
		t.Errorf("%d density slices for violations spread over the whole run, want one per slice they began in", n)
	}
}

// An unknown page names why, and every page states the settings the run
// used: here a partial history, checked as such, that is not accepted.
func TestUnknownPageNamesItsCauseAndTheSettings(t *testing.T) {
	h, err := history.ReadFile(filepath.Join("..", "..", "models", "testdata", "double-grant-good.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	rep, err := models.Check(h, models.Options{})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "report.html")
	if err := Write(path, h, rep, Meta{Verdict: rep.Verdict}); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	for _, want := range []string{"unknown is not a pass: coverage: checked 0.1 s of 1.0 s", "<td>settings</td><td>no lease, duration 1s</td>"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("page lacks %q", want)
		}
	}
}
