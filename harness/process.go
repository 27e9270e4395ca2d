package harness

import (
	"context"
	"fmt"
	"time"

	"github.com/lockcheck/lockcheck/harness/history"
	"github.com/lockcheck/lockcheck/harness/register"
	"github.com/lockcheck/lockcheck/harness/worker"
	"github.com/lockcheck/lockcheck/lockers"
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
		return nil, fmt.Errorf("client %d: worker process: %w", slot, err)
	}
	r.mu.Lock()
	r.workerPIDs = append(r.workerPIDs, proc.PID())
	r.mu.Unlock()
	return proc, nil
}

// processCloser stops a worker at the end of the run: an orderly close,
// then SIGKILL; it is reaped either way.
type processCloser struct{ proc *worker.Process }

func (p processCloser) Close() error { return p.proc.Close(workerCloseWithin) }

// OpenWorker is what `verify worker` runs for each process client: the
// locker named in the hello, attached to the harness's backend, and the
// register store the workload asks for.
func OpenWorker(ctx context.Context, h worker.Hello, env lockers.Env) (lockers.Locker, register.Store, error) {
	spec, err := LookupLocker(h.Locker)
	if err != nil {
		return nil, nil, err
	}
	attach := &Attachment{Redis: h.Redis}
	if h.GCS != nil {
		attach.GCSEndpoint, attach.GCSBucket = h.GCS.Endpoint, h.GCS.Bucket
	}
	if !attach.networked() {
		return nil, nil, fmt.Errorf("locker %s: the hello names no backend to attach to", h.Locker)
	}
	inst, err := spec.Setup(ctx, Params{TimeScale: h.TimeScale, Attach: attach})
	if err != nil {
		return nil, nil, fmt.Errorf("locker %s: %w", h.Locker, err)
	}
	locker, err := inst.New(env)
	if err != nil {
		return nil, nil, fmt.Errorf("locker %s: %w", h.Locker, err)
	}
	if h.Register == "" {
		return locker, nil, nil
	}
	if inst.Register == nil {
		return nil, nil, fmt.Errorf("locker %s has no register store", h.Locker)
	}
	store, err := inst.Register(ctx, env, h.Register == worker.RegisterFenced)
	if err != nil {
		return nil, nil, fmt.Errorf("register store: %w", err)
	}
	return locker, store, nil
}
