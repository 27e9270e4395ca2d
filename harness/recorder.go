package harness

import (
	"cmp"
	"encoding/json"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lockcheck/lockcheck/history"
)

// Recorder is the one writer of a run's history. It stamps every event with
// the time since the run started on the harness's monotonic clock (never a
// client's clock, which faults may skew), and stamps and writes under one
// lock, so index order and time order agree.
//
// In a simulated run, goroutines woken at one virtual instant record in
// the order the Go scheduler runs them, which no seed decides. There the
// recorder holds each instant's events until time moves on, then writes
// them in a canonical order: by the client each concerns (a backend write
// by its writer, a crash by its client, other nemesis events first),
// each client's in the order recorded. Their order within the instant
// means nothing (they are concurrent), and a seed's history then repeats
// byte for byte.
type Recorder struct {
	mu        sync.Mutex
	w         *history.Writer
	start     time.Time
	observers []func(history.Event)
	err       error
	// orderTies is set for a simulated run until the run ends (Err);
	// tied holds the events of the latest instant meanwhile.
	orderTies bool
	tied      []history.Event

	completions atomic.Int64
}

func newRecorder(w *history.Writer, start time.Time, observers []func(history.Event), simulated bool) *Recorder {
	return &Recorder{w: w, start: start, observers: observers, orderTies: simulated}
}

// since is the recorder's clock.
func (r *Recorder) since() int64 { return int64(time.Since(r.start)) }

// record stamps and writes e. The first write error is kept and returned by
// Err; the run stops being useful then, but the clients need not care.
func (r *Recorder) record(e history.Event) history.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	e.Time = r.since()
	if !r.orderTies {
		return r.write(e)
	}
	if len(r.tied) > 0 && r.tied[0].Time != e.Time {
		r.writeTied()
	}
	r.tied = append(r.tied, e)
	return e
}

// writeTied writes the held events of one instant in canonical order.
func (r *Recorder) writeTied() {
	if len(r.tied) > 1 {
		slices.SortStableFunc(r.tied, func(a, b history.Event) int { return cmp.Compare(concerns(a), concerns(b)) })
	}
	for _, e := range r.tied {
		r.write(e)
	}
	r.tied = r.tied[:0]
}

// concerns is the client an event is about, -1 for none: its own, or for
// a nemesis event the client its value names (a backend write's writer, a
// crashed or restarted client).
func concerns(e history.Event) int {
	if e.Process != history.Nemesis {
		return e.Client
	}
	var v struct {
		Client *int `json:"client"`
	}
	if json.Unmarshal(e.Value, &v) == nil && v.Client != nil {
		return *v.Client
	}
	return -1
}

func (r *Recorder) write(e history.Event) history.Event {
	written, err := r.w.Append(e)
	if err != nil {
		if r.err == nil {
			r.err = err
		}
		return written
	}
	if e.Type != history.Invoke && e.Process != history.Nemesis {
		r.completions.Add(1)
	}
	for _, observe := range r.observers {
		observe(written)
	}
	return written
}

// Err is the first error writing the history, if any. Called once the run
// is over, it first writes the events held for the last instant; any
// recorded later are written as they come.
func (r *Recorder) Err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.orderTies {
		r.writeTied()
		r.orderTies = false
	}
	return r.err
}
