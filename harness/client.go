package harness

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lockcheck/lockcheck/harness/register"
	"github.com/lockcheck/lockcheck/harness/worker"
	"github.com/lockcheck/lockcheck/history"
	"github.com/lockcheck/lockcheck/lockers"
)

var (
	// errCrashed completes the open call of a client killed mid-call.
	errCrashed = errors.New("client crashed during the call")
	// errNoLease stands for a locker that reported success without a
	// lease: the outcome is unknown, so it is indeterminate.
	errNoLease = errors.New("locker returned neither a lease nor an error")
)

// client is one simulated client slot. It lives through incarnations: a
// crash kills the current one (abandoning whatever it holds) and a restart
// starts a new one, with a fresh locker and a new process.
type client struct {
	slot int
	run  *run

	mu  sync.Mutex // orders recording against crashes
	inc *incarnation
	// generation counts incarnations, to seed each one differently.
	generation uint64
	// machine is the clock of the client's machine, kept across restarts.
	machine *machineClock
}

// incarnation is one life of a client, like one OS process.
type incarnation struct {
	process history.Process
	gate    *gate
	clock   *clientClock
	locker  lockers.Locker
	// store is the register the critical section works on, nil in the
	// workloads without one.
	store register.Store
	// proc is the worker process of a process client, nil for a
	// goroutine client.
	proc   *worker.Process
	rng    *rand.Rand
	ctx    context.Context // ends when the incarnation is killed
	cancel context.CancelFunc
	dead   bool
	open   *history.Event // the call in flight, completed as info if killed
	// holding is set while the client is inside a critical section, for
	// faults aimed at a holder; heldSince is when it entered it (Unix ns).
	holding   atomic.Bool
	heldSince atomic.Int64
	// aim is held by the nemesis from the moment it picks this holder
	// until its fault is recorded and injected; a critical section ends
	// under it, so a fault that says it hit a holder started while the
	// holder held.
	aim sync.Mutex
	// attempt is when the locker said its latest acquisition attempt
	// began, on the recorder's clock; 0 when it did not say.
	attempt atomic.Int64
	exited  chan struct{}
}

func (c *client) start() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	g := newGate()
	c.run.keepGate(g)
	clock := &clientClock{gate: g, machine: c.machine}
	if c.run.cfg.InMemory {
		clock.minWait = SimMinWait
	}
	c.generation++
	seed := c.run.cfg.Seed ^ uint64(c.slot)<<32 ^ c.generation<<48
	ictx, cancel := context.WithCancel(c.run.ctx)
	inc := &incarnation{
		process: c.run.newProcess(),
		gate:    g,
		clock:   clock,
		rng:     rand.New(rand.NewPCG(seed, 0x10c4)),
		ctx:     ictx,
		cancel:  cancel,
		exited:  make(chan struct{}),
	}
	identity := fmt.Sprintf("client-%d", c.slot)
	if c.run.cfg.processes() {
		// A worker builds its own network path from the redirect map its
		// hello carries; none of the in-process plumbing below is used.
		proc, err := c.run.startWorker(c.slot, inc, identity, seed)
		if err != nil {
			cancel()
			return err
		}
		c.run.keepCloser(processCloser{proc})
		inc.proc, inc.locker, inc.store = proc, proc, proc.Store()
		c.inc = inc
		return nil
	}
	env := lockers.Env{
		Clock:          clock,
		HTTP:           &http.Client{Transport: gatedTransport{gate: g, base: c.run.transportFor(c.slot), writer: c.run.writerName(c.slot)}},
		Dial:           c.run.dialerFor(c.slot, g),
		Identity:       identity,
		Seed:           seed,
		Log:            c.run.log,
		AttemptStarted: func() { inc.attempt.Store(c.run.rec.since()) },
	}
	locker, err := c.run.newLocker(env)
	if err != nil {
		cancel()
		return fmt.Errorf("client %d: new locker: %w", c.slot, err)
	}
	c.run.keepCloser(locker)
	inc.locker = locker
	if c.run.registers() {
		store, err := c.run.inst.Register(ictx, env, c.run.cfg.Workload.Name == history.WorkloadFencedRegister)
		if err != nil {
			cancel()
			return fmt.Errorf("client %d: register store: %w", c.slot, err)
		}
		c.run.keepCloser(store)
		inc.store = store
	}
	c.inc = inc
	return nil
}

// takeOpen hands over the call in flight for its completion: nil when
// there is none, or the incarnation is dead (its call was completed at the
// crash). The client's mu must be held.
func (inc *incarnation) takeOpen() *history.Event {
	if inc.dead || inc.open == nil {
		return nil
	}
	call := inc.open
	inc.open = nil
	return call
}

// ref names the incarnation in crash and restart events.
func (inc *incarnation) ref(slot int) history.ClientRef {
	ref := history.ClientRef{Client: slot, Process: inc.process}
	if inc.proc != nil {
		ref.PID = inc.proc.PID()
	}
	return ref
}

func (c *client) current() *incarnation {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.inc
}

// invoke records the start of a call (a lock call or a data call); false
// if the incarnation is dead.
func (c *client) invoke(inc *incarnation, e history.Event) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if inc.dead {
		return false
	}
	inc.attempt.Store(0)
	e.Process, e.Client, e.Type = inc.process, c.slot, history.Invoke
	e = c.run.rec.record(e)
	inc.open = &e
	return true
}

// complete records the outcome of inc's open call, classified by the
// locker's own claim: ErrNoEffect is a fail, any other error is info, after
// which the client carries on under a new process. A dead incarnation's
// late completion is dropped: its call was already completed at the crash.
func (c *client) complete(inc *incarnation, err error, lease lockers.Lease) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	call := inc.takeOpen()
	if call == nil {
		return false
	}
	e := history.Event{Process: inc.process, Client: c.slot, F: call.F, Key: call.Key}
	switch {
	case err == nil:
		e.Type = history.OK
		if lease != nil {
			e.Token = lease.Token()
		}
		if a := inc.attempt.Load(); a != 0 && call.F == history.Acquire {
			e.Attempt = max(a, call.Time)
		}
	case errors.Is(err, lockers.ErrNoEffect):
		e.Type, e.Error = history.Fail, err.Error()
	default:
		e.Type, e.Error = history.Info, err.Error()
	}
	c.run.rec.record(e)
	if e.Type == history.Info {
		inc.process = c.run.newProcess()
	}
	return e.Type == history.OK
}

// notice records a single info event of the holder's process: a lost
// lease or a release request.
func (c *client) notice(inc *incarnation, f, key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !inc.dead {
		c.run.rec.record(history.Event{Process: inc.process, Client: c.slot, Type: history.Info, F: f, Key: key})
	}
}

// crash kills the current incarnation. Its open call is completed as info,
// because a killed client never learns the outcome.
func (c *client) crash() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	inc := c.inc
	if inc == nil || inc.dead {
		return fmt.Errorf("client %d is not running", c.slot)
	}
	inc.gate.kill()
	if inc.proc != nil {
		// SIGKILL: the process and everything it was doing end now, its
		// leases' refreshers included; the harness reaps it.
		if err := inc.proc.Kill(); err != nil {
			c.run.log.Logf("client %d: kill worker %d: %v", c.slot, inc.proc.PID(), err)
		}
	}
	if call := inc.open; call != nil {
		c.run.rec.record(history.Event{Process: inc.process, Client: c.slot, Type: history.Info, F: call.F, Key: call.Key, Error: errCrashed.Error()})
		inc.open = nil
	}
	c.run.rec.record(nemesisEvent(history.Crash, inc.ref(c.slot)))
	inc.dead = true
	inc.cancel()
	return nil
}

// cycle is one acquire, critical section, release on key. It reports
// whether the acquire succeeded.
func (c *client) cycle(inc *incarnation, key string, acquireTimeout, hold time.Duration) bool {
	if !c.invoke(inc, history.Event{F: history.Acquire, Key: key}) {
		return false
	}
	ctx, cancel := context.WithTimeout(inc.ctx, acquireTimeout)
	lease, err := inc.locker.Lock(ctx, key)
	cancel()
	if err == nil && lease == nil {
		err = errNoLease
	}
	if !c.complete(inc, err, lease) {
		return false
	}
	inc.heldSince.Store(time.Now().UnixNano())
	inc.holding.Store(true)
	notices := c.watch(inc, key, lease)
	alive := c.section(inc, key, lease, hold, acquireTimeout, notices.requested)
	notices.stop()
	inc.aim.Lock()
	inc.holding.Store(false)
	inc.aim.Unlock()
	if !alive {
		return true
	}
	if !c.invoke(inc, history.Event{F: history.Release, Key: key}) {
		return true
	}
	ctx, cancel = context.WithTimeout(inc.ctx, acquireTimeout)
	err = lease.Unlock(ctx)
	cancel()
	c.complete(inc, err, nil)
	return true
}

// section is the work done while holding key; false if the incarnation
// died in it. The work is not interruptible by a lost notice: a holder
// told its lease is gone records that, and carries on to the end of its
// work, as code that does not poll for loss would. Only a release request
// (the request-release workload) ends it early, because that is what the
// holder was written to honour.
func (c *client) section(inc *incarnation, key string, lease lockers.Lease, hold, callTimeout time.Duration, requested <-chan struct{}) bool {
	switch c.run.cfg.Workload.Name {
	case history.WorkloadRegister, history.WorkloadFencedRegister:
		token := lease.Token()
		v, ok := c.read(inc, key, token, callTimeout)
		if !c.wait(inc, hold, nil, nil) {
			return false
		}
		if ok {
			c.write(inc, key, v+1, token, callTimeout)
		}
		return c.alive(inc)
	case history.WorkloadRequestRelease:
		// Holds are long and meant to end on request; when the workload
		// is over nobody will ask again, so the hold ends there too.
		return c.wait(inc, hold, requested, c.run.stopWork)
	default:
		return c.wait(inc, hold, nil, nil)
	}
}

// wait lets d pass on the client's clock, or until early or stop is
// closed; false if the incarnation died first.
func (c *client) wait(inc *incarnation, d time.Duration, early, stop <-chan struct{}) bool {
	select {
	case <-inc.clock.After(d):
		return true
	case <-early:
		return true
	case <-stop:
		return true
	case <-inc.ctx.Done():
		return false
	}
}

func (c *client) alive(inc *incarnation) bool { return inc.ctx.Err() == nil }

// leaseNotices records what a holder hears while it holds a lease.
type leaseNotices struct {
	// requested is closed once a release request has been recorded.
	requested <-chan struct{}
	stop      func()
}

// watch records the lease's lost notice and release request as they
// come, until stop, which returns once nothing more will be recorded: the
// release that follows must come after every notice in the history.
func (c *client) watch(inc *incarnation, key string, lease lockers.Lease) leaseNotices {
	requested := make(chan struct{})
	quit := make(chan struct{})
	done := make(chan struct{})
	var asked <-chan struct{}
	if rr, ok := lease.(lockers.ReleaseRequester); ok {
		asked = rr.ReleaseRequested()
	}
	lost := lease.Lost()
	go func() {
		defer close(done)
		for lost != nil || asked != nil {
			select {
			case <-lost:
				c.notice(inc, history.Lost, key)
				lost = nil
			case <-asked:
				c.notice(inc, history.ReleaseRequested, key)
				close(requested)
				asked = nil
			case <-quit:
				return
			case <-inc.ctx.Done():
				return
			}
		}
	}()
	return leaseNotices{requested: requested, stop: func() { close(quit); <-done }}
}

// read is the critical section's read of key's register.
func (c *client) read(inc *incarnation, key string, token uint64, timeout time.Duration) (int64, bool) {
	if !c.invoke(inc, history.Event{F: history.ReadOp, Key: key, Token: token}) {
		return 0, false
	}
	ctx, cancel := context.WithTimeout(inc.ctx, timeout)
	v, err := inc.store.Read(ctx, key, token)
	cancel()
	return v, c.completeData(inc, err, v)
}

// write is the critical section's write of value to key's register.
func (c *client) write(inc *incarnation, key string, value int64, token uint64, timeout time.Duration) {
	if !c.invoke(inc, history.Event{F: history.WriteOp, Key: key, Token: token, Value: jsonInt(value)}) {
		return
	}
	ctx, cancel := context.WithTimeout(inc.ctx, timeout)
	err := inc.store.Write(ctx, key, value, token)
	cancel()
	c.completeData(inc, err, value)
}

// completeData records the outcome of a read or write. Unlike a lock
// call's, an unknown outcome does not retire the process: the client
// still holds its lock in this process and releases it from there; only
// the data call's effect is in doubt.
func (c *client) completeData(inc *incarnation, err error, value int64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	call := inc.takeOpen()
	if call == nil {
		return false
	}
	e := history.Event{Process: inc.process, Client: c.slot, F: call.F, Key: call.Key, Token: call.Token}
	switch {
	case err == nil:
		e.Type, e.Value = history.OK, jsonInt(value)
	case errors.Is(err, lockers.ErrNoEffect):
		e.Type, e.Error = history.Fail, err.Error()
	default:
		e.Type, e.Error = history.Info, err.Error()
	}
	c.run.rec.record(e)
	return e.Type == history.OK
}

func jsonInt(v int64) json.RawMessage { return strconv.AppendInt(nil, v, 10) }

// work runs the workload until stop ends or the incarnation dies. A locker
// that panics takes only its own client down, as a crash: the run, and the
// history of every other client, go on.
func (c *client) work(inc *incarnation, stop <-chan struct{}) {
	defer close(inc.exited)
	defer func() {
		if p := recover(); p != nil {
			c.run.log.Logf("client %d: locker panicked: %v", c.slot, p)
			c.crash()
		}
	}()
	w := c.run.cfg.Workload
	for {
		select {
		case <-stop:
			return
		case <-inc.ctx.Done():
			return
		default:
		}
		if w.Rate > 0 {
			think := time.Duration(inc.rng.ExpFloat64() / w.Rate * float64(time.Second))
			if err := lockers.Sleep(inc.ctx, inc.clock, think); err != nil {
				return
			}
		}
		key := keyName(inc.rng.IntN(w.Keys))
		hold := w.HoldMin + time.Duration(inc.rng.Int64N(int64(w.HoldMax-w.HoldMin)+1))
		c.cycle(inc, key, w.AcquireTimeout, hold)
	}
}

func keyName(i int) string { return fmt.Sprintf("k%d", i) }
