package fenced_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"cloud.google.com/go/storage"

	"github.com/lockcheck/lockcheck/backends/gcs"
	"github.com/lockcheck/lockcheck/lockers"
	"github.com/lockcheck/lockcheck/lockers/fenced"
	"github.com/lockcheck/lockcheck/lockers/lockertest"
)

const (
	ttl    = fenced.DefaultTTL
	margin = fenced.DefaultMargin
)

// backend is an in-memory GCS (usable inside a synctest bubble) with a
// storage client for the test's own reads and writes.
type backend struct {
	m      *gcs.InMemory
	client *storage.Client
}

func newBackend(t testing.TB, wrap func(http.Handler) http.Handler) *backend {
	t.Helper()
	m, err := gcs.NewInMemory(gcs.Options{Wrap: wrap})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	c, err := gcs.NewClient(context.Background(), m.Endpoint(), m.HTTPClient(nil))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &backend{m: m, client: c}
}

func (b *backend) object(key string) *storage.ObjectHandle {
	return b.client.Bucket(b.m.Bucket()).Object(key + ".lock").Retryer(storage.WithPolicy(storage.RetryNever))
}

func (b *backend) attrs(t testing.TB, key string) *storage.ObjectAttrs {
	t.Helper()
	a, err := b.object(key).Attrs(context.Background())
	if err != nil {
		t.Fatalf("read %s.lock: %v", key, err)
	}
	return a
}

// request is what a journal keeps of one HTTP request.
type request struct {
	method string
	query  map[string]string
	status int
}

// netClient is one client's network: a journal of its requests and a
// switch that cuts it off (every request fails before reaching the server).
type netClient struct {
	base http.RoundTripper
	cut  atomic.Bool

	mu   sync.Mutex
	reqs []request
}

func (n *netClient) RoundTrip(r *http.Request) (*http.Response, error) {
	if n.cut.Load() {
		return nil, errors.New("network cut")
	}
	resp, err := n.base.RoundTrip(r)
	rec := request{method: r.Method, query: map[string]string{}}
	for k, v := range r.URL.Query() {
		rec.query[k] = v[0]
	}
	if err == nil {
		rec.status = resp.StatusCode
	}
	n.mu.Lock()
	n.reqs = append(n.reqs, rec)
	n.mu.Unlock()
	return resp, err
}

func (n *netClient) requests() []request {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]request(nil), n.reqs...)
}

// offsetClock is the bubble's clock shifted by a constant offset.
type offsetClock struct{ off time.Duration }

func (c offsetClock) Now() time.Time                         { return time.Now().Add(c.off) }
func (c offsetClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// pauseClock models a process pause: time goes on, but no timer of the
// paused process fires until it resumes.
type pauseClock struct {
	mu     sync.Mutex
	paused bool
	held   []chan time.Time // came due while paused
}

func (c *pauseClock) Now() time.Time { return time.Now() }

func (c *pauseClock) After(d time.Duration) <-chan time.Time {
	ch := make(chan time.Time, 1)
	// AfterFunc, not a goroutine: a timer nobody waits for must not keep
	// the bubble busy.
	time.AfterFunc(d, func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.paused {
			c.held = append(c.held, ch)
			return
		}
		ch <- time.Now()
	})
	return ch
}

func (c *pauseClock) pause() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.paused = true
}

func (c *pauseClock) resume() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.paused = false
	for _, ch := range c.held {
		ch <- time.Now()
	}
	c.held = nil
}

type client struct {
	locker *fenced.Locker
	net    *netClient
}

func newClient(t testing.TB, b *backend, id string, clock lockers.Clock) *client {
	t.Helper()
	n := &netClient{}
	env := lockers.Env{
		Clock:    clock,
		HTTP:     b.m.HTTPClient(func(rt http.RoundTripper) http.RoundTripper { n.base = rt; return n }),
		Identity: id,
		Seed:     uint64(len(id)) + 7,
	}
	l, err := fenced.New(context.Background(), fenced.Config{Endpoint: b.m.Endpoint(), Bucket: b.m.Bucket()}, env, fenced.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return &client{locker: l, net: n}
}

func mustLock(t testing.TB, c *client, key string) lockers.Lease {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*ttl)
	defer cancel()
	lease, err := c.locker.Lock(ctx, key)
	if err != nil {
		t.Fatalf("Lock(%q): %v", key, err)
	}
	return lease
}

func mustUnlock(t testing.TB, lease lockers.Lease) {
	t.Helper()
	if err := lease.Unlock(context.Background()); err != nil {
		t.Fatalf("Unlock: %v", err)
	}
}

// tryLock tries for d and reports the lease, or nil when kept out.
func tryLock(t testing.TB, c *client, key string, d time.Duration) lockers.Lease {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	lease, err := c.locker.Lock(ctx, key)
	if err != nil {
		if !errors.Is(err, lockers.ErrNoEffect) {
			t.Fatalf("Lock(%q) kept out with an indeterminate error: %v", key, err)
		}
		return nil
	}
	return lease
}

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func TestOptions(t *testing.T) {
	env := lockers.Env{Clock: lockers.SystemClock{}, HTTP: &http.Client{}}
	l, err := fenced.New(context.Background(), fenced.Config{Bucket: "b"}, env, fenced.Options{TimeScale: 0.1})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	o := l.Options()
	if o.TTL != 1200*time.Millisecond || o.Refresh != 400*time.Millisecond || o.Margin != 300*time.Millisecond ||
		o.CallTimeout != 200*time.Millisecond || o.MinBackoff != 10*time.Millisecond || o.MaxBackoff != 200*time.Millisecond {
		t.Errorf("TimeScale 0.1: %+v", o)
	}
	_, err = fenced.New(context.Background(), fenced.Config{Bucket: "b"}, env, fenced.Options{Refresh: 10 * time.Second})
	if !errors.Is(err, fenced.ErrBadOptions) {
		t.Errorf("refresh 10 s with TTL−margin 9 s: %v, want ErrBadOptions", err)
	}
}

// TestTakeoverExpired: a holder that crashed leaves its object; a waiter is
// kept out until the server judges it expired, then writes the next
// generation over it with ifGenerationMatch=<old> and
// ifMetagenerationMatch=<old>, deleting nothing.
func TestTakeoverExpired(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBackend(t, nil)
		crashed := newClient(t, b, "crashed", lockers.SystemClock{})
		old := mustLock(t, crashed, "k")
		crashed.net.cut.Store(true) // its refreshes never arrive
		start := time.Now()
		oldAttrs := b.attrs(t, "k")

		w := newClient(t, b, "waiter", lockers.SystemClock{})
		if got := tryLock(t, w, "k", ttl-margin); got != nil {
			t.Fatalf("took a live lease %v after its creation", time.Since(start))
		}
		lease := mustLock(t, w, "k")
		defer mustUnlock(t, lease)
		if took := time.Since(start); took <= ttl {
			t.Errorf("took over %v after the crashed holder's write, TTL %v", took, ttl)
		}
		if lease.Token() <= old.Token() || lease.Token() != uint64(b.attrs(t, "k").Generation) {
			t.Errorf("token %d after %d; object generation %d", lease.Token(), old.Token(), b.attrs(t, "k").Generation)
		}
		var takeover *request
		for _, r := range w.net.requests() {
			if r.method == http.MethodDelete {
				t.Errorf("the waiter deleted: %v", r)
			}
			if r.method == http.MethodPost && r.status == http.StatusOK {
				takeover = &r
			}
		}
		if takeover == nil {
			t.Fatal("no successful upload in the waiter's journal")
		}
		if g := takeover.query["ifGenerationMatch"]; g != itoa(oldAttrs.Generation) || takeover.query["ifMetagenerationMatch"] != itoa(oldAttrs.Metageneration) {
			t.Errorf("takeover preconditions %v, want generation %d and metageneration %d", takeover.query, oldAttrs.Generation, oldAttrs.Metageneration)
		}
		if !closed(old.Lost()) {
			t.Errorf("the crashed holder's lease is not Lost")
		}
	})
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// TestClockOffset: clients whose clocks are off by more than a TTL either
// way neither steal a live lease nor keep theirs past the server's expiry.
func TestClockOffset(t *testing.T) {
	for _, off := range []time.Duration{time.Hour, -time.Hour} {
		t.Run(off.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				b := newBackend(t, nil)
				honest := newClient(t, b, "honest", lockers.SystemClock{})
				skewed := newClient(t, b, "skewed", offsetClock{off})

				held := mustLock(t, honest, "k")
				if got := tryLock(t, skewed, "k", 3*ttl); got != nil {
					t.Fatalf("skewed client took a refreshed lease")
				}
				mustUnlock(t, held)

				held = mustLock(t, skewed, "k")
				if got := tryLock(t, honest, "k", 3*ttl); got != nil {
					t.Fatalf("honest client took the skewed client's refreshed lease")
				}
				// Now the skewed holder loses the network: it must give up
				// TTL−margin after its last confirmed refresh, before the
				// server lets anyone in.
				start := time.Now()
				skewed.net.cut.Store(true)
				<-held.Lost()
				lostAfter := time.Since(start)
				if lostAfter > ttl-margin {
					t.Errorf("Lost %v after the cut, want at most TTL−margin %v", lostAfter, ttl-margin)
				}
				lease := mustLock(t, honest, "k")
				if took := time.Since(start); took < lostAfter+margin {
					t.Errorf("honest client took it %v after the cut, the holder gave up at %v: less than the margin", took, lostAfter)
				}
				mustUnlock(t, lease)
			})
		})
	}
}

// TestLostCreateReply: the create commits but the client gets a 503. The
// check-own-token read finds its nonce: a win with the object's
// generation as token. When that read fails too, Lock must not claim it
// had no effect.
func TestLostCreateReply(t *testing.T) {
	for _, readFails := range []bool{false, true} {
		name := map[bool]string{false: "resolved", true: "unresolved"}[readFails]
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var lostUploads, failedReads atomic.Int32
				lostUploads.Store(1)
				if readFails {
					failedReads.Store(1)
				}
				wrap := func(next http.Handler) http.Handler {
					return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
						if r.Method == http.MethodPost && lostUploads.Add(-1) >= 0 {
							rec := httptest.NewRecorder()
							next.ServeHTTP(rec, r) // commits
							http.Error(w, `{"error":{"code":503,"message":"lost reply"}}`, http.StatusServiceUnavailable)
							return
						}
						if r.Method == http.MethodGet && failedReads.Load() > 0 && failedReads.Add(-1) >= 0 {
							http.Error(w, `{"error":{"code":503,"message":"read failed"}}`, http.StatusServiceUnavailable)
							return
						}
						next.ServeHTTP(w, r)
					})
				}
				b := newBackend(t, wrap)
				c := newClient(t, b, "c", lockers.SystemClock{})
				lease, err := c.locker.Lock(context.Background(), "k")
				if readFails {
					if err == nil {
						t.Fatalf("Lock won though nothing confirmed it")
					}
					if errors.Is(err, lockers.ErrNoEffect) {
						t.Errorf("Lock claims no effect after a committed create: %v", err)
					}
					return
				}
				if err != nil {
					t.Fatalf("Lock: %v", err)
				}
				defer mustUnlock(t, lease)
				if g := b.attrs(t, "k").Generation; lease.Token() != uint64(g) {
					t.Errorf("token %d, object generation %d", lease.Token(), g)
				}
				var posts int
				for _, r := range c.net.requests() {
					if r.method == http.MethodPost {
						posts++
					}
				}
				if posts != 1 {
					t.Errorf("%d uploads, want 1: no retry of a conditional write", posts)
				}
			})
		})
	}
}

// TestRefreshRefusedLosesAtOnce: a refresh answered 412 closes Lost at the
// refresh, long before the deadline. The pair: untouched, a lease is kept
// for five TTLs.
func TestRefreshRefusedLosesAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBackend(t, nil)
		c := newClient(t, b, "c", lockers.SystemClock{})
		kept := mustLock(t, c, "kept")
		lease := mustLock(t, c, "k")
		start := time.Now()
		// Someone else's metadata update: the holder's metageneration is
		// stale now.
		if _, err := b.object("k").Update(context.Background(), storage.ObjectAttrsToUpdate{Metadata: map[string]string{"x": "y"}}); err != nil {
			t.Fatal(err)
		}
		<-lease.Lost()
		if got := time.Since(start); got != fenced.DefaultRefresh {
			t.Errorf("Lost %v after the foreign update, want at the first refresh, %v", got, fenced.DefaultRefresh)
		}
		time.Sleep(5 * ttl)
		if closed(kept.Lost()) {
			t.Errorf("an untouched lease was lost")
		}
		mustUnlock(t, kept)
		_ = lease.Unlock(context.Background())
	})
}

// TestUnlockAfterTakeover: a holder cut off from the server reports Lost at
// its deadline, TTL − margin after its last confirmed write, before the
// server-side expiry lets another client take it over; the first holder's
// Unlock then reports no effect and leaves the new holder alone.
func TestUnlockAfterTakeover(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBackend(t, nil)
		a := newClient(t, b, "a", lockers.SystemClock{})
		c := newClient(t, b, "c", lockers.SystemClock{})
		stale := mustLock(t, a, "k")
		start := time.Now()
		a.net.cut.Store(true)
		<-stale.Lost()
		if lost := time.Since(start); lost != ttl-margin {
			t.Errorf("cut-off holder reported Lost %v after taking the lock, want at its deadline, TTL−margin = %v", lost, ttl-margin)
		}
		held := mustLock(t, c, "k")
		if took := time.Since(start); took <= ttl {
			t.Errorf("taken over %v after the first holder's create: before the server-side expiry (TTL %v)", took, ttl)
		}
		a.net.cut.Store(false)
		err := stale.Unlock(context.Background())
		if !errors.Is(err, lockers.ErrNoEffect) {
			t.Errorf("stale Unlock: %v, want ErrNoEffect", err)
		}
		if g := b.attrs(t, "k").Generation; uint64(g) != held.Token() {
			t.Errorf("lock generation %d after the stale Unlock, the holder's is %d", g, held.Token())
		}
		mustUnlock(t, held)
	})
}

// TestTokensIncrease: 50 acquisitions of one key by three clients, in
// real time (generations are the emulator's wall-clock microseconds, which
// stand still inside a bubble).
func TestTokensIncrease(t *testing.T) {
	b := newBackend(t, nil)
	clients := []*client{
		newClient(t, b, "a", lockers.SystemClock{}),
		newClient(t, b, "bb", lockers.SystemClock{}),
		newClient(t, b, "ccc", lockers.SystemClock{}),
	}
	var last uint64
	for i := range 50 {
		lease := mustLock(t, clients[i%3], "k")
		if lease.Token() <= last {
			t.Fatalf("acquisition %d: token %d after %d", i, lease.Token(), last)
		}
		last = lease.Token()
		mustUnlock(t, lease)
	}
}

// fencedStore is protected data that refuses a token lower than the
// highest it has accepted.
type fencedStore struct {
	mu      sync.Mutex
	highest uint64
}

func (s *fencedStore) write(token uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if token < s.highest {
		return false
	}
	s.highest = token
	return true
}

// TestPauseLongerThanTTL is the predicted counterexample: a holder that
// checked Lost and then stalls for two TTLs is still inside its section
// when the next holder enters (mutual exclusion broken), and learns of the
// loss only after it resumes; the fenced store refuses its stale token.
func TestPauseLongerThanTTL(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBackend(t, nil)
		clock := &pauseClock{}
		a := newClient(t, b, "a", clock)
		c := newClient(t, b, "c", lockers.SystemClock{})
		store := &fencedStore{}

		first := mustLock(t, a, "k")
		if closed(first.Lost()) {
			t.Fatal("lost at once")
		}
		// a checked Lost; now its process stops.
		clock.pause()
		second := mustLock(t, c, "k")
		if closed(first.Lost()) {
			t.Errorf("the paused holder was told before it resumed")
		}
		if !store.write(second.Token()) {
			t.Fatalf("the new holder's write was refused")
		}
		// a resumes inside its section, which overlaps the new holder's.
		clock.resume()
		if store.write(first.Token()) {
			t.Errorf("the fenced store took the paused holder's stale token %d after %d", first.Token(), second.Token())
		}
		<-first.Lost()
		if err := first.Unlock(context.Background()); !errors.Is(err, lockers.ErrNoEffect) {
			t.Errorf("paused holder's Unlock: %v, want ErrNoEffect", err)
		}
		mustUnlock(t, second)
	})
}

func TestConformance(t *testing.T) {
	lockertest.Run(t, lockertest.Suite{
		New: func(tb testing.TB) func(lockers.Env) lockers.Locker {
			m, err := gcs.NewInMemory(gcs.Options{})
			if err != nil {
				tb.Fatal(err)
			}
			tb.Cleanup(m.Close)
			return func(env lockers.Env) lockers.Locker {
				env.HTTP = m.HTTPClient(nil)
				l, err := fenced.New(context.Background(), fenced.Config{Endpoint: m.Endpoint(), Bucket: m.Bucket()}, env, fenced.Options{})
				if err != nil {
					tb.Fatalf("New: %v", err)
				}
				tb.Cleanup(func() { l.Close() })
				return l
			}
		},
		Fencing:    true,
		OwnerCheck: true,
		TTL:        ttl,
		// In virtual time, so a loaded machine that runs a refresher late
		// cannot end a lease under a holder's feet.
		Bubble: true,
	})
}

// TestLateRefreshBeatsTakeover: the holder's refresh, sent in time, lands
// after a waiter judged the lease expired but before its takeover. The
// takeover's metageneration condition makes it fail: the refreshed lease
// stands. With ifGenerationMatch alone both would succeed, and both clients
// would believe they held the lock.
func TestLateRefreshBeatsTakeover(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var b *backend
		var refreshed atomic.Bool
		wrap := func(next http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				g := r.URL.Query().Get("ifGenerationMatch")
				if r.Method == http.MethodPost && g != "" && g != "0" && refreshed.CompareAndSwap(false, true) {
					// The late refresh: through the full chain, before
					// the takeover.
					if _, err := b.object("k").Update(context.Background(), storage.ObjectAttrsToUpdate{Metadata: map[string]string{"ttl_ms": "12000"}}); err != nil {
						t.Errorf("late refresh: %v", err)
					}
				}
				next.ServeHTTP(w, r)
			})
		}
		b = newBackend(t, wrap)
		holder := newClient(t, b, "holder", lockers.SystemClock{})
		old := mustLock(t, holder, "k")
		holder.net.cut.Store(true)
		<-old.Lost()
		gen := b.attrs(t, "k").Generation

		w := newClient(t, b, "waiter", lockers.SystemClock{})
		if got := tryLock(t, w, "k", ttl/2); got != nil {
			t.Fatalf("took a lease refreshed after the waiter's read")
		}
		if !refreshed.Load() {
			t.Fatalf("no takeover was attempted")
		}
		if now := b.attrs(t, "k").Generation; now != gen {
			t.Errorf("generation %d after the refused takeover, want %d", now, gen)
		}
		var refused bool
		for _, r := range w.net.requests() {
			if r.method == http.MethodPost && r.query["ifGenerationMatch"] == itoa(gen) {
				refused = r.status == http.StatusPreconditionFailed
			}
		}
		if !refused {
			t.Errorf("the takeover was not answered 412: %v", w.net.requests())
		}
	})
}

// faultPatch fails metadata updates of k.lock: after committing them when
// commit is set (a lost reply), before reaching the emulator otherwise.
func faultPatch(commit bool, on *atomic.Bool) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPatch && on.Load() && strings.HasSuffix(r.URL.Path, "/k.lock") {
				if commit {
					next.ServeHTTP(httptest.NewRecorder(), r)
				}
				http.Error(w, `{"error":{"code":503,"message":"injected"}}`, http.StatusServiceUnavailable)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// TestAmbiguousRefresh: a refresh whose reply is lost after it committed is
// confirmed by the read that follows (the metageneration moved), so the
// lease lives on; one that never reached the server extends nothing, and
// the holder reports Lost at its deadline.
func TestAmbiguousRefresh(t *testing.T) {
	for _, commit := range []bool{true, false} {
		name := map[bool]string{true: "landed", false: "not-landed"}[commit]
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var on atomic.Bool
				b := newBackend(t, faultPatch(commit, &on))
				c := newClient(t, b, "c", lockers.SystemClock{})
				lease := mustLock(t, c, "k")
				start := time.Now()
				on.Store(true)
				select {
				case <-lease.Lost():
					if commit {
						t.Errorf("Lost %v in, though every refresh landed", time.Since(start))
					} else if got := time.Since(start); got != ttl-margin {
						t.Errorf("Lost %v in, want at the deadline %v", got, ttl-margin)
					}
				case <-time.After(5 * ttl):
					if !commit {
						t.Errorf("no Lost in %v though no refresh landed", 5*ttl)
					}
				}
				on.Store(false)
				err := lease.Unlock(context.Background())
				if commit && err != nil {
					t.Errorf("Unlock: %v", err)
				}
			})
		})
	}
}

// TestAmbiguousUnlock: a delete whose reply is lost after it committed is
// reported indeterminate (the read finds the lock gone, which may be our
// delete or an expiry); one that never reached the server is sent again,
// once the read shows our generation still there, and succeeds.
func TestAmbiguousUnlock(t *testing.T) {
	for _, commit := range []bool{true, false} {
		name := map[bool]string{true: "landed", false: "not-landed"}[commit]
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var failed atomic.Bool
				wrap := func(next http.Handler) http.Handler {
					return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
						if r.Method == http.MethodDelete && failed.CompareAndSwap(false, true) {
							if commit {
								next.ServeHTTP(httptest.NewRecorder(), r)
							}
							http.Error(w, `{"error":{"code":503,"message":"injected"}}`, http.StatusServiceUnavailable)
							return
						}
						next.ServeHTTP(w, r)
					})
				}
				b := newBackend(t, wrap)
				c := newClient(t, b, "c", lockers.SystemClock{})
				lease := mustLock(t, c, "k")
				err := lease.Unlock(context.Background())
				var deletes int
				for _, r := range c.net.requests() {
					if r.method == http.MethodDelete {
						deletes++
					}
				}
				if commit {
					if err == nil || errors.Is(err, lockers.ErrNoEffect) {
						t.Errorf("Unlock after a lost delete reply: %v, want an indeterminate error", err)
					}
					if deletes != 1 {
						t.Errorf("%d deletes, want 1: the lock was gone", deletes)
					}
				} else {
					if err != nil {
						t.Errorf("Unlock after a failed delete: %v, want success on the second", err)
					}
					if deletes != 2 {
						t.Errorf("%d deletes, want 2", deletes)
					}
				}
				if _, err := b.object("k").Attrs(context.Background()); !errors.Is(err, storage.ErrObjectNotExist) {
					t.Errorf("k.lock after Unlock: %v, want gone", err)
				}
			})
		})
	}
}

// TestLoopbackServer runs the locker against the embedded backend over real
// HTTP on 127.0.0.1, as the harness's network fault plane reaches it, at
// TimeScale 0.1: a holder keeps a second client out across several
// refreshes, then hands over on Unlock.
func TestLoopbackServer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv, err := gcs.Start(ctx, gcs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	newLocker := func(id string) *fenced.Locker {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		t.Cleanup(tr.CloseIdleConnections)
		env := lockers.Env{Clock: lockers.SystemClock{}, HTTP: &http.Client{Transport: tr}, Identity: id, Seed: uint64(len(id))}
		l, err := fenced.New(ctx, fenced.Config{Endpoint: srv.Endpoint(), Bucket: srv.Bucket()}, env, fenced.Options{TimeScale: 0.1})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		return l
	}
	a, b := newLocker("a"), newLocker("bb")
	held, err := a.Lock(ctx, "k")
	if err != nil {
		t.Fatalf("Lock: %v", err)
	}
	// Three TTLs of 1.2 s: the lease needs about nine refreshes.
	wctx, wcancel := context.WithTimeout(ctx, 3*a.Options().TTL)
	got, err := b.Lock(wctx, "k")
	deadline := wctx.Err()
	wcancel()
	if err == nil {
		got.Unlock(ctx)
		if !closed(held.Lost()) {
			t.Fatalf("second client took the lease and the holder was not told")
		}
		// Real time on a loaded machine: refreshes can miss a 0.9 s
		// deadline. Allowed, since the holder was told; the takeover
		// must still carry the larger token.
		if got.Token() <= held.Token() {
			t.Errorf("takeover token %d after %d", got.Token(), held.Token())
		}
		t.Logf("the holder's refreshes fell behind and it was told (Lost closed) before the takeover")
		return
	}
	switch {
	case errors.Is(err, lockers.ErrNoEffect):
	case deadline != nil && strings.Contains(err.Error(), "indeterminate"):
		// Real time on a loaded machine: the deadline fell while one of
		// b's creates was in flight, whose outcome b cannot know. The
		// holder's Unlock below shows it had no effect.
		t.Logf("the deadline fell during a create: %v", err)
	default:
		t.Errorf("kept-out Lock: %v, want ErrNoEffect", err)
	}
	if closed(held.Lost()) {
		t.Logf("the holder was told it lost the lease though nobody took it (slow machine): allowed")
	} else if err := held.Unlock(ctx); err != nil {
		if errors.Is(err, lockers.ErrNoEffect) {
			t.Fatalf("Unlock: %v: the lock was not the holder's any more, and nobody took it", err)
		}
		// Real time on a loaded machine: the delete outlived its call
		// timeout (one clean clone under two busy loops), so whether it
		// landed is unknown; if not, the lease expires and b takes the
		// lock below all the same.
		t.Logf("Unlock indeterminate on a slow machine: %v", err)
	}
	next, err := b.Lock(ctx, "k")
	if err != nil {
		t.Fatalf("Lock after Unlock: %v", err)
	}
	if next.Token() <= held.Token() {
		t.Errorf("token %d after %d", next.Token(), held.Token())
	}
	if err := next.Unlock(ctx); err != nil {
		t.Errorf("Unlock: %v", err)
	}
}

// TestRefusedUnreadRetries: a create the server turns away unread (429)
// and a read-back that finds no lock of ours is a definite loss, so Lock
// tries again and wins, with every attempt reported. The pair: the same
// refusal as a 503, which a front end may send for a write still to
// commit, ends Lock with an indeterminate error.
func TestRefusedUnreadRetries(t *testing.T) {
	for _, code := range []int{http.StatusTooManyRequests, http.StatusServiceUnavailable} {
		t.Run(strconv.Itoa(code), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var refuse atomic.Int32
				refuse.Store(1)
				wrap := func(next http.Handler) http.Handler {
					return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
						if r.Method == http.MethodPost && refuse.Add(-1) >= 0 {
							http.Error(w, fmt.Sprintf(`{"error":{"code":%d,"message":"refused"}}`, code), code)
							return
						}
						next.ServeHTTP(w, r)
					})
				}
				b := newBackend(t, wrap)
				var attempts int
				l := countingLocker(t, b, b.m.HTTPClient(nil), &attempts)
				lease, err := l.Lock(context.Background(), "k")
				if code == http.StatusServiceUnavailable {
					if err == nil || errors.Is(err, lockers.ErrNoEffect) {
						t.Fatalf("after a 503 and no lock of ours: %v, want an indeterminate error", err)
					}
					return
				}
				if err != nil {
					t.Fatalf("after a 429 and no lock of ours: %v, want Lock to try again and win", err)
				}
				defer mustUnlock(t, lease)
				if attempts != 2 {
					t.Errorf("%d attempts reported, want 2", attempts)
				}
			})
		})
	}
}

// failFirstPost fails the first create with err, before or after handing
// it to the server.
type failFirstPost struct {
	base  http.RoundTripper
	err   error
	after bool // the server got the request first
	done  atomic.Bool
}

func (f *failFirstPost) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method != http.MethodPost || f.done.Swap(true) {
		return f.base.RoundTrip(r)
	}
	if f.after {
		resp, err := f.base.RoundTrip(r)
		if err == nil {
			resp.Body.Close()
		}
	}
	return nil, f.err
}

// TestConnectionRefusedRetries: a create whose connection was refused
// never reached the server, so Lock tries again and wins, with every
// attempt reported. The pair: a connection reset after the server got the
// create may have committed it, and the read-back then finds the lock
// ours (the reset came after the commit).
func TestConnectionRefusedRetries(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	reset := &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}
	for _, c := range []struct {
		name  string
		err   error
		after bool
	}{{"refused", refused, false}, {"reset", reset, true}} {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				b := newBackend(t, nil)
				hc := b.m.HTTPClient(nil)
				hc.Transport = &failFirstPost{base: hc.Transport, err: c.err, after: c.after}
				var attempts int
				l := countingLocker(t, b, hc, &attempts)
				lease, err := l.Lock(context.Background(), "k")
				if err != nil {
					t.Fatalf("Lock: %v", err)
				}
				defer mustUnlock(t, lease)
				want := map[string]int{"refused": 2, "reset": 1}[c.name]
				if attempts != want {
					t.Errorf("%d attempts reported, want %d (the refused create definite, the reset one settled by the read-back)", attempts, want)
				}
			})
		})
	}
}

// countingLocker is a fenced locker on b through hc that counts its
// acquisition attempts into attempts; closed when the test ends.
func countingLocker(t *testing.T, b *backend, hc *http.Client, attempts *int) *fenced.Locker {
	t.Helper()
	env := lockers.Env{Clock: lockers.SystemClock{}, HTTP: hc, Identity: "c", Seed: 1, AttemptStarted: func() { *attempts++ }}
	l, err := fenced.New(context.Background(), fenced.Config{Endpoint: b.m.Endpoint(), Bucket: b.m.Bucket()}, env, fenced.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}
