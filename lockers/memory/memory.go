// Package memory is a port of tus-node-server's MemoryLocker, the reference
// locker of tus servers: one process, one map from upload id to the holder's
// release callback.
//
// Source: github.com/tus/tus-node-server,
// packages/server/src/lockers/MemoryLocker.ts at commit
// 06954ac586616ac2dc3d03b82a450f0ce5e2bd94 (#718, Feb 2025; unchanged at
// fdd8cc78946e4378624394d96d134d5ce631fb68). tusd's
// pkg/memorylocker/memorylocker.go (github.com/tus/tusd, commit
// ad7fb31344e0629cb8a5af67bb1e630f90507890) gave the Go shape of the store
// only: its algorithm differs (it waits on a channel closed by the holder's
// unlock, has no timeout, and panics when unlocking an unlocked id), and
// the TypeScript is what this package reproduces.
//
// The algorithm. Lock checks the map: free, it stores the caller's release
// callback and returns; held, it calls the holder's callback, asking it to
// let go, and checks again on the next turn of the event loop
// (setImmediate), calling the callback again each time, until it gets the
// lock or acquireLockTimeout (30 s) passes or the caller's signal aborts;
// both of the latter fail with ERR_LOCK_TIMEOUT. Unlock deletes the id from
// the map whoever holds it, and throws "Releasing an unlocked lock!" if the
// id is absent. [New] is that algorithm; [NewOwner] ("memory-owner") is the
// same with an owner check on unlock, which the source does not have: the
// pair shows what the check buys.
//
// Where Go forced a difference:
//
//   - The source's MemoryLocker holds the map and hands out a MemoryLock
//     per id. Here the map is a [Store], shared by the clients of one run,
//     and each client has its own [Locker]; Lock(ctx, key) is
//     newLock(key).lock(signal, requestRelease), and the returned lease is
//     that MemoryLock, which unlock deletes by key exactly as the source
//     deletes by id.
//   - The requestRelease callback is the lease's ReleaseRequested channel
//     ([lockers.ReleaseRequester]), closed at the first request. The
//     source calls (and awaits) the callback on every poll; closing a
//     channel again is not possible and a second close would tell the
//     holder nothing new, so later requests are no-ops.
//   - setImmediate, one turn of the event loop between polls, is one trip
//     through the client's clock, env.Clock.After(PollInterval) with a
//     default of zero, so that a client paused through its clock stops
//     polling, followed by runtime.Gosched, so that, as on the event loop,
//     everything else ready to run goes first: the real clock's After(0)
//     is ready at once and would leave the poll a busy loop that starves
//     the holder it is waiting for. [lockers.Sleep] is not used: it
//     returns at once for zero without touching the clock. In a
//     simulation the harness's client clock makes that timer wait a
//     floor of virtual time (harness.SimMinWait), as a turn of an event
//     loop takes time, so that the poll lets virtual time advance.
//   - The timeout is a timer on the client's clock started with the call,
//     as the source's setTimeout is on the process's clock.
//   - The AbortSignal is the context. The source adds its abort listener
//     when lock is called, and an AbortSignal that is already aborted then
//     never fires it, so with an already-aborted signal the source polls a
//     held id until the timeout. A context that ended before the call
//     cannot be told apart that way; Lock notices it after its first
//     attempt, as it does a context that ends during the wait. In both the
//     source and the port that first check-and-set happens regardless, so
//     a free id is taken even with an aborted signal.
//   - ERR_LOCK_TIMEOUT, raised for both the timeout and the abort, is
//     [ErrLockTimeout]; the error also wraps [lockers.ErrNoEffect], since
//     every check-and-set is atomic and a Lock that returns an error has
//     taken nothing, and the context's error when the context ended.
//   - The thrown "Releasing an unlocked lock!" is [ErrNotLocked], wrapping
//     [lockers.ErrNoEffect].
//   - The source relies on JavaScript's single thread for an atomic
//     check-and-set; the Store has a mutex.
//   - The source's acquireLock returns "lock present" when called after
//     the abort (`if (signal.aborted) return typeof lock !== 'undefined'`);
//     its result is then ignored, as the race has already settled, so the
//     port simply stops.
//   - Lock calls env.MarkAttempt before each check-and-set; the source has
//     no such report. There is no fencing token (Token is 0) and no way to
//     learn the lock is gone (Lost is never closed).
package memory

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"

	"github.com/lockcheck/lockcheck/lockers"
)

// Names of the two lockers, for the harness's list.
const (
	Name      = "memory"
	OwnerName = "memory-owner"
)

// DefaultAcquireLockTimeout is the source's acquireLockTimeout default.
const DefaultAcquireLockTimeout = 30 * time.Second

var (
	// ErrLockTimeout is the source's ERR_LOCK_TIMEOUT ("failed to acquire
	// lock before timeout"), for a timeout and a cancellation alike.
	ErrLockTimeout = errors.New("failed to acquire lock before timeout")
	// ErrNotLocked is the source's "Releasing an unlocked lock!".
	ErrNotLocked = errors.New("releasing an unlocked lock")
	// ErrNotOwner is memory-owner's refusal to free another lease's lock.
	ErrNotOwner = errors.New("the lock is held by another lease")
)

// Store is the map of one run, shared by all its clients' lockers, as one
// MemoryLocker is shared by a tus server's requests.
type Store struct {
	mu    sync.Mutex
	locks map[string]*lease
}

// NewStore returns an empty store.
func NewStore() *Store {
	return &Store{locks: map[string]*lease{}}
}

// take stores l as the holder of key if key is free, and returns nil; if
// key is held it returns the holder and stores nothing.
func (s *Store) take(key string, l *lease) *lease {
	s.mu.Lock()
	defer s.mu.Unlock()
	if holder, held := s.locks[key]; held {
		return holder
	}
	s.locks[key] = l
	return nil
}

// release deletes key; with checkOwner only if l holds it.
func (s *Store) release(key string, l *lease, checkOwner bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	holder, held := s.locks[key]
	if !held {
		return ErrNotLocked
	}
	if checkOwner && holder != l {
		return ErrNotOwner
	}
	delete(s.locks, key)
	return nil
}

// Options configures a Locker. The zero value is the source's defaults.
type Options struct {
	// AcquireLockTimeout bounds a Lock call on the client's clock; zero
	// means DefaultAcquireLockTimeout (30 s).
	AcquireLockTimeout time.Duration
	// PollInterval is the wait between checks of a held lock; zero (the
	// default) is the source's setImmediate: no delay, but one trip
	// through the client's clock and a yield of the processor.
	PollInterval time.Duration

	_ struct{}
}

func (o Options) withDefaults() Options {
	if o.AcquireLockTimeout <= 0 {
		o.AcquireLockTimeout = DefaultAcquireLockTimeout
	}
	o.PollInterval = max(o.PollInterval, 0)
	return o
}

// Locker is one client's view of a Store.
type Locker struct {
	store      *Store
	env        lockers.Env
	opts       Options
	name       string
	checkOwner bool
}

var _ lockers.Locker = (*Locker)(nil)

// New returns the faithful port ("memory"): Unlock frees the key whoever
// holds it.
func New(store *Store, env lockers.Env, opts Options) *Locker {
	return &Locker{store: store, env: env, opts: opts.withDefaults(), name: Name}
}

// NewOwner returns "memory-owner": the port with an owner check on Unlock.
func NewOwner(store *Store, env lockers.Env, opts Options) *Locker {
	return &Locker{store: store, env: env, opts: opts.withDefaults(), name: OwnerName, checkOwner: true}
}

// Lock takes key, asking its holder to let go while it waits.
func (l *Locker) Lock(ctx context.Context, key string) (lockers.Lease, error) {
	timeout := l.env.Clock.After(l.opts.AcquireLockTimeout)
	mine := &lease{locker: l, key: key, asked: make(chan struct{}), lost: make(chan struct{})}
	for {
		l.env.MarkAttempt()
		holder := l.store.take(key, mine)
		if holder == nil {
			return mine, nil
		}
		holder.requestRelease()
		select {
		case <-l.env.Clock.After(l.opts.PollInterval):
		case <-timeout:
			return nil, l.failed(key, nil)
		case <-ctx.Done():
			return nil, l.failed(key, ctx.Err())
		}
		if l.opts.PollInterval == 0 {
			// setImmediate lets every other pending task run first
			// (the source's comment: responsiveness and fairness). A
			// clock whose After(0) is ready at once, as the real one
			// is, does not give up the processor; this does.
			runtime.Gosched()
		}
		// When the poll and the timeout (or the context) are ready at
		// once, select picks either; the source never polls after its
		// timeout has fired, so neither does this.
		select {
		case <-timeout:
			return nil, l.failed(key, nil)
		case <-ctx.Done():
			return nil, l.failed(key, ctx.Err())
		default:
		}
	}
}

func (l *Locker) failed(key string, cause error) error {
	if cause != nil {
		return fmt.Errorf("%s: lock %q: %w (%w): %w", l.name, key, ErrLockTimeout, cause, lockers.ErrNoEffect)
	}
	return fmt.Errorf("%s: lock %q: %w after %v: %w", l.name, key, ErrLockTimeout, l.opts.AcquireLockTimeout, lockers.ErrNoEffect)
}

// lease is one acquisition; it is also the map's entry, so the holder's
// release callback and its identity (for memory-owner) are the lease.
type lease struct {
	locker *Locker
	key    string
	ask    sync.Once
	asked  chan struct{}
	// lost is never closed: the source has no way to learn that a lock
	// is gone. It is the lease's own channel, not a shared one, so that
	// it belongs to the synctest bubble the lease was made in, if any: a
	// select on a channel from outside a bubble keeps the bubble's time
	// still.
	lost chan struct{}
}

var (
	_ lockers.Lease            = (*lease)(nil)
	_ lockers.ReleaseRequester = (*lease)(nil)
)

func (l *lease) Token() uint64                     { return 0 }
func (l *lease) Lost() <-chan struct{}             { return l.lost }
func (l *lease) ReleaseRequested() <-chan struct{} { return l.asked }

func (l *lease) requestRelease() {
	l.ask.Do(func() { close(l.asked) })
}

// Unlock deletes the key from the store; memory frees it whoever holds it,
// memory-owner only if this lease does.
func (l *lease) Unlock(ctx context.Context) error {
	if err := l.locker.store.release(l.key, l, l.locker.checkOwner); err != nil {
		return fmt.Errorf("%s: unlock %q: %w: %w", l.locker.name, l.key, err, lockers.ErrNoEffect)
	}
	return nil
}
