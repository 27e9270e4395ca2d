package gcslock_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lockcheck/lockcheck/backends/gcs"
	"github.com/lockcheck/lockcheck/lockers"
	"github.com/lockcheck/lockcheck/lockers/gcslock"
	"github.com/lockcheck/lockcheck/lockers/lockertest"
)

// bound caps every real-time wait; nothing checked depends on it.
const bound = 10 * time.Second

var start = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// recClock is a fake clock that records every wait asked of it.
type recClock struct {
	*lockertest.FakeClock
	mu    sync.Mutex
	waits []time.Duration
}

func (c *recClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	c.waits = append(c.waits, d)
	c.mu.Unlock()
	return c.FakeClock.After(d)
}

func (c *recClock) recorded() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Duration(nil), c.waits...)
}

// faultTransport counts requests by method and, for the requests it is
// told to, forwards them and then loses the reply.
type faultTransport struct {
	base     http.RoundTripper
	mu       sync.Mutex
	count    map[string]int
	status   map[string][]int // replies per method, in order
	loseNext map[string]int   // replies to lose per method
}

func (f *faultTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	res, err := f.base.RoundTrip(r)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.count[r.Method]++
	if err == nil {
		f.status[r.Method] = append(f.status[r.Method], res.StatusCode)
	}
	if err == nil && f.loseNext[r.Method] > 0 {
		f.loseNext[r.Method]--
		res.Body.Close()
		return nil, errors.New("reply lost")
	}
	return res, err
}

func (f *faultTransport) statuses(method string) []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]int(nil), f.status[method]...)
}

func (f *faultTransport) lose(method string, n int) {
	f.mu.Lock()
	f.loseNext[method] += n
	f.mu.Unlock()
}

type client struct {
	clock    *recClock
	tr       *faultTransport
	locker   *gcslock.Locker
	attempts atomic.Int64
}

func newClient(t *testing.T, b *gcs.InMemory) *client {
	t.Helper()
	c := &client{clock: &recClock{FakeClock: lockertest.NewFakeClock(start)}}
	hc := b.HTTPClient(func(rt http.RoundTripper) http.RoundTripper {
		c.tr = &faultTransport{base: rt, count: map[string]int{}, status: map[string][]int{}, loseNext: map[string]int{}}
		return c.tr
	})
	env := lockers.Env{Clock: c.clock, HTTP: hc, AttemptStarted: func() { c.attempts.Add(1) }}
	l, err := gcslock.New(context.Background(), gcslock.Config{Endpoint: b.Endpoint(), Bucket: b.Bucket()}, env, gcslock.Options{})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	c.locker = l
	return c
}

func newBackend(t *testing.T, wrap func(http.Handler) http.Handler) *gcs.InMemory {
	t.Helper()
	b, err := gcs.NewInMemory(gcs.Options{Wrap: wrap})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b
}

// exists reports whether the lock object of key exists, and its body.
func exists(t *testing.T, b *gcs.InMemory, key string) (bool, string) {
	t.Helper()
	res, err := b.HTTPClient(nil).Get(b.Endpoint() + "b/" + b.Bucket() + "/o/" + key + "?alt=media")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	return res.StatusCode == http.StatusOK, string(body)
}

func mustLock(t *testing.T, c *client, key string) lockers.Lease {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	lease, err := c.locker.Lock(ctx, key)
	if err != nil {
		t.Fatalf("Lock(%q): %v", key, err)
	}
	return lease
}

// stepBackoff lets a waiting call through n waits, advancing the clock by
// exactly each wait it asks for, and returns them once the call has armed
// its next wait (so its request after the last advance is done).
func stepBackoff(t *testing.T, c *client, n int) []time.Duration {
	t.Helper()
	for range n {
		armed(t, c)
		w := c.clock.recorded()
		c.clock.Advance(w[len(w)-1])
	}
	armed(t, c)
	return c.clock.recorded()
}

// armed waits until c's call is sleeping on its clock.
func armed(t *testing.T, c *client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	if err := c.clock.WaitForTimers(ctx, 1); err != nil {
		t.Fatalf("no wait armed: %v", err)
	}
}

func durations(ms ...int) []time.Duration {
	d := make([]time.Duration, len(ms))
	for i, m := range ms {
		d[i] = time.Duration(m) * time.Millisecond
	}
	return d
}

func equal(a, b []time.Duration) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestLockRequestShape: the lock is the source's media upload, and its body
// is "1".
func TestLockRequestShape(t *testing.T) {
	var seen *http.Request
	b := newBackend(t, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPost {
				seen = r.Clone(context.Background())
			}
			next.ServeHTTP(w, r)
		})
	})
	c := newClient(t, b)
	mustLock(t, c, "k")
	if seen == nil {
		t.Fatal("no upload seen")
	}
	q := seen.URL.Query()
	if seen.URL.Path != "/upload/storage/v1/b/"+b.Bucket()+"/o" || q.Get("name") != "k" ||
		q.Get("uploadType") != "media" || q.Get("ifGenerationMatch") != "0" ||
		seen.Header.Get("Content-Type") != "text/plain" {
		t.Errorf("upload %s %s content-type %q, want the source's media upload", seen.Method, seen.URL, seen.Header.Get("Content-Type"))
	}
	if ok, body := exists(t, b, "k"); !ok || body != "1" {
		t.Errorf("lock object exists=%v body=%q, want true \"1\"", ok, body)
	}
}

// TestBackoffDoubles: a held key is retried after 10, 20, 40, 80, 160 ms,
// each failed attempt a 412 that proves nothing was created, so each is
// reported; once the holder unlocks, the next attempt takes it.
func TestBackoffDoubles(t *testing.T) {
	b := newBackend(t, nil)
	holder, waiter := newClient(t, b), newClient(t, b)
	held := mustLock(t, holder, "k")

	res := lockertest.LockAsync(context.Background(), waiter.locker, "k")
	got := stepBackoff(t, waiter, 5)
	if want := durations(10, 20, 40, 80, 160, 320); !equal(got, want) {
		t.Errorf("waits %v, want 10ms doubling: %v", got, want)
	}
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	if err := held.Unlock(ctx); err != nil {
		t.Fatalf("Unlock: %v", err)
	}
	waiter.clock.Advance(320 * time.Millisecond)
	r := <-res
	if r.Err != nil {
		t.Fatalf("Lock after unlock: %v", r.Err)
	}
	st := waiter.tr.statuses(http.MethodPost)
	if len(st) != 7 || st[6] != http.StatusOK {
		t.Errorf("upload statuses %v, want six 412 then 200", st)
	}
	for _, s := range st[:len(st)-1] {
		if s != http.StatusPreconditionFailed {
			t.Errorf("upload statuses %v, want six 412 then 200", st)
			break
		}
	}
	if n := waiter.attempts.Load(); n != int64(len(st)) {
		t.Errorf("%d attempts reported for %d definite uploads", n, len(st))
	}
	if r.Lease.Token() != 0 {
		t.Errorf("token %d, want 0: no fencing", r.Lease.Token())
	}
}

// TestCancelHeld: a Lock on a held key ends with the context, and its error
// says it took no effect (every attempt was a 412).
func TestCancelHeld(t *testing.T) {
	b := newBackend(t, nil)
	holder, waiter := newClient(t, b), newClient(t, b)
	mustLock(t, holder, "k")
	ctx, cancel := context.WithCancel(context.Background())
	res := lockertest.LockAsync(ctx, waiter.locker, "k")
	stepBackoff(t, waiter, 2)
	cancel()
	r := <-res
	if r.Err == nil || !errors.Is(r.Err, lockers.ErrNoEffect) || !errors.Is(r.Err, context.Canceled) {
		t.Errorf("Lock error %v, want context.Canceled wrapping ErrNoEffect", r.Err)
	}
}

// TestUnlockRetriesUntil204: Unlock repeats the delete through 503s, with
// the same doubling waits, and returns once GCS answers 204.
func TestUnlockRetriesUntil204(t *testing.T) {
	var fail atomic.Int64
	fail.Store(3)
	b := newBackend(t, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodDelete && fail.Add(-1) >= 0 {
				http.Error(w, "backend error", http.StatusServiceUnavailable)
				return
			}
			next.ServeHTTP(w, r)
		})
	})
	c := newClient(t, b)
	lease := mustLock(t, c, "k")
	done := make(chan error, 1)
	go func() { done <- lease.Unlock(context.Background()) }()
	waits := stepBackoff(t, c, 2)
	c.clock.Advance(40 * time.Millisecond)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Unlock: %v", err)
		}
	case <-time.After(bound):
		t.Fatal("Unlock did not return after the 503s stopped")
	}
	if !equal(waits, durations(10, 20, 40)) {
		t.Errorf("waits %v, want [10ms 20ms 40ms]", waits)
	}
	if st := c.tr.statuses(http.MethodDelete); len(st) != 4 || st[3] != http.StatusNoContent {
		t.Errorf("delete statuses %v, want three 503 then 204", st)
	}
	if ok, _ := exists(t, b, "k"); ok {
		t.Error("lock object still exists after Unlock")
	}
}

// TestUnlockLostReply: the first delete commits but its reply is lost; the
// retries get 404, which the source does not take as success, so Unlock
// retries until its context ends and reports a failure for a release that
// happened, without claiming no effect.
func TestUnlockLostReply(t *testing.T) {
	b := newBackend(t, nil)
	c := newClient(t, b)
	lease := mustLock(t, c, "k")
	c.tr.lose(http.MethodDelete, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- lease.Unlock(ctx) }()
	stepBackoff(t, c, 4)
	cancel()
	err := <-done
	if err == nil || errors.Is(err, lockers.ErrNoEffect) {
		t.Errorf("Unlock error %v, want an indeterminate error", err)
	}
	if ok, _ := exists(t, b, "k"); ok {
		t.Error("the lost delete did not commit")
	}
	if st := c.tr.statuses(http.MethodDelete); len(st) < 2 || st[1] != http.StatusNotFound {
		t.Errorf("delete statuses %v, want 204 (lost) then 404s", st)
	}
}

// TestLostCreateWedges: the first upload commits but its reply is lost. The
// same client then sees only 412s on its own lock and waits until its
// context ends; another client cannot take the key either. The error is
// indeterminate and no attempt is reported after the ambiguous one. The
// control: without the lost reply the same client takes the key at once.
func TestLostCreateWedges(t *testing.T) {
	b := newBackend(t, nil)
	c, other := newClient(t, b), newClient(t, b)
	mustLock(t, c, "control")

	c.tr.lose(http.MethodPost, 1)
	ctx, cancel := context.WithCancel(context.Background())
	res := lockertest.LockAsync(ctx, c.locker, "k")
	stepBackoff(t, c, 6)
	cancel()
	r := <-res
	if r.Err == nil {
		t.Fatal("Lock took the key: the lost reply was not simulated")
	}
	if errors.Is(r.Err, lockers.ErrNoEffect) {
		t.Errorf("Lock claims no effect after an upload that committed: %v", r.Err)
	}
	if n := c.attempts.Load(); n != 2 { // the control's and the lost one
		t.Errorf("%d attempts reported, want 2: none after the ambiguous upload", n)
	}
	if ok, body := exists(t, b, "k"); !ok || body != "1" {
		t.Errorf("wedged lock exists=%v body=%q, want the lost create's object", ok, body)
	}
	st := c.tr.statuses(http.MethodPost)
	if len(st) != 8 || st[1] != http.StatusOK || st[7] != http.StatusPreconditionFailed {
		t.Errorf("upload statuses %v, want 200 (control), 200 (lost), then 412s", st)
	}

	ctx2, cancel2 := context.WithCancel(context.Background())
	res2 := lockertest.LockAsync(ctx2, other.locker, "k")
	stepBackoff(t, other, 3)
	cancel2()
	if r := <-res2; r.Err == nil {
		t.Error("another client took the wedged key")
	}
}

func TestNewRefuses(t *testing.T) {
	env := lockers.Env{Clock: lockers.SystemClock{}, HTTP: &http.Client{}}
	for name, tc := range map[string]struct {
		cfg  gcslock.Config
		opts gcslock.Options
	}{
		"no bucket":      {gcslock.Config{}, gcslock.Options{}},
		"negative scale": {gcslock.Config{Bucket: "b"}, gcslock.Options{TimeScale: -1}},
		"relative URL":   {gcslock.Config{Bucket: "b", Endpoint: "storage/v1"}, gcslock.Options{}},
	} {
		if _, err := gcslock.New(context.Background(), tc.cfg, env, tc.opts); !errors.Is(err, gcslock.ErrBadOptions) {
			t.Errorf("%s: New error %v, want ErrBadOptions", name, err)
		}
	}
	l, err := gcslock.New(context.Background(), gcslock.Config{Bucket: "b"}, env, gcslock.Options{TimeScale: 0.1})
	if err != nil || l.Options().Backoff != time.Millisecond {
		t.Errorf("TimeScale 0.1: backoff %v, err %v; want 1ms", l.Options().Backoff, err)
	}
}

// TestConformance runs in virtual time (Bubble): the in-memory GCS lives
// in each property's bubble, and the doubling backoff's long sleeps pass
// without waiting for them.
func TestConformance(t *testing.T) {
	lockertest.Run(t, lockertest.Suite{
		Bubble: true,
		New: func(tb testing.TB) func(lockers.Env) lockers.Locker {
			b, err := gcs.NewInMemory(gcs.Options{})
			if err != nil {
				tb.Fatal(err)
			}
			tb.Cleanup(b.Close)
			return func(env lockers.Env) lockers.Locker {
				env.HTTP = b.HTTPClient(nil)
				l, err := gcslock.New(context.Background(), gcslock.Config{Endpoint: b.Endpoint(), Bucket: b.Bucket()}, env, gcslock.Options{})
				if err != nil {
					tb.Fatalf("New: %v", err)
				}
				return l
			}
		},
		Lacks: map[lockertest.Property]string{
			lockertest.OwnerCheck: "Unlock is an unconditional delete: a stale lease deletes whoever's lock is there",
			lockertest.MutexOneKey: "liveness, not exclusion: the backoff doubles from 10 ms with no cap, so with 32 clients " +
				"on one key some waiter's sleep outgrows the suite's 30 s bound (mutex-8keys checks exclusion)",
		},
	})
}

// TestLoopbackServer: the URLs derived from the embedded backend's socket
// endpoint reach it: a held key refuses a second client, Unlock frees it.
func TestLoopbackServer(t *testing.T) {
	srv, err := gcs.Start(context.Background(), gcs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	newLocker := func() *gcslock.Locker {
		env := lockers.Env{Clock: lockers.SystemClock{}, HTTP: &http.Client{}}
		l, err := gcslock.New(context.Background(), gcslock.Config{Endpoint: srv.Endpoint(), Bucket: srv.Bucket()}, env, gcslock.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	lockertest.HandOver(t, newLocker(), newLocker(), 100*time.Millisecond, bound)
}
