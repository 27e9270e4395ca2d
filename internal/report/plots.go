package report

import (
	"bytes"
	"fmt"
	"image/color"
	"math"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgsvg"

	"github.com/lockcheck/lockcheck/history"
)

// acquisition is one acquire call that returned ok.
type acquisition struct {
	done    int64 // ns since the run started
	latency int64 // ns from invocation to ok
}

func acquisitions(h *history.History) []acquisition {
	open := map[history.Process]int64{}
	var out []acquisition
	for _, e := range h.Events {
		if e.F != history.Acquire {
			continue
		}
		switch e.Type {
		case history.Invoke:
			open[e.Process] = e.Time
		case history.OK:
			if t, ok := open[e.Process]; ok {
				out = append(out, acquisition{done: e.Time, latency: e.Time - t})
			}
			delete(open, e.Process)
		default:
			delete(open, e.Process)
		}
	}
	return out
}

func faultSpans(h *history.History) []span {
	tl := buildTimeline(h, nil)
	return tl.faults
}

// plots draws acquire latency against completion time, and acquisitions per
// second, as inline SVG.
func plots(h *history.History) (latency, throughput string, err error) {
	acq := acquisitions(h)
	end := lastTime(h)
	faults := faultSpans(h)

	lp := plot.New()
	lp.Title.Text = "Acquire latency by time of completion"
	lp.X.Label.Text = "time since start (s)"
	lp.Y.Label.Text = "latency (ms)"
	pts := scatterPoints(acq, end)
	maxLat := 0.0
	for _, p := range pts {
		maxLat = math.Max(maxLat, p.Y)
	}
	lp.X.Min, lp.X.Max = 0, math.Max(secs(end), 1e-3)
	lp.Y.Min, lp.Y.Max = 0, math.Max(maxLat*1.05, 1)
	if err := addFaultBands(lp, faults, lp.Y.Max); err != nil {
		return "", "", err
	}
	if len(pts) > 0 {
		s, err := plotter.NewScatter(pts)
		if err != nil {
			return "", "", fmt.Errorf("latency plot: %w", err)
		}
		s.GlyphStyle.Color = color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}
		s.GlyphStyle.Radius = vg.Points(1.5)
		s.GlyphStyle.Shape = draw.CircleGlyph{}
		lp.Add(s)
	}
	lp.Add(plotter.NewGrid())

	tp := plot.New()
	tp.Title.Text = "Acquisitions per second"
	tp.X.Label.Text = "time since start (s)"
	tp.Y.Label.Text = "acquisitions/s"
	// About sixty bins over the run, never finer than 10 ms, so a short
	// run still shows a shape and a long one stays readable.
	bin := max(end/60, int64(10e6))
	n := int(end/bin) + 1
	counts := make([]float64, n)
	for _, a := range acq {
		counts[min(int(a.done/bin), n-1)]++
	}
	steps := make(plotter.XYs, n+1)
	maxRate := 0.0
	for i := range n {
		rate := counts[i] / (float64(bin) / 1e9)
		steps[i].X, steps[i].Y = secs(int64(i)*bin), rate
		maxRate = math.Max(maxRate, rate)
	}
	steps[n].X, steps[n].Y = secs(int64(n)*bin), steps[n-1].Y
	tp.X.Min, tp.X.Max = 0, secs(int64(n)*bin)
	tp.Y.Min, tp.Y.Max = 0, math.Max(maxRate*1.05, 1)
	if err := addFaultBands(tp, faults, tp.Y.Max); err != nil {
		return "", "", err
	}
	line, err := plotter.NewLine(steps)
	if err != nil {
		return "", "", fmt.Errorf("throughput plot: %w", err)
	}
	line.StepStyle = plotter.PostStep
	line.Color = color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff}
	tp.Add(line, plotter.NewGrid())

	if latency, err = svgOf(lp); err != nil {
		return "", "", err
	}
	if throughput, err = svgOf(tp); err != nil {
		return "", "", err
	}
	return latency, throughput, nil
}

// maxScatter bounds the points of the latency plot: each is an SVG element,
// and a long run has hundreds of thousands of acquisitions.
const maxScatter = 4000

// scatterPoints is every acquisition as (completion s, latency ms), or, past
// maxScatter, the fastest and slowest of each of maxScatter/2 stretches of
// time, which keeps the plot's outline and every outlier's stretch.
func scatterPoints(acq []acquisition, end int64) plotter.XYs {
	pt := func(a acquisition) plotter.XY { return plotter.XY{X: secs(a.done), Y: float64(a.latency) / 1e6} }
	if len(acq) <= maxScatter {
		out := make(plotter.XYs, len(acq))
		for i, a := range acq {
			out[i] = pt(a)
		}
		return out
	}
	bins := maxScatter / 2
	lo, hi := make([]int, bins), make([]int, bins)
	for i := range lo {
		lo[i], hi[i] = -1, -1
	}
	for i, a := range acq {
		k := min(int(a.done*int64(bins)/max(end, 1)), bins-1)
		if lo[k] < 0 || a.latency < acq[lo[k]].latency {
			lo[k] = i
		}
		if hi[k] < 0 || a.latency > acq[hi[k]].latency {
			hi[k] = i
		}
	}
	var out plotter.XYs
	for k := range bins {
		if lo[k] >= 0 {
			out = append(out, pt(acq[lo[k]]))
		}
		if hi[k] >= 0 && hi[k] != lo[k] {
			out = append(out, pt(acq[hi[k]]))
		}
	}
	return out
}

// addFaultBands shades each fault period, so a latency spike can be read
// against the fault that caused it.
func addFaultBands(p *plot.Plot, faults []span, top float64) error {
	for _, f := range faults {
		x0, x1 := secs(f.from), secs(f.to)
		poly, err := plotter.NewPolygon(plotter.XYs{{X: x0, Y: 0}, {X: x1, Y: 0}, {X: x1, Y: top}, {X: x0, Y: top}})
		if err != nil {
			return fmt.Errorf("fault band: %w", err)
		}
		poly.Color = color.NRGBA{R: 0xf6, G: 0xd7, B: 0xa7, A: 0xa0}
		poly.LineStyle.Width = 0
		p.Add(poly)
	}
	return nil
}

func svgOf(p *plot.Plot) (string, error) {
	c := vgsvg.New(6.5*vg.Inch, 3*vg.Inch)
	p.Draw(draw.New(c))
	var buf bytes.Buffer
	if _, err := c.WriteTo(&buf); err != nil {
		return "", fmt.Errorf("plot: %w", err)
	}
	s := buf.String()
	// The XML prolog is for a standalone file; inside HTML it is noise.
	if i := strings.Index(s, "<svg"); i >= 0 {
		s = s[i:]
	}
	return s, nil
}

func secs(ns int64) float64 { return float64(ns) / 1e9 }

func lastTime(h *history.History) int64 {
	var t int64
	for _, e := range h.Events {
		t = max(t, e.Time)
	}
	return t
}
