package redsync

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	rsredis "github.com/go-redsync/redsync/v4/redis"

	"github.com/lockcheck/lockcheck/lockers"
)

// watcher sees, through the pools redsync is given, every command of one
// LockContext. redsync's attempt is a round: SET NX on every node at once,
// then, if it failed, a compare-and-delete on every node. The watcher
// reports the start of each round to Env.MarkAttempt while every earlier
// round definitely took no lock, and remembers whether any may have.
//
// A round may have taken the lock only if at least a quorum of its SET NX
// succeeded or got no answer; keys it set on fewer nodes cannot add up
// with a later round's, since every round sets the same value and SET NX
// refuses a key that exists. A failed compare-and-delete leaves a key
// behind, so it too makes the outcome uncertain.
type watcher struct {
	env    lockers.Env
	clock  lockers.Clock
	quorum int

	// watching is true while LockContext runs.
	watching  atomic.Bool
	uncertain atomic.Bool

	mu      sync.Mutex
	open    bool      // a round's SET NX are under way
	started time.Time // when the latest round started, on Env.Clock
	maybe   int       // SET NX of the open round that succeeded or failed
}

// setNX runs one node's SET NX of a round.
func (w *watcher) setNX(run func() (bool, error)) (bool, error) {
	w.mu.Lock()
	if !w.open {
		w.open, w.maybe, w.started = true, 0, w.clock.Now()
		if !w.uncertain.Load() {
			// Under the lock: no node's SET NX of this round is sent
			// before the report.
			w.env.MarkAttempt()
		}
	}
	w.mu.Unlock()
	ok, err := run()
	if ok || err != nil {
		w.mu.Lock()
		w.maybe++
		w.mu.Unlock()
	}
	return ok, err
}

// eval runs one node's compare-and-delete after a failed round; redsync
// starts those only once every SET NX of the round has answered.
func (w *watcher) eval(run func() (any, error)) (any, error) {
	w.mu.Lock()
	if w.open {
		w.open = false
		if w.maybe >= w.quorum {
			w.uncertain.Store(true)
		}
	}
	w.mu.Unlock()
	v, err := run()
	if err != nil {
		w.uncertain.Store(true)
	}
	return v, err
}

func (w *watcher) roundStart() time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.started
}

// watchedPool hands redsync connections that pass through w while it
// watches.
type watchedPool struct {
	rsredis.Pool
	w *watcher
}

func (p *watchedPool) Get(ctx context.Context) (rsredis.Conn, error) {
	c, err := p.Pool.Get(ctx)
	if err != nil {
		return nil, err
	}
	return &watchedConn{Conn: c, w: p.w}, nil
}

type watchedConn struct {
	rsredis.Conn
	w *watcher
}

func (c *watchedConn) SetNX(name, value string, expiry time.Duration) (bool, error) {
	if !c.w.watching.Load() {
		return c.Conn.SetNX(name, value, expiry)
	}
	return c.w.setNX(func() (bool, error) { return c.Conn.SetNX(name, value, expiry) })
}

func (c *watchedConn) Eval(script *rsredis.Script, keysAndArgs ...any) (any, error) {
	if !c.w.watching.Load() {
		return c.Conn.Eval(script, keysAndArgs...)
	}
	return c.w.eval(func() (any, error) { return c.Conn.Eval(script, keysAndArgs...) })
}
