package harness

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/lockcheck/lockcheck/history"
)

// Recorder is the one writer of a run's history. It stamps every event with
// the time since the run started on the harness's monotonic clock (never a
// client's clock, which faults may skew), and stamps and writes under one
// lock, so index order and time order agree.
type Recorder struct {
	mu        sync.Mutex
	w         *history.Writer
	start     time.Time
	observers []func(history.Event)
	err       error

	completions atomic.Int64
}

func newRecorder(w *history.Writer, start time.Time, observers []func(history.Event)) *Recorder {
	return &Recorder{w: w, start: start, observers: observers}
}

// since is the recorder's clock.
func (r *Recorder) since() int64 { return int64(time.Since(r.start)) }

// record stamps and writes e. The first write error is kept and returned by
// Err; the run stops being useful then, but the clients need not care.
func (r *Recorder) record(e history.Event) history.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	e.Time = r.since()
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

// Err is the first error writing the history, if any.
func (r *Recorder) Err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}
