package worker

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lockcheck/lockcheck/harness/register"
	"github.com/lockcheck/lockcheck/lockers"
)

// bound is how long a test waits for something that should happen at once:
// generous, because a loaded machine is slow, and only ever reached when
// the test fails.
const bound = 10 * time.Second

// syncBuffer is a log writer tests can read while a worker writes it.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// fakeNow is a real-time source the test moves by hand.
type fakeNow struct {
	mu sync.Mutex
	t  time.Time
}

func (f *fakeNow) now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.t
}

func (f *fakeNow) add(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.t = f.t.Add(d)
}

// pair is a worker served in this process and the harness's end of it,
// over pipes.
type pair struct {
	world  *fakeWorld
	proc   *Process
	server *server
	stderr *syncBuffer
	served chan error // Serve's result
	// toHarness is the worker's output, closed when Serve returns.
	toHarness *io.PipeWriter
}

type pairOptions struct {
	hooks Hooks
	now   func() time.Time
	hello Hello
}

func startPair(t *testing.T, o pairOptions) *pair {
	t.Helper()
	p := &pair{world: &fakeWorld{}, stderr: &syncBuffer{}, served: make(chan error, 1)}
	reqR, reqW := io.Pipe()
	respR, respW := io.Pipe()
	p.toHarness = respW
	p.server = newServer(respW, p.stderr, p.world.open)
	if o.now != nil {
		p.server.now = o.now
	}
	go func() {
		p.served <- p.server.run(context.Background(), reqR)
		respW.Close()
	}()
	p.proc = newProcess(respR, reqW, o.hooks, nil)
	t.Cleanup(func() {
		if err := p.proc.Close(bound); err != nil {
			t.Errorf("Close: %v", err)
		}
		reqR.Close()
		select {
		case <-p.served:
		case <-time.After(bound):
			t.Errorf("Serve did not return within %v of close", bound)
		}
		if t.Failed() {
			t.Logf("worker stderr:\n%s", p.stderr.String())
		}
	})
	h := o.hello
	if h.Identity == "" {
		h.Identity = "client-0"
	}
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	if err := p.proc.hello(ctx, h); err != nil {
		t.Fatalf("hello: %v\nstderr:\n%s", err, p.stderr.String())
	}
	return p
}

func ctxBound(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	t.Cleanup(cancel)
	return ctx
}

func mustLock(t *testing.T, l lockers.Locker, key string) lockers.Lease {
	t.Helper()
	lease, err := l.Lock(ctxBound(t), key)
	if err != nil {
		t.Fatalf("Lock(%s): %v", key, err)
	}
	return lease
}

// lockResult is a Lock running in its own goroutine.
type lockResult struct {
	lease lockers.Lease
	err   error
}

func lockAsync(ctx context.Context, l lockers.Locker, key string) <-chan lockResult {
	ch := make(chan lockResult, 1)
	go func() {
		lease, err := l.Lock(ctx, key)
		ch <- lockResult{lease, err}
	}()
	return ch
}

func await[T any](t *testing.T, what string, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(bound):
		t.Fatalf("%s: nothing within %v", what, bound)
		panic("unreachable")
	}
}

func TestLockUnlockTokens(t *testing.T) {
	p := startPair(t, pairOptions{})
	if got := p.world.hello.Identity; got != "client-0" {
		t.Errorf("the worker's locker got identity %q, want client-0", got)
	}
	a := mustLock(t, p.proc, "k0")
	if a.Token() != 1 {
		t.Errorf("first token = %d, want 1", a.Token())
	}
	if _, ok := a.(lockers.ReleaseRequester); !ok {
		t.Errorf("a lease of a locker whose leases take release requests is no ReleaseRequester")
	}
	if err := a.Unlock(ctxBound(t)); err != nil {
		t.Fatalf("Unlock: %v", err)
	}
	select {
	case <-p.world.fake().lease(0).unlocked:
	default:
		t.Errorf("Unlock answered ok but the locker's lease is not unlocked")
	}
	err := a.Unlock(ctxBound(t))
	if !errors.Is(err, lockers.ErrNoEffect) {
		t.Errorf("second Unlock = %v, want an error wrapping ErrNoEffect", err)
	}
	b := mustLock(t, p.proc, "k0")
	if b.Token() != 2 {
		t.Errorf("second token = %d, want 2", b.Token())
	}
}

func TestCallsRunConcurrently(t *testing.T) {
	p := startPair(t, pairOptions{hello: Hello{Register: RegisterPlain}})
	a := mustLock(t, p.proc, "k0")
	waiting := lockAsync(ctxBound(t), p.proc, "k0")

	// While a lock call blocks, the holder's data calls and unlock go on.
	st := p.proc.Store()
	if err := st.Write(ctxBound(t), "k0", 41, a.Token()); err != nil {
		t.Fatalf("Write: %v", err)
	}
	v, err := st.Read(ctxBound(t), "k0", a.Token())
	if err != nil || v != 41 {
		t.Fatalf("Read = %d, %v; want 41", v, err)
	}
	select {
	case r := <-waiting:
		t.Fatalf("a Lock of a held key returned before the holder unlocked: %+v", r)
	default:
	}
	if err := a.Unlock(ctxBound(t)); err != nil {
		t.Fatalf("Unlock: %v", err)
	}
	r := await(t, "the waiting Lock", waiting)
	if r.err != nil || r.lease.Token() != 2 {
		t.Fatalf("waiting Lock = %v, %v; want token 2", r.lease, r.err)
	}
	if _, err := st.Final(ctxBound(t), "k0"); err == nil {
		t.Errorf("Final over the protocol succeeded; the harness must read finals itself")
	}
}

func TestLostAndReleaseRequested(t *testing.T) {
	p := startPair(t, pairOptions{})
	a := mustLock(t, p.proc, "k0")
	rr := a.(lockers.ReleaseRequester)
	fl := p.world.fake().lease(0)

	select {
	case <-a.Lost():
		t.Fatal("Lost closed before the lease was lost")
	case <-rr.ReleaseRequested():
		t.Fatal("ReleaseRequested closed before anyone asked")
	default:
	}
	fl.ask()
	await(t, "ReleaseRequested", rr.ReleaseRequested())
	select {
	case <-a.Lost():
		t.Fatal("a release request closed Lost")
	default:
	}
	fl.lose()
	await(t, "Lost", a.Lost())
	if err := a.Unlock(ctxBound(t)); !errors.Is(err, lockers.ErrNoEffect) {
		t.Errorf("Unlock of a lost lease = %v, want ErrNoEffect", err)
	}
}

func TestAttemptEventsBoundTheAttempt(t *testing.T) {
	var mu sync.Mutex
	var ats []time.Time
	p := startPair(t, pairOptions{hooks: Hooks{AttemptStarted: func(at time.Time) {
		mu.Lock()
		ats = append(ats, at)
		mu.Unlock()
	}}})
	a := mustLock(t, p.proc, "k0") // attempt 0
	before := time.Now()
	waiting := lockAsync(ctxBound(t), p.proc, "k0") // attempts 1 (held) and 2 (won)
	if err := a.Unlock(ctxBound(t)); err != nil {
		t.Fatal(err)
	}
	r := await(t, "the waiting Lock", waiting)
	if r.err != nil {
		t.Fatal(r.err)
	}
	mu.Lock()
	got := append([]time.Time(nil), ats...)
	mu.Unlock()
	truth := p.world.fake().attemptTimes()
	if len(got) < 2 || len(truth) != len(got) {
		// The unlock may land before the second Lock's first attempt: 2
		// or 3 attempts, but every one reported before Lock returned.
		t.Fatalf("%d attempt events by the time Lock returned, the locker made %d attempts", len(got), len(truth))
	}
	for i := range got {
		if got[i].After(truth[i]) {
			t.Errorf("attempt %d reported at %v, after it really started (%v): unsound", i, got[i], truth[i])
		}
	}
	if last := got[len(got)-1]; last.Before(before) {
		t.Errorf("the winning attempt was reported at %v, before the Lock was even called (%v)", last, before)
	}
}

func TestErrorMapping(t *testing.T) {
	p := startPair(t, pairOptions{hello: Hello{Register: RegisterFenced}})
	tests := []struct {
		name            string
		call            func() error
		noEffect, stale bool
	}{
		{"lock refused", func() error { _, err := p.proc.Lock(ctxBound(t), keyNoEffect); return err }, true, false},
		{"lock unknown", func() error { _, err := p.proc.Lock(ctxBound(t), keyUnknown); return err }, false, false},
		{"read unknown", func() error { _, err := p.proc.Store().Read(ctxBound(t), keyUnknown, 1); return err }, false, false},
		{"fence raised", func() error { _, err := p.proc.Store().Read(ctxBound(t), "k0", 5); return err }, false, false},
		{"stale write", func() error { return p.proc.Store().Write(ctxBound(t), "k0", 1, 4) }, true, true},
		{"stale read", func() error { _, err := p.proc.Store().Read(ctxBound(t), "k0", 3); return err }, true, true},
	}
	for _, tc := range tests {
		err := tc.call()
		if tc.name == "fence raised" {
			if err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("%s: no error", tc.name)
			continue
		}
		if got := errors.Is(err, lockers.ErrNoEffect); got != tc.noEffect {
			t.Errorf("%s: %v: errors.Is(ErrNoEffect) = %v, want %v", tc.name, err, got, tc.noEffect)
		}
		if got := register.IsStale(err); got != tc.stale {
			t.Errorf("%s: %v: IsStale = %v, want %v", tc.name, err, got, tc.stale)
		}
	}
}

func TestCancelEndsTheWorkersCall(t *testing.T) {
	p := startPair(t, pairOptions{})
	f := p.world.fake()
	mustLock(t, p.proc, "k0")
	await(t, "the first Lock's attempt", f.attempted)
	await(t, "the first Lock's end", f.ended)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	waiting := lockAsync(ctx, p.proc, "k0")
	// Once it has attempted, the worker's Lock is blocked on the held key.
	await(t, "the second Lock's attempt", f.attempted)
	cancel()
	r := await(t, "the cancelled Lock", waiting)
	if !errors.Is(r.err, context.Canceled) {
		t.Fatalf("cancelled Lock = %v, %v; want context.Canceled", r.lease, r.err)
	}
	// The worker's own call ends too: its locker saw the cancel.
	if err := await(t, "the worker's Lock to end", f.ended); !errors.Is(err, context.Canceled) {
		t.Errorf("the worker's Lock ended with %v, want context.Canceled", err)
	}
}

func TestLeaseGrantedAfterGivingUpIsUnlocked(t *testing.T) {
	var logMu sync.Mutex
	var logged []string
	p := startPair(t, pairOptions{hooks: Hooks{Log: func(l string) {
		logMu.Lock()
		logged = append(logged, l)
		logMu.Unlock()
	}}})
	f := p.world.fake()
	ctx, cancel := context.WithCancel(context.Background())
	waiting := lockAsync(ctx, p.proc, keyLate)
	await(t, "the worker's Lock to start", f.attempted)
	cancel()
	if r := await(t, "the cancelled Lock", waiting); !errors.Is(r.err, context.Canceled) {
		t.Fatalf("cancelled Lock = %v, %v; want context.Canceled", r.lease, r.err)
	}
	// The locker grants regardless: nobody holds the lease, so the
	// harness's end must give it back.
	close(f.grantLate)
	if err := await(t, "the late Lock to end", f.ended); err != nil {
		t.Fatalf("late Lock: %v", err)
	}
	await(t, "the late lease's unlock", f.lease(0).unlocked)
	logMu.Lock()
	defer logMu.Unlock()
	if !strings.Contains(strings.Join(logged, "\n"), "granted after its lock call gave up") {
		t.Errorf("the harness's end did not log why it unlocked a lease; it logged %q", logged)
	}
}

func TestClockRequestsSetTheLockersClock(t *testing.T) {
	real := &fakeNow{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	p := startPair(t, pairOptions{now: real.now, hello: Hello{Clock: ClockState{SkewNS: int64(time.Second)}}})
	clk := p.world.fake().env.Clock
	if got, want := clk.Now(), real.now().Add(time.Second); !got.Equal(want) {
		t.Errorf("after hello the clock reads %v, want real time + 1s = %v", got, want)
	}
	if err := p.proc.SetClock(5*time.Second, 0.5); err != nil {
		t.Fatal(err)
	}
	// Requests are taken in order: once a later call is answered, the
	// clock request has been applied.
	if err := mustLock(t, p.proc, "k0").Unlock(ctxBound(t)); err != nil {
		t.Fatal(err)
	}
	if got, want := clk.Now(), real.now().Add(5*time.Second); !got.Equal(want) {
		t.Errorf("after the clock request the clock reads %v, want real + 5s = %v", got, want)
	}
	real.add(2 * time.Second)
	if got, want := clk.Now(), real.now().Add(6*time.Second); !got.Equal(want) {
		t.Errorf("2s later, drifting +0.5, the clock reads %v, want real + 6s = %v", got, want)
	}
	if err := p.proc.SetClock(0, -1); err == nil {
		t.Errorf("SetClock with drift -1 (a stopped clock) was accepted")
	}
}

// rawWorker is a worker served in this process, spoken to line by line.
type rawWorker struct {
	in     *io.PipeWriter
	lines  chan map[string]any
	stderr *syncBuffer
}

func startRaw(t *testing.T) *rawWorker {
	reqR, reqW := io.Pipe()
	respR, respW := io.Pipe()
	w := &rawWorker{in: reqW, lines: make(chan map[string]any, 100), stderr: &syncBuffer{}}
	served := make(chan error, 1)
	go func() {
		served <- Serve(context.Background(), reqR, respW, w.stderr, (&fakeWorld{}).open)
		respW.Close()
	}()
	go func() {
		defer close(w.lines)
		sc := bufio.NewScanner(respR)
		for sc.Scan() {
			var m map[string]any
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				t.Errorf("the worker wrote a line that is not JSON: %q", sc.Text())
				continue
			}
			w.lines <- m
		}
	}()
	t.Cleanup(func() {
		reqW.Close()
		if err := await(t, "Serve to return at the end of its input", served); err != nil {
			t.Errorf("Serve = %v, want nil at the end of its input", err)
		}
	})
	return w
}

func (w *rawWorker) send(t *testing.T, line string) {
	t.Helper()
	if _, err := io.WriteString(w.in, line+"\n"); err != nil {
		t.Fatal(err)
	}
}

func (w *rawWorker) next(t *testing.T) map[string]any {
	t.Helper()
	m, ok := <-w.linesWithin(t)
	if !ok {
		t.Fatal("the worker's output ended")
	}
	return m
}

func (w *rawWorker) linesWithin(t *testing.T) <-chan map[string]any {
	ch := make(chan map[string]any, 1)
	select {
	case m, ok := <-w.lines:
		if ok {
			ch <- m
		}
		close(ch)
	case <-time.After(bound):
		t.Fatalf("no line from the worker within %v; stderr:\n%s", bound, w.stderr.String())
	}
	return ch
}

const rawHello = `{"id":0,"op":"hello","protocol":1,"locker":"fake","identity":"c","register":"","clock":{"skew_ns":0,"drift":0}}`

func TestMalformedLinesDoNotStopTheWorker(t *testing.T) {
	w := startRaw(t)
	w.send(t, `this is not json`)
	w.send(t, `{"op":"lock","key":"k0"}`)
	w.send(t, `{"id":3,"op":"lock","key":5}`)
	m := w.next(t)
	if m["id"] != 3.0 || m["error"] == nil || m["no_effect"] != true {
		t.Errorf("answer to a request with a wrongly typed field = %v, want an error with no_effect for id 3", m)
	}
	w.send(t, `{"id":4,"op":"lock","key":"k0"}`)
	if m := w.next(t); m["id"] != 4.0 || !strings.Contains(m["error"].(string), "hello first") {
		t.Errorf("lock before hello answered %v, want an error saying to send hello first", m)
	}
	w.send(t, rawHello)
	if m := w.next(t); m["id"] != 0.0 || m["ok"] != true || m["protocol"] != 1.0 || m["pid"] == nil {
		t.Fatalf("hello answered %v", m)
	}
	w.send(t, `{"id":5,"op":"frobnicate"}`)
	if m := w.next(t); m["id"] != 5.0 || !strings.Contains(m["error"].(string), "unknown op") {
		t.Errorf("an unknown op answered %v", m)
	}
	w.send(t, `{"id":6,"op":"lock","key":"k0","timeout_ns":5000000000}`)
	// An attempt event comes first, then the answer.
	m = w.next(t)
	if m["event"] != "attempt" || m["call"] != 6.0 {
		t.Errorf("first line after a lock = %v, want its attempt event", m)
	}
	if m := w.next(t); m["id"] != 6.0 || m["ok"] != true || m["lease"] != 1.0 || m["token"] != 1.0 {
		t.Errorf("lock answered %v, want lease 1, token 1", m)
	}
	log := w.stderr.String()
	for _, want := range []string{"not a protocol request", "without an id"} {
		if !strings.Contains(log, want) {
			t.Errorf("stderr does not report a line %q:\n%s", want, log)
		}
	}
}

func TestProtocolVersionMismatch(t *testing.T) {
	w := startRaw(t)
	w.send(t, strings.Replace(rawHello, `"protocol":1`, `"protocol":2`, 1))
	m := w.next(t)
	if m["id"] != 0.0 || m["ok"] == true {
		t.Fatalf("a hello for protocol 2 answered %v, want an error", m)
	}
	if e, _ := m["error"].(string); !strings.Contains(e, "protocol 1") || !strings.Contains(e, "not 2") {
		t.Errorf("refusal %q does not name the version the worker speaks and the one it refused", e)
	}
}

func TestCallsFailWhenTheWorkerGoes(t *testing.T) {
	p := startPair(t, pairOptions{})
	f := p.world.fake()
	mustLock(t, p.proc, "k0")
	await(t, "the first Lock's attempt", f.attempted)
	waiting := lockAsync(ctxBound(t), p.proc, "k0")
	await(t, "the second Lock's attempt", f.attempted)
	// The worker's output ends, as when its process dies.
	p.toHarness.CloseWithError(errors.New("worker died"))
	if r := await(t, "the pending Lock", waiting); !errors.Is(r.err, ErrExited) {
		t.Errorf("pending Lock = %v, %v; want ErrExited", r.lease, r.err)
	}
	await(t, "Exited", p.proc.Exited())
	if _, err := p.proc.Lock(ctxBound(t), "k1"); !errors.Is(err, ErrExited) {
		t.Errorf("Lock after the worker went = %v, want ErrExited", err)
	}
	if err := p.proc.SetClock(time.Second, 0); !errors.Is(err, ErrExited) {
		t.Errorf("SetClock after the worker went = %v, want ErrExited", err)
	}
	if err := p.proc.Stop(); !errors.Is(err, ErrNotProcess) {
		t.Errorf("Stop of a worker that is not a child process = %v, want ErrNotProcess", err)
	}
}

func TestRedirectReachesTheProxyAddress(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "proxied")
	}))
	defer srv.Close()
	// Nothing listens on the address the locker is configured with: only
	// the redirect can reach the server.
	const configured = "127.0.0.1:1"
	real := strings.TrimPrefix(srv.URL, "http://")
	p := startPair(t, pairOptions{hello: Hello{Redirect: map[string]string{configured: real}}})
	env := p.world.fake().env

	req, err := http.NewRequestWithContext(ctxBound(t), http.MethodGet, "http://"+configured+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := env.HTTP.Do(req)
	if err != nil {
		t.Fatalf("GET through the worker's HTTP client: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "proxied" {
		t.Errorf("GET %s answered %q, want the redirect target's %q", configured, body, "proxied")
	}
	conn, err := env.Dial(ctxBound(t), "tcp", configured)
	if err != nil {
		t.Fatalf("Dial through the worker's dialer: %v", err)
	}
	if got := conn.RemoteAddr().String(); got != real {
		t.Errorf("Dial(%s) reached %s, want %s", configured, got, real)
	}
	conn.Close()
}

func TestDriftingClockWaitsLessRealTime(t *testing.T) {
	c := newClock(time.Now, ClockState{Drift: 9999})
	// An hour on a clock 10,000 times fast is 360 ms of real time; without
	// the drift the wait would outlast the test.
	await(t, "an hour on a very fast clock", c.After(time.Hour))
}

func TestCloseCancelsCallsAndClosesTheLocker(t *testing.T) {
	p := startPair(t, pairOptions{})
	f := p.world.fake()
	mustLock(t, p.proc, "k0")
	await(t, "the first Lock's attempt", f.attempted)
	await(t, "the first Lock's end", f.ended)
	waiting := lockAsync(ctxBound(t), p.proc, "k0")
	await(t, "the blocked Lock's attempt", f.attempted)
	if err := p.proc.Close(bound); err != nil {
		t.Fatalf("Close: %v", err)
	}
	// Close returns once the worker's output ended, so Serve has returned.
	if err := await(t, "the worker's blocked Lock to end", f.ended); !errors.Is(err, context.Canceled) {
		t.Errorf("the worker's blocked Lock ended with %v, want context.Canceled", err)
	}
	if !f.isClosed() {
		t.Errorf("the locker is not closed after the close request")
	}
	// The worker answers the calls it cancels before it answers close, so
	// the harness learns their real outcome.
	if r := await(t, "the harness's pending Lock", waiting); !errors.Is(r.err, lockers.ErrNoEffect) {
		t.Errorf("a Lock pending at close = %v, %v; want the locker's no-effect error", r.lease, r.err)
	}
}

func TestServeReturnsWhenItsContextEnds(t *testing.T) {
	world := &fakeWorld{}
	reqR, reqW := io.Pipe()
	defer reqW.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- Serve(ctx, reqR, io.Discard, io.Discard, world.open) }()
	for _, l := range []string{rawHello, `{"id":1,"op":"lock","key":"k0"}`, `{"id":2,"op":"lock","key":"k0"}`} {
		if _, err := io.WriteString(reqW, l+"\n"); err != nil {
			t.Fatal(err)
		}
	}
	// Lines are taken one at a time, so the third was read only after the
	// hello was handled.
	f := world.fake()
	if f == nil {
		t.Fatal("the worker took later lines before opening its locker")
	}
	await(t, "the first Lock's end", f.ended)
	await(t, "the first Lock's attempt", f.attempted)
	await(t, "the second Lock's attempt", f.attempted)
	cancel()
	if err := await(t, "Serve to return", served); !errors.Is(err, context.Canceled) {
		t.Errorf("Serve = %v, want context.Canceled", err)
	}
	if err := await(t, "the blocked Lock to end", f.ended); !errors.Is(err, context.Canceled) {
		t.Errorf("the blocked Lock ended with %v, want context.Canceled", err)
	}
	if !f.isClosed() {
		t.Errorf("the locker is not closed after Serve returned")
	}
}
