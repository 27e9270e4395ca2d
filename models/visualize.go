package models

import (
	"errors"
	"fmt"
	"slices"

	"github.com/anishathalye/porcupine"
)

// DefaultVisualizationOps bounds how many operations a visualisation draws
// when nothing is wrong: enough to see the shape of the run, small enough
// for a browser.
const DefaultVisualizationOps = 2000

// maxVisualOps is the most a visualisation ever draws, even as evidence: the
// page holds every partial linearization, which grows faster than the
// number of operations, and past this it stops being something a person can
// open. A variable only so that a test can reach the limit cheaply.
var maxVisualOps = 20000

// WriteVisualization writes porcupine's HTML view of the search to path,
// with faults, crashes, restarts and the recovery phase as annotations.
//
// It never draws the whole of a large history. For an invalid history it
// draws the stretches given as counterexamples (as many as fit in
// [Options.VisualizationOps], always the first); for a valid or undecided
// one, the first chunks that were searched to the end, up to that budget.
// Carried acquires (the owner at a cut) are drawn as "holds k (carried over
// a cut)". When even the first counterexample is too large to draw, the
// page holds only the annotations and a note saying so, since the verdict
// stands on the report, not on the drawing. It is not safe to call
// concurrently with itself.
func (r *LinearizabilityResult) WriteVisualization(path string) error {
	if r.notShown != "" {
		var info porcupine.LinearizationInfo
		info.AddAnnotations(append(slices.Clone(r.annotations), porcupine.Annotation{
			Tag: "note", Description: "not drawn", Details: r.notShown, BackgroundColor: crashColor}))
		if err := porcupine.VisualizePath(visualModel(), info, path); err != nil {
			return fmt.Errorf("models: visualization: %w", err)
		}
		return nil
	}
	if r.info == nil {
		_, li := porcupine.CheckOperationsVerbose(visualModel(), r.visual, r.timeout)
		r.info = &li
	}
	// A copy, so that annotations are not added twice to the kept info
	// when it is written twice.
	info := *r.info
	info.AddAnnotations(r.annotationsFor(r.visual))
	if err := porcupine.VisualizePath(visualModel(), info, path); err != nil {
		return fmt.Errorf("models: visualization: %w", err)
	}
	return nil
}

// annotationsFor keeps the annotations that overlap the drawn operations:
// each one adds a column to the drawing.
func (r *LinearizabilityResult) annotationsFor(ops []porcupine.Operation) []porcupine.Annotation {
	if len(ops) == 0 {
		return slices.Clone(r.annotations)
	}
	from, to := ops[0].Call, ops[0].Return
	for _, op := range ops {
		from, to = min(from, op.Call), max(to, op.Return)
	}
	var out []porcupine.Annotation
	for _, a := range r.annotations {
		if a.Start <= to && max(a.End, a.Start) >= from {
			out = append(out, a)
		}
	}
	return out
}

const (
	faultColor    = "#f6d7a7"
	crashColor    = "#f4b6b6"
	restartColor  = "#c9e4c5"
	recoveryColor = "#b8d8f2"
	nemesisTag    = "nemesis"
)

func annotations(d *digest) []porcupine.Annotation {
	var out []porcupine.Annotation
	open := map[int]nemesisRecord{}
	faultSpan := func(start nemesisRecord, end int64) porcupine.Annotation {
		f := start.fault
		details := fmt.Sprintf("fault %d: %s", f.ID, f.Kind)
		if len(f.Clients) > 0 {
			details += fmt.Sprintf(" on clients %v", f.Clients)
		}
		if f.Duration > 0 {
			details += fmt.Sprintf(", planned %v", f.Duration)
		}
		return porcupine.Annotation{Tag: nemesisTag, Start: start.time, End: end,
			Description: f.Kind, Details: details, BackgroundColor: faultColor}
	}
	for _, n := range d.nemesis {
		switch n.kind {
		case nemFaultStart:
			open[n.fault.ID] = n
		case nemFaultStop:
			if s, ok := open[n.fault.ID]; ok {
				out = append(out, faultSpan(s, n.time))
				delete(open, n.fault.ID)
			}
		case nemCrash:
			out = append(out, porcupine.Annotation{ClientId: max(n.client, 0), Start: n.time, End: n.time,
				Description: "crash", Details: fmt.Sprintf("client %d (P%d) crashed; any lock it held is abandoned", n.client, n.proc),
				BackgroundColor: crashColor})
		case nemRestart:
			out = append(out, porcupine.Annotation{ClientId: max(n.client, 0), Start: n.time, End: n.time,
				Description: "restart", Details: fmt.Sprintf("client %d restarted as P%d", n.client, n.proc),
				BackgroundColor: restartColor})
		case nemRecovery:
			out = append(out, porcupine.Annotation{Tag: nemesisTag, Start: n.time, End: d.last,
				Description: "recovery", Details: "every fault healed; each live client must acquire once",
				BackgroundColor: recoveryColor})
		}
	}
	// Faults never healed in the history (it was cut short) last to its
	// end.
	ids := make([]int, 0, len(open))
	for id := range open {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		out = append(out, faultSpan(open[id], d.last))
	}
	return out
}

// errNothingToDraw is returned by Report.WriteVisualization when the
// linearizability checker did not run.
var errNothingToDraw = errors.New("models: visualization: the linearizability checker did not run")
