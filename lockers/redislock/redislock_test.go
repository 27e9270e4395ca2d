package redislock_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/lockcheck/lockcheck/backends/redisserver"
	"github.com/lockcheck/lockcheck/lockers"
	"github.com/lockcheck/lockcheck/lockers/lockertest"
	"github.com/lockcheck/lockcheck/lockers/redislock"
)

// bound limits how long a test waits for something that should happen at
// once; it never decides what a test checks.
const bound = 10 * time.Second

// suiteTTL is long against a scheduling hiccup under -race; in the bubble
// it costs no wall time.
const suiteTTL = 2 * time.Second

// suiteScale shortens the retry delays, which dominate how long 32
// contending clients take; the suite checks exclusion, not timing.
const suiteScale = 0.2

var lacks = map[lockertest.Property]string{
	lockertest.Fencing:        "the library's token is random, not a fencing token; Token is 0",
	lockertest.ReleaseRequest: "the library has no way to ask a holder to let go",
}

// cancelOnReal gives the cancel property a real server, in the embedded
// suite too. It counts every goroutine of the process, and in-process
// miniredis serves each pooled connection with two goroutines, which come
// and go with go-redis's pool and with the previous property's server: on
// miniredis the count says nothing certain about the locker, either way.
// Without redis-server the property is skipped.
func cancelOnReal(start func(testing.TB) *redisserver.Server) func(testing.TB) *redisserver.Server {
	return func(t testing.TB) *redisserver.Server {
		if strings.HasSuffix(t.Name(), "/"+string(lockertest.Cancel)) {
			return startReal(t)
		}
		return start(t)
	}
}

func newLocker(t testing.TB, srv *redisserver.Server, env lockers.Env, opts redislock.Options) *redislock.Locker {
	t.Helper()
	if srv.Addr() == "in-memory:0" {
		env.Dial = srv.Dial
	}
	l, err := redislock.New(redislock.Config{Addr: srv.Addr()}, env, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func suiteOn(start func(t testing.TB) *redisserver.Server, ttl time.Duration, lacks map[lockertest.Property]string) lockertest.Suite {
	return lockertest.Suite{
		New: func(t testing.TB) func(lockers.Env) lockers.Locker {
			srv := start(t)
			return func(env lockers.Env) lockers.Locker {
				return newLocker(t, srv, env, redislock.Options{TTL: suiteTTL, TimeScale: suiteScale})
			}
		},
		OwnerCheck: true,
		TTL:        ttl,
		Lacks:      lacks,
	}
}

func inMemory(t testing.TB) *redisserver.Server {
	srv := redisserver.NewInMemory()
	t.Cleanup(func() { srv.Close() })
	return srv
}

func startReal(t testing.TB) *redisserver.Server {
	t.Helper()
	srv, err := redisserver.StartReal(context.Background(), redisserver.Options{})
	if errors.Is(err, redisserver.ErrNoRedisServer) {
		t.Skipf("no real Redis (`make redis-server` installs it): %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

// TestConformanceEmbedded runs the suite on miniredis through net.Pipe,
// which also works in LeaseKept's synctest bubble, where the refresher and
// the keys' expiry both run on the bubble's clock; cancel excepted (see
// cancelOnReal).
func TestConformanceEmbedded(t *testing.T) {
	s := suiteOn(cancelOnReal(inMemory), suiteTTL, lacks)
	// In virtual time, but cancel (on real servers, see cancelOnReal): 32
	// clients whose backoff grows to 100 ms cannot miss the suite's 30 s
	// bound, nor a 2 s lease run out under a holder, because the machine
	// is busy, as redsync's embedded suite once did in CI.
	s.Bubble, s.RealTime = true, []lockertest.Property{lockertest.Cancel}
	lockertest.Run(t, s)
}

// TestConformanceReal runs the suite on a real redis-server over TCP.
// LeaseKept runs in a synctest bubble, which cannot hold a real socket, so
// it is not claimed here; TestRefreshKeepsLeaseReal checks it on real
// time instead.
func TestConformanceReal(t *testing.T) {
	startReal(t).Close() // skip early, before the subtests
	lockertest.Run(t, suiteOn(startReal, 0, lacks))
}

func systemEnv(id string) lockers.Env {
	var d net.Dialer
	return lockers.Env{Clock: lockers.SystemClock{}, Dial: d.DialContext, Identity: id, Seed: 1}
}

// TestRefreshKeepsLeaseReal: on a real server, with a 2 s TTL, a holder
// keeps its lock for 2.5 TTLs of real time while a competitor tries all
// along; the same competitor takes a lock whose holder does not refresh
// within the same window, so the first result is not for want of expiry.
func TestRefreshKeepsLeaseReal(t *testing.T) {
	srv := startReal(t)
	const ttl = 2 * time.Second
	opts := redislock.Options{TTL: ttl}
	holder := newLocker(t, srv, systemEnv("holder"), opts)
	rival := newLocker(t, srv, systemEnv("rival"), opts)

	ctx, cancel := context.WithTimeout(context.Background(), 3*bound)
	defer cancel()
	lease, err := holder.Lock(ctx, "kept")
	if err != nil {
		t.Fatalf("holder: %v", err)
	}
	tryCtx, tryCancel := context.WithTimeout(ctx, 5*ttl/2)
	defer tryCancel()
	got, err := rival.Lock(tryCtx, "kept")
	switch {
	case err == nil && isClosed(lease.Lost()):
		// A machine stalled past the TTL: the holder was told first,
		// which is all the contract asks.
		t.Logf("the holder lost its lease (told by Lost) before the rival took it")
		got.Unlock(ctx)
		return
	case err == nil:
		t.Fatalf("rival took a refreshed lock within 2.5 TTLs, and the holder was not told")
	case !errors.Is(err, lockers.ErrNoEffect) && tryCtx.Err() != nil:
		// The rival's deadline fell while a request was under way (or as
		// its retry timer fired): that attempt's outcome is open, so the
		// locker rightly cannot say it had none, as redsync's twin of
		// this test found in a clean clone. The holder still holds, which
		// the Unlock below shows.
		t.Logf("rival's Lock ended by its deadline mid-attempt: %v", err)
	case !errors.Is(err, lockers.ErrNoEffect):
		t.Errorf("rival's refused Lock: %v; want ErrNoEffect", err)
	}
	if isClosed(lease.Lost()) {
		t.Logf("Lost closed though no one took the lock: a refresh was late (slow machine)")
	}
	if err := lease.Unlock(ctx); err != nil && !isClosed(lease.Lost()) {
		t.Fatalf("Unlock: %v", err)
	}

	// No refresher: a key as a crashed holder leaves it.
	raw := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaintNotificationsConfig: noMaint()})
	defer raw.Close()
	if ok, err := raw.SetNX(ctx, "unkept", "crashed", ttl).Result(); err != nil || !ok {
		t.Fatalf("SET NX: %v %v", ok, err)
	}
	tryCtx2, cancel2 := context.WithTimeout(ctx, 5*ttl/2)
	defer cancel2()
	taken, err := rival.Lock(tryCtx2, "unkept")
	if err != nil {
		t.Fatalf("rival did not take an unrefreshed lock within 2.5 TTLs: %v", err)
	}
	taken.Unlock(ctx)
}

// noMaint keeps the test's own clients from resolving their address's
// host name, which a synctest bubble forbids (see the adapters' clients).
func noMaint() *maintnotifications.Config {
	return &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// rawClient reaches srv beside the lockers, to play another holder.
func rawClient(t testing.TB, srv *redisserver.Server) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: srv.Addr(), Dialer: srv.Dial, MaintNotificationsConfig: noMaint()})
	t.Cleanup(func() { c.Close() })
	return c
}

// stoppedClock never fires: a client frozen before its first refresh.
type stoppedClock struct{ lockers.Clock }

func (stoppedClock) After(time.Duration) <-chan time.Time { return nil }

// TestReleaseExpired: a lease whose key expired unrefreshed cannot be
// released, and Unlock says so definitely; a live lease's Unlock succeeds,
// and a second Unlock of it is refused the same way.
func TestReleaseExpired(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := inMemory(t)
		env := systemEnv("frozen")
		env.Clock = stoppedClock{lockers.SystemClock{}}
		l := newLocker(t, srv, env, redislock.Options{TTL: time.Second})
		ctx := context.Background()

		live, err := l.Lock(ctx, "live")
		if err != nil {
			t.Fatal(err)
		}
		if err := live.Unlock(ctx); err != nil {
			t.Fatalf("Unlock of a live lease: %v", err)
		}
		if err := live.Unlock(ctx); !errors.Is(err, lockers.ErrNoEffect) {
			t.Errorf("second Unlock: %v; want ErrNoEffect", err)
		}

		lease, err := l.Lock(ctx, "expires")
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Second) // virtual: the key's TTL runs out
		err = lease.Unlock(ctx)
		if !errors.Is(err, lockers.ErrNoEffect) {
			t.Errorf("Unlock after expiry: %v; want ErrNoEffect", err)
		}
	})
}

// TestTakeoverLost: when another client holds the key, the next refresh is
// refused and Lost closes before the TTL would have run out; Unlock then
// leaves the other's key alone. An untouched lease stays unlost as long.
func TestTakeoverLost(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := inMemory(t)
		const ttl = 2 * time.Second
		l := newLocker(t, srv, systemEnv("holder"), redislock.Options{TTL: ttl})
		raw := rawClient(t, srv)
		ctx := context.Background()

		kept, err := l.Lock(ctx, "kept")
		if err != nil {
			t.Fatal(err)
		}
		lease, err := l.Lock(ctx, "taken")
		if err != nil {
			t.Fatal(err)
		}
		if err := raw.Set(ctx, "taken", "intruder", time.Minute).Err(); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		select {
		case <-lease.Lost():
			// The first refresh, at TTL/2, is refused.
			if waited := time.Since(start); waited > ttl/2 {
				t.Errorf("Lost closed after %v; want at the first refresh, %v", waited, ttl/2)
			}
		case <-time.After(3 * ttl):
			t.Fatal("Lost still open three TTLs after the key was taken")
		}
		select {
		case <-kept.Lost():
			t.Error("Lost closed on the untouched lease")
		default:
		}
		if err := lease.Unlock(ctx); !errors.Is(err, lockers.ErrNoEffect) {
			t.Errorf("Unlock of a taken lease: %v; want ErrNoEffect", err)
		}
		if v, err := raw.Get(ctx, "taken").Result(); err != nil || v != "intruder" {
			t.Errorf("after Unlock the key holds %q (%v); want the intruder's", v, err)
		}
		if err := kept.Unlock(ctx); err != nil {
			t.Errorf("Unlock of the untouched lease: %v", err)
		}
	})
}

// TestLockErrors: a Lock refused until its context ends reports each
// attempt and is definite; one whose connection fails is not, since the
// library cannot tell whether its command ran.
func TestLockErrors(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := inMemory(t)
		attempts := 0
		env := systemEnv("waiter")
		env.AttemptStarted = func() { attempts++ }
		l := newLocker(t, srv, env, redislock.Options{TTL: time.Minute})
		if err := rawClient(t, srv).Set(context.Background(), "held", "other", time.Hour).Err(); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := l.Lock(ctx, "held")
		if !errors.Is(err, lockers.ErrNoEffect) {
			t.Errorf("Lock refused until its deadline: %v; want ErrNoEffect", err)
		}
		if attempts < 2 {
			t.Errorf("%d attempts reported in 1 s of refusals; want several", attempts)
		}
	})

	env := systemEnv("cut-off")
	env.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		return nil, errors.New("connection refused by the test")
	}
	l, err := redislock.New(redislock.Config{Addr: "127.0.0.1:1"}, env, redislock.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	if _, err := l.Lock(ctx, "k"); err == nil || errors.Is(err, lockers.ErrNoEffect) {
		t.Errorf("Lock through a failing dial: %v; want an indeterminate error", err)
	}
}

func TestOptions(t *testing.T) {
	env := systemEnv("o")
	for _, tc := range []struct {
		opts redislock.Options
		ttl  time.Duration
	}{
		{redislock.Options{}, 30 * time.Second},
		{redislock.Options{TimeScale: 0.1}, 3 * time.Second},
		{redislock.Options{TimeScale: 0.1, TTL: time.Minute}, time.Minute},
	} {
		l, err := redislock.New(redislock.Config{Addr: "127.0.0.1:1"}, env, tc.opts)
		if err != nil {
			t.Fatalf("%+v: %v", tc.opts, err)
		}
		if got := l.TTL(); got != tc.ttl {
			t.Errorf("%+v: TTL %v; want %v", tc.opts, got, tc.ttl)
		}
		l.Close()
	}
	for _, bad := range []redislock.Options{{TimeScale: -1}, {TimeScale: 1e-12}} {
		if _, err := redislock.New(redislock.Config{Addr: "127.0.0.1:1"}, env, bad); !errors.Is(err, redislock.ErrBadOptions) {
			t.Errorf("%+v: %v; want ErrBadOptions", bad, err)
		}
	}
	if _, err := redislock.New(redislock.Config{}, env, redislock.Options{}); !errors.Is(err, redislock.ErrBadOptions) {
		t.Errorf("empty Addr: %v; want ErrBadOptions", err)
	}
}

// cutter dials a server until cut, then closes the connections it made
// and refuses new ones: the server is gone for this client. (Closing an
// in-memory miniredis is not enough: its Dial still serves.)
type cutter struct {
	srv *redisserver.Server

	mu    sync.Mutex
	cut   bool
	conns []net.Conn
}

func (c *cutter) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cut {
		return nil, errors.New("server gone")
	}
	conn, err := c.srv.Dial(ctx, network, addr)
	if err == nil {
		c.conns = append(c.conns, conn)
	}
	return conn, err
}

func (c *cutter) stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cut = true
	for _, conn := range c.conns {
		conn.Close()
	}
}

// TestServerGoneLost: when the server stops answering, refreshes fail
// without a verdict, and Lost closes once a full TTL has passed since the
// last one that succeeded, not at the first failure; a lease on a server
// that stays up is not lost meanwhile.
func TestServerGoneLost(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const ttl = 2 * time.Second
		gone := &cutter{srv: inMemory(t)}
		ctx := context.Background()
		l, err := redislock.New(redislock.Config{Addr: "127.0.0.1:1"}, lockers.Env{Clock: lockers.SystemClock{}, Dial: gone.dial, Identity: "a", Seed: 1}, redislock.Options{TTL: ttl})
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		lease, err := l.Lock(ctx, "k")
		if err != nil {
			t.Fatal(err)
		}
		kept, err := newLocker(t, inMemory(t), systemEnv("b"), redislock.Options{TTL: ttl}).Lock(ctx, "k")
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(ttl * 3 / 4) // virtual: one refresh has succeeded, at TTL/2
		gone.stop()
		stopped := time.Now()
		select {
		case <-lease.Lost():
			// Last success sent at TTL/2; the lease runs out at 3 TTL/2.
			if waited := time.Since(stopped); waited != ttl*3/4 {
				t.Errorf("Lost closed %v after the server stopped; want %v, a TTL after the last refresh", waited, ttl*3/4)
			}
		case <-time.After(3 * ttl):
			t.Fatal("Lost still open three TTLs after the server stopped")
		}
		if isClosed(kept.Lost()) {
			t.Error("Lost closed on the lease whose server is up")
		}
		kept.Unlock(ctx)
		// go-redis keeps redialling the gone server in the background for a
		// while; the bubble's clock only runs while its main goroutine
		// does, so give those retries (virtual) time to end.
		time.Sleep(bound)
	})
}
