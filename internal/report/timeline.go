package report

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/lockcheck/lockcheck/history"
	"github.com/lockcheck/lockcheck/models"
)

// span is a stretch of time: a fault, the recovery phase, a counterexample.
type span struct {
	from, to int64
	label    string
	detail   string
	clients  []int
}

// item is one bar in a client's lane.
type item struct {
	client   int
	from, to int64
	kind     string // a CSS class: wait, wait-fail, wait-info, section, release, read, write, open
	detail   string
}

// mark is an instant in a client's lane.
type mark struct {
	client int
	at     int64
	kind   string // crash, restart, lost, request, clock
	detail string
}

type timeline struct {
	lanes    []int
	items    []item
	marks    []mark
	faults   []span
	recovery []span
	overlaps []span // mutual-exclusion violations: the time both held
	// violations counts them all, which overlaps holds up to
	// models.MaxSpans of.
	violations int
	linearize  []span // linearizability counterexample stretches
	end        int64
}

type openCall struct {
	start  int64
	f, key string
	client int
}

type openSection struct {
	start  int64
	key    string
	token  uint64
	client int
}

// buildTimeline pairs the history's calls into bars; rep may be nil.
func buildTimeline(h *history.History, rep *models.Report) *timeline {
	tl := &timeline{end: lastTime(h)}
	lanes := map[int]bool{}
	for c := range h.Header.Run.Clients {
		lanes[c] = true
	}
	calls := map[history.Process]openCall{}
	sections := map[history.Process][]openSection{}
	closeSections := func(p history.Process, key string, at int64, why string) {
		var keep []openSection
		for _, s := range sections[p] {
			if key != "" && s.key != key {
				keep = append(keep, s)
				continue
			}
			tl.items = append(tl.items, item{client: s.client, from: s.start, to: at, kind: "section",
				detail: fmt.Sprintf("P%d holds %s%s from %v to %v (%s)", p, s.key, tokenWords(s.token), dur(s.start), dur(at), why)})
		}
		sections[p] = keep
	}
	faults := map[int]history.Event{}
	for _, e := range h.Events {
		if e.Process == history.Nemesis {
			tl.nemesis(e, faults, lanes, calls, closeSections)
			continue
		}
		lanes[e.Client] = true
		switch {
		case e.F == history.Lost:
			closeSections(e.Process, e.Key, e.Time, "lost")
			tl.marks = append(tl.marks, mark{e.Client, e.Time, "lost", fmt.Sprintf("P%d learned its lease on %s is gone at %v", e.Process, e.Key, dur(e.Time))})
		case e.F == history.ReleaseRequested:
			tl.marks = append(tl.marks, mark{e.Client, e.Time, "request", fmt.Sprintf("P%d asked to release %s at %v", e.Process, e.Key, dur(e.Time))})
		case e.Type == history.Invoke:
			calls[e.Process] = openCall{start: e.Time, f: e.F, key: e.Key, client: e.Client}
			if e.F == history.Release {
				closeSections(e.Process, e.Key, e.Time, "release")
			}
		default:
			c, ok := calls[e.Process]
			if !ok {
				continue
			}
			delete(calls, e.Process)
			kind := c.f
			switch c.f {
			case history.Acquire:
				kind = map[history.Type]string{history.OK: "wait", history.Fail: "wait-fail", history.Info: "wait-info"}[e.Type]
			case history.Release, history.ReadOp, history.WriteOp:
			default:
				kind = "release"
			}
			detail := fmt.Sprintf("P%d %s %s: %v → %v, %s", e.Process, c.f, c.key, dur(c.start), dur(e.Time), e.Type)
			if len(e.Value) > 0 {
				detail += " " + string(e.Value)
			}
			if e.Error != "" {
				detail += ": " + e.Error
			}
			tl.items = append(tl.items, item{client: c.client, from: c.start, to: e.Time, kind: kind, detail: detail})
			if c.f == history.Acquire && e.Type == history.OK {
				sections[e.Process] = append(sections[e.Process], openSection{start: e.Time, key: c.key, token: e.Token, client: c.client})
			}
		}
	}
	for p, c := range calls {
		tl.items = append(tl.items, item{client: c.client, from: c.start, to: tl.end, kind: "open",
			detail: fmt.Sprintf("P%d %s %s from %v, still open at the end", p, c.f, c.key, dur(c.start))})
	}
	for p := range sections {
		closeSections(p, "", tl.end, "end of history")
	}
	ids := make([]int, 0, len(faults))
	for id := range faults {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		tl.addFault(faults[id], tl.end, " (never healed in the history)")
	}
	for c := range lanes {
		tl.lanes = append(tl.lanes, c)
	}
	slices.Sort(tl.lanes)
	sort.SliceStable(tl.items, func(i, j int) bool { return tl.items[i].from < tl.items[j].from })
	if rep != nil && rep.Mutex != nil {
		// Every violation is marked, not only the few described: the
		// first ones carry their description, the rest who and when.
		described := map[[2]int64]string{}
		for _, o := range rep.Mutex.Overlaps {
			described[[2]int64{o.Entered.Start, int64(o.Entered.Client)}] = o.Description
		}
		for _, sp := range rep.Mutex.Spans {
			detail, ok := described[[2]int64{sp.From, int64(sp.Entered)}]
			if !ok {
				detail = fmt.Sprintf("key %s: clients %d and %d both held it from %v to %v", sp.Key, sp.Held, sp.Entered, dur(sp.From), dur(sp.To))
			}
			tl.overlaps = append(tl.overlaps, span{from: sp.From, to: sp.To, label: "both held " + sp.Key, detail: detail, clients: []int{sp.Held, sp.Entered}})
		}
		if len(rep.Mutex.Spans) == 0 {
			// A report written before spans were kept: its described ones.
			for _, o := range rep.Mutex.Overlaps {
				tl.overlaps = append(tl.overlaps, span{from: o.Entered.Start, to: min(o.Held.End, o.Entered.End),
					label: "both held " + o.Key, detail: o.Description, clients: []int{o.Held.Client, o.Entered.Client}})
			}
		}
		tl.violations = rep.Mutex.Violations
	}
	if rep != nil && rep.Linearizability != nil {
		for _, c := range rep.Linearizability.Counterexamples {
			tl.linearize = append(tl.linearize, span{from: c.From, to: min(c.To, tl.end), label: "not linearizable: " + c.Key, detail: c.Description})
		}
	}
	return tl
}

func (tl *timeline) nemesis(e history.Event, faults map[int]history.Event, lanes map[int]bool, calls map[history.Process]openCall,
	closeSections func(history.Process, string, int64, string)) {
	switch e.F {
	case history.FaultStart:
		var f history.Fault
		if json.Unmarshal(e.Value, &f) == nil {
			faults[f.ID] = e
		}
	case history.FaultStop:
		var f history.Fault
		if json.Unmarshal(e.Value, &f) == nil {
			if s, ok := faults[f.ID]; ok {
				tl.addFault(s, e.Time, "")
				delete(faults, f.ID)
			}
		}
	case history.Crash, history.Restart:
		var r history.ClientRef
		if json.Unmarshal(e.Value, &r) != nil {
			return
		}
		lanes[r.Client] = true
		if e.F == history.Crash {
			closeSections(r.Process, "", e.Time, "crash")
			if c, ok := calls[r.Process]; ok {
				tl.items = append(tl.items, item{client: c.client, from: c.start, to: e.Time, kind: "open",
					detail: fmt.Sprintf("P%d %s %s from %v, cut by the crash", r.Process, c.f, c.key, dur(c.start))})
				delete(calls, r.Process)
			}
			tl.marks = append(tl.marks, mark{r.Client, e.Time, "crash", fmt.Sprintf("client %d (P%d) crashed at %v", r.Client, r.Process, dur(e.Time))})
		} else {
			tl.marks = append(tl.marks, mark{r.Client, e.Time, "restart", fmt.Sprintf("client %d restarted as P%d at %v", r.Client, r.Process, dur(e.Time))})
		}
	case history.Clock:
		var c history.ClockChange
		if json.Unmarshal(e.Value, &c) == nil {
			tl.marks = append(tl.marks, mark{c.Client, e.Time, "clock", fmt.Sprintf("client %d clock now %v ahead, drift %g, at %v", c.Client, time.Duration(c.Skew), c.Drift, dur(e.Time))})
		}
	case history.Recovery:
		tl.recovery = append(tl.recovery, span{from: e.Time, to: tl.end, label: "recovery", detail: "every fault healed; each live client must acquire once"})
	}
}

func (tl *timeline) addFault(start history.Event, end int64, suffix string) {
	var f history.Fault
	_ = json.Unmarshal(start.Value, &f)
	label := f.Kind
	if len(f.Clients) > 0 {
		label += fmt.Sprintf(" → clients %v", f.Clients)
	}
	detail := fmt.Sprintf("fault %d: %s from %v to %v%s", f.ID, label, dur(start.Time), dur(end), suffix)
	tl.faults = append(tl.faults, span{from: start.Time, to: end, label: label, detail: detail, clients: f.Clients})
}

func tokenWords(t uint64) string {
	if t == 0 {
		return ""
	}
	return fmt.Sprintf(" (token %d)", t)
}

func dur(ns int64) time.Duration { return time.Duration(ns) }

// window is a stretch of the history a timeline panel draws.
type window struct {
	from, to        int64
	firstEv, lastEv int
	aroundViolation bool
}

// windows picks what to draw under a budget of n events: everything when it
// fits, else the first half of the budget and the other half around the
// first counterexample, so the evidence is always on the page.
func windows(h *history.History, tl *timeline, n int) []window {
	ev := h.Events
	n = max(n, 4) // room for a first stretch and one around the evidence
	if len(ev) == 0 {
		return []window{{from: 0, to: max(tl.end, 1), firstEv: 0, lastEv: -1}}
	}
	if len(ev) <= n {
		return []window{{from: 0, to: max(tl.end, 1), firstEv: 0, lastEv: len(ev) - 1}}
	}
	focus := int64(-1)
	if len(tl.overlaps) > 0 {
		focus = tl.overlaps[0].from
	}
	if len(tl.linearize) > 0 && (focus < 0 || tl.linearize[0].from < focus) {
		focus = tl.linearize[0].from
	}
	if focus < 0 {
		return []window{{from: 0, to: ev[n-1].Time, firstEv: 0, lastEv: n - 1}}
	}
	first := window{from: 0, to: ev[n/2-1].Time, firstEv: 0, lastEv: n/2 - 1}
	i := sort.Search(len(ev), func(i int) bool { return ev[i].Time >= focus })
	lo, hi := max(0, i-n/4), min(len(ev)-1, i+n/4)
	if lo <= first.lastEv+1 {
		hi = min(len(ev)-1, max(hi, n-1))
		return []window{{from: 0, to: ev[hi].Time, firstEv: 0, lastEv: hi, aroundViolation: true}}
	}
	return []window{first, {from: ev[lo].Time, to: ev[hi].Time, firstEv: lo, lastEv: hi, aroundViolation: true}}
}

func writeTimeline(b *strings.Builder, h *history.History, rep *models.Report, n int) {
	tl := buildTimeline(h, rep)
	ws := windows(h, tl, n)
	if len(ws) > 1 || ws[0].lastEv < len(h.Events)-1 {
		var parts []string
		for _, w := range ws {
			parts = append(parts, fmt.Sprintf("events %d–%d (%v to %v)", w.firstEv, w.lastEv, dur(w.from), dur(w.to)))
		}
		fmt.Fprintf(b, "<p class=\"note\" id=\"timeline-capped\">The history has %d events; to stay readable the timeline draws at most %d: %s. The second stretch, when there is one, is around the first counterexample. The checkers saw every event.</p>\n",
			len(h.Events), n, strings.Join(parts, " and "))
	}
	writeOverview(b, tl)
	for _, w := range ws {
		if w.aroundViolation && len(ws) > 1 {
			b.WriteString("<h3>Around the first counterexample</h3>\n")
		}
		drawPanel(b, tl, w)
	}
	b.WriteString(`<p class="legend">` +
		`<span><i class="sw" style="background:#c7c7c7"></i>waiting to acquire</span>` +
		`<span><i class="sw" style="background:#e99"></i>acquire failed</span>` +
		`<span><i class="sw" style="background:#f0c36d"></i>outcome unknown / open</span>` +
		`<span><i class="sw" style="background:#4c9a2a"></i>critical section</span>` +
		`<span><i class="sw" style="background:#7aa6d6"></i>release</span>` +
		`<span><i class="sw" style="background:#6a3d9a"></i>read / write</span>` +
		`<span><i class="sw" style="background:#f6d7a7"></i>fault</span>` +
		`<span><i class="sw" style="background:#b8d8f2"></i>recovery phase</span>` +
		`<span><i class="sw" style="background:#ff3030"></i>two holders at once</span>` +
		`<span>✕ crash, ▲ restart, ● lost, ◆ release requested, ◔ clock change</span></p>` + "\n")
}

// overviewBins is how many slices of the run the overview strip counts
// violations in.
const overviewBins = 200

// writeOverview draws the whole run in one strip: the faults and the
// recovery phase as bands, and the violations as a density strip (each
// slice of the run shaded by how many began in it), with their count.
// The panels below may show only stretches of a long run; this shows
// where in all of it things went wrong.
func writeOverview(b *strings.Builder, tl *timeline) {
	end := max(tl.end, 1)
	fmt.Fprintf(b, "<h3 id=\"overview\">The whole run: %v", dur(end))
	if tl.violations > 0 {
		fmt.Fprintf(b, ", %d mutual-exclusion violation%s", tl.violations, map[bool]string{true: "", false: "s"}[tl.violations == 1])
		if tl.violations > len(tl.overlaps) {
			fmt.Fprintf(b, " (the first %d marked)", len(tl.overlaps))
		}
	}
	b.WriteString("</h3>\n")
	const h = 40.0
	x := func(t int64) float64 { return left + float64(min(max(t, 0), end))/float64(end)*plotW }
	fmt.Fprintf(b, "<svg class=\"overview\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 %g %g\" font-family=\"sans-serif\" font-size=\"11\">\n", panelW, h+16)
	fmt.Fprintf(b, "<rect x=\"%g\" y=\"0\" width=\"%g\" height=\"%g\" fill=\"#f4f4f4\"/>\n", left, plotW, h)
	b.WriteString("<text x=\"4\" y=\"14\">faults</text><text x=\"4\" y=\"34\">violations</text>\n")
	for _, f := range tl.faults {
		fmt.Fprintf(b, "<rect class=\"overview-fault\" x=\"%.1f\" y=\"2\" width=\"%.1f\" height=\"16\" fill=\"#f6d7a7\"><title>%s</title></rect>\n", x(f.from), max(x(f.to)-x(f.from), 1), esc(f.detail))
	}
	for _, r := range tl.recovery {
		fmt.Fprintf(b, "<rect x=\"%.1f\" y=\"2\" width=\"%.1f\" height=\"16\" fill=\"#b8d8f2\" fill-opacity=\"0.6\"><title>recovery phase</title></rect>\n", x(r.from), max(x(r.to)-x(r.from), 1))
	}
	var bins [overviewBins]int
	for _, o := range tl.overlaps {
		bins[min(int(o.from*overviewBins/end), overviewBins-1)]++
	}
	most := slices.Max(bins[:])
	for i, n := range bins {
		if n == 0 {
			continue
		}
		from, to := end*int64(i)/overviewBins, end*int64(i+1)/overviewBins
		fmt.Fprintf(b, "<rect class=\"density\" x=\"%.1f\" y=\"22\" width=\"%.1f\" height=\"16\" fill=\"#d00\" fill-opacity=\"%.2f\"><title>%d violation%s began between %v and %v</title></rect>\n",
			x(from), max(x(to)-x(from), 1), 0.25+0.75*float64(n)/float64(most), n, map[bool]string{true: "", false: "s"}[n == 1], dur(from), dur(to))
	}
	fmt.Fprintf(b, "<text x=\"%g\" y=\"%g\" fill=\"#555\">0</text><text x=\"%g\" y=\"%g\" text-anchor=\"end\" fill=\"#555\">%v</text>\n", left, h+13, left+plotW, h+13, dur(end))
	b.WriteString("</svg>\n")
}

const (
	panelW = 1200.0
	left   = 80.0
	right  = 10.0
	top    = 34.0
	laneH  = 22.0
	axisH  = 26.0
	barH   = 12.0
	thinH  = 5.0
	plotW  = panelW - left - right
)

func drawPanel(b *strings.Builder, tl *timeline, w window) {
	if w.to <= w.from {
		w.to = w.from + 1
	}
	laneY := map[int]float64{}
	for i, c := range tl.lanes {
		laneY[c] = top + float64(i)*laneH
	}
	height := top + float64(len(tl.lanes))*laneH + axisH
	x := func(t int64) float64 {
		t = min(max(t, w.from), w.to)
		return left + float64(t-w.from)/float64(w.to-w.from)*plotW
	}
	visible := func(from, to int64) bool { return to >= w.from && from <= w.to }
	bottom := top + float64(len(tl.lanes))*laneH
	fmt.Fprintf(b, "<svg class=\"timeline\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 %g %g\" font-family=\"sans-serif\" font-size=\"11\">\n", panelW, height)
	for i, c := range tl.lanes {
		y := laneY[c]
		if i%2 == 1 {
			fmt.Fprintf(b, "<rect x=\"%g\" y=\"%g\" width=\"%g\" height=\"%g\" fill=\"#fafafa\"/>\n", left, y, plotW, laneH)
		}
		fmt.Fprintf(b, "<text x=\"4\" y=\"%g\">client %d</text>\n", y+laneH/2+4, c)
	}
	for _, r := range tl.recovery {
		if visible(r.from, r.to) {
			fmt.Fprintf(b, "<rect class=\"recovery\" x=\"%.1f\" y=\"%g\" width=\"%.1f\" height=\"%g\" fill=\"#b8d8f2\" fill-opacity=\"0.45\"><title>%s</title></rect>\n",
				x(r.from), top, max(x(r.to)-x(r.from), 1), bottom-top, esc(r.detail))
			// Kept inside the panel when the phase starts near its end.
			fmt.Fprintf(b, "<text x=\"%.1f\" y=\"%g\" fill=\"#245\">recovery</text>\n", min(x(r.from)+2, panelW-60), top-4)
		}
	}
	row := 0
	for _, f := range tl.faults {
		if !visible(f.from, f.to) {
			continue
		}
		x0, wd := x(f.from), max(x(f.to)-x(f.from), 1)
		fmt.Fprintf(b, "<rect class=\"fault\" x=\"%.1f\" y=\"%g\" width=\"%.1f\" height=\"%g\" fill=\"#f6d7a7\" fill-opacity=\"0.35\"><title>%s</title></rect>\n",
			x0, top, wd, bottom-top, esc(f.detail))
		for _, c := range f.clients {
			if y, ok := laneY[c]; ok {
				fmt.Fprintf(b, "<rect class=\"fault-target\" x=\"%.1f\" y=\"%g\" width=\"%.1f\" height=\"%g\" fill=\"#f0b050\" fill-opacity=\"0.45\"><title>%s</title></rect>\n",
					x0, y, wd, laneH, esc(f.detail))
			}
		}
		// Two rows of labels, alternating, so that neighbouring faults'
		// labels do not print over each other.
		fmt.Fprintf(b, "<text x=\"%.1f\" y=\"%g\" fill=\"#8a5300\">%s<title>%s</title></text>\n", x0+2, 12+float64(row%2)*12, esc(f.label), esc(f.detail))
		row++
	}
	for _, it := range tl.items {
		if !visible(it.from, it.to) {
			continue
		}
		y, ok := laneY[it.client]
		if !ok {
			continue
		}
		hgt, fill := thinH, "#c7c7c7"
		switch it.kind {
		case "section":
			hgt, fill = barH, "#4c9a2a"
		case "wait-fail":
			fill = "#e99"
		case "wait-info", "open":
			fill = "#f0c36d"
		case "release":
			fill = "#7aa6d6"
		case history.ReadOp, history.WriteOp:
			hgt, fill = barH-4, "#6a3d9a"
		}
		fmt.Fprintf(b, "<rect class=\"%s\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%g\" fill=\"%s\"><title>%s</title></rect>\n",
			it.kind, x(it.from), y+(laneH-hgt)/2, max(x(it.to)-x(it.from), 1), hgt, fill, esc(it.detail))
	}
	labelled := false
	for _, o := range tl.overlaps {
		if !visible(o.from, o.to) {
			continue
		}
		for _, c := range o.clients {
			if y, ok := laneY[c]; ok {
				fmt.Fprintf(b, "<rect class=\"overlap\" x=\"%.1f\" y=\"%g\" width=\"%.1f\" height=\"%g\" fill=\"#ff3030\" fill-opacity=\"0.55\" stroke=\"#b00\"><title>%s</title></rect>\n",
					x(o.from), y+1, max(x(o.to)-x(o.from), 2), laneH-2, esc(o.detail))
			}
		}
		// Only the first is labelled: violations come in runs, and their
		// labels would print over each other; each has its tooltip.
		if !labelled {
			label := o.label
			if tl.violations > 1 {
				label += fmt.Sprintf(" (%d violations in the run, each marked)", tl.violations)
			}
			fmt.Fprintf(b, "<text x=\"%.1f\" y=\"%g\" fill=\"#b00\" font-weight=\"bold\">%s</text>\n", x(o.from)+2, top-4, esc(label))
			labelled = true
		}
	}
	for _, l := range tl.linearize {
		if visible(l.from, l.to) {
			fmt.Fprintf(b, "<rect class=\"nonlinearizable\" x=\"%.1f\" y=\"%g\" width=\"%.1f\" height=\"%g\" fill=\"none\" stroke=\"#b00\" stroke-dasharray=\"4 3\"><title>%s</title></rect>\n",
				x(l.from), top, max(x(l.to)-x(l.from), 2), bottom-top, esc(l.detail))
		}
	}
	symbols := map[string]string{"crash": "✕", "restart": "▲", "lost": "●", "request": "◆", "clock": "◔"}
	colours := map[string]string{"crash": "#c00", "restart": "#2a7", "lost": "#c60", "request": "#36c", "clock": "#555"}
	for _, m := range tl.marks {
		y, ok := laneY[m.client]
		if !ok || !visible(m.at, m.at) {
			continue
		}
		fmt.Fprintf(b, "<text class=\"mark-%s\" x=\"%.1f\" y=\"%g\" text-anchor=\"middle\" fill=\"%s\" font-size=\"13\">%s<title>%s</title></text>\n",
			m.kind, x(m.at), y+laneH/2+5, colours[m.kind], symbols[m.kind], esc(m.detail))
	}
	// Time axis: about ten ticks at round durations.
	fmt.Fprintf(b, "<line x1=\"%g\" y1=\"%g\" x2=\"%g\" y2=\"%g\" stroke=\"#888\"/>\n", left, bottom, left+plotW, bottom)
	step := niceStep(w.to - w.from)
	for t := (w.from + step - 1) / step * step; t <= w.to; t += step {
		fmt.Fprintf(b, "<line x1=\"%.1f\" y1=\"%g\" x2=\"%.1f\" y2=\"%g\" stroke=\"#888\"/><text x=\"%.1f\" y=\"%g\" text-anchor=\"middle\" fill=\"#555\">%v</text>\n",
			x(t), bottom, x(t), bottom+4, x(t), bottom+16, dur(t))
	}
	b.WriteString("</svg>\n")
}

// niceStep is a 1-2-5 step that cuts span into about ten.
func niceStep(span int64) int64 {
	step := int64(1)
	for step*10 < span {
		switch {
		case step*2*10 >= span:
			return step * 2
		case step*5*10 >= span:
			return step * 5
		}
		step *= 10
	}
	return step
}
