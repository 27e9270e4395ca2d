package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/lockcheck/lockcheck/harness/register"
	"github.com/lockcheck/lockcheck/lockers"
)

// OpenFunc builds the locker a worker serves, and the register store when
// h.Register is not RegisterNone (nil otherwise). env is the worker's:
// its clock is the one clock requests set, its dialers apply h.Redirect.
// ctx ends when Serve returns. If the locker or the store is an io.Closer,
// Serve closes it when it returns.
type OpenFunc func(ctx context.Context, h Hello, env lockers.Env) (lockers.Locker, register.Store, error)

// shutdownWait bounds each step of a worker's shutdown: the calls still
// running after their contexts were cancelled, then closing the locker and
// the store. A locker that ignores its context is not waited for forever.
const shutdownWait = 10 * time.Second

// Serve is the worker end of the protocol: it reads requests from in,
// answers them on out, and writes diagnostics (its own and the locker's)
// to log, one line each. It returns nil when in ends or a close request
// has been answered, and ctx.Err() when ctx ends; either way every call
// still open has its context cancelled and the locker and store are
// closed, each step bounded. A line Serve cannot use is answered with an
// error when it carries an id and reported on log otherwise; it never ends
// Serve.
//
// Serve reads in from a goroutine that may outlive it while in blocks;
// close in (or exit the process) to end it.
func Serve(ctx context.Context, in io.Reader, out io.Writer, log io.Writer, open OpenFunc) error {
	s := newServer(out, log, open)
	return s.run(ctx, in)
}

type server struct {
	now  func() time.Time // the real time the worker's clock is built on
	pid  int
	open OpenFunc
	log  *lineLogger

	outMu     sync.Mutex
	out       io.Writer
	outClosed bool // after Serve returns, late responses are dropped
	outFailed bool

	ctx    context.Context // ends when Serve returns
	cancel context.CancelFunc
	done   chan struct{} // closed at shutdown: lease watchers stop
	wg     sync.WaitGroup

	// Set by hello, read-only after.
	clock  clock
	locker lockers.Locker
	store  register.Store

	mu        sync.Mutex
	calls     map[int64]context.CancelFunc
	locks     map[int64]time.Time // open lock calls: when their line was read
	leases    map[uint64]*heldLease
	nextLease uint64
}

type heldLease struct {
	lease    lockers.Lease
	unlocked chan struct{}

	// mu orders events before the answer to a successful unlock: an event
	// is sent holding it, and only while done is false.
	mu   sync.Mutex
	done bool
}

// notify sends a lease event unless the lease was unlocked.
func (h *heldLease) notify(s *server, m message) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.done {
		s.send(m)
	}
}

func newServer(out, log io.Writer, open OpenFunc) *server {
	return &server{
		now:    time.Now,
		pid:    os.Getpid(),
		open:   open,
		log:    &lineLogger{w: log},
		out:    out,
		done:   make(chan struct{}),
		calls:  map[int64]context.CancelFunc{},
		locks:  map[int64]time.Time{},
		leases: map[uint64]*heldLease{},
	}
}

// line is one line of input and the monotonic time it was read.
type line struct {
	b  []byte
	at time.Time
}

func (s *server) run(ctx context.Context, in io.Reader) error {
	s.ctx, s.cancel = context.WithCancel(ctx)
	defer s.cancel()
	lines := make(chan line)
	go s.readLines(in, lines)
	for {
		select {
		case <-ctx.Done():
			s.shutdown()
			s.closeOut()
			return ctx.Err()
		case l, ok := <-lines:
			if !ok {
				s.shutdown()
				s.closeOut()
				return nil
			}
			if closing := s.handle(l); closing {
				return nil
			}
		}
	}
}

// readLines sends each line of in to lines, and closes lines when in ends.
func (s *server) readLines(in io.Reader, lines chan<- line) {
	defer close(lines)
	logf := func(format string, args ...any) { s.log.Logf("worker: requests: "+format, args...) }
	scanLines(in, logf, func(b []byte, at time.Time) bool {
		select {
		case lines <- line{b: b, at: at}:
			return true
		case <-s.done:
			return false
		}
	})
}

// handle acts on one line; true once a close request has been answered.
func (s *server) handle(l line) bool {
	var req request
	if err := json.Unmarshal(l.b, &req); err != nil {
		var idOnly struct {
			ID *int64 `json:"id"`
		}
		if json.Unmarshal(l.b, &idOnly) == nil && idOnly.ID != nil {
			s.reply(*idOnly.ID, errMessage(fmt.Errorf("malformed request: %v: %w", err, lockers.ErrNoEffect)))
		} else {
			s.log.Logf("worker: ignoring a line that is not a protocol request (%v): %.200q", err, l.b)
		}
		return false
	}
	if req.ID == nil {
		s.log.Logf("worker: ignoring a request without an id: %.200q", l.b)
		return false
	}
	id := *req.ID
	if req.Op != OpHello && req.Op != OpClose && s.locker == nil {
		s.reply(id, errMessage(fmt.Errorf("%q before a successful hello: send hello first: %w", req.Op, lockers.ErrNoEffect)))
		return false
	}
	switch req.Op {
	case OpHello:
		s.reply(id, s.hello(l.b))
	case OpLock:
		s.startCall(id, req.timeout(), func(ctx context.Context) (message, func()) {
			return s.lock(ctx, id, l.at, req.Key)
		})
	case OpUnlock:
		s.startCall(id, req.timeout(), func(ctx context.Context) (message, func()) {
			return s.unlock(ctx, req.Lease), nil
		})
	case OpRead:
		s.startCall(id, req.timeout(), func(ctx context.Context) (message, func()) {
			if s.store == nil {
				return errMessage(errNoStore), nil
			}
			v, err := s.store.Read(ctx, req.Key, req.Token)
			if err != nil {
				return errMessage(err), nil
			}
			return message{OK: true, Value: v}, nil
		})
	case OpWrite:
		s.startCall(id, req.timeout(), func(ctx context.Context) (message, func()) {
			if s.store == nil {
				return errMessage(errNoStore), nil
			}
			if err := s.store.Write(ctx, req.Key, req.Value, req.Token); err != nil {
				return errMessage(err), nil
			}
			return message{OK: true}, nil
		})
	case OpClock:
		st := ClockState{SkewNS: req.SkewNS, Drift: req.Drift}
		if err := st.check(); err != nil {
			s.reply(id, errMessage(fmt.Errorf("%w: %w", err, lockers.ErrNoEffect)))
			return false
		}
		s.clock.set(st)
		s.reply(id, message{OK: true})
	case OpCancel:
		s.mu.Lock()
		if cancel := s.calls[req.Call]; cancel != nil {
			cancel()
		}
		s.mu.Unlock()
		s.reply(id, message{OK: true})
	case OpClose:
		s.shutdown()
		s.reply(id, message{OK: true})
		s.closeOut()
		return true
	default:
		s.reply(id, errMessage(fmt.Errorf("unknown op %q: protocol %d has %s: %w", req.Op, Protocol,
			strings.Join([]string{OpHello, OpLock, OpUnlock, OpRead, OpWrite, OpClock, OpCancel, OpClose}, ", "), lockers.ErrNoEffect)))
	}
	return false
}

var errNoStore = fmt.Errorf("this worker has no register store: send hello with register %q or %q: %w",
	RegisterPlain, RegisterFenced, lockers.ErrNoEffect)

// hello opens the locker; the answer to the hello request.
func (s *server) hello(b []byte) message {
	if s.locker != nil {
		return errMessage(errors.New("hello was already answered: send it once"))
	}
	var h Hello
	if err := json.Unmarshal(b, &h); err != nil {
		return errMessage(fmt.Errorf("malformed hello: %v", err))
	}
	if h.Protocol != Protocol {
		return errMessage(fmt.Errorf("this worker speaks protocol %d only, not %d", Protocol, h.Protocol))
	}
	switch h.Register {
	case RegisterNone, RegisterPlain, RegisterFenced:
	default:
		return errMessage(fmt.Errorf("hello: register must be %q, %q or %q, not %q", RegisterNone, RegisterPlain, RegisterFenced, h.Register))
	}
	if err := h.Clock.check(); err != nil {
		return errMessage(fmt.Errorf("hello: %w", err))
	}
	clk := newClock(s.now, h.Clock)
	env := lockers.Env{
		Clock:          clk,
		HTTP:           redirectedHTTP(h.Redirect),
		Dial:           redirectedDial(h.Redirect),
		Identity:       h.Identity,
		Seed:           h.Seed,
		Log:            s.log,
		AttemptStarted: s.attempt,
	}
	locker, store, err := s.open(s.ctx, h, env)
	if err != nil {
		return errMessage(fmt.Errorf("opening locker %q: %w", h.Locker, err))
	}
	if locker == nil {
		return errMessage(fmt.Errorf("opening locker %q returned no locker", h.Locker))
	}
	if h.Register != RegisterNone && store == nil {
		closeBounded(s.log, "locker", locker)
		return errMessage(fmt.Errorf("opening locker %q returned no %s register store", h.Locker, h.Register))
	}
	s.clock, s.locker, s.store = clk, locker, store
	return message{OK: true, Protocol: Protocol, PID: s.pid}
}

// startCall runs fn in its own goroutine under a context that ends after
// timeout (when positive), on a cancel request, or at shutdown, and sends
// its answer; then, if fn returned one, runs then.
func (s *server) startCall(id int64, timeout time.Duration, fn func(context.Context) (message, func())) {
	s.mu.Lock()
	if _, dup := s.calls[id]; dup {
		s.mu.Unlock()
		s.reply(id, errMessage(fmt.Errorf("id %d is already used by an open call: give each request its own id: %w", id, lockers.ErrNoEffect)))
		return
	}
	ctx, cancel := s.ctx, context.CancelFunc(nil)
	if timeout > 0 {
		ctx, cancel = context.WithTimeout(ctx, timeout)
	} else {
		ctx, cancel = context.WithCancel(ctx)
	}
	s.calls[id] = cancel
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		m, then := fn(ctx)
		cancel()
		s.mu.Lock()
		delete(s.calls, id)
		s.mu.Unlock()
		s.reply(id, m)
		if then != nil {
			then()
		}
	}()
}

func (s *server) lock(ctx context.Context, id int64, readAt time.Time, key string) (message, func()) {
	s.mu.Lock()
	s.locks[id] = readAt
	s.mu.Unlock()
	lease, err := s.locker.Lock(ctx, key)
	s.mu.Lock()
	delete(s.locks, id)
	s.mu.Unlock()
	if err != nil {
		return errMessage(err), nil
	}
	if lease == nil {
		return errMessage(errors.New("the locker returned neither a lease nor an error")), nil
	}
	h := &heldLease{lease: lease, unlocked: make(chan struct{})}
	s.mu.Lock()
	s.nextLease++
	lid := s.nextLease
	s.leases[lid] = h
	s.wg.Add(1)
	s.mu.Unlock()
	_, rr := lease.(lockers.ReleaseRequester)
	// The watcher starts once the answer is sent, so the harness knows the
	// lease before any event about it.
	return message{OK: true, Lease: lid, Token: lease.Token(), ReleaseRequests: rr}, func() { s.watch(lid, h) }
}

// watch sends the lease's lost and release-requested events until it is
// unlocked or the worker shuts down.
func (s *server) watch(lid uint64, h *heldLease) {
	defer s.wg.Done()
	lost := h.lease.Lost()
	var asked <-chan struct{}
	if rr, ok := h.lease.(lockers.ReleaseRequester); ok {
		asked = rr.ReleaseRequested()
	}
	for lost != nil || asked != nil {
		select {
		case <-lost:
			h.notify(s, message{Event: EventLost, Lease: lid})
			lost = nil
		case <-asked:
			h.notify(s, message{Event: EventReleaseRequested, Lease: lid})
			asked = nil
		case <-h.unlocked:
			return
		case <-s.done:
			return
		}
	}
}

func (s *server) unlock(ctx context.Context, lid uint64) message {
	s.mu.Lock()
	h := s.leases[lid]
	s.mu.Unlock()
	if h == nil {
		return errMessage(fmt.Errorf("no lease %d is held: it was never granted or is already unlocked: %w", lid, lockers.ErrNoEffect))
	}
	if err := h.lease.Unlock(ctx); err != nil {
		// Kept: the harness may try again.
		return errMessage(err)
	}
	s.mu.Lock()
	mine := s.leases[lid] == h
	if mine {
		delete(s.leases, lid)
	}
	s.mu.Unlock()
	if mine {
		h.mu.Lock()
		h.done = true
		h.mu.Unlock()
		close(h.unlocked)
	}
	return message{OK: true}
}

// attempt is the locker's Env.AttemptStarted. An attempt is attributed to
// the lock call open when it starts; with several open, it cannot be, and
// no event is sent. Sending none is sound: the harness then bounds the
// acquisition by an earlier attempt or by the request itself.
func (s *server) attempt() {
	s.mu.Lock()
	if len(s.locks) != 1 {
		s.mu.Unlock()
		return
	}
	var id int64
	var at time.Time
	for id, at = range s.locks {
	}
	s.mu.Unlock()
	s.send(message{Event: EventAttempt, Call: id, AfterNS: int64(time.Since(at))})
}

// shutdown cancels every open call, waits for them (bounded), and closes
// the locker and the store.
func (s *server) shutdown() {
	s.mu.Lock()
	for _, cancel := range s.calls {
		cancel()
	}
	s.mu.Unlock()
	close(s.done)
	s.cancel()
	waited := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(waited)
	}()
	select {
	case <-waited:
	case <-time.After(shutdownWait):
		s.log.Logf("worker: calls still running %v after they were cancelled; closing the locker under them", shutdownWait)
	}
	if s.locker != nil {
		closeBounded(s.log, "locker", s.locker)
	}
	if s.store != nil && any(s.store) != any(s.locker) {
		closeBounded(s.log, "register store", s.store)
	}
}

// closeBounded closes v if it is an io.Closer, waiting at most shutdownWait.
func closeBounded(log lockers.Logger, what string, v any) {
	c, ok := v.(io.Closer)
	if !ok {
		return
	}
	done := make(chan error, 1)
	go func() { done <- c.Close() }()
	select {
	case err := <-done:
		if err != nil {
			log.Logf("worker: closing the %s: %v", what, err)
		}
	case <-time.After(shutdownWait):
		log.Logf("worker: closing the %s took longer than %v; leaving it", what, shutdownWait)
	}
}

func (s *server) reply(id int64, m message) {
	m.ID = idPtr(id)
	s.send(m)
}

// send writes one line to out. Writes are serialised; after Serve returns,
// or once out has failed, nothing more is written.
func (s *server) send(m message) {
	b, err := json.Marshal(m)
	if err != nil {
		s.log.Logf("worker: encoding a message: %v", err)
		return
	}
	b = append(b, '\n')
	s.outMu.Lock()
	defer s.outMu.Unlock()
	if s.outClosed || s.outFailed {
		return
	}
	if _, err := s.out.Write(b); err != nil {
		s.outFailed = true
		s.log.Logf("worker: writing to the harness: %v; no more answers will be sent", err)
	}
}

func (s *server) closeOut() {
	s.outMu.Lock()
	s.outClosed = true
	s.outMu.Unlock()
}

// errMessage is the answer to a call that failed with err.
func errMessage(err error) message {
	text := err.Error()
	if text == "" {
		text = fmt.Sprintf("an error of type %T with no message", err)
	}
	return message{
		Error:    text,
		NoEffect: errors.Is(err, lockers.ErrNoEffect),
		Stale:    errors.Is(err, register.ErrStale),
	}
}

func redirectAddr(m map[string]string, addr string) string {
	if to, ok := m[addr]; ok {
		return to
	}
	return addr
}

// dialTimeout is http.DefaultTransport's: a dial that hangs is not waited
// for longer than this even when the call's own deadline is later.
const dialTimeout = 30 * time.Second

func redirectedDial(m map[string]string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	d := &net.Dialer{Timeout: dialTimeout}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		return d.DialContext(ctx, network, redirectAddr(m, addr))
	}
}

func redirectedHTTP(m map[string]string) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.DialContext = redirectedDial(m)
	return &http.Client{Transport: t}
}

// lineLogger writes each entry as one line; it is the locker's Env.Log.
type lineLogger struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lineLogger) Logf(format string, args ...any) {
	msg := strings.TrimRight(fmt.Sprintf(format, args...), "\n")
	// One entry is one line: the harness logs stderr line by line.
	msg = strings.ReplaceAll(msg, "\n", " | ")
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.w != nil {
		_, _ = io.WriteString(l.w, msg+"\n")
	}
}
