package lai_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"cloud.google.com/go/storage"

	"github.com/lockcheck/lockcheck/backends/gcs"
	"github.com/lockcheck/lockcheck/lockers"
	"github.com/lockcheck/lockcheck/lockers/lai"
	"github.com/lockcheck/lockcheck/lockers/lockertest"
)

// Most tests run in a synctest bubble: the client's clock is the bubble's
// virtual time (plus an offset for skew), so the source's unscaled
// parameters (300 s TTL, 1 s backoff, 33 s refresh interval) are used as
// published and the tests take milliseconds.

// skewClock is the bubble's clock shifted by offset.
type skewClock struct{ offset time.Duration }

func (c skewClock) Now() time.Time                         { return time.Now().Add(c.offset) }
func (c skewClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// request is what the journal keeps of one HTTP request.
type request struct {
	method string
	path   string
	query  string
	status int
}

func (r request) String() string {
	return r.method + " " + r.path + "?" + r.query + " " + strconv.Itoa(r.status)
}

// journal records every request of one client and injects faults: fault,
// when set, sees each request and the server's reply, and may replace the
// reply (the request has then reached the server: a lost reply).
type journal struct {
	base  http.RoundTripper
	mu    sync.Mutex
	reqs  []request
	fault func(r *http.Request, status int) (replace int)
	// refuse, when set, answers a request without sending it.
	refuse func(r *http.Request) (status int)
}

func (j *journal) RoundTrip(r *http.Request) (*http.Response, error) {
	j.mu.Lock()
	refuse := j.refuse
	j.mu.Unlock()
	if refuse != nil {
		if code := refuse(r); code != 0 {
			j.mu.Lock()
			j.reqs = append(j.reqs, request{method: r.Method, path: r.URL.Path, query: r.URL.RawQuery, status: -code})
			j.mu.Unlock()
			return errorReply(r, code), nil
		}
	}
	resp, err := j.base.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	rec := request{method: r.Method, path: r.URL.Path, query: r.URL.RawQuery, status: resp.StatusCode}
	j.mu.Lock()
	fault := j.fault
	j.mu.Unlock()
	if fault != nil {
		if code := fault(r, resp.StatusCode); code != 0 {
			resp.Body.Close()
			rec.status = -code
			resp = errorReply(r, code)
		}
	}
	j.mu.Lock()
	j.reqs = append(j.reqs, rec)
	j.mu.Unlock()
	return resp, nil
}

func errorReply(r *http.Request, code int) *http.Response {
	return &http.Response{
		StatusCode: code,
		Status:     strconv.Itoa(code) + " " + http.StatusText(code),
		Header:     http.Header{"Content-Type": {"application/json"}},
		Body:       io.NopCloser(strings.NewReader(`{"error":{"code":` + strconv.Itoa(code) + `,"message":"injected"}}`)),
		Request:    r,
	}
}

func (j *journal) setRefuse(f func(r *http.Request) int) {
	j.mu.Lock()
	j.refuse = f
	j.mu.Unlock()
}

func (j *journal) setFault(f func(r *http.Request, status int) int) {
	j.mu.Lock()
	j.fault = f
	j.mu.Unlock()
}

func (j *journal) requests() []request {
	j.mu.Lock()
	defer j.mu.Unlock()
	return append([]request(nil), j.reqs...)
}

// backend is one in-memory GCS with the fidelity layer, and a storage
// client of the test's own to plant and inspect lock objects.
type backend struct {
	mem    *gcs.InMemory
	client *storage.Client
}

func newBackend(t testing.TB) *backend {
	t.Helper()
	mem, err := gcs.NewInMemory(gcs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(mem.Close)
	c, err := gcs.NewClient(context.Background(), mem.Endpoint(), mem.HTTPClient(nil))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &backend{mem: mem, client: c}
}

func (b *backend) object(key string) *storage.ObjectHandle {
	return b.client.Bucket(b.mem.Bucket()).Object(key)
}

// plant creates key as another incarnation would have: identity and
// expires_at (Ruby's Float#to_s of seconds).
func (b *backend) plant(t *testing.T, key, identity string, expires time.Time) {
	t.Helper()
	w := b.object(key).If(storage.Conditions{DoesNotExist: true}).NewWriter(context.Background())
	w.Metadata = map[string]string{
		"identity":   identity,
		"expires_at": strconv.FormatFloat(float64(expires.UnixNano())/1e9, 'f', -1, 64),
	}
	if err := w.Close(); err != nil {
		t.Fatalf("plant %q: %v", key, err)
	}
}

func (b *backend) attrs(key string) (*storage.ObjectAttrs, error) {
	return b.object(key).Attrs(context.Background())
}

// client is one simulated client.
type client struct {
	locker   *lai.Locker
	journal  *journal
	attempts int
	mu       sync.Mutex
}

func (c *client) marks() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.attempts
}

func newClient(t testing.TB, b *backend, identity string, clock lockers.Clock, opts lai.Options) *client {
	t.Helper()
	c := &client{}
	env := lockers.Env{
		Clock:    clock,
		HTTP:     b.mem.HTTPClient(func(rt http.RoundTripper) http.RoundTripper { c.journal = &journal{base: rt}; return c.journal }),
		Identity: identity,
		Seed:     7,
		Log:      t,
		AttemptStarted: func() {
			c.mu.Lock()
			c.attempts++
			c.mu.Unlock()
		},
	}
	l, err := lai.New(context.Background(), lai.Config{Endpoint: b.mem.Endpoint(), Bucket: b.mem.Bucket()}, env, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	c.locker = l
	return c
}

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// TestInstantRecovery: a lock object left by this client's identity (a
// crashed earlier incarnation, its expires_at 300 s ahead) is deleted and
// taken at once; a client of another identity has to wait for the TTL.
func TestInstantRecovery(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBackend(t)
		b.plant(t, "k", "client-a", time.Now().Add(lai.DefaultTTL))

		other := newClient(t, b, "client-b", skewClock{}, lai.Options{})
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		_, err := other.locker.Lock(ctx, "k")
		cancel()
		if err == nil || !errors.Is(err, lockers.ErrNoEffect) {
			t.Fatalf("another identity: Lock within a minute of a 300 s lock = %v, want a definite failure", err)
		}
		if _, err := b.attrs("k"); err != nil {
			t.Fatalf("another identity removed the live lock: %v", err)
		}

		restarted := newClient(t, b, "client-a", skewClock{}, lai.Options{})
		start := time.Now()
		lease, err := restarted.locker.Lock(context.Background(), "k")
		if err != nil {
			t.Fatalf("same identity: Lock: %v", err)
		}
		if waited := time.Since(start); waited != 0 {
			t.Errorf("same identity waited %v; instant recovery retries at once", waited)
		}
		var del request
		for _, r := range restarted.journal.requests() {
			if r.method == http.MethodDelete {
				del = r
			}
		}
		if !strings.Contains(del.query, "ifMetagenerationMatch=1") || del.status != http.StatusNoContent {
			t.Errorf("abandoned lock's delete: %v, want ifMetagenerationMatch=1 answered 204", del)
		}
		if n := restarted.marks(); n != 2 {
			t.Errorf("%d attempts reported, want 2: the 412 on the planted lock had no effect", n)
		}
		if err := lease.Unlock(context.Background()); err != nil {
			t.Fatalf("Unlock: %v", err)
		}
	})
}

// TestStaleByClientClock: expiry is judged on the reader's clock. A client
// whose clock is 301 s ahead deletes a fresh lock as stale, backs off
// backoff_min and takes it; a client with a true clock does not.
func TestStaleByClientClock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBackend(t)
		b.plant(t, "k", "holder", time.Now().Add(lai.DefaultTTL))

		honest := newClient(t, b, "honest", skewClock{}, lai.Options{})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := honest.locker.Lock(ctx, "k")
		cancel()
		if !errors.Is(err, lockers.ErrNoEffect) {
			t.Fatalf("true clock: Lock = %v, want a definite failure", err)
		}
		if a, err := b.attrs("k"); err != nil || a.Metadata["identity"] != "holder" {
			t.Fatalf("true clock: the holder's lock is gone (%v)", err)
		}

		ahead := newClient(t, b, "ahead", skewClock{offset: lai.DefaultTTL + time.Second}, lai.Options{})
		start := time.Now()
		lease, err := ahead.locker.Lock(context.Background(), "k")
		if err != nil {
			t.Fatalf("clock ahead: Lock: %v", err)
		}
		if waited := time.Since(start); waited != lai.DefaultBackoffMin {
			t.Errorf("clock ahead waited %v, want one backoff_min (%v) after deleting the stale lock", waited, lai.DefaultBackoffMin)
		}
		if a, err := b.attrs("k"); err != nil || a.Metadata["identity"] != "ahead" {
			t.Fatalf("clock ahead: lock object %v, %v; want its own", a, err)
		}
		if err := lease.Unlock(context.Background()); err != nil {
			t.Fatalf("Unlock: %v", err)
		}
	})
}

// TestRefreshWithoutGeneration: a client whose clock runs a TTL ahead
// deletes the holder's lock as stale and creates its own, metageneration 1
// again. The holder's refresh (ifMetagenerationMatch=1, no generation)
// succeeds on the newcomer's object, so the holder is never told; the
// newcomer's refresh then gets 412 and it is the one that loses; the
// holder's Unlock deletes the newcomer's lock.
func TestRefreshWithoutGeneration(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBackend(t)
		holder := newClient(t, b, "holder", skewClock{}, lai.Options{})
		held, err := holder.locker.Lock(context.Background(), "k")
		if err != nil {
			t.Fatal(err)
		}
		ahead := newClient(t, b, "ahead", skewClock{offset: lai.DefaultTTL + time.Second}, lai.Options{})
		taken, err := ahead.locker.Lock(context.Background(), "k")
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(holder.locker.Options().RefreshInterval + 2*time.Second)
		a, err := b.attrs("k")
		if err != nil || a.Metadata["identity"] != "ahead" || a.Metageneration != 2 {
			t.Fatalf("lock object %v, %v: want the newcomer's, refreshed once by the old holder", a, err)
		}
		if closed(held.Lost()) {
			t.Error("the old holder was told its lease was lost; its refresh matched the newcomer's metageneration")
		}
		if !closed(taken.Lost()) {
			t.Error("the newcomer's refresh met metageneration 2 and was not declared lost")
		}
		if err := held.Unlock(context.Background()); err != nil {
			t.Fatalf("old holder's Unlock: %v", err)
		}
		if _, err := b.attrs("k"); !errors.Is(err, storage.ErrObjectNotExist) {
			t.Fatalf("after the old holder's Unlock: %v, want the newcomer's lock deleted", err)
		}
		if err := taken.Unlock(context.Background()); !errors.Is(err, lai.ErrWasNotHeld) {
			t.Fatalf("newcomer's Unlock = %v, want ErrWasNotHeld", err)
		}
	})
}

// TestRefresh: every refresh interval (300 s / 9) the refresher moves
// expires_at on with ifMetagenerationMatch; once another writer bumps the
// metageneration, the next refresh gets 412 and the lease is lost.
func TestRefresh(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBackend(t)
		c := newClient(t, b, "a", skewClock{}, lai.Options{})
		lease, err := c.locker.Lock(context.Background(), "k")
		if err != nil {
			t.Fatal(err)
		}
		interval := c.locker.Options().RefreshInterval
		if want := lai.DefaultTTL / 9; interval != want {
			t.Fatalf("refresh interval %v, want %v", interval, want)
		}
		before, _ := b.attrs("k")
		time.Sleep(3*interval + time.Second)
		after, err := b.attrs("k")
		if err != nil {
			t.Fatal(err)
		}
		if closed(lease.Lost()) {
			t.Fatal("lease lost after refreshes on an untouched lock")
		}
		if after.Metageneration != 4 || after.Metadata["expires_at"] == before.Metadata["expires_at"] ||
			after.Metadata["identity"] != "a" {
			t.Fatalf("after 3 refreshes: metageneration %d, metadata %v (was %v); want 4, expires_at moved, identity kept",
				after.Metageneration, after.Metadata, before.Metadata)
		}

		if _, err := b.object("k").Update(context.Background(), storage.ObjectAttrsToUpdate{ContentType: "text/plain"}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(interval)
		if !closed(lease.Lost()) {
			t.Fatal("lease not lost after a refresh answered 412")
		}
		err = lease.Unlock(context.Background())
		if !errors.Is(err, lai.ErrWasNotHeld) || !errors.Is(err, lockers.ErrNoEffect) {
			t.Fatalf("Unlock of a lock of another metageneration = %v, want ErrWasNotHeld, definite", err)
		}
		if _, err := b.attrs("k"); err != nil {
			t.Fatalf("the lock object was deleted by a failed Unlock: %v", err)
		}
	})
}

// TestTransientRefreshFails: a refresh that fails with 503 (after the
// client's three retries) counts as one failure; max_refresh_fails (3) in a
// row make the lease lost, two and a success do not.
func TestTransientRefreshFails(t *testing.T) {
	for _, tc := range []struct {
		name     string
		failures int // failed refreshes before the backend recovers
		lost     bool
	}{
		{"two then ok", 2, false},
		{"three", 3, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				b := newBackend(t)
				c := newClient(t, b, "a", skewClock{}, lai.Options{})
				lease, err := c.locker.Lock(context.Background(), "k")
				if err != nil {
					t.Fatal(err)
				}
				var mu sync.Mutex
				patches := 0
				c.journal.setRefuse(func(r *http.Request) int {
					if r.Method != http.MethodPatch {
						return 0
					}
					mu.Lock()
					defer mu.Unlock()
					patches++
					// Four requests per refresh: the call and three retries.
					if patches <= 4*tc.failures {
						return http.StatusServiceUnavailable
					}
					return 0
				})
				interval := c.locker.Options().RefreshInterval
				time.Sleep(time.Duration(tc.failures-1)*interval + interval/2)
				if closed(lease.Lost()) {
					t.Fatalf("lost after %d failed refreshes", tc.failures-1)
				}
				time.Sleep(4 * interval)
				mu.Lock()
				n := patches
				mu.Unlock()
				if n < 4*tc.failures {
					t.Fatalf("%d PATCH requests, want at least %d", n, 4*tc.failures)
				}
				if got := closed(lease.Lost()); got != tc.lost {
					t.Fatalf("%d failed refreshes then recovery: lost = %v, want %v", tc.failures, got, tc.lost)
				}
				if err := lease.Unlock(context.Background()); err != nil {
					t.Fatalf("Unlock: %v", err)
				}
			})
		})
	}
}

// TestLostRefreshReply: a refresh commits but its reply is lost; the
// client retries it with the old ifMetagenerationMatch and gets 412, which
// the source takes for a permanent failure: the lease is lost although
// nobody else touched the lock.
func TestLostRefreshReply(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBackend(t)
		c := newClient(t, b, "a", skewClock{}, lai.Options{})
		lease, err := c.locker.Lock(context.Background(), "k")
		if err != nil {
			t.Fatal(err)
		}
		interval := c.locker.Options().RefreshInterval
		time.Sleep(interval + time.Second)
		if closed(lease.Lost()) {
			t.Fatal("lost after a clean refresh")
		}
		lost := 1
		c.journal.setFault(func(r *http.Request, status int) int {
			if r.Method == http.MethodPatch && status == http.StatusOK && lost > 0 {
				lost--
				return http.StatusServiceUnavailable
			}
			return 0
		})
		time.Sleep(interval)
		if !closed(lease.Lost()) {
			t.Fatal("not lost after a refresh whose retry met its own committed first attempt")
		}
		var got []string
		for _, r := range c.journal.requests() {
			if r.method == http.MethodPatch {
				got = append(got, strconv.Itoa(r.status))
			}
		}
		if want := "200, -503, 412"; strings.Join(got, ", ") != want {
			t.Errorf("PATCH replies %v, want %s", got, want)
		}
		if a, err := b.attrs("k"); err != nil || a.Metadata["identity"] != "a" {
			t.Fatalf("the lock object is not ours any more: %v, %v", a, err)
		}
		// Unlock deletes with the metageneration remembered before the
		// lost reply: 412, the lock stays until it goes stale.
		if err := lease.Unlock(context.Background()); !errors.Is(err, lai.ErrWasNotHeld) {
			t.Fatalf("Unlock = %v, want ErrWasNotHeld", err)
		}
		if _, err := b.attrs("k"); err != nil {
			t.Fatalf("lock object gone: %v", err)
		}
	})
}

// TestUnlock: Unlock deletes with the remembered metageneration; a lock
// already deleted is "not held", a definite no-effect; a second Unlock is
// NotLockedError.
func TestUnlock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBackend(t)
		c := newClient(t, b, "a", skewClock{}, lai.Options{})
		lease, err := c.locker.Lock(context.Background(), "k")
		if err != nil {
			t.Fatal(err)
		}
		if err := lease.Unlock(context.Background()); err != nil {
			t.Fatalf("Unlock: %v", err)
		}
		if _, err := b.attrs("k"); !errors.Is(err, storage.ErrObjectNotExist) {
			t.Fatalf("after Unlock: %v, want the object gone", err)
		}
		if err := lease.Unlock(context.Background()); !errors.Is(err, lai.ErrNotLocked) || !errors.Is(err, lockers.ErrNoEffect) {
			t.Fatalf("second Unlock = %v, want ErrNotLocked, definite", err)
		}

		lease, err = c.locker.Lock(context.Background(), "k")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.locker.Lock(context.Background(), "k"); !errors.Is(err, lai.ErrAlreadyLocked) || !errors.Is(err, lockers.ErrNoEffect) {
			t.Fatalf("Lock of a key held = %v, want ErrAlreadyLocked, definite", err)
		}
		if err := b.object("k").Delete(context.Background()); err != nil {
			t.Fatal(err)
		}
		if err := lease.Unlock(context.Background()); !errors.Is(err, lai.ErrWasNotHeld) || !errors.Is(err, lockers.ErrNoEffect) {
			t.Fatalf("Unlock of a deleted lock = %v, want ErrWasNotHeld, definite", err)
		}
	})
}

// TestLostCreateReply: the create commits but its reply is lost (503); the
// client retries it and gets 412; the object carries our own identity, so
// the source deletes it ("abandoned by this instance") and creates again.
// Lock succeeds, but stops reporting attempts after the ambiguous create.
func TestLostCreateReply(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBackend(t)
		c := newClient(t, b, "a", skewClock{}, lai.Options{})
		lost := 1
		c.journal.setFault(func(r *http.Request, status int) int {
			if r.Method == http.MethodPost && strings.Contains(r.URL.Path, "/upload/") && status == http.StatusOK && lost > 0 {
				lost--
				return http.StatusServiceUnavailable
			}
			return 0
		})
		lease, err := c.locker.Lock(context.Background(), "k")
		if err != nil {
			t.Fatalf("Lock: %v", err)
		}
		var got []string
		for _, r := range c.journal.requests() {
			got = append(got, r.method+" "+strconv.Itoa(r.status))
		}
		want := []string{"POST -503", "POST 412", "GET 200", "DELETE 204", "POST 200"}
		if strings.Join(got, ", ") != strings.Join(want, ", ") {
			t.Errorf("requests %v, want %v", got, want)
		}
		if n := c.marks(); n != 1 {
			t.Errorf("%d attempts reported, want 1: after a retried create the call is indeterminate", n)
		}
		if err := lease.Unlock(context.Background()); err != nil {
			t.Fatalf("Unlock: %v", err)
		}
	})
}

// TestLockTimeout: Lock gives up after 2·ttl with ErrTimeout; every create
// met the other client's lock (412 on the first request), so the failure
// is definite. A create error other than 412 ends Lock at once, as the
// source lets it propagate, and it is indeterminate.
func TestLockTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBackend(t)
		holder := newClient(t, b, "holder", skewClock{}, lai.Options{TimeScale: 0.01})
		held, err := holder.locker.Lock(context.Background(), "k")
		if err != nil {
			t.Fatal(err)
		}
		waiter := newClient(t, b, "waiter", skewClock{}, lai.Options{TimeScale: 0.01})
		start := time.Now()
		_, err = waiter.locker.Lock(context.Background(), "k")
		if !errors.Is(err, lai.ErrTimeout) || !errors.Is(err, lockers.ErrNoEffect) {
			t.Fatalf("Lock = %v, want ErrTimeout, definite", err)
		}
		timeout := waiter.locker.Options().LockTimeout
		if waited := time.Since(start); waited < timeout || waited > timeout+waiter.locker.Options().BackoffMax {
			t.Errorf("gave up after %v, want the timeout %v plus at most one backoff", waited, timeout)
		}
		if waiter.marks() < 3 {
			t.Errorf("%d attempts reported over %v of backoff", waiter.marks(), timeout)
		}

		waiter.journal.setFault(func(r *http.Request, status int) int {
			if r.Method == http.MethodPost {
				return http.StatusBadGateway
			}
			return 0
		})
		_, err = waiter.locker.Lock(context.Background(), "k")
		if err == nil || errors.Is(err, lockers.ErrNoEffect) || errors.Is(err, lai.ErrTimeout) {
			t.Fatalf("Lock with 502 on every create = %v, want an indeterminate error at once", err)
		}
		if err := held.Unlock(context.Background()); err != nil {
			t.Fatal(err)
		}
	})
}

func TestOptions(t *testing.T) {
	b := newBackend(t)
	c := newClient(t, b, "a", lockers.SystemClock{}, lai.Options{TimeScale: 0.1})
	o := c.locker.Options()
	if o.TTL != 30*time.Second || o.RefreshInterval != 30*time.Second/9 || o.BackoffMin != 100*time.Millisecond ||
		o.BackoffMax != 3*time.Second || o.LockTimeout != 60*time.Second || o.MaxRefreshFails != 3 {
		t.Errorf("TimeScale 0.1: %+v", o)
	}
	if c.locker.Identity() != "a" {
		t.Errorf("identity %q, want env.Identity", c.locker.Identity())
	}
	env := lockers.Env{Clock: lockers.SystemClock{}, HTTP: b.mem.HTTPClient(nil)}
	cfg := lai.Config{Endpoint: b.mem.Endpoint(), Bucket: b.mem.Bucket()}
	for _, bad := range []lai.Options{
		{TimeScale: -1},
		{TTL: 30 * time.Second, RefreshInterval: 10 * time.Second}, // not < ttl/max_refresh_fails
		{BackoffMin: 2 * time.Second, BackoffMax: time.Second},
	} {
		if _, err := lai.New(context.Background(), cfg, env, bad); !errors.Is(err, lai.ErrBadOptions) {
			t.Errorf("New(%+v) = %v, want ErrBadOptions", bad, err)
		}
	}
	if l, err := lai.New(context.Background(), cfg, env, lai.Options{TTL: 30 * time.Second, RefreshInterval: 9 * time.Second}); err != nil {
		t.Errorf("refresh interval just below ttl/max_refresh_fails refused: %v", err)
	} else {
		l.Close()
	}
}

// TestConformance runs the suite at TimeScale 0.01 (a 3 s TTL, a 333 ms
// refresh interval, a 10–300 ms backoff and a 6 s lock timeout), every
// property in virtual time: on real time, two busy cores under -race once
// kept a holder's refresher from running for a whole TTL, a waiter took
// the expired lock, and mutex-8keys failed the holder's Unlock; in a
// bubble every property sees the same times on any machine.
func TestConformance(t *testing.T) {
	lockertest.Run(t, lockertest.Suite{
		New: func(tb testing.TB) func(lockers.Env) lockers.Locker {
			mem, err := gcs.NewInMemory(gcs.Options{})
			if err != nil {
				tb.Fatal(err)
			}
			tb.Cleanup(mem.Close)
			return func(env lockers.Env) lockers.Locker {
				env.HTTP = mem.HTTPClient(nil)
				l, err := lai.New(context.Background(), lai.Config{Endpoint: mem.Endpoint(), Bucket: mem.Bucket()}, env,
					lai.Options{TimeScale: 0.01})
				if err != nil {
					tb.Fatalf("New: %v", err)
				}
				tb.Cleanup(func() { l.Close() })
				return l
			}
		},
		OwnerCheck: true,
		TTL:        3 * time.Second,
		Seed:       1,
		Bubble:     true,
	})
}
