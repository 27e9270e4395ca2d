package tus616_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"path"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fsouza/fake-gcs-server/fakestorage"

	"github.com/lockcheck/lockcheck/lockers"
	"github.com/lockcheck/lockcheck/lockers/lockertest"
	"github.com/lockcheck/lockcheck/lockers/tus616"
)

const bucket = "locks"

var start = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// bound limits how long a test waits for something that should happen at
// once; it never decides what a test checks.
const bound = 10 * time.Second

// newFake starts an in-process fake-gcs-server without a listener, with
// the lock bucket. The raw fake ignores most preconditions (backends/gcs's
// known-gaps test lists them); tests below say which of their checks
// it makes meaningless.
func newFake(t testing.TB) *fakestorage.Server {
	t.Helper()
	srv, err := fakestorage.NewServerWithOptions(fakestorage.Options{NoListener: true})
	if err != nil {
		t.Fatalf("fake-gcs-server: %v", err)
	}
	srv.CreateBucketWithOpts(fakestorage.CreateBucketOpts{Name: bucket})
	t.Cleanup(srv.Stop)
	return srv
}

// request is what the journal keeps of one HTTP request.
type request struct {
	method string
	path   string
	query  map[string]string
	body   string
	status int
}

func (r request) String() string {
	return r.method + " " + r.path + " " + strconv.Itoa(r.status)
}

// journal is an HTTP transport that records every request, and can fake a
// lost reply: the request reaches the server, the caller gets a 503.
type journal struct {
	base http.RoundTripper

	mu   sync.Mutex
	reqs []request
	// grew is closed and replaced at each request, to wait on without
	// polling.
	grew chan struct{}
	// lose503 makes the next n uploads of an object whose name contains
	// loseName answer 503 after the server has committed them.
	loseName string
	lose503  int
}

func (j *journal) RoundTrip(r *http.Request) (*http.Response, error) {
	var body []byte
	if r.Body != nil {
		body, _ = io.ReadAll(r.Body)
		r.Body.Close()
		r.Body = io.NopCloser(bytes.NewReader(body))
	}
	resp, err := j.base.RoundTrip(r)
	rec := request{method: r.Method, path: r.URL.Path, query: map[string]string{}, body: string(body)}
	for k, v := range r.URL.Query() {
		rec.query[k] = v[0]
	}
	if err == nil {
		rec.status = resp.StatusCode
	}
	j.mu.Lock()
	lose := false
	if err == nil && j.lose503 > 0 && r.Method == http.MethodPost && strings.Contains(string(body), j.loseName) &&
		strings.Contains(r.URL.Path, "/upload/") && resp.StatusCode == http.StatusOK {
		j.lose503--
		lose = true
		rec.status = -http.StatusServiceUnavailable
	}
	j.reqs = append(j.reqs, rec)
	if j.grew != nil {
		close(j.grew)
	}
	j.grew = make(chan struct{})
	j.mu.Unlock()
	if lose {
		resp.Body.Close()
		return &http.Response{
			StatusCode: http.StatusServiceUnavailable,
			Status:     "503 Service Unavailable",
			Header:     http.Header{"Content-Type": {"application/json"}},
			Body:       io.NopCloser(strings.NewReader(`{"error":{"code":503,"message":"lost reply"}}`)),
			Request:    r,
		}, nil
	}
	return resp, err
}

// waitRequests waits until the journal holds at least n requests.
func (j *journal) waitRequests(t *testing.T, n int) []request {
	t.Helper()
	deadline := time.After(bound)
	for {
		j.mu.Lock()
		if j.grew == nil {
			j.grew = make(chan struct{})
		}
		got, grew := append([]request(nil), j.reqs...), j.grew
		j.mu.Unlock()
		if len(got) >= n {
			return got
		}
		select {
		case <-grew:
		case <-deadline:
			t.Fatalf("%d requests after %v, want %d: %v", len(got), bound, n, got)
		}
	}
}

func (j *journal) requests() []request {
	j.mu.Lock()
	defer j.mu.Unlock()
	return append([]request(nil), j.reqs...)
}

// client is one simulated client: its own clock, journal and locker.
type client struct {
	clock    *lockertest.FakeClock
	journal  *journal
	locker   *tus616.Locker
	attempts chan struct{}
}

func newClient(t *testing.T, srv *fakestorage.Server, opts tus616.Options) *client {
	t.Helper()
	return newClientAt(t, tus616.Config{Bucket: bucket}, srv.HTTPClient().Transport, opts)
}

// newClientAt is a client of the bucket in cfg, reached through base.
func newClientAt(t *testing.T, cfg tus616.Config, base http.RoundTripper, opts tus616.Options) *client {
	t.Helper()
	c := &client{
		clock:    lockertest.NewFakeClock(start),
		journal:  &journal{base: base},
		attempts: make(chan struct{}, 1000),
	}
	env := lockers.Env{
		Clock: c.clock,
		HTTP:  &http.Client{Transport: c.journal},
		AttemptStarted: func() {
			select {
			case c.attempts <- struct{}{}:
			default:
			}
		},
	}
	l, err := tus616.New(context.Background(), cfg, env, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	c.locker = l
	return c
}

func (c *client) waitAttempts(t *testing.T, n int) {
	t.Helper()
	for range n {
		select {
		case <-c.attempts:
		case <-time.After(bound):
			t.Fatalf("no attempt reported within %v", bound)
		}
	}
}

func (c *client) waitTimers(t *testing.T, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	if err := c.clock.WaitForTimers(ctx, n); err != nil {
		t.Fatalf("waiting for %d timers (have %d): %v", n, c.clock.Pending(), err)
	}
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

func mustUnlock(t *testing.T, lease lockers.Lease) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	if err := lease.Unlock(ctx); err != nil {
		t.Fatalf("Unlock: %v", err)
	}
}

func object(srv *fakestorage.Server, name string) (fakestorage.Object, bool) {
	obj, err := srv.GetObject(bucket, name)
	return obj, err == nil
}

func drain(ch chan struct{}) int {
	n := 0
	for {
		select {
		case <-ch:
			n++
		default:
			return n
		}
	}
}

func TestNewRefusesWatchIntervalAboveTimeout(t *testing.T) {
	env := lockers.Env{Clock: lockers.SystemClock{}, HTTP: &http.Client{}}
	_, err := tus616.New(context.Background(), tus616.Config{Bucket: bucket}, env,
		tus616.Options{AcquireLockTimeout: time.Second, WatchInterval: 2 * time.Second})
	if !errors.Is(err, tus616.ErrBadOptions) {
		t.Fatalf("New with watchInterval > acquireLockTimeout: got %v, want ErrBadOptions", err)
	}
}

func TestTimeScale(t *testing.T) {
	srv := newFake(t)
	c := newClient(t, srv, tus616.Options{TimeScale: 0.1, WatchInterval: 500 * time.Millisecond})
	got := c.locker.Options()
	if got.AcquireLockTimeout != 3*time.Second || got.LockTTL != 1200*time.Millisecond || got.WatchInterval != 500*time.Millisecond {
		t.Fatalf("TimeScale 0.1 with a WatchInterval override: got %v / %v / %v, want 3s / 1.2s / 500ms",
			got.AcquireLockTimeout, got.LockTTL, got.WatchInterval)
	}
}

// TestTakeFree takes a free lock: one create-if-absent with custom exp and
// no-store, one metadata read; then Unlock deletes both objects, the lock
// with ifGenerationMatch set to the metageneration (sic).
func TestTakeFree(t *testing.T) {
	srv := newFake(t)
	c := newClient(t, srv, tus616.Options{})
	lease := mustLock(t, c, "k")
	if n := drain(c.attempts); n != 1 {
		t.Errorf("attempts reported: %d, want 1", n)
	}
	obj, ok := object(srv, "k.lock")
	if !ok {
		t.Fatalf("k.lock does not exist after Lock")
	}
	if want := strconv.FormatInt(start.Add(tus616.DefaultLockTTL).UnixMilli(), 10); obj.Metadata["exp"] != want {
		t.Errorf("custom exp = %q, want %q (client clock + TTL, ms)", obj.Metadata["exp"], want)
	}
	if obj.CacheControl != "no-store" {
		t.Errorf("cache-control = %q, want no-store", obj.CacheControl)
	}
	reqs := c.journal.requests()
	if len(reqs) != 2 || reqs[0].method != http.MethodPost || reqs[0].query["ifGenerationMatch"] != "0" || reqs[1].method != http.MethodGet {
		t.Fatalf("requests %v: want an upload with ifGenerationMatch=0, then a metadata read", reqs)
	}
	if lease.Token() != 0 {
		t.Errorf("Token = %d, want 0 (no fencing)", lease.Token())
	}

	mustUnlock(t, lease)
	if _, ok := object(srv, "k.lock"); ok {
		t.Errorf("k.lock still exists after Unlock (raw fake: preconditions on delete are ignored)")
	}
	reqs = c.journal.requests()[2:]
	if len(reqs) != 2 || reqs[0].method != http.MethodDelete || !strings.HasSuffix(reqs[0].path, "k.lock.release") ||
		reqs[0].query["ifGenerationMatch"] != "" || reqs[0].query["ifMetagenerationMatch"] != "" {
		t.Fatalf("unlock requests %v: want an unconditional delete of k.lock.release first", reqs)
	}
	if d := reqs[1]; d.method != http.MethodDelete || !strings.HasSuffix(d.path, "k.lock") ||
		d.query["ifGenerationMatch"] != "1" || d.query["ifMetagenerationMatch"] != "" {
		t.Errorf("unlock's lock delete %v %v: want ifGenerationMatch=1, the remembered metageneration", d, d.query)
	}
	// Lost never closes.
	select {
	case <-lease.Lost():
		t.Errorf("Lost closed")
	default:
	}
}

// TestHeldLock: a second client finds the lock healthy, creates the
// release request and reports not taken, twice at once then after
// watchInterval/3; the holder's watcher sees the request on its next tick.
// Cancelling the waiter gives a definite failure: every create got a 412
// on its only request.
func TestHeldLock(t *testing.T) {
	srv := newFake(t)
	a := newClient(t, srv, tus616.Options{})
	b := newClient(t, srv, tus616.Options{})
	held := mustLock(t, a, "k")
	rr, ok := held.(lockers.ReleaseRequester)
	if !ok {
		t.Fatalf("lease is not a ReleaseRequester")
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	res := lockertest.LockAsync(ctx, b.locker, "k")
	b.waitAttempts(t, 2)
	// Attempt 1 followed attempt 0 at once; now b waits watchInterval/3:
	// its timeout and that wait are pending.
	b.waitTimers(t, 2)
	if _, ok := object(srv, "k.lock.release"); !ok {
		t.Fatalf("k.lock.release not created by the waiting client")
	}
	var uploads int
	for _, r := range b.journal.requests() {
		if r.method == http.MethodPost {
			uploads++
			if r.query["ifGenerationMatch"] != "0" {
				t.Errorf("upload %v without ifGenerationMatch=0", r)
			}
		}
	}
	if uploads != 4 {
		t.Errorf("b made %d uploads, want 4 (lock + release request, twice)", uploads)
	}

	select {
	case <-rr.ReleaseRequested():
		t.Fatalf("release requested before the holder's watcher ran")
	default:
	}
	a.waitTimers(t, 2) // a's Lock timeout (never fires) and its watcher
	a.clock.Advance(tus616.DefaultWatchInterval)
	select {
	case <-rr.ReleaseRequested():
	case <-time.After(bound):
		t.Fatalf("ReleaseRequested not closed after a watcher tick")
	}

	cancel()
	got := <-res
	if got.Err == nil {
		t.Fatalf("b took a held lock")
	}
	if !errors.Is(got.Err, tus616.ErrLockTimeout) || !errors.Is(got.Err, lockers.ErrNoEffect) {
		t.Errorf("cancelled Lock: %v; want ErrLockTimeout and ErrNoEffect", got.Err)
	}
	mustUnlock(t, held)
	lease := mustLock(t, b, "k")
	mustUnlock(t, lease)
}

// TestStaleLock: a lock whose custom exp is in the past is deleted, with
// its release request, and taken at once, within the same Lock call.
func TestStaleLock(t *testing.T) {
	for _, tc := range []struct {
		name string
		meta map[string]string
	}{
		{"expired", map[string]string{"exp": strconv.FormatInt(start.Add(-time.Millisecond).UnixMilli(), 10)}},
		{"exp-missing", map[string]string{"owner": "x"}},
		{"exp-garbage", map[string]string{"exp": "soon"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newFake(t)
			srv.CreateObject(fakestorage.Object{ObjectAttrs: fakestorage.ObjectAttrs{BucketName: bucket, Name: "k.lock", Metadata: tc.meta}})
			srv.CreateObject(fakestorage.Object{ObjectAttrs: fakestorage.ObjectAttrs{BucketName: bucket, Name: "k.lock.release"}})
			c := newClient(t, srv, tus616.Options{})
			lease := mustLock(t, c, "k")
			defer mustUnlock(t, lease)
			if n := drain(c.attempts); n != 2 {
				t.Errorf("attempts reported: %d, want 2", n)
			}
			var got []string
			for _, r := range c.journal.requests() {
				got = append(got, r.String())
			}
			want := []string{
				"POST /upload/storage/v1/b/locks/o 412",
				"GET /storage/v1/b/locks/o/k.lock 200",
				"DELETE /storage/v1/b/locks/o/k.lock.release 200", // the fake's 200 for GCS's 204
				"DELETE /storage/v1/b/locks/o/k.lock 200",
				"POST /upload/storage/v1/b/locks/o 200",
				"GET /storage/v1/b/locks/o/k.lock 200",
			}
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Fatalf("requests:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
			del := c.journal.requests()[3]
			if del.query["ifMetagenerationMatch"] != "1" || del.query["ifGenerationMatch"] != "" {
				t.Errorf("stale delete query %v: want ifMetagenerationMatch=1 and no generation condition", del.query)
			}
			if _, ok := object(srv, "k.lock.release"); ok {
				t.Errorf("k.lock.release survived")
			}
		})
	}
}

// TestWatcherRefresh: a watcher tick reads the lock, checks for a release
// request, and patches the lock with ifMetagenerationMatch=<remembered>,
// changing no custom metadata: exp is never extended. On the raw fake the
// patch's reply has no metageneration, so the next tick finds "1 ≠ 0" and
// the watcher stops silently; whether the metageneration is bumped needs a
// fake that keeps metagenerations (backends/gcs).
func TestWatcherRefresh(t *testing.T) {
	srv := newFake(t)
	c := newClient(t, srv, tus616.Options{})
	lease := mustLock(t, c, "k")
	defer mustUnlock(t, lease)
	before, _ := object(srv, "k.lock")
	n := len(c.journal.requests())

	c.waitTimers(t, 2)
	c.clock.Advance(tus616.DefaultWatchInterval)
	// The tick arms the next one (timers: Lock timeout, next tick, the
	// tick's own bound); its requests end with the patch.
	tick := c.journal.waitRequests(t, n+3)[n:]
	if tick[0].method != http.MethodGet || !strings.HasSuffix(tick[0].path, "/k.lock") ||
		tick[1].method != http.MethodGet || !strings.HasSuffix(tick[1].path, "/k.lock.release") {
		t.Fatalf("tick %v: want a read of the lock, then of the release request", tick)
	}
	p := tick[2]
	if p.method != http.MethodPatch || p.query["ifMetagenerationMatch"] != "1" {
		t.Fatalf("tick's update %v %v: want PATCH with ifMetagenerationMatch=1", p, p.query)
	}
	if strings.Contains(p.body, "exp") || strings.Contains(p.body, "metadata") {
		t.Errorf("tick's update body %s touches exp", p.body)
	}
	after, _ := object(srv, "k.lock")
	if after.Metadata["exp"] != before.Metadata["exp"] {
		t.Errorf("custom exp changed from %s to %s", before.Metadata["exp"], after.Metadata["exp"])
	}
}

// TestLockTimeout: retries at 0, 0, wi/3, 2·wi/3 and wi after the previous
// ones (t = 0, 0, 3.3, 10, 20 s), then the 30 s timeout. The holder's TTL is
// an hour: with the default 12 s, the waiter would find the lock stale at
// 20 s (exp is never extended) and take it.
func TestLockTimeout(t *testing.T) {
	srv := newFake(t)
	a := newClient(t, srv, tus616.Options{LockTTL: time.Hour})
	b := newClient(t, srv, tus616.Options{})
	held := mustLock(t, a, "k")
	defer mustUnlock(t, held)

	res := lockertest.LockAsync(context.Background(), b.locker, "k")
	var got lockertest.LockResult
	var elapsed time.Duration
	for done := false; !done; {
		ctx, cancel := context.WithTimeout(context.Background(), bound)
		waiting := make(chan error, 1)
		go func() { waiting <- b.clock.WaitForTimers(ctx, 2) }()
		select {
		case got = <-res:
			done = true
			cancel()
			<-waiting
		case err := <-waiting:
			if err != nil {
				cancel()
				t.Fatalf("b neither waits nor returns: %v", err)
			}
			b.clock.Advance(time.Second / 3)
			elapsed += time.Second / 3
		}
		cancel()
	}
	if got.Err == nil {
		t.Fatalf("b took a held lock")
	}
	if !errors.Is(got.Err, tus616.ErrLockTimeout) || !errors.Is(got.Err, lockers.ErrNoEffect) {
		t.Errorf("Lock: %v; want ErrLockTimeout wrapping ErrNoEffect", got.Err)
	}
	if elapsed < tus616.DefaultAcquireLockTimeout || elapsed > tus616.DefaultAcquireLockTimeout+time.Second {
		t.Errorf("Lock gave up after %v of client time, want %v", elapsed, tus616.DefaultAcquireLockTimeout)
	}
	if n := drain(b.attempts); n != 5 {
		t.Errorf("attempts: %d, want 5 (at 0, 0, 3.3, 10, 20 s)", n)
	}
}

// TestGhostLock: the create commits but its reply is lost (503); the
// client retries and gets a 412 on its own lock, which it finds healthy:
// it asks itself to let go and reports not taken. Nobody holds the lock
// until exp. The Lock's error must then not claim it had no effect, and it
// stops reporting attempts.
func TestGhostLock(t *testing.T) {
	srv := newFake(t)
	c := newClient(t, srv, tus616.Options{})
	c.journal.mu.Lock()
	c.journal.loseName, c.journal.lose503 = `"k.lock"`, 1
	c.journal.mu.Unlock()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	res := lockertest.LockAsync(ctx, c.locker, "k")
	c.waitAttempts(t, 1)
	// After the ghost, b goes on (attempt 1 at once), then waits.
	c.waitTimers(t, 2)
	if _, ok := object(srv, "k.lock"); !ok {
		t.Fatalf("the ghost lock does not exist")
	}
	cancel()
	got := <-res
	if got.Err == nil {
		t.Fatalf("Lock took the lock: the lost reply was not simulated")
	}
	if errors.Is(got.Err, lockers.ErrNoEffect) {
		t.Errorf("Lock claims no effect after a create that committed: %v", got.Err)
	}
	if n := drain(c.attempts); n != 0 {
		t.Errorf("%d attempts reported after the ambiguous first one, want 0", n)
	}
}

// mustHoldOptions are tus616's options at scale for a property that must
// hold, with the lock's TTL stretched from the source's 1.2 watch intervals
// to 10, and the acquire timeout from 3 to 20 so that a waiter still
// outlasts a lock that Unlock left behind (on GCS it never frees). The
// watcher never extends the TTL, so anything that runs late by the rest of
// the TTL (a Lock that returns late, a release request the holder hears
// late) finds its lock taken as stale. That is lease-kept's lack, proven on
// its own; under load it broke mutex-1key on the raw fake and
// release-request on the fidelity layer in clean clones at a TTL of 3
// intervals, and a Lock on a free key once took more than 6 intervals
// there (the fidelity suite runs on real time, under -race, beside other
// work).
func mustHoldOptions(scale float64) tus616.Options {
	watch := time.Duration(scale * float64(tus616.DefaultWatchInterval))
	return tus616.Options{TimeScale: scale, LockTTL: 10 * watch, AcquireLockTimeout: 20 * watch}
}

func TestConformance(t *testing.T) {
	lacks := map[lockertest.Property]string{
		lockertest.OwnerCheck: "Unlock swallows every error and deletes with ifGenerationMatch=<metageneration>, " +
			"which the raw fake ignores: it deletes whoever's lock is there",
		lockertest.LeaseKept: "the watcher never extends the custom exp it is judged by: after the TTL any " +
			"client deletes the lock as stale, and the holder is never told",
	}
	lockertest.Run(t, lockertest.Suite{
		New: func(tb testing.TB) func(lockers.Env) lockers.Locker {
			srv := newFake(tb)
			opts := mustHoldOptions(0.1)
			if _, lacking := lacks[lockertest.Property(path.Base(tb.Name()))]; lacking {
				opts = tus616.Options{TimeScale: 0.1}
			}
			return func(env lockers.Env) lockers.Locker {
				env.HTTP = srv.HTTPClient()
				l, err := tus616.New(context.Background(), tus616.Config{Bucket: bucket}, env, opts)
				if err != nil {
					tb.Fatalf("New: %v", err)
				}
				tb.Cleanup(func() { l.Close() })
				return l
			}
		},
		ReleaseRequest: true,
		TTL:            1200 * time.Millisecond, // lease-kept is among the lacking
		// In virtual time: a watcher a loaded machine runs late lets a
		// waiter judge a held lock stale for real (the locker's known
		// exposure to pauses), and mutex-8keys then broke on two busy
		// cores; in a bubble every property sees the same times. (The
		// fidelity suite stays on real time: golang/go#78156 aborted it
		// under -race in a bubble; this one ran clean in 6 of 6 -race
		// runs.)
		Bubble: true,
		Lacks:  lacks,
	})
}

// stallingTransport holds every request of one method until its context
// ends, reporting each one it holds and each one it lets go.
type stallingTransport struct {
	base        http.RoundTripper
	method      string
	held, letGo chan struct{}
}

func (s stallingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method != s.method {
		return s.base.RoundTrip(r)
	}
	s.held <- struct{}{}
	<-r.Context().Done()
	s.letGo <- struct{}{}
	return nil, r.Context().Err()
}

// TestCloseStopsEveryWatcher: Close cancels a watcher tick in flight and
// returns once the watcher is gone, so no request outlives the locker (a
// tick left running raced with the emulator's shutdown).
func TestCloseStopsEveryWatcher(t *testing.T) {
	srv := newFake(t)
	stall := stallingTransport{base: srv.HTTPClient().Transport, method: http.MethodPatch, held: make(chan struct{}, 1), letGo: make(chan struct{}, 1)}
	c := newClientAt(t, tus616.Config{Bucket: bucket}, stall, tus616.Options{})
	mustLock(t, c, "k")
	c.waitTimers(t, 2) // the Lock timeout (never fires) and the watcher
	c.clock.Advance(tus616.DefaultWatchInterval)
	select {
	case <-stall.held: // the tick's refresh, held in flight
	case <-time.After(bound):
		t.Fatalf("the watcher's tick sent no refresh within %v", bound)
	}
	closed := make(chan error, 1)
	go func() { closed <- c.locker.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Errorf("Close: %v", err)
		}
	case <-time.After(bound):
		t.Fatalf("Close did not return within %v with a tick in flight", bound)
	}
	select {
	case <-stall.letGo:
	default:
		t.Errorf("Close returned with the watcher's refresh still in flight")
	}
	before := len(c.journal.requests())
	c.clock.Advance(10 * tus616.DefaultWatchInterval)
	if after := len(c.journal.requests()); after != before {
		t.Errorf("%d requests after Close", after-before)
	}
}
