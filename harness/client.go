package harness

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lockcheck/lockcheck/harness/history"
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
	rng     *rand.Rand
	ctx     context.Context // ends when the incarnation is killed
	cancel  context.CancelFunc
	dead    bool
	open    *history.Event // the call in flight, completed as info if killed
	// holding is set while the client is inside a critical section, for
	// faults aimed at a holder.
	holding atomic.Bool
	// attempt is when the locker said its latest acquisition attempt
	// began, on the recorder's clock; 0 when it did not say.
	attempt atomic.Int64
	exited  chan struct{}
}

func (c *client) start() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	g := newGate()
	clock := &clientClock{gate: g, machine: c.machine}
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
	env := lockers.Env{
		Clock:          clock,
		HTTP:           &http.Client{Transport: gatedTransport{gate: g, base: c.run.transportFor(c.slot)}},
		Dial:           c.run.dialerFor(c.slot, g),
		Identity:       fmt.Sprintf("client-%d", c.slot),
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
	c.inc = inc
	return nil
}

func (c *client) current() *incarnation {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.inc
}

// invoke records the start of a call; false if the incarnation is dead.
func (c *client) invoke(inc *incarnation, f, key string) (history.Event, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if inc.dead {
		return history.Event{}, false
	}
	inc.attempt.Store(0)
	e := c.run.rec.record(history.Event{Process: inc.process, Client: c.slot, Type: history.Invoke, F: f, Key: key})
	inc.open = &e
	return e, true
}

// complete records the outcome of inc's open call, classified by the
// locker's own claim: ErrNoEffect is a fail, any other error is info, after
// which the client carries on under a new process. A dead incarnation's
// late completion is dropped: its call was already completed at the crash.
func (c *client) complete(inc *incarnation, err error, lease lockers.Lease) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if inc.dead || inc.open == nil {
		return false
	}
	call := inc.open
	inc.open = nil
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

func (c *client) noticeLost(inc *incarnation, key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !inc.dead {
		c.run.rec.record(history.Event{Process: inc.process, Client: c.slot, Type: history.Info, F: history.Lost, Key: key})
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
	if call := inc.open; call != nil {
		c.run.rec.record(history.Event{Process: inc.process, Client: c.slot, Type: history.Info, F: call.F, Key: call.Key, Error: errCrashed.Error()})
		inc.open = nil
	}
	c.run.rec.record(nemesisEvent(history.Crash, history.ClientRef{Client: c.slot, Process: inc.process}))
	inc.dead = true
	inc.cancel()
	return nil
}

// cycle is one acquire, hold, release on key. It reports whether the
// acquire succeeded.
func (c *client) cycle(inc *incarnation, key string, acquireTimeout, hold time.Duration) bool {
	if _, ok := c.invoke(inc, history.Acquire, key); !ok {
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
	inc.holding.Store(true)
	// The work in the critical section is not interruptible: a holder
	// told its lease is gone records that, and unlocks when its work is
	// done, as code that does not poll for loss would.
	done := inc.clock.After(hold)
	lost := lease.Lost()
	for waiting := true; waiting; {
		select {
		case <-done:
			waiting = false
		case <-lost:
			c.noticeLost(inc, key)
			lost = nil
		case <-inc.ctx.Done():
			return true
		}
	}
	inc.holding.Store(false)
	if _, ok := c.invoke(inc, history.Release, key); !ok {
		return true
	}
	ctx, cancel = context.WithTimeout(inc.ctx, acquireTimeout)
	err = lease.Unlock(ctx)
	cancel()
	c.complete(inc, err, nil)
	return true
}

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
