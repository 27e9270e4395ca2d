package lockertest

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"net/http"
	"reflect"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lockcheck/lockcheck/lockers"
)

// Bounds on how long a broken locker can stall the suite. They are wide on
// purpose: they decide when to give up, never whether a property holds,
// except for promptly, which is what "returns promptly" means here and is
// far below the 30 s acquire timeouts a Lock that ignored its context would
// fall back on.
const (
	// bound is how long one step (a Lock on a free key, an Unlock) may take.
	bound = 30 * time.Second
	// promptly is how long a Lock may take to return once cancelled.
	promptly = 5 * time.Second
	// settle is how long goroutines may take to exit after the last call.
	settle = 5 * time.Second
	// probeFallback is how long a probe waits for a locker that never
	// reports attempts before it assumes the probe has looked.
	probeFallback = 100 * time.Millisecond
	// holdCap is the longest a critical section waits for competitors.
	holdCap = 5 * time.Millisecond
)

// rig is one property's world: a fresh backend and its clients.
type rig struct {
	t         tb
	s         Suite
	prop      Property
	newLocker func(lockers.Env) lockers.Locker
	log       *cutoffLog
	// reports is set once any client reported an attempt.
	reports atomic.Bool

	mu     sync.Mutex
	leases map[lockers.Lease]*client // acquired and not unlocked yet
}

func newRig(t tb, setup testing.TB, s Suite, prop Property) *rig {
	t.Helper()
	r := &rig{t: t, s: s, prop: prop, log: &cutoffLog{t: t}, leases: map[lockers.Lease]*client{}}
	t.Cleanup(r.log.cut)
	r.newLocker = s.New(setup)
	if r.newLocker == nil {
		t.Fatalf("Suite.New returned no constructor")
	}
	// Registered after New's own cleanups so that it runs before them:
	// leases left behind by a failed check are unlocked while the backend
	// is still there, and no refresher outlives the property.
	t.Cleanup(r.unlockLeftovers)
	return r
}

// cutoffLog forwards a locker's log to the test until the property ends;
// testing panics on a log from a goroutine that outlives its test.
type cutoffLog struct {
	mu  sync.Mutex
	t   tb
	off bool
}

func (l *cutoffLog) Logf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.off {
		l.t.Logf(format, args...)
	}
}

func (l *cutoffLog) cut() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.off = true
}

func (r *rig) unlockLeftovers() {
	r.mu.Lock()
	left := r.leases
	r.leases = map[lockers.Lease]*client{}
	r.mu.Unlock()
	for lease := range left {
		ctx, cancel := context.WithTimeout(context.Background(), bound)
		_ = lease.Unlock(ctx)
		cancel()
	}
}

// client is one simulated client: its own locker and Env, and a record of
// the attempts its locker reports.
type client struct {
	r      *rig
	id     int
	locker lockers.Locker
	// attempts counts every attempt the locker reported.
	attempts beacon

	mu     sync.Mutex
	key    string // key of the Lock call in progress
	inCall int    // attempts reported in the Lock call in progress
	// onAttempt, set by a property before the client's first call, hears
	// of each attempt; again is true when an earlier attempt of the same
	// call thereby ended without the lock.
	onAttempt func(key string, again bool)
}

func (r *rig) client(id int) *client {
	c := &client{r: r, id: id}
	var dialer net.Dialer
	env := lockers.Env{
		Clock:          lockers.SystemClock{},
		HTTP:           &http.Client{},
		Dial:           dialer.DialContext,
		Identity:       fmt.Sprintf("%s-%d", r.prop, id),
		Seed:           r.seed(id),
		Log:            r.log,
		AttemptStarted: c.attemptStarted,
	}
	c.locker = r.newLocker(env)
	if c.locker == nil {
		r.t.Fatalf("the constructor from Suite.New returned a nil locker")
	}
	return c
}

// seed gives each client of each property its own stable seed.
func (r *rig) seed(id int) uint64 {
	base := r.s.Seed
	if base == 0 {
		base = 1
	}
	h := fnv.New64a()
	fmt.Fprintf(h, "%d/%s/%d", base, r.prop, id)
	return h.Sum64()
}

func (c *client) String() string { return fmt.Sprintf("client %d", c.id) }

func (c *client) attemptStarted() {
	c.mu.Lock()
	key, again, hook := c.key, c.inCall > 0, c.onAttempt
	c.inCall++
	c.mu.Unlock()
	c.r.reports.Store(true)
	c.attempts.signal()
	if hook != nil {
		hook(key, again)
	}
}

// callAttempts is how many attempts the latest Lock call reported.
func (c *client) callAttempts() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.inCall
}

func (c *client) lock(ctx context.Context, key string) (lockers.Lease, error) {
	c.mu.Lock()
	c.key, c.inCall = key, 0
	c.mu.Unlock()
	lease, err := c.locker.Lock(ctx, key)
	if err == nil && lease == nil {
		c.r.t.Errorf("%v: Lock(%q) returned neither a lease nor an error", c, key)
		return nil, errors.New("lockertest: nil lease")
	}
	// A lease of a type that cannot be a map key is not tracked; leases
	// are pointers in practice.
	if err == nil && reflect.TypeOf(lease).Comparable() {
		c.r.mu.Lock()
		c.r.leases[lease] = c
		c.r.mu.Unlock()
	}
	return lease, err
}

func (c *client) unlock(ctx context.Context, lease lockers.Lease) error {
	if reflect.TypeOf(lease).Comparable() {
		c.r.mu.Lock()
		delete(c.r.leases, lease)
		c.r.mu.Unlock()
	}
	return lease.Unlock(ctx)
}

// mustLock takes key, which the caller knows is free. Test goroutine only.
func (r *rig) mustLock(c *client, key string) lockers.Lease {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	lease, err := c.lock(ctx, key)
	if err != nil {
		r.t.Fatalf("%v: Lock(%q) on a free key: %v", c, key, err)
	}
	return lease
}

// mustUnlock releases a lease the caller knows it holds. Test goroutine only.
func (r *rig) mustUnlock(c *client, lease lockers.Lease, key string) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	if err := c.unlock(ctx, lease); err != nil {
		r.t.Fatalf("%v: Unlock of its lease on %q: %v", c, key, err)
	}
}

type lockResult struct {
	lease lockers.Lease
	err   error
}

// lockAsync starts c.lock on its own goroutine.
func (c *client) lockAsync(ctx context.Context, key string) <-chan lockResult {
	res := make(chan lockResult, 1)
	go func() {
		lease, err := c.lock(ctx, key)
		res <- lockResult{lease, err}
	}()
	return res
}

// waitAttempts waits until c has reported n attempts more than from, or
// res delivers (then it returns true). A locker that has never reported an
// attempt in this property gets probeFallback instead, after which it is
// assumed to have had its look. Test goroutine only.
func (r *rig) waitAttempts(c *client, from, n uint64, res <-chan lockResult) (lockResult, bool) {
	r.t.Helper()
	var fallback <-chan time.Time
	if !r.reports.Load() {
		fallback = time.After(probeFallback)
	}
	stuck := time.NewTimer(bound)
	defer stuck.Stop()
	for {
		seen, more := c.attempts.state()
		if seen >= from+n {
			return lockResult{}, false
		}
		select {
		case got := <-res:
			return got, true
		case <-more:
		case <-fallback:
			if !r.reports.Load() {
				return lockResult{}, false
			}
			fallback = nil
		case <-stuck.C:
			r.t.Fatalf("%v: %d attempts in %v, waiting for %d", c, seen-from, bound, n)
		}
	}
}

// probe reports whether c can take key now: it lets c's Lock make one full
// attempt and start a second, then cancels it. A lease it got is returned
// (and must be unlocked); nil means c was kept out. Test goroutine only.
func (r *rig) probe(c *client, key string) lockers.Lease {
	r.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	from, _ := c.attempts.state()
	res := c.lockAsync(ctx, key)
	got, done := r.waitAttempts(c, from, 2, res)
	if !done {
		cancel()
		select {
		case got = <-res:
		case <-time.After(promptly):
			r.t.Fatalf("%v: Lock(%q) still running %v after its context was cancelled", c, key, promptly)
		}
	}
	if got.err != nil {
		return nil
	}
	return got.lease
}

// settleGoroutines waits, by bounded polling, for the goroutine count to
// come back to base. Polling is the only way: the runtime offers no event
// for "a goroutine exited", and the goroutines in question are the
// locker's, which the suite cannot join.
func (r *rig) settleGoroutines(base int) {
	r.t.Helper()
	deadline := time.NewTimer(settle)
	defer deadline.Stop()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		n := runtime.NumGoroutine()
		if n <= base {
			return
		}
		select {
		case <-tick.C:
		case <-deadline.C:
			buf := make([]byte, 64<<10)
			buf = buf[:runtime.Stack(buf, true)]
			r.t.Errorf("%d goroutines %v after the last call, %d before the first: leaked?\n%s", n, settle, base, buf)
			return
		}
	}
}

// beacon counts events and lets a goroutine wait for the next one without
// polling.
type beacon struct {
	mu sync.Mutex
	n  uint64
	ch chan struct{} // closed at the next signal; made on demand
}

func (b *beacon) signal() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.n++
	if b.ch != nil {
		close(b.ch)
		b.ch = nil
	}
}

// state is the count so far and a channel closed at the next signal.
func (b *beacon) state() (uint64, <-chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ch == nil {
		b.ch = make(chan struct{})
	}
	return b.n, b.ch
}

func keyName(i int) string { return fmt.Sprintf("k%d", i) }

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
