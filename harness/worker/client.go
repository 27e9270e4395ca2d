package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lockcheck/lockcheck/harness/register"
	"github.com/lockcheck/lockcheck/lockers"
)

// defaultCallTimeout is the timeout_ns of a call whose context has no
// deadline: a worker never runs a call unbounded.
const defaultCallTimeout = 5 * time.Minute

// abandonedUnlockTimeout bounds the unlock of a lease granted after its
// Lock call had given up.
const abandonedUnlockTimeout = 30 * time.Second

// Hooks receive what a worker reports besides answers. Either may be nil.
// They are called from the goroutine that reads the worker's output, so
// they must return quickly.
type Hooks struct {
	// Log receives each line of the worker's stderr, and the client's own
	// diagnostics about the worker's output.
	Log func(line string)
	// AttemptStarted is called when the worker reports that the locker
	// began an attempt in the current Lock call, before that call returns.
	// at is the time the harness sent the lock request plus the real time
	// the worker measured from reading it to the attempt, on this
	// process's monotonic clock. The request was sent no later than the
	// worker read it, so at is no later than the true start of the
	// attempt: a checker that takes the acquisition to have happened at
	// or after at is sound.
	AttemptStarted func(at time.Time)

	_ struct{}
}

// Process is the harness end of the protocol: one worker, its locker and
// its register store. It is a lockers.Locker. Start makes one for a child
// process; every method is safe for concurrent use.
type Process struct {
	hooks Hooks
	os    *osProcess // nil when the worker is not a child process
	pid   int

	out         io.WriteCloser
	sendMu      sync.Mutex
	queue       [][]byte
	closeOutput bool          // close out once the queue is written
	wake        chan struct{} // cap 1: the queue has work

	mu      sync.Mutex
	nextID  int64
	pending map[int64]*pendingCall
	leases  map[uint64]*lease

	gone     chan struct{} // the worker can answer no more
	goneOnce sync.Once
	// exited is closed when the child has been reaped, or, without a
	// child, when the worker's output ended.
	exited chan struct{}

	closeOnce sync.Once
	closeErr  error

	// violation is the first way the worker broke the protocol, under
	// mu; violated is closed when it is set.
	violation    error
	violated     chan struct{}
	violatedOnce sync.Once
	// lines counts the lines of the worker's output, for violations.
	lines int
	// stopping is set once the harness asked the worker to end (close,
	// SIGKILL): an exit after it is no violation.
	stopping atomic.Bool
}

var _ lockers.Locker = (*Process)(nil)

// ErrProtocol marks the error of a worker that broke the protocol: a
// line of its output that is no protocol message, an answer that does not
// fit, an exit nobody asked for. Such a run's history is kept, and it has
// no verdict.
var ErrProtocol = errors.New("worker broke the protocol")

// violate records the worker's first protocol violation.
func (p *Process) violate(format string, args ...any) {
	err := fmt.Errorf("%w: %s", ErrProtocol, fmt.Sprintf(format, args...))
	p.logf("protocol: %v", err)
	p.violatedOnce.Do(func() {
		p.mu.Lock()
		p.violation = err
		p.mu.Unlock()
		close(p.violated)
	})
}

// Violation is the first way the worker broke the protocol, or nil: a
// malformed line (with its line number), an exit the harness did not ask
// for.
func (p *Process) Violation() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.violation
}

type pendingCall struct {
	op    string
	lease uint64    // of an unlock
	sent  time.Time // before the request was queued
	reply chan reply
	// abandoned: the caller has returned; a late answer is logged, and a
	// late lease unlocked.
	abandoned bool
}

type reply struct {
	m     message
	lease lockers.Lease // of a successful lock
}

// newProcess speaks the protocol over a worker's output (in) and input
// (out); o is the worker's child process, nil when it is not one.
func newProcess(in io.ReadCloser, out io.WriteCloser, hooks Hooks, o *osProcess) *Process {
	p := &Process{
		hooks:    hooks,
		os:       o,
		out:      out,
		wake:     make(chan struct{}, 1),
		pending:  map[int64]*pendingCall{},
		leases:   map[uint64]*lease{},
		gone:     make(chan struct{}),
		exited:   make(chan struct{}),
		violated: make(chan struct{}),
	}
	if o != nil {
		p.pid = o.cmd.Process.Pid
		o.exited = p.exited
	}
	go p.write()
	go p.read(in)
	return p
}

func (p *Process) logf(format string, args ...any) {
	if p.hooks.Log != nil {
		p.hooks.Log(fmt.Sprintf(format, args...))
	}
}

func (p *Process) markGone() { p.goneOnce.Do(func() { close(p.gone) }) }

// Exited is closed once the worker's process has exited and been reaped
// (for a worker that is not a child process, once its output ended).
func (p *Process) Exited() <-chan struct{} { return p.exited }

// PID is the worker's operating-system process id.
func (p *Process) PID() int { return p.pid }

// hello sends h and waits for the worker's answer.
func (p *Process) hello(ctx context.Context, h Hello) error {
	h.Protocol = Protocol
	r, err := p.call(ctx, "", 0, func(id int64) any {
		return struct {
			ID int64  `json:"id"`
			Op string `json:"op"`
			Hello
		}{id, OpHello, h}
	})
	if err != nil {
		return err
	}
	if err := remoteErr(r.m); err != nil {
		return fmt.Errorf("worker refused hello: %w", err)
	}
	if r.m.Protocol != Protocol {
		return fmt.Errorf("%w: the worker answered hello with protocol %d, not %d: it does not speak this harness's protocol", ErrProtocol, r.m.Protocol, Protocol)
	}
	if p.pid == 0 {
		p.pid = r.m.PID
	}
	return nil
}

// call sends the request build(id) returns and waits for its answer, for
// ctx, or for the worker to go. When ctx ends first it sends a cancel
// request (unless op is "", a call that cannot be cancelled) and returns
// ctx.Err() at once.
func (p *Process) call(ctx context.Context, op string, lease uint64, build func(id int64) any) (reply, error) {
	if err := ctx.Err(); err != nil {
		return reply{}, err
	}
	pc, err := p.send(op, lease, build)
	if err != nil {
		return reply{}, err
	}
	var violated <-chan struct{}
	if op == "" {
		// The hello: a worker that broke the protocol before it
		// answered will not answer well.
		violated = p.violated
	}
	select {
	case r := <-pc.reply:
		return r, nil
	case <-violated:
		return reply{}, p.Violation()
	case <-p.gone:
		select {
		case r := <-pc.reply:
			return r, nil
		default:
			return reply{}, ErrExited
		}
	case <-ctx.Done():
		p.mu.Lock()
		id, stillPending := p.idOf(pc)
		if stillPending {
			pc.abandoned = true
		}
		p.mu.Unlock()
		if !stillPending {
			// The answer came as ctx ended: it is the outcome.
			return <-pc.reply, nil
		}
		if op != "" {
			_, _ = p.send(OpCancel, 0, func(cid int64) any {
				return request{ID: idPtr(cid), Op: OpCancel, Call: id}
			})
		}
		return reply{}, ctx.Err()
	}
}

// idOf finds pc among the pending calls; p.mu is held.
func (p *Process) idOf(pc *pendingCall) (int64, bool) {
	for id, c := range p.pending {
		if c == pc {
			return id, true
		}
	}
	return 0, false
}

// send registers a call and queues its request without waiting.
func (p *Process) send(op string, lease uint64, build func(id int64) any) (*pendingCall, error) {
	select {
	case <-p.gone:
		return nil, ErrExited
	default:
	}
	p.mu.Lock()
	id := p.nextID
	p.nextID++
	pc := &pendingCall{op: op, lease: lease, reply: make(chan reply, 1), sent: time.Now()}
	p.pending[id] = pc
	p.mu.Unlock()
	b, err := json.Marshal(build(id))
	if err != nil {
		p.mu.Lock()
		delete(p.pending, id)
		p.mu.Unlock()
		return nil, fmt.Errorf("worker: encoding a %s request: %w", op, err)
	}
	p.sendMu.Lock()
	p.queue = append(p.queue, append(b, '\n'))
	p.sendMu.Unlock()
	p.poke()
	return pc, nil
}

func (p *Process) poke() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// write drains the queue into the worker's input. A stopped worker stops
// reading, so writes can block; the queue keeps callers from blocking
// with them.
func (p *Process) write() {
	defer p.out.Close()
	for {
		select {
		case <-p.wake:
		case <-p.gone:
			return
		}
		p.sendMu.Lock()
		q, closing := p.queue, p.closeOutput
		p.queue = nil
		p.sendMu.Unlock()
		for _, b := range q {
			if _, err := p.out.Write(b); err != nil {
				p.logf("protocol: writing to the worker: %v", err)
				return
			}
		}
		if closing {
			p.sendMu.Lock()
			empty := len(p.queue) == 0
			p.sendMu.Unlock()
			if empty {
				return
			}
			p.poke()
		}
	}
}

// closeInput closes the worker's input once every queued request is
// written; the worker then exits even if it ignored a close request.
func (p *Process) closeInput() {
	p.sendMu.Lock()
	p.closeOutput = true
	p.sendMu.Unlock()
	p.poke()
}

// read dispatches the worker's output until it ends.
func (p *Process) read(in io.ReadCloser) {
	defer func() {
		in.Close()
		p.markGone()
		if p.os == nil {
			close(p.exited)
		}
	}()
	logf := func(format string, args ...any) { p.logf("protocol: worker output: "+format, args...) }
	scanLines(in, logf, func(b []byte, _ time.Time) bool {
		p.mu.Lock()
		p.lines++
		line := p.lines
		p.mu.Unlock()
		var m message
		if err := json.Unmarshal(b, &m); err != nil {
			p.violate("line %d of its output is not a protocol message (%v): %.200q", line, err, b)
			return true
		}
		switch {
		case m.Event != "":
			p.event(m)
		case m.ID != nil:
			p.answer(*m.ID, m)
		default:
			p.violate("line %d of its output has neither an id nor an event: %.200q", line, b)
		}
		return true
	})
}

func (p *Process) event(m message) {
	switch m.Event {
	case EventAttempt:
		p.mu.Lock()
		pc := p.pending[m.Call]
		live := pc != nil && pc.op == OpLock && !pc.abandoned
		p.mu.Unlock()
		if live && p.hooks.AttemptStarted != nil {
			p.hooks.AttemptStarted(pc.sent.Add(time.Duration(m.AfterNS)))
		}
	case EventLost, EventReleaseRequested:
		p.mu.Lock()
		defer p.mu.Unlock()
		l := p.leases[m.Lease]
		if l == nil {
			return
		}
		if m.Event == EventLost && !l.lostClosed {
			l.lostClosed = true
			close(l.lost)
		}
		if m.Event == EventReleaseRequested && !l.askedClosed {
			l.askedClosed = true
			close(l.asked)
		}
	default:
		p.logf("protocol: ignoring an unknown event %q from the worker", m.Event)
	}
}

func (p *Process) answer(id int64, m message) {
	p.mu.Lock()
	pc := p.pending[id]
	delete(p.pending, id)
	if pc == nil {
		line := p.lines
		p.mu.Unlock()
		p.violate("line %d of its output answers id %d, which has no request pending (answered twice, or never sent)", line, id)
		return
	}
	var r reply
	switch {
	case pc.op == OpLock && m.OK:
		l := &lease{p: p, id: m.Lease, token: m.Token, lost: make(chan struct{}), asked: make(chan struct{})}
		p.leases[m.Lease] = l
		r.lease = l
		if m.ReleaseRequests {
			r.lease = requestableLease{l}
		}
	case pc.op == OpUnlock && m.OK:
		delete(p.leases, pc.lease)
	}
	abandoned := pc.abandoned
	p.mu.Unlock()
	r.m = m
	if !abandoned {
		pc.reply <- r
		return
	}
	if err := remoteErr(m); err != nil {
		p.logf("protocol: a %s request the harness gave up on failed: %v", pc.op, err)
	}
	if r.lease != nil {
		// Nobody will hold this lease; keeping it would keep the key
		// locked (for ever, with a locker that refreshes).
		p.logf("protocol: lease %d was granted after its lock call gave up; unlocking it", m.Lease)
		if _, err := p.send(OpUnlock, m.Lease, func(uid int64) any {
			return request{ID: idPtr(uid), Op: OpUnlock, Lease: m.Lease, TimeoutNS: int64(abandonedUnlockTimeout)}
		}); err == nil {
			p.mu.Lock()
			for _, c := range p.pending {
				if c.op == OpUnlock && c.lease == m.Lease {
					c.abandoned = true
				}
			}
			p.mu.Unlock()
		}
	}
}

// timeoutNS is what the worker is told to allow a call made under ctx.
func timeoutNS(ctx context.Context) int64 {
	if d, ok := ctx.Deadline(); ok {
		if left := time.Until(d); left > 0 {
			return int64(left)
		}
		return 1
	}
	return int64(defaultCallTimeout)
}

// Lock asks the worker's locker for key. When ctx ends first, the worker
// is told to cancel the call and Lock returns ctx.Err() at once; a lease
// the worker grants after that is unlocked, since nobody holds it.
func (p *Process) Lock(ctx context.Context, key string) (lockers.Lease, error) {
	r, err := p.call(ctx, OpLock, 0, func(id int64) any {
		return request{ID: idPtr(id), Op: OpLock, Key: key, TimeoutNS: timeoutNS(ctx)}
	})
	if err != nil {
		return nil, err
	}
	if err := remoteErr(r.m); err != nil {
		return nil, err
	}
	return r.lease, nil
}

// SetClock sets the worker's clock to skew ahead of real time, gaining
// drift seconds per real second from now on. It does not wait for the
// answer (a stopped worker answers only once continued); a refusal is
// logged.
func (p *Process) SetClock(skew time.Duration, drift float64) error {
	st := ClockState{SkewNS: int64(skew), Drift: drift}
	if err := st.check(); err != nil {
		return fmt.Errorf("worker: %w", err)
	}
	pc, err := p.send(OpClock, 0, func(id int64) any {
		return request{ID: idPtr(id), Op: OpClock, SkewNS: st.SkewNS, Drift: st.Drift}
	})
	if err != nil {
		return err
	}
	p.mu.Lock()
	if _, ok := p.idOf(pc); ok {
		pc.abandoned = true
	}
	p.mu.Unlock()
	select {
	case r := <-pc.reply:
		// Answered before it could be marked: still worth reporting.
		if err := remoteErr(r.m); err != nil {
			p.logf("protocol: clock request failed: %v", err)
		}
	default:
	}
	return nil
}

// Store is the worker's register store. Its Final is refused: the harness
// reads final values through its own store, not through a client.
func (p *Process) Store() register.Store { return storeClient{p} }

type storeClient struct{ p *Process }

var _ register.Store = storeClient{}

func (s storeClient) Read(ctx context.Context, key string, token uint64) (int64, error) {
	r, err := s.p.call(ctx, OpRead, 0, func(id int64) any {
		return request{ID: idPtr(id), Op: OpRead, Key: key, Token: token, TimeoutNS: timeoutNS(ctx)}
	})
	if err != nil {
		return 0, err
	}
	if err := remoteErr(r.m); err != nil {
		return 0, err
	}
	return r.m.Value, nil
}

func (s storeClient) Write(ctx context.Context, key string, value int64, token uint64) error {
	r, err := s.p.call(ctx, OpWrite, 0, func(id int64) any {
		return request{ID: idPtr(id), Op: OpWrite, Key: key, Value: value, Token: token, TimeoutNS: timeoutNS(ctx)}
	})
	if err != nil {
		return err
	}
	return remoteErr(r.m)
}

func (storeClient) Final(context.Context, string) (int64, error) {
	return 0, errors.New("worker: a worker's store offers no Final: the harness reads final values through its own store")
}

// lease is a lease held by the worker's locker.
type lease struct {
	p     *Process
	id    uint64
	token uint64
	lost  chan struct{}
	asked chan struct{}
	// Guarded by p.mu.
	lostClosed, askedClosed bool
}

var _ lockers.Lease = (*lease)(nil)

func (l *lease) Token() uint64         { return l.token }
func (l *lease) Lost() <-chan struct{} { return l.lost }

// Unlock asks the worker to unlock the lease. When ctx ends first, the
// worker is told to cancel the call and Unlock returns ctx.Err() at once.
func (l *lease) Unlock(ctx context.Context) error {
	r, err := l.p.call(ctx, OpUnlock, l.id, func(id int64) any {
		return request{ID: idPtr(id), Op: OpUnlock, Lease: l.id, TimeoutNS: timeoutNS(ctx)}
	})
	if err != nil {
		return err
	}
	return remoteErr(r.m)
}

// requestableLease is the lease of a worker whose lease can be asked to
// let go.
type requestableLease struct{ *lease }

var _ lockers.ReleaseRequester = requestableLease{}

func (l requestableLease) ReleaseRequested() <-chan struct{} { return l.asked }

// remoteError is a call's failure as the worker reported it.
type remoteError struct {
	text            string
	noEffect, stale bool
}

func (e *remoteError) Error() string { return "worker: " + e.text }

func (e *remoteError) Unwrap() error {
	switch {
	case e.stale:
		return register.ErrStale
	case e.noEffect:
		return lockers.ErrNoEffect
	}
	return nil
}

// remoteErr is m's error, nil when m is a success.
func remoteErr(m message) error {
	if m.Error == "" && m.OK {
		return nil
	}
	text := m.Error
	if text == "" {
		text = "an answer with neither ok nor an error"
	}
	return &remoteError{text: text, noEffect: m.NoEffect, stale: m.Stale}
}

// Close ends the worker: it asks it to close and waits up to timeout for
// it to go, then kills it. A child process is continued first, so a
// stopped one can obey, and is always reaped. Close is idempotent; the
// error says how the worker ended when that was not a clean exit after
// the close request.
func (p *Process) Close(timeout time.Duration) error {
	p.closeOnce.Do(func() { p.closeErr = p.close(timeout) })
	return p.closeErr
}

func (p *Process) close(timeout time.Duration) error {
	p.stopping.Store(true)
	select {
	case <-p.exited:
		p.closeInput()
		return nil
	default:
	}
	if p.os != nil {
		_ = p.Continue()
	}
	if pc, err := p.send(OpClose, 0, func(id int64) any { return request{ID: idPtr(id), Op: OpClose} }); err == nil {
		p.mu.Lock()
		if _, ok := p.idOf(pc); ok {
			pc.abandoned = true
		}
		p.mu.Unlock()
	}
	p.closeInput()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-p.exited:
		if p.os != nil {
			return p.os.exitErr()
		}
		return nil
	case <-t.C:
	}
	if p.os == nil {
		return fmt.Errorf("worker: output did not end within %v of the close request", timeout)
	}
	return p.os.killAndReap(timeout)
}
