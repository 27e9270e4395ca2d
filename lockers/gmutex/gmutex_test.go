package gmutex_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/lockcheck/lockcheck/backends/gcs"
	"github.com/lockcheck/lockcheck/lockers"
	"github.com/lockcheck/lockcheck/lockers/gmutex"
	"github.com/lockcheck/lockcheck/lockers/lockertest"
)

// bound caps every real-time wait; nothing checked depends on it.
const bound = 10 * time.Second

// call is one request as the backend answered it.
type call struct {
	method, query, ifGen string
	status               int
	gen                  string // x-goog-generation of the reply
}

// journal records every request a client sends.
type journal struct {
	base  http.RoundTripper
	mu    sync.Mutex
	calls []call
}

func (j *journal) RoundTrip(r *http.Request) (*http.Response, error) {
	res, err := j.base.RoundTrip(r)
	c := call{method: r.Method, query: r.URL.RawQuery, ifGen: r.Header.Get("x-goog-if-generation-match")}
	if err == nil {
		c.status, c.gen = res.StatusCode, res.Header.Get("x-goog-generation")
	}
	j.mu.Lock()
	j.calls = append(j.calls, c)
	j.mu.Unlock()
	return res, err
}

func (j *journal) all() []call {
	j.mu.Lock()
	defer j.mu.Unlock()
	return append([]call(nil), j.calls...)
}

func (j *journal) count(method, query string) int {
	n := 0
	for _, c := range j.all() {
		if c.method == method && c.query == query {
			n++
		}
	}
	return n
}

// offsetClock is the bubble's (or the real) clock shifted by off: a client
// whose clock is wrong.
type offsetClock struct{ off time.Duration }

func (c offsetClock) Now() time.Time                         { return time.Now().Add(c.off) }
func (c offsetClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

type client struct {
	j        *journal
	locker   *gmutex.Locker
	attempts atomic.Int64
}

func newClient(t *testing.T, b *gcs.InMemory, clock lockers.Clock, opts gmutex.Options) *client {
	t.Helper()
	c := &client{}
	hc := b.HTTPClient(func(rt http.RoundTripper) http.RoundTripper {
		c.j = &journal{base: rt}
		return c.j
	})
	env := lockers.Env{Clock: clock, HTTP: hc, Seed: 7, AttemptStarted: func() { c.attempts.Add(1) }}
	l, err := gmutex.New(context.Background(), gmutex.Config{Endpoint: b.Endpoint(), Bucket: b.Bucket()}, env, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	c.locker = l
	return c
}

func newBackend(t *testing.T) *gcs.InMemory {
	t.Helper()
	b, err := gcs.NewInMemory(gcs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b
}

// xmlURL is the XML API URL of key's lock object, as the library builds it.
func xmlURL(b *gcs.InMemory, key string) string {
	return strings.TrimSuffix(b.Endpoint(), "/storage/v1/") + "/" + b.Bucket() + "/" + key
}

// rawPut writes key's lock object behind the locker's back, as another
// client (or a crashed one) would, and returns its generation. ifGen ""
// writes unconditionally.
func rawPut(t *testing.T, b *gcs.InMemory, key, ifGen, ttl, body string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPut, xmlURL(b, key), strings.NewReader(body))
	if ifGen != "" {
		req.Header.Set("x-goog-if-generation-match", ifGen)
	}
	req.Header.Set("x-goog-meta-ttl", ttl)
	res, err := b.HTTPClient(nil).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("raw PUT %s: %d", key, res.StatusCode)
	}
	return res.Header.Get("x-goog-generation")
}

// head returns the lock object's status and generation.
func head(t *testing.T, b *gcs.InMemory, key string) (int, string) {
	t.Helper()
	res, err := b.HTTPClient(nil).Head(xmlURL(b, key))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	return res.StatusCode, res.Header.Get("x-goog-generation")
}

func rawDelete(t *testing.T, b *gcs.InMemory, key string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodDelete, xmlURL(b, key), nil)
	res, err := b.HTTPClient(nil).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
}

// TestTakeoverBySeverTime: a lock object left with ttl=5 is taken over only
// once the server's Date is past its Last-Modified + 5 s, however wrong the
// taker's own clock: an hour fast would have taken it at once, an hour slow
// never. The takeover writes with ifGenerationMatch=<the stale generation>
// and never deletes.
func TestTakeoverByServerTime(t *testing.T) {
	for _, off := range []time.Duration{time.Hour, -time.Hour} {
		t.Run(off.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				b := newBackend(t)
				stale := rawPut(t, b, "k", "0", "5", "")
				written := time.Now()
				c := newClient(t, b, offsetClock{off}, gmutex.Options{})
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				lease, err := c.locker.Lock(ctx, "k")
				if err != nil {
					t.Fatalf("Lock: %v", err)
				}
				took := time.Since(written)
				// Date and Last-Modified have whole seconds: expired means
				// Date ≥ Last-Modified + 6 s, 5 to 6 s after the write.
				if took < 5*time.Second || took > 10*time.Second {
					t.Errorf("took the lock %v after the write, want just past the 5 s TTL on server time", took)
				}
				calls := c.j.all()
				var puts []call
				for _, k := range calls {
					if k.method == http.MethodDelete {
						t.Errorf("takeover sent a DELETE: %+v", k)
					}
					if k.method == http.MethodPut {
						puts = append(puts, k)
					}
				}
				if len(puts) != 2 || puts[0].ifGen != "0" || puts[0].status != http.StatusPreconditionFailed ||
					puts[1].ifGen != stale || puts[1].status != http.StatusOK {
					t.Errorf("writes %+v, want ifGenerationMatch=0 → 412, then ifGenerationMatch=%s → 200", puts, stale)
				}
				if n, polls := c.attempts.Load(), c.j.count(http.MethodHead, ""); n != int64(polls)+1 {
					t.Errorf("%d attempts reported for 1 create and %d polls", n, polls)
				}
				if err := lease.Unlock(ctx); err != nil {
					t.Errorf("Unlock: %v", err)
				}
			})
		})
	}
}

// TestNoTTLNeverExpires: the pair of the takeover test: a lock object with
// ttl 0 is never judged expired, so a waiter only polls.
func TestNoTTLNeverExpires(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBackend(t)
		rawPut(t, b, "k", "0", "0", "")
		c := newClient(t, b, offsetClock{time.Hour}, gmutex.Options{})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		_, err := c.locker.Lock(ctx, "k")
		if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, lockers.ErrNoEffect) {
			t.Errorf("Lock error %v, want a deadline that took no effect", err)
		}
		if n := c.j.count(http.MethodPut, ""); n != 1 {
			t.Errorf("%d creates, want 1: the lock never looked expired", n)
		}
	})
}

// TestExtendNewGeneration: the holder composes the object onto itself every
// second with ifGenerationMatch=<the generation it holds>, each giving a new
// generation, so the lock outlives its 5 s TTL many times over while
// another client waits; Unlock deletes the newest generation.
func TestExtendNewGeneration(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBackend(t)
		a := newClient(t, b, offsetClock{}, gmutex.Options{})
		w := newClient(t, b, offsetClock{}, gmutex.Options{})
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		lease, err := a.locker.Lock(ctx, "k")
		if err != nil {
			t.Fatalf("Lock: %v", err)
		}
		wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
		defer wcancel()
		if _, err := w.locker.Lock(wctx, "k"); err == nil {
			t.Fatal("another client took a lock its holder kept extending")
		}
		if err := lease.Unlock(ctx); err != nil {
			t.Fatalf("Unlock: %v", err)
		}

		calls := a.j.all()
		held := calls[0].gen
		extends := 0
		for _, c := range calls[1:] {
			switch {
			case c.method == http.MethodPut && c.query == "compose":
				extends++
				if c.ifGen != held || c.status != http.StatusOK || c.gen == "" || c.gen <= held {
					t.Fatalf("extend %d: %+v, want ifGenerationMatch=%s answered with a newer generation", extends, c, held)
				}
				held = c.gen
			case c.method == http.MethodDelete:
				if c.ifGen != held || c.status != http.StatusNoContent {
					t.Errorf("delete %+v, want ifGenerationMatch=%s (the newest) → 204", c, held)
				}
			default:
				t.Errorf("holder sent %+v", c)
			}
		}
		if extends < 29 {
			t.Errorf("%d extends in 30 s, want one a second", extends)
		}
		if status, _ := head(t, b, "k"); status != http.StatusNotFound {
			t.Errorf("lock object after Unlock: %d, want 404", status)
		}
	})
}

// TestExtendStaleLosesLease: an extend that finds another generation (412)
// ends the extender and closes Lost; a successful one does neither.
func TestExtendStaleLosesLease(t *testing.T) {
	b := newBackend(t)
	clock := lockertest.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	c := newClient(t, b, clock, gmutex.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	lease, err := c.locker.Lock(ctx, "k")
	if err != nil {
		t.Fatalf("Lock: %v", err)
	}
	if err := clock.WaitForTimers(ctx, 1); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Second)
	// The extender re-arms only after its extend has returned.
	if err := clock.WaitForTimers(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if n := c.j.count(http.MethodPut, "compose"); n != 1 {
		t.Fatalf("%d extends after one interval, want 1", n)
	}
	select {
	case <-lease.Lost():
		t.Fatal("Lost closed after a successful extend")
	default:
	}

	rawPut(t, b, "k", "", "5", "someone else")
	clock.Advance(time.Second)
	select {
	case <-lease.Lost():
	case <-time.After(bound):
		t.Fatal("Lost not closed after an extend answered 412")
	}
	calls := c.j.all()
	if last := calls[len(calls)-1]; last.query != "compose" || last.status != http.StatusPreconditionFailed {
		t.Errorf("last request %+v, want the extend answered 412", last)
	}
}

// TestUnlockStale: a delete at a generation that is no longer the lock's
// (412) or of a lock that is gone (404) is the library's "stale lock", and
// surely released nothing; the new holder's object is untouched. The
// control: Unlock of a lock still held deletes it.
func TestUnlockStale(t *testing.T) {
	b := newBackend(t)
	clock := lockertest.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	c := newClient(t, b, clock, gmutex.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()

	lease, err := c.locker.Lock(ctx, "k")
	if err != nil {
		t.Fatalf("Lock: %v", err)
	}
	other := rawPut(t, b, "k", "", "5", "")
	err = lease.Unlock(ctx)
	if !errors.Is(err, gmutex.ErrStale) || !errors.Is(err, lockers.ErrNoEffect) {
		t.Errorf("Unlock over another generation: %v, want a stale lock with no effect", err)
	}
	if status, gen := head(t, b, "k"); status != http.StatusOK || gen != other {
		t.Errorf("new holder's object: %d gen %s, want 200 gen %s", status, gen, other)
	}

	rawDelete(t, b, "k")
	lease, err = c.locker.Lock(ctx, "k")
	if err != nil {
		t.Fatalf("Lock: %v", err)
	}
	rawDelete(t, b, "k")
	if err := lease.Unlock(ctx); !errors.Is(err, gmutex.ErrStale) || !errors.Is(err, lockers.ErrNoEffect) {
		t.Errorf("Unlock of a deleted lock: %v, want a stale lock with no effect", err)
	}

	lease, err = c.locker.Lock(ctx, "k")
	if err != nil {
		t.Fatalf("Lock: %v", err)
	}
	if err := lease.Unlock(ctx); err != nil {
		t.Errorf("Unlock of a held lock: %v", err)
	}
	if status, _ := head(t, b, "k"); status != http.StatusNotFound {
		t.Errorf("lock object after Unlock: %d, want 404", status)
	}
	if err := lease.Unlock(ctx); !errors.Is(err, lockers.ErrNoEffect) {
		t.Errorf("second Unlock: %v, want no effect", err)
	}
}

// TestGhostCreate: the create commits but GCS answers 503. The library
// retries by polling, finds its own lock alive, and waits for it to expire
// by server time before taking it over: the key is held by nobody for a
// TTL. Attempts stop being reported after the ambiguous create.
func TestGhostCreate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var failed atomic.Bool
		b, err := gcs.NewInMemory(gcs.Options{Wrap: func(next http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method == http.MethodPut && failed.CompareAndSwap(false, true) {
					next.ServeHTTP(discard{}, r)
					http.Error(w, "backend error", http.StatusServiceUnavailable)
					return
				}
				next.ServeHTTP(w, r)
			})
		}})
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		c := newClient(t, b, offsetClock{}, gmutex.Options{})
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		began := time.Now()
		lease, err := c.locker.Lock(ctx, "k")
		if err != nil {
			t.Fatalf("Lock: %v", err)
		}
		if took := time.Since(began); took < 5*time.Second {
			t.Errorf("took its own ghost after %v, want past the 5 s TTL", took)
		}
		if n := c.attempts.Load(); n != 1 {
			t.Errorf("%d attempts reported, want 1: none after the ambiguous create", n)
		}
		if err := lease.Unlock(ctx); err != nil {
			t.Errorf("Unlock: %v", err)
		}
	})
}

// discard is a ResponseWriter that drops the reply: the write commits, the
// client never hears of it.
type discard struct{}

func (discard) Header() http.Header         { return http.Header{} }
func (discard) Write(p []byte) (int, error) { return len(p), nil }
func (discard) WriteHeader(int)             {}

// TestEmbeddedGCSComposesXML pins what gmutex's extend relies on in the
// embedded backend: an XML "PUT /BUCKET/OBJECT?compose" composes the
// components named in the body, as GCS does, so composing an object onto
// itself keeps its data and makes a new generation.
func TestEmbeddedGCSComposesXML(t *testing.T) {
	b := newBackend(t)
	gen := rawPut(t, b, "k", "0", "5", "payload")
	body := "<ComposeRequest><Component><Name>k</Name></Component></ComposeRequest>"
	req, _ := http.NewRequest(http.MethodPut, xmlURL(b, "k")+"?compose", strings.NewReader(body))
	req.Header.Set("x-goog-if-generation-match", gen)
	res, err := b.HTTPClient(nil).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK || res.Header.Get("x-goog-generation") == gen {
		t.Fatalf("compose: %d generation %q, want 200 and a new generation", res.StatusCode, res.Header.Get("x-goog-generation"))
	}
	get, err := b.HTTPClient(nil).Get(xmlURL(b, "k"))
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(get.Body)
	get.Body.Close()
	if string(data) != "payload" {
		t.Errorf("after composing the object onto itself its data is %q, want %q (GCS keeps the component's data)", data, "payload")
	}
}

// TestExtendOutageSilent: while every extend gets 503, the holder retries
// and is not told; its lock expires on server time and another client takes
// it over with the holder's Lost still open (the documented defect). Once
// the outage ends, the holder's extend gets 412 and Lost closes.
func TestExtendOutageSilent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var outage atomic.Bool
		b, err := gcs.NewInMemory(gcs.Options{Wrap: func(next http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if outage.Load() && r.URL.RawQuery == "compose" {
					http.Error(w, "backend error", http.StatusServiceUnavailable)
					return
				}
				next.ServeHTTP(w, r)
			})
		}})
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		a := newClient(t, b, offsetClock{}, gmutex.Options{})
		w := newClient(t, b, offsetClock{}, gmutex.Options{})
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		held, err := a.locker.Lock(ctx, "k")
		if err != nil {
			t.Fatalf("Lock: %v", err)
		}
		outage.Store(true)
		took, err := w.locker.Lock(ctx, "k")
		if err != nil {
			t.Fatalf("waiter Lock during the outage: %v", err)
		}
		select {
		case <-held.Lost():
			t.Fatal("holder told of its loss during the outage; the library retries silently")
		default:
		}
		if n := a.j.count(http.MethodPut, "compose"); n < 2 {
			t.Errorf("%d extends during the outage, want the holder retrying", n)
		}
		outage.Store(false)
		select {
		case <-held.Lost():
		case <-ctx.Done():
			t.Fatal("Lost not closed once the extend got through")
		}
		if err := held.Unlock(ctx); !errors.Is(err, lockers.ErrNoEffect) {
			t.Errorf("holder's Unlock after the takeover: %v, want stale with no effect", err)
		}
		if err := took.Unlock(ctx); err != nil {
			t.Errorf("new holder's Unlock: %v", err)
		}
	})
}

// TestCloseStopsExtenders: Close ends a held lease's extender as a crash
// would, without deleting: the lock then expires on server time and another
// client takes it over.
func TestCloseStopsExtenders(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBackend(t)
		a := newClient(t, b, offsetClock{}, gmutex.Options{})
		w := newClient(t, b, offsetClock{}, gmutex.Options{})
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := a.locker.Lock(ctx, "k"); err != nil {
			t.Fatalf("Lock: %v", err)
		}
		// Between two extends (one a second), so none is in flight.
		time.Sleep(3500 * time.Millisecond)
		extends := a.j.count(http.MethodPut, "compose")
		if extends == 0 {
			t.Fatal("no extend before Close")
		}
		a.locker.Close()
		closed := time.Now()
		lease, err := w.locker.Lock(ctx, "k")
		if err != nil {
			t.Fatalf("waiter Lock after the holder's Close: %v", err)
		}
		if after := time.Since(closed); after < 4*time.Second {
			// The last extend was 0.5 s before Close; expiry is 5 to 6 s after it.
			t.Errorf("taken %v after Close, want past the TTL from the last extend", after)
		}
		if n := a.j.count(http.MethodPut, "compose"); n != extends {
			t.Errorf("%d extends after Close, want none", n-extends)
		}
		if a.j.count(http.MethodDelete, "") != 0 {
			t.Error("Close deleted the lock")
		}
		lease.Unlock(ctx)
	})
}

// TestLoopbackServer: the port works against the embedded backend on a real
// socket, whose endpoint carries a path the library ignores: a held key
// refuses a second client (its Lock times out with no effect), and Unlock
// frees it for that client.
func TestLoopbackServer(t *testing.T) {
	srv, err := gcs.Start(context.Background(), gcs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	newLocker := func() *gmutex.Locker {
		env := lockers.Env{Clock: lockers.SystemClock{}, HTTP: &http.Client{}}
		l, err := gmutex.New(context.Background(), gmutex.Config{Endpoint: srv.Endpoint(), Bucket: srv.Bucket()}, env, gmutex.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		return l
	}
	lockertest.HandOver(t, newLocker(), newLocker(), 300*time.Millisecond, bound)
}

// TestEmbeddedGCSGenerationsInBubble pins that the embedded backend gives
// every write a new generation even inside a testing/synctest bubble,
// where time stands still between writes and the emulator's generations
// (time.Now in microseconds) would repeat. gmutex trusts its generation
// alone: a repeated one would let a holder whose lock was deleted and taken
// by another client at the same instant unlock with success, deleting the
// new holder's lock, where GCS answers 412 (stale).
func TestEmbeddedGCSGenerationsInBubble(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBackend(t)
		g1 := rawPut(t, b, "g", "0", "5", "")
		g2 := rawPut(t, b, "g", g1, "5", "")
		if g2 == g1 {
			t.Errorf("an overwrite in a synctest bubble kept generation %s; GCS gives every write a new one", g1)
		}

		a := newClient(t, b, offsetClock{}, gmutex.Options{})
		c := newClient(t, b, offsetClock{}, gmutex.Options{})
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		stale, err := a.locker.Lock(ctx, "k")
		if err != nil {
			t.Fatalf("Lock: %v", err)
		}
		rawDelete(t, b, "k")
		held, err := c.locker.Lock(ctx, "k")
		if err != nil {
			t.Fatalf("Lock: %v", err)
		}
		if err := stale.Unlock(ctx); !errors.Is(err, gmutex.ErrStale) {
			t.Errorf("a stale holder's Unlock in a bubble returned %v and freed the new holder's lock; on GCS it is refused (412)", err)
		}
		held.Unlock(ctx)
	})
}
