package redsync_test

import (
	"context"
	"errors"
	"fmt"
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
	"github.com/lockcheck/lockcheck/lockers/redsync"
)

// bound limits how long a test waits for something that should happen at
// once; it never decides what a test checks.
const bound = 10 * time.Second

// suiteTTL is long against a scheduling hiccup under -race; in the bubble
// it costs no wall time.
const suiteTTL = 2 * time.Second

// realTTL is the real-server suites' lock TTL.
const realTTL = 10 * time.Second

// suiteScale shortens the retry delays, which dominate how long 32
// contending clients take; the suite checks exclusion, not timing.
const suiteScale = 0.2

var lacks = map[lockertest.Property]string{
	lockertest.Fencing:        "redsync's value is random, not a fencing token; Token is 0",
	lockertest.ReleaseRequest: "redsync has no way to ask a holder to let go",
}

// inBubbles runs every property of an embedded suite but cancel (which
// runs on real servers, see cancelOnReal) in virtual time: 32 clients
// contending for one key through Redlock's random retries then cannot miss
// the suite's 30 s bound because the machine is busy.
func inBubbles(s lockertest.Suite) lockertest.Suite {
	s.Bubble, s.RealTime = true, []lockertest.Property{lockertest.Cancel}
	return s
}

// cancelOnReal gives the cancel property real servers, in the embedded
// suites too. It counts every goroutine of the process, and in-process
// miniredis serves each pooled connection with two goroutines, which come
// and go with go-redis's pool and with the previous property's servers:
// on miniredis the count says nothing certain about the locker, either
// way. Without redis-server the property is skipped.
func cancelOnReal(start func(testing.TB, int) *cluster) func(testing.TB, int) *cluster {
	return func(t testing.TB, n int) *cluster {
		if strings.HasSuffix(t.Name(), "/"+string(lockertest.Cancel)) {
			return startReal(t, n)
		}
		return start(t, n)
	}
}

// cluster is n servers and the Dial that reaches them. In-memory servers
// all answer to one placeholder address, so they get names of their own.
type cluster struct {
	addrs   []string
	servers map[string]*redisserver.Server

	// Closing an in-memory miniredis is not enough to make it gone: its
	// Dial still serves. cut does, for the cluster's clients.
	mu    sync.Mutex
	cut   map[string]bool
	conns map[string][]net.Conn
}

func (c *cluster) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	s, ok := c.servers[addr]
	if !ok {
		return nil, fmt.Errorf("no server at %s", addr)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cut[addr] {
		return nil, fmt.Errorf("%s is gone", addr)
	}
	conn, err := s.Dial(ctx, network, addr)
	if err == nil {
		if c.conns == nil {
			c.conns = map[string][]net.Conn{}
		}
		c.conns[addr] = append(c.conns[addr], conn)
	}
	return conn, err
}

// stop makes the server at addr gone: its connections close, new ones
// are refused.
func (c *cluster) stop(addr string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cut == nil {
		c.cut = map[string]bool{}
	}
	c.cut[addr] = true
	for _, conn := range c.conns[addr] {
		conn.Close()
	}
}

func inMemory(t testing.TB, n int) *cluster {
	c := &cluster{servers: map[string]*redisserver.Server{}}
	for i := range n {
		s := redisserver.NewInMemory()
		t.Cleanup(func() { s.Close() })
		// IP literals: go-redis resolves a host name in some paths, which a
		// synctest bubble forbids. Only c.dial ever sees these.
		addr := fmt.Sprintf("127.0.0.%d:1", i+1)
		c.addrs = append(c.addrs, addr)
		c.servers[addr] = s
	}
	return c
}

func startReal(t testing.TB, n int) *cluster {
	t.Helper()
	c := &cluster{servers: map[string]*redisserver.Server{}}
	for range n {
		s, err := redisserver.StartReal(context.Background(), redisserver.Options{})
		if errors.Is(err, redisserver.ErrNoRedisServer) {
			t.Skipf("no real Redis (`make redis-server` installs it): %v", err)
		}
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		c.addrs = append(c.addrs, s.Addr())
		c.servers[s.Addr()] = s
	}
	return c
}

func startEmbedded(t testing.TB, n int) *cluster {
	t.Helper()
	c := &cluster{servers: map[string]*redisserver.Server{}}
	for range n {
		s, err := redisserver.StartEmbedded()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		c.addrs = append(c.addrs, s.Addr())
		c.servers[s.Addr()] = s
	}
	return c
}

func newLocker(t testing.TB, c *cluster, env lockers.Env, opts redsync.Options) *redsync.Locker {
	t.Helper()
	env.Dial = c.dial
	l, err := redsync.New(redsync.Config{Addrs: c.addrs}, env, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func suite(start func(testing.TB, int) *cluster, n int, lockTTL, ttl time.Duration, lacks map[lockertest.Property]string) lockertest.Suite {
	return lockertest.Suite{
		New: func(t testing.TB) func(lockers.Env) lockers.Locker {
			c := start(t, n)
			return func(env lockers.Env) lockers.Locker {
				return newLocker(t, c, env, redsync.Options{TTL: lockTTL, TimeScale: suiteScale})
			}
		},
		OwnerCheck: true,
		TTL:        ttl,
		Lacks:      lacks,
	}
}

// The embedded suites run on miniredis through net.Pipe, which also works
// in LeaseKept's synctest bubble, where the refresher, redsync's own timing
// and the keys' expiry all run on the bubble's clock; cancel excepted (see
// cancelOnReal).
func TestConformanceEmbedded(t *testing.T) {
	lockertest.Run(t, inBubbles(suite(cancelOnReal(inMemory), 1, suiteTTL, suiteTTL, lacks)))
}

func TestConformanceEmbeddedRedlock(t *testing.T) {
	lockertest.Run(t, inBubbles(suite(cancelOnReal(inMemory), 3, suiteTTL, suiteTTL, lacks)))
}

// The real suites run on redis-server over TCP. LeaseKept runs in a
// synctest bubble, which cannot hold a real socket, so it is not claimed
// there; TestRefreshKeepsLeaseReal checks it on real time instead. Their
// locks live realTTL: on real time, a machine whose cores other work keeps
// busy once starved a holder's refresher past a 2 s TTL, and its Unlock
// found the lease expired (mutex-8keys on three servers).
func TestConformanceReal(t *testing.T) {
	startReal(t, 1) // skip early, before the subtests
	lockertest.Run(t, suite(startReal, 1, realTTL, 0, lacks))
}

func TestConformanceRealRedlock(t *testing.T) {
	startReal(t, 1)
	lockertest.Run(t, suite(startReal, 3, realTTL, 0, lacks))
}

func systemEnv(id string) lockers.Env {
	return lockers.Env{Clock: lockers.SystemClock{}, Identity: id, Seed: 1}
}

// TestRefreshKeepsLeaseReal: on three real servers, with a 2 s TTL, a
// Redlock holder keeps its lock for 2.5 TTLs of real time while a
// competitor tries all along; the same competitor takes a lock left by a
// holder that does not refresh within the same window, so the first result
// is not for want of expiry.
func TestRefreshKeepsLeaseReal(t *testing.T) {
	c := startReal(t, 3)
	const ttl = 2 * time.Second
	opts := redsync.Options{TTL: ttl}
	holder := newLocker(t, c, systemEnv("holder"), opts)
	rival := newLocker(t, c, systemEnv("rival"), opts)

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
		// The rival's deadline fell while a SET was under way: that SET
		// may still have taken effect, so the locker rightly cannot say
		// it had none (one clean-clone run did so). The holder still
		// holds, which the Unlock below shows.
		t.Logf("rival's Lock ended by its deadline mid-request: %v", err)
	case !errors.Is(err, lockers.ErrNoEffect):
		t.Errorf("rival's refused Lock: %v; want ErrNoEffect", err)
	}
	if isClosed(lease.Lost()) {
		t.Logf("Lost closed though no one took the lock: a refresh was late (slow machine)")
	}
	if err := lease.Unlock(ctx); err != nil && !isClosed(lease.Lost()) {
		t.Fatalf("Unlock: %v", err)
	}

	// A crashed holder's keys, on every server, unrefreshed.
	for _, addr := range c.addrs {
		raw := redis.NewClient(&redis.Options{Addr: addr, MaintNotificationsConfig: noMaint()})
		err := raw.SetNX(ctx, "unkept", "crashed", ttl).Err()
		raw.Close()
		if err != nil {
			t.Fatal(err)
		}
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

// TestQuorum: Redlock over three loopback servers locks, and keeps its
// lease, with one server down, and cannot lock with two down.
func TestQuorum(t *testing.T) {
	c := startEmbedded(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	var d net.Dialer
	env := systemEnv("q")
	l, err := redsync.New(redsync.Config{Addrs: c.addrs}, lockers.Env{Clock: env.Clock, Dial: d.DialContext, Identity: "q", Seed: 1}, redsync.Options{TTL: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()

	c.servers[c.addrs[0]].Close()
	lease, err := l.Lock(ctx, "one-down")
	if err != nil {
		t.Fatalf("Lock with 1 of 3 servers down: %v", err)
	}
	if err := lease.Unlock(ctx); err != nil {
		t.Errorf("Unlock with 1 of 3 servers down: %v", err)
	}

	c.servers[c.addrs[1]].Close()
	tryCtx, tryCancel := context.WithTimeout(ctx, time.Second)
	defer tryCancel()
	if lease, err := l.Lock(tryCtx, "two-down"); err == nil {
		lease.Unlock(ctx)
		t.Fatal("Lock with 2 of 3 servers down succeeded")
	} else if errors.Is(err, lockers.ErrNoEffect) {
		// A refused connection looks like any other missing answer.
		t.Errorf("Lock with 2 of 3 servers down: %v; want an indeterminate error", err)
	}
}

// stoppedClock never fires: a client frozen before its first refresh.
type stoppedClock struct{ lockers.Clock }

func (stoppedClock) After(time.Duration) <-chan time.Time { return nil }

// TestReleaseExpired: a lease whose keys expired unrefreshed cannot be
// released, and Unlock says so definitely; a live lease's Unlock succeeds,
// and a second Unlock of it is refused the same way.
func TestReleaseExpired(t *testing.T) {
	for _, n := range []int{1, 3} {
		t.Run(fmt.Sprintf("%d-servers", n), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				c := inMemory(t, n)
				env := systemEnv("frozen")
				env.Clock = stoppedClock{lockers.SystemClock{}}
				l := newLocker(t, c, env, redsync.Options{TTL: time.Second})
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
				time.Sleep(2 * time.Second) // virtual: the keys' TTL runs out
				if err := lease.Unlock(ctx); !errors.Is(err, lockers.ErrNoEffect) {
					t.Errorf("Unlock after expiry: %v; want ErrNoEffect", err)
				}
			})
		})
	}
}

// TestTakeoverLost: Redlock over three; another client's value on two
// servers makes the next extension fail and closes Lost at the first
// refresh; on one server only, the holder keeps its quorum and its lease.
// Unlock of the lost lease leaves the other's keys alone.
func TestTakeoverLost(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := inMemory(t, 3)
		const ttl = 2 * time.Second
		l := newLocker(t, c, systemEnv("holder"), redsync.Options{TTL: ttl})
		ctx := context.Background()
		raw := make([]*redis.Client, 3)
		for i, addr := range c.addrs {
			raw[i] = redis.NewClient(&redis.Options{Addr: addr, Dialer: c.dial, MaintNotificationsConfig: noMaint()})
			defer raw[i].Close()
		}

		kept, err := l.Lock(ctx, "kept")
		if err != nil {
			t.Fatal(err)
		}
		taken, err := l.Lock(ctx, "taken")
		if err != nil {
			t.Fatal(err)
		}
		if err := raw[0].Set(ctx, "kept", "intruder", time.Minute).Err(); err != nil {
			t.Fatal(err)
		}
		for _, r := range raw[1:] {
			if err := r.Set(ctx, "taken", "intruder", time.Minute).Err(); err != nil {
				t.Fatal(err)
			}
		}
		start := time.Now()
		select {
		case <-taken.Lost():
			if waited := time.Since(start); waited > ttl/2 {
				t.Errorf("Lost closed after %v; want at the first refresh, %v", waited, ttl/2)
			}
		case <-time.After(3 * ttl):
			t.Fatal("Lost still open three TTLs after a majority was taken")
		}
		time.Sleep(2 * ttl)
		select {
		case <-kept.Lost():
			t.Error("Lost closed on a lease that still holds 2 of 3 servers")
		default:
		}
		if err := taken.Unlock(ctx); !errors.Is(err, lockers.ErrNoEffect) {
			t.Errorf("Unlock of a taken lease: %v; want ErrNoEffect", err)
		}
		for _, r := range raw[1:] {
			if v, err := r.Get(ctx, "taken").Result(); err != nil || v != "intruder" {
				t.Errorf("after Unlock the key holds %q (%v); want the intruder's", v, err)
			}
		}
		if err := kept.Unlock(ctx); err != nil {
			t.Errorf("Unlock of the lease with 2 of 3: %v", err)
		}
	})
}

// TestLockRefused: a Lock refused until its context ends reports each
// round and is definite, on one server and on three.
func TestLockRefused(t *testing.T) {
	for _, n := range []int{1, 3} {
		t.Run(fmt.Sprintf("%d-servers", n), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				c := inMemory(t, n)
				attempts := 0
				env := systemEnv("waiter")
				env.AttemptStarted = func() { attempts++ }
				l := newLocker(t, c, env, redsync.Options{TTL: time.Minute})
				for _, addr := range c.addrs {
					raw := redis.NewClient(&redis.Options{Addr: addr, Dialer: c.dial, MaintNotificationsConfig: noMaint()})
					err := raw.Set(context.Background(), "held", "other", time.Hour).Err()
					raw.Close()
					if err != nil {
						t.Fatal(err)
					}
				}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				_, err := l.Lock(ctx, "held")
				if !errors.Is(err, lockers.ErrNoEffect) {
					t.Errorf("Lock refused until its deadline: %v; want ErrNoEffect", err)
				}
				if attempts < 2 {
					t.Errorf("%d attempts reported in 10 s of refusals; want several", attempts)
				}
			})
		})
	}
}

func TestOptions(t *testing.T) {
	cfg := redsync.Config{Addrs: []string{"127.0.0.1:1"}}
	env := systemEnv("o")
	env.Dial = (&net.Dialer{}).DialContext
	for _, tc := range []struct {
		opts redsync.Options
		ttl  time.Duration
	}{
		{redsync.Options{}, 8 * time.Second},
		{redsync.Options{TimeScale: 0.1}, 800 * time.Millisecond},
		{redsync.Options{TimeScale: 0.1, TTL: time.Minute}, time.Minute},
	} {
		l, err := redsync.New(cfg, env, tc.opts)
		if err != nil {
			t.Fatalf("%+v: %v", tc.opts, err)
		}
		if got := l.TTL(); got != tc.ttl {
			t.Errorf("%+v: TTL %v; want %v", tc.opts, got, tc.ttl)
		}
		l.Close()
	}
	for _, bad := range []redsync.Options{{TimeScale: -1}, {TimeScale: 1e-12}} {
		if _, err := redsync.New(cfg, env, bad); !errors.Is(err, redsync.ErrBadOptions) {
			t.Errorf("%+v: %v; want ErrBadOptions", bad, err)
		}
	}
	if _, err := redsync.New(redsync.Config{}, env, redsync.Options{}); !errors.Is(err, redsync.ErrBadOptions) {
		t.Errorf("no Addrs: %v; want ErrBadOptions", err)
	}
}

// TestServersGoneLost: Redlock over three keeps its lease, refreshing it,
// with one server stopped; once a second one stops, Lost closes within a
// TTL.
func TestServersGoneLost(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const ttl = 2 * time.Second
		c := inMemory(t, 3)
		ctx := context.Background()
		lease, err := newLocker(t, c, systemEnv("a"), redsync.Options{TTL: ttl}).Lock(ctx, "k")
		if err != nil {
			t.Fatal(err)
		}
		c.stop(c.addrs[0])
		time.Sleep(3 * ttl) // virtual: six refreshes on two of three
		if isClosed(lease.Lost()) {
			t.Fatal("Lost closed with two of three servers up")
		}
		c.stop(c.addrs[1])
		stopped := time.Now()
		select {
		case <-lease.Lost():
			if waited := time.Since(stopped); waited > ttl {
				t.Errorf("Lost closed %v after the second server stopped; want within the TTL, %v", waited, ttl)
			}
		case <-time.After(3 * ttl):
			t.Fatal("Lost still open three TTLs after two of three servers stopped")
		}
		// go-redis keeps redialling the gone server in the background for a
		// while; the bubble's clock only runs while its main goroutine
		// does, so give those retries (virtual) time to end.
		time.Sleep(bound)
	})
}
