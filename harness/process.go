package harness

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/lockcheck/lockcheck/harness/worker"
	"github.com/lockcheck/lockcheck/history"
)

// workerCloseWithin bounds an orderly stop of one worker process before it
// is killed.
const workerCloseWithin = 3 * time.Second

// startWorker starts the worker process of one incarnation of client slot:
// the same locker, reached through the same per-client proxy, on a clock
// set where the client's machine clock stands.
func (r *run) startWorker(slot int, inc *incarnation, identity string, seed uint64) (*worker.Process, error) {
	skew, drift := inc.clock.machine.State()
	hello := worker.Hello{
		Protocol:  worker.Protocol,
		Locker:    r.cfg.Locker.Name,
		TimeScale: r.cfg.TimeScale,
		Identity:  identity,
		Seed:      seed,
		Redis:     r.inst.Attach.Redis,
		Clock:     worker.ClockState{SkewNS: int64(skew), Drift: drift},
	}
	hello.Backend = r.inst.Attach.Kind()
	if a := r.inst.Attach; a.GCSEndpoint != "" {
		hello.GCS = &worker.GCS{Endpoint: a.GCSEndpoint, Bucket: a.GCSBucket}
	}
	if r.plane != nil {
		hello.Redirect = map[string]string{}
		for _, up := range r.inst.Upstreams {
			hello.Redirect[up] = r.plane.Redirect(slot, up)
		}
	}
	switch r.cfg.Workload.Name {
	case history.WorkloadRegister:
		hello.Register = worker.RegisterPlain
	case history.WorkloadFencedRegister:
		hello.Register = worker.RegisterFenced
	}
	hooks := worker.Hooks{
		Log: func(line string) { r.log.Logf("client %d (worker): %s", slot, line) },
		// The worker reports when the attempt began after it read the
		// request; counted from when the request was sent, the time is
		// no later than the real start, which keeps the narrowed
		// interval sound.
		AttemptStarted: func(at time.Time) { inc.attempt.Store(int64(at.Sub(r.rec.start))) },
	}
	ctx, cancel := context.WithTimeout(r.ctx, time.Minute)
	defer cancel()
	proc, err := worker.Start(ctx, r.cfg.Worker, hello, hooks)
	if err != nil {
		return nil, fmt.Errorf("client %d: %w", slot, err)
	}
	r.mu.Lock()
	r.workerPIDs = append(r.workerPIDs, proc.PID())
	r.procs = append(r.procs, workerProc{slot: slot, proc: proc})
	r.mu.Unlock()
	return proc, nil
}

// processCloser stops a worker at the end of the run: an orderly close,
// then SIGKILL; it is reaped either way.
type processCloser struct{ proc *worker.Process }

func (p processCloser) Close() error { return p.proc.Close(workerCloseWithin) }

// workerProc is one worker process of the run, with its client.
type workerProc struct {
	slot int
	proc *worker.Process
}

// ErrWorker marks a run whose worker processes misbehaved: one that would
// not start or answer hello, broke the protocol, or exited by itself.
// The history recorded until then is kept, and it has no verdict.
var ErrWorker = errors.New("worker process failed")

// workerFailures names every worker that broke the protocol during the
// run, with the command that runs them, or nil.
func (r *run) workerFailures() error {
	r.mu.Lock()
	procs := r.procs
	r.mu.Unlock()
	var errs []error
	for _, w := range procs {
		if v := w.proc.Violation(); v != nil {
			errs = append(errs, fmt.Errorf("client %d (pid %d): %w", w.slot, w.proc.PID(), v))
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s: %w", ErrWorker, r.cfg.Worker, errors.Join(errs...))
}
