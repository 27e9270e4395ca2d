package redis_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/lockcheck/lockcheck/backends/redisserver"
	"github.com/lockcheck/lockcheck/lockers"
	"github.com/lockcheck/lockcheck/lockers/lockertest"
	"github.com/lockcheck/lockcheck/lockers/redis"
)

// bound limits how long a test waits for something that should happen at
// once; it never decides what a test checks.
const bound = 10 * time.Second

// backend is a server and a raw client to look at it and tamper with it.
type backend struct {
	srv *redisserver.Server
	raw *goredis.Client
}

func embedded(t *testing.T) backend {
	t.Helper()
	srv, err := redisserver.StartEmbedded()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return newBackend(t, srv)
}

func newBackend(t *testing.T, srv *redisserver.Server) backend {
	raw := goredis.NewClient(&goredis.Options{Addr: srv.Addr(), Dialer: srv.Dial})
	t.Cleanup(func() { raw.Close() })
	return backend{srv: srv, raw: raw}
}

// client is one locker and the attempts it reported.
type client struct {
	*redis.Locker
	attempts atomic.Int64
}

func (b backend) client(t *testing.T, clock lockers.Clock, seed uint64, opts redis.Options) *client {
	t.Helper()
	c := &client{}
	var d net.Dialer
	env := lockers.Env{
		Clock:          clock,
		Dial:           d.DialContext,
		Seed:           seed,
		Log:            t,
		AttemptStarted: func() { c.attempts.Add(1) },
	}
	l, err := redis.New(redis.Config{Addr: b.srv.Addr()}, env, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	c.Locker = l
	return c
}

func mustLock(t *testing.T, c *client, id string) lockers.Lease {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	ls, err := c.Lock(ctx, id)
	if err != nil {
		t.Fatalf("Lock(%q): %v", id, err)
	}
	return ls
}

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func waitClosed(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(bound):
		t.Fatalf("%s not closed within %v", what, bound)
	}
}

func (b backend) get(t *testing.T, key string) string {
	t.Helper()
	v, err := b.raw.Get(context.Background(), key).Result()
	if err != nil && !errors.Is(err, goredis.Nil) {
		t.Fatal(err)
	}
	return v
}

// TestReleaseRequestReachesHolder: a holder is subscribed to its own
// channel by the time Lock returns, a message there asks it to let go, a
// message on another id's channel does not, and Unlock unsubscribes.
func TestReleaseRequestReachesHolder(t *testing.T) {
	b := embedded(t)
	ctx := context.Background()
	a := b.client(t, lockers.SystemClock{}, 1, redis.Options{})
	held := mustLock(t, a, "k").(lockers.ReleaseRequester)

	if n, err := b.raw.Publish(ctx, "lock:release:other", "x").Result(); err != nil || n != 0 {
		t.Fatalf("publish on another id's channel reached %d subscribers (%v); want 0", n, err)
	}
	if closed(held.ReleaseRequested()) {
		t.Fatal("release requested before anyone asked")
	}
	if n, err := b.raw.Publish(ctx, "lock:release:k", "please").Result(); err != nil || n != 1 {
		t.Fatalf("publish on the holder's channel reached %d subscribers (%v); want 1, the holder", n, err)
	}
	waitClosed(t, held.ReleaseRequested(), "ReleaseRequested")
	if closed(held.(lockers.Lease).Lost()) {
		t.Error("a release request closed Lost: the lease is not lost")
	}
	if err := held.(lockers.Lease).Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if n, err := b.raw.Publish(ctx, "lock:release:k", "please").Result(); err != nil || n != 0 {
		t.Errorf("after Unlock a publish still reached %d subscribers (%v)", n, err)
	}
}

// TestWaiterAsksHolderThenTimesOut: a waiter publishes a release request,
// reports every SET as an attempt, and gives up after acquireLockTimeout
// with ERR_LOCK_TIMEOUT, which is definite: all its SETs answered nil.
func TestWaiterAsksHolderThenTimesOut(t *testing.T) {
	b := embedded(t)
	a := b.client(t, lockers.SystemClock{}, 1, redis.Options{})
	w := b.client(t, lockers.SystemClock{}, 2, redis.Options{AcquireLockTimeout: 300 * time.Millisecond, AcquireLockRetry: 20 * time.Millisecond})
	held := mustLock(t, a, "k")
	start := time.Now()
	_, err := w.Lock(context.Background(), "k")
	took := time.Since(start)
	if !errors.Is(err, redis.ErrLockTimeout) || !errors.Is(err, lockers.ErrNoEffect) {
		t.Fatalf("Lock on a held key: %v; want ErrLockTimeout and ErrNoEffect", err)
	}
	if took < 300*time.Millisecond {
		t.Errorf("gave up after %v, before its 300 ms timeout", took)
	}
	if n := w.attempts.Load(); n < 2 {
		t.Errorf("%d attempts reported in %v at a 20 ms retry interval", n, took)
	}
	waitClosed(t, held.(lockers.ReleaseRequester).ReleaseRequested(), "holder's ReleaseRequested")
	if err := held.Unlock(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Lock(context.Background(), "k"); err != nil {
		t.Fatalf("Lock on the freed key: %v", err)
	}
}

// TestWatchdog drives the watchdog on a fake clock: a tick extends a key
// that is still ours, and closes Lost and ReleaseRequested when the key has
// become someone else's.
func TestWatchdog(t *testing.T) {
	b := embedded(t)
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	clock := lockertest.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	const ttl = time.Minute
	a := b.client(t, clock, 1, redis.Options{RedisLockTimeout: ttl})
	held := mustLock(t, a, "k")
	lost, asked := held.Lost(), held.(lockers.ReleaseRequester).ReleaseRequested()

	// Ours: the tick resets a TTL we lengthened by hand to the lock's TTL.
	if err := b.raw.PExpire(ctx, "lock:k", time.Hour).Err(); err != nil {
		t.Fatal(err)
	}
	if err := clock.WaitForTimers(ctx, 1); err != nil {
		t.Fatal(err)
	}
	clock.Advance(ttl / 2)
	for tries := 0; ; tries++ {
		pttl, err := b.raw.PTTL(ctx, "lock:k").Result()
		if err != nil {
			t.Fatal(err)
		}
		if pttl > 0 && pttl <= ttl {
			break
		}
		if tries > 1000 || ctx.Err() != nil {
			t.Fatalf("no extend within %v of the tick: PTTL %v", bound, pttl)
		}
		time.Sleep(5 * time.Millisecond) // polling a condition, bounded above
	}
	if closed(lost) || closed(asked) {
		t.Fatal("a successful extend closed Lost or ReleaseRequested")
	}

	// Not ours: another client's token in the key, as after expiry and a
	// takeover.
	if err := b.raw.Set(ctx, "lock:k", "someone-else", ttl).Err(); err != nil {
		t.Fatal(err)
	}
	clock.Advance(ttl / 2)
	waitClosed(t, lost, "Lost")
	waitClosed(t, asked, "ReleaseRequested")
	if got := b.get(t, "lock:k"); got != "someone-else" {
		t.Errorf("the failed extend changed the key to %q", got)
	}
	if pttl := b.raw.PTTL(ctx, "lock:k").Val(); pttl <= 0 || pttl > ttl {
		t.Errorf("the new owner's key has PTTL %v", pttl)
	}
}

// TestUnlockOfKeyNoLongerOurs: compare-and-delete leaves another client's
// key alone and reports that it freed nothing; an Unlock of our own key
// frees it; a second Unlock is refused without touching Redis.
func TestUnlockOfKeyNoLongerOurs(t *testing.T) {
	b := embedded(t)
	ctx := context.Background()
	a := b.client(t, lockers.SystemClock{}, 1, redis.Options{})

	stale := mustLock(t, a, "k")
	if err := b.raw.Set(ctx, "lock:k", "someone-else", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	err := stale.Unlock(ctx)
	if !errors.Is(err, redis.ErrNotOwner) || !errors.Is(err, lockers.ErrNoEffect) {
		t.Errorf("Unlock of a key now someone else's: %v; want ErrNotOwner and ErrNoEffect", err)
	}
	if got := b.get(t, "lock:k"); got != "someone-else" {
		t.Errorf("Unlock of a key not ours changed it to %q", got)
	}
	b.raw.Del(ctx, "lock:k")

	mine := mustLock(t, a, "k")
	if err := mine.Unlock(ctx); err != nil {
		t.Errorf("Unlock of our own key: %v", err)
	}
	if n := b.raw.Exists(ctx, "lock:k").Val(); n != 0 {
		t.Error("Unlock of our own key left it in place")
	}
	err = mine.Unlock(ctx)
	if !errors.Is(err, redis.ErrNotLocked) || !errors.Is(err, lockers.ErrNoEffect) {
		t.Errorf("second Unlock: %v; want ErrNotLocked and ErrNoEffect", err)
	}
}

var uuidV4 = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

// TestTokens: every acquisition stores a fresh version 4 UUID; clients
// with different seeds draw different tokens, a client with the same seed
// the same ones (a run replays).
func TestTokens(t *testing.T) {
	b := embedded(t)
	ctx := context.Background()
	draw := func(seed uint64, n int) []string {
		c := b.client(t, lockers.SystemClock{}, seed, redis.Options{})
		var tokens []string
		for range n {
			ls := mustLock(t, c, "k")
			tokens = append(tokens, b.get(t, "lock:k"))
			if err := ls.Unlock(ctx); err != nil {
				t.Fatal(err)
			}
		}
		return tokens
	}
	one := draw(1, 20)
	seen := map[string]bool{}
	for i, tok := range one {
		if !uuidV4.MatchString(tok) {
			t.Errorf("acquisition %d stored %q, not a version 4 UUID", i, tok)
		}
		if seen[tok] {
			t.Errorf("acquisition %d reused token %q", i, tok)
		}
		seen[tok] = true
	}
	for _, tok := range draw(2, 20) {
		if seen[tok] {
			t.Errorf("seeds 1 and 2 both drew %q", tok)
		}
	}
	if again := draw(1, 3); again[0] != one[0] || again[2] != one[2] {
		t.Errorf("seed 1 drew %v, then %v: not replayable", one[:3], again)
	}
}

// TestWatchdogKeepsLease runs in real time, on the embedded server and on a
// real one: the suite's lease-kept runs in a synctest bubble, which a real
// server cannot enter. The waits are bounded waits for a condition. A
// holder keeps a 2 s lease while a waiter tries for three TTLs and fails;
// a holder whose watchdog is stopped (its locker closed, the key left
// behind) loses the key to a waiter within the waiter's timeout. The
// watchdog extends every half lease, so it must miss a whole second to
// lose the key: a 400 ms lease left it 200 ms, which two busy cores under
// -race can take from a goroutine.
func TestWatchdogKeepsLease(t *testing.T) {
	servers := map[string]func(t *testing.T) backend{
		"embedded": embedded,
		"real": func(t *testing.T) backend {
			srv, err := redisserver.StartReal(context.Background(), redisserver.Options{})
			if errors.Is(err, redisserver.ErrNoRedisServer) {
				t.Skipf("no real Redis (`make redis-server` installs it): %v", err)
			}
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { srv.Close() })
			return newBackend(t, srv)
		},
	}
	const ttl = 2 * time.Second
	opts := redis.Options{RedisLockTimeout: ttl, AcquireLockTimeout: 3 * ttl, AcquireLockRetry: 20 * time.Millisecond}
	for name, start := range servers {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b := start(t)
			ctx := context.Background()

			holder := b.client(t, lockers.SystemClock{}, 1, opts)
			waiter := b.client(t, lockers.SystemClock{}, 2, opts)
			held := mustLock(t, holder, "kept")
			token := b.get(t, "lock:kept")
			if _, err := waiter.Lock(ctx, "kept"); !errors.Is(err, redis.ErrLockTimeout) {
				t.Fatalf("waiter on a watched key for %v (TTL %v): %v; want ErrLockTimeout", 3*ttl, ttl, err)
			}
			if closed(held.Lost()) {
				t.Error("the holder was told its lease was lost")
			}
			if got := b.get(t, "lock:kept"); got != token {
				t.Errorf("after 3 TTLs the key holds %q, not the holder's %q", got, token)
			}
			if err := held.Unlock(ctx); err != nil {
				t.Errorf("holder's Unlock after 3 TTLs: %v", err)
			}

			dead := b.client(t, lockers.SystemClock{}, 3, opts)
			mustLock(t, dead, "dropped")
			dead.Close()
			taken, err := waiter.Lock(ctx, "dropped")
			if err != nil {
				t.Fatalf("waiter on an unwatched key with TTL %v, for %v: %v", ttl, 3*ttl, err)
			}
			if err := taken.Unlock(ctx); err != nil {
				t.Error(err)
			}
		})
	}
}

// faultyNet dials through a real dialer and can break the connections it
// made: refuse fails every write and dial (nothing reaches the server);
// loseReplyTo, when set, loses the reply to a write that contains it (the
// write reaches the server, the connection breaks before the answer).
type faultyNet struct {
	refuse      atomic.Bool
	loseReplyTo atomic.Pointer[string]

	mu      sync.Mutex
	written bytes.Buffer // every byte written, for tests of the wire form
}

var errInjected = errors.New("injected network fault")

func (f *faultyNet) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	if f.refuse.Load() {
		return nil, errInjected
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return &faultyConn{Conn: c, f: f}, nil
}

type faultyConn struct {
	net.Conn
	f        *faultyNet
	poisoned atomic.Bool
}

func (c *faultyConn) Write(p []byte) (int, error) {
	if c.f.refuse.Load() {
		c.Conn.Close()
		return 0, errInjected
	}
	if lose := c.f.loseReplyTo.Load(); lose != nil && bytes.Contains(p, []byte(*lose)) {
		c.poisoned.Store(true)
	}
	c.f.mu.Lock()
	c.f.written.Write(p)
	c.f.mu.Unlock()
	return c.Conn.Write(p)
}

func (c *faultyConn) Read(p []byte) (int, error) {
	if c.poisoned.Load() {
		// The reply is read and thrown away, not merely cut off: its
		// arrival proves the server carried the command out, as a
		// lost reply means, instead of leaving it unread in a socket
		// the server may close first.
		c.Conn.Read(make([]byte, 512))
		c.Conn.Close()
		return 0, errInjected
	}
	return c.Conn.Read(p)
}

// signalLog hands each log line to a channel.
type signalLog struct{ lines chan string }

func (l signalLog) Logf(format string, args ...any) {
	select {
	case l.lines <- fmt.Sprintf(format, args...):
	default:
	}
}

func (b backend) faultyClient(t *testing.T, clock lockers.Clock, f *faultyNet, log lockers.Logger, opts redis.Options) *redis.Locker {
	t.Helper()
	env := lockers.Env{Clock: clock, Dial: f.dial, Seed: 7, Log: log}
	l, err := redis.New(redis.Config{Addr: b.srv.Addr()}, env, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// TestLostSetReplyIsIndeterminate: a SET whose reply is lost ends Lock with
// an error that does not claim "no effect", and indeed the key was taken:
// a lock nobody holds until its TTL, as in the source.
func TestLostSetReplyIsIndeterminate(t *testing.T) {
	b := embedded(t)
	f := &faultyNet{}
	l := b.faultyClient(t, lockers.SystemClock{}, f, t, redis.Options{})
	set := "\r\nset\r\n"
	f.loseReplyTo.Store(&set)
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	ls, err := l.Lock(ctx, "k")
	if err == nil {
		ls.Unlock(ctx)
		t.Fatal("Lock succeeded with every reply lost")
	}
	if errors.Is(err, lockers.ErrNoEffect) {
		t.Errorf("Lock with its SET reply lost claims no effect: %v", err)
	}
	if got := b.get(t, "lock:k"); !uuidV4.MatchString(got) {
		t.Fatalf("the SET whose reply was lost left %q; want the client's token", got)
	}
	if pttl := b.raw.PTTL(ctx, "lock:k").Val(); pttl <= 0 || pttl > redis.DefaultRedisLockTimeout {
		t.Errorf("the orphaned key has PTTL %v; want at most the 30 s TTL", pttl)
	}
}

// TestFailedExtendIsIgnored: an extend that cannot reach the server tells
// the holder nothing (the source waits for the next tick); once the
// network heals, the next tick extends again.
func TestFailedExtendIsIgnored(t *testing.T) {
	b := embedded(t)
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	clock := lockertest.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	const ttl = time.Minute
	f := &faultyNet{}
	log := signalLog{lines: make(chan string, 100)}
	l := b.faultyClient(t, clock, f, log, redis.Options{RedisLockTimeout: ttl})
	held, err := l.Lock(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	if err := clock.WaitForTimers(ctx, 1); err != nil {
		t.Fatal(err)
	}
	f.refuse.Store(true)
	clock.Advance(ttl / 2)
	select {
	case line := <-log.lines:
		if !strings.Contains(line, "extend failed") {
			t.Fatalf("logged %q; want the failed extend", line)
		}
	case <-ctx.Done():
		t.Fatal("no failed extend logged")
	}
	if closed(held.Lost()) || closed(held.(lockers.ReleaseRequester).ReleaseRequested()) {
		t.Fatal("a failed extend closed Lost or ReleaseRequested; the source ignores it")
	}

	f.refuse.Store(false)
	if err := b.raw.PExpire(ctx, "lock:k", time.Hour).Err(); err != nil {
		t.Fatal(err)
	}
	clock.Advance(ttl / 2)
	for tries := 0; ; tries++ {
		if pttl := b.raw.PTTL(ctx, "lock:k").Val(); pttl > 0 && pttl <= ttl {
			break
		}
		if tries > 1000 || ctx.Err() != nil {
			t.Fatal("no extend after the network healed")
		}
		time.Sleep(5 * time.Millisecond) // polling a condition, bounded above
	}
	if err := held.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestWireCommands: the acquisition is the source's SET key token PX ttl NX,
// TTL in milliseconds, and the release request its PUBLISH.
func TestWireCommands(t *testing.T) {
	b := embedded(t)
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	f := &faultyNet{}
	other := b.client(t, lockers.SystemClock{}, 1, redis.Options{})
	held := mustLock(t, other, "k")
	l := b.faultyClient(t, lockers.SystemClock{}, f, t, redis.Options{AcquireLockTimeout: 50 * time.Millisecond})
	if _, err := l.Lock(ctx, "k"); !errors.Is(err, redis.ErrLockTimeout) {
		t.Fatalf("Lock on a held key: %v", err)
	}
	held.Unlock(ctx)
	f.mu.Lock()
	wire := f.written.String()
	f.mu.Unlock()
	set := regexp.MustCompile(`\*6\r\n\$3\r\nset\r\n\$6\r\nlock:k\r\n\$36\r\n[0-9a-f-]{36}\r\n\$2\r\nPX\r\n\$5\r\n30000\r\n\$2\r\nNX\r\n`)
	if !set.MatchString(wire) {
		t.Errorf("no SET lock:k <token> PX 30000 NX on the wire:\n%q", wire)
	}
	publish := "*3\r\n$7\r\npublish\r\n$14\r\nlock:release:k\r\n$42\r\nif you aint gonna play pass the controller\r\n"
	if !strings.Contains(wire, publish) {
		t.Errorf("no release request on lock:release:k on the wire:\n%q", wire)
	}
}
