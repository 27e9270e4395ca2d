// Package report writes a run's results as one self-contained HTML page, and
// an index of many runs. A page carries everything inline (styles, SVG
// images, porcupine's script) so that it can be attached to a CI job or
// mailed and still open anywhere, offline.
package report

import (
	"fmt"
	"html"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/lockcheck/lockcheck/history"
	"github.com/lockcheck/lockcheck/models"
)

// DefaultTimelineEvents bounds the events a timeline draws: past a few
// thousand a lane is a smear, and the page grows without saying more.
const DefaultTimelineEvents = 2000

// Meta is what a page says about its run beyond the history and the report.
type Meta struct {
	// Verdict is the run's verdict as its exit code reported it (safety,
	// and liveness when it counted); empty means the report's safety
	// verdict.
	Verdict        models.Verdict
	LivenessCounts bool
	Checked        time.Time
	Versions       map[string]string
	// Note is shown under the verdict, for example when the page was
	// rebuilt from a saved history and the re-check differs.
	Note string
	// TimelineEvents caps the events drawn (default DefaultTimelineEvents).
	TimelineEvents int

	_ struct{}
}

func (m Meta) timelineEvents() int {
	if m.TimelineEvents > 0 {
		return m.TimelineEvents
	}
	return DefaultTimelineEvents
}

// Write writes the page for one checked history to path.
func Write(path string, h *history.History, rep *models.Report, meta Meta) error {
	if h == nil || rep == nil {
		return fmt.Errorf("report: %s: need both the history and its report", path)
	}
	vis, visErr := visualization(path, rep)
	var b strings.Builder
	if err := render(&b, h, rep, meta, vis, visErr); err != nil {
		return fmt.Errorf("report: %s: %w", path, err)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	return nil
}

// visualization returns porcupine's page for the report, which porcupine
// only writes to a file: it goes through a temporary file beside path.
func visualization(path string, rep *models.Report) (string, error) {
	if rep.Linearizability == nil {
		return "", fmt.Errorf("the linearizability checker did not run")
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".porcupine-*.html")
	if err != nil {
		return "", err
	}
	tmp := f.Name()
	f.Close()
	defer os.Remove(tmp)
	if err := rep.WriteVisualization(tmp); err != nil {
		return "", err
	}
	b, err := os.ReadFile(tmp)
	if err != nil {
		return "", err
	}
	return string(b), nil
}

const css = `
body{font-family:system-ui,-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:1.5em;color:#222;max-width:1400px}
h1{font-size:1.4em;margin-bottom:.2em} h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ddd}
.verdict{font-size:1.3em;padding:.5em .8em;border-radius:4px;margin:.6em 0}
.valid{background:#d8f0d2;color:#1d5e12} .invalid{background:#f6d0d0;color:#8a1111} .unknown{background:#f7e7b5;color:#6b4e00}
table{border-collapse:collapse;margin:.5em 0} td,th{border:1px solid #ddd;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f4f4f4} .meta td:first-child{color:#666}
.cx li{margin:.3em 0} .note{color:#555;font-style:italic}
svg.timeline{width:100%;height:auto;border:1px solid #eee}
.plots{display:flex;flex-wrap:wrap;gap:1em} .plot svg{max-width:100%;height:auto}
iframe{width:100%;height:700px;border:1px solid #ccc}
.legend span{display:inline-block;margin-right:1em} .sw{display:inline-block;width:1.2em;height:.8em;vertical-align:middle;margin-right:.3em;border:1px solid #999}
`

func esc(s string) string { return html.EscapeString(s) }

func render(b *strings.Builder, h *history.History, rep *models.Report, meta Meta, vis string, visErr error) error {
	run := h.Header.Run
	verdict := meta.Verdict
	if verdict == "" {
		verdict = rep.Verdict
	}
	title := fmt.Sprintf("%s: %s, seed %d — %s", run.ID, run.Locker, run.Seed, verdict)
	fmt.Fprintf(b, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>%s</title><style>%s</style></head><body>\n", esc(title), css)
	fmt.Fprintf(b, "<h1>Run %s</h1>\n", esc(run.ID))
	fmt.Fprintf(b, "<div class=\"verdict %s\" id=\"verdict\"><b>%s</b> — %s</div>\n", verdictClass(verdict), esc(strings.ToUpper(string(verdict))), esc(verdictWords(verdict, rep, meta.LivenessCounts)))
	if meta.Note != "" {
		fmt.Fprintf(b, "<p class=\"note\">%s</p>\n", esc(meta.Note))
	}
	if rep.Truncated {
		b.WriteString("<p class=\"note\">The history's last line was cut off (the run died mid-write); the events before it were checked.</p>\n")
	}
	writeMeta(b, h, meta)
	writeCheckers(b, rep)

	b.WriteString("<h2 id=\"timeline\">Timeline</h2>\n")
	writeTimeline(b, h, rep, meta.timelineEvents())

	b.WriteString("<h2 id=\"plots\">Latency and throughput</h2>\n<div class=\"plots\">\n")
	lat, thr, err := plots(h)
	if err != nil {
		return err
	}
	fmt.Fprintf(b, "<div class=\"plot\" id=\"latency-plot\">%s</div>\n<div class=\"plot\" id=\"throughput-plot\">%s</div>\n</div>\n", lat, thr)
	writeLiveness(b, rep)

	b.WriteString("<h2 id=\"linearizability\">Linearizability search (porcupine)</h2>\n")
	if visErr != nil {
		fmt.Fprintf(b, "<p class=\"note\">No drawing of the search: %s.</p>\n", esc(visErr.Error()))
	} else {
		b.WriteString("<p class=\"note\">Porcupine's drawing of the search, with faults, crashes, restarts and the recovery phase as annotations. Hover over an operation for details.</p>\n")
		fmt.Fprintf(b, "<iframe title=\"porcupine visualisation\" srcdoc=\"%s\"></iframe>\n", esc(vis))
	}
	b.WriteString("</body></html>\n")
	return nil
}

func verdictClass(v models.Verdict) string {
	switch v {
	case models.Valid:
		return "valid"
	case models.Invalid:
		return "invalid"
	}
	return "unknown"
}

func verdictWords(v models.Verdict, rep *models.Report, livenessCounts bool) string {
	switch v {
	case models.Valid:
		if livenessCounts {
			return "no checker found a violation, and every live client acquired again after the faults healed."
		}
		return "no safety checker found a violation."
	case models.Invalid:
		var names []string
		for _, c := range rep.Checkers {
			if c.Verdict == models.Invalid && (c.Safety || livenessCounts) {
				names = append(names, c.Name)
			}
		}
		return fmt.Sprintf("the lock broke its promise: %s found a violation (see the counterexamples below).", strings.Join(names, ", "))
	}
	if causes := rep.UnknownCauses(livenessCounts); len(causes) > 0 {
		return "nothing was shown, and unknown is not a pass: " + strings.Join(causes, "; ")
	}
	return "a checker could not decide (it ran out of time, or found no evidence either way). Unknown is not a pass."
}

func writeMeta(b *strings.Builder, h *history.History, meta Meta) {
	run := h.Header.Run
	b.WriteString("<table class=\"meta\">\n")
	row := func(k, v string) { fmt.Fprintf(b, "<tr><td>%s</td><td>%s</td></tr>\n", esc(k), esc(v)) }
	row("locker", run.Locker)
	if run.Workload != "" {
		row("workload", run.Workload)
	}
	row("seed", fmt.Sprint(run.Seed))
	clients := fmt.Sprintf("%d", run.Clients)
	if run.ClientsAs != "" {
		clients += " (" + run.ClientsAs + ")"
	}
	row("clients", clients)
	row("keys", fmt.Sprint(run.Keys))
	row("duration", time.Duration(run.Duration).String())
	faults := "none"
	if len(run.Faults) > 0 {
		faults = strings.Join(run.Faults, ", ")
	}
	row("faults", faults)
	row("settings", run.Settings())
	row("started", h.Header.Start.UTC().Format(time.RFC3339))
	if !meta.Checked.IsZero() {
		row("checked", meta.Checked.UTC().Format(time.RFC3339))
	}
	if len(meta.Versions) > 0 {
		keys := make([]string, 0, len(meta.Versions))
		for k := range meta.Versions {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var vs []string
		for _, k := range keys {
			vs = append(vs, k+" "+meta.Versions[k])
		}
		row("versions", strings.Join(vs, "; "))
	}
	b.WriteString("</table>\n")
}

func writeCheckers(b *strings.Builder, rep *models.Report) {
	b.WriteString("<h2 id=\"checkers\">Checkers</h2>\n<table>\n<tr><th>checker</th><th>kind</th><th>verdict</th><th>summary</th></tr>\n")
	for _, c := range rep.Checkers {
		kind := "liveness"
		if c.Safety {
			kind = "safety"
		}
		fmt.Fprintf(b, "<tr><td>%s</td><td>%s</td><td class=\"%s\">%s</td><td>%s</td></tr>\n",
			esc(c.Name), kind, verdictClass(c.Verdict), esc(string(c.Verdict)), esc(c.Summary))
	}
	fmt.Fprintf(b, "<tr><th>overall safety</th><td>safety</td><td class=\"%s\">%s</td><td></td></tr>\n</table>\n", verdictClass(rep.Verdict), esc(string(rep.Verdict)))
	any := false
	for _, c := range rep.Checkers {
		if len(c.Counterexamples) == 0 {
			continue
		}
		if !any {
			b.WriteString("<h2 id=\"counterexamples\">Counterexamples</h2>\n")
			any = true
		}
		fmt.Fprintf(b, "<h3>%s</h3>\n<ol class=\"cx\">\n", esc(c.Name))
		for _, cx := range c.Counterexamples {
			fmt.Fprintf(b, "<li>%s</li>\n", esc(cx))
		}
		b.WriteString("</ol>\n")
	}
	c := rep.Counts
	fmt.Fprintf(b, "<p>History: %d calls (%d acquired, %d failed, %d indeterminate, %d open at the end), %d lost notices, %d crashes, %d faults.</p>\n",
		c.Calls, c.Acquired, c.Failed, c.Indeterminate, c.OpenAtEnd, c.LostNotices, c.Crashes, c.Faults)
}

func writeLiveness(b *strings.Builder, rep *models.Report) {
	l := rep.Liveness
	if l == nil {
		return
	}
	fmt.Fprintf(b, "<p>Acquire latency p50 %v, p95 %v, p99 %v, max %v; %.1f acquisitions/s over the run; longest wait %v.</p>\n",
		l.LatencyP50, l.LatencyP95, l.LatencyP99, l.LatencyMax, l.AcquisitionsPerSecond, l.LongestWait)
}
