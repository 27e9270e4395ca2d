// Package mutants holds a correct in-memory lease lock and copies of it with
// one deliberate bug each. The harness runs the mutants to prove that its
// checkers catch real bugs, and the correct one ("lease") as the control
// that shows the catch is not a false alarm.
//
// # lease, the control
//
// A shared [Store] keeps, per key, the token of the current holder and when
// its lease expires, judged on the store's clock (the clock given to
// [NewStore]; the harness gives it a real one, unskewed). Lock takes a key
// that is free or whose lease has expired, in one atomic check-and-set,
// retrying every PollInterval on the client's clock until the context ends
// or AcquireTimeout passes. Each acquisition gets the next value of a
// per-key counter: that is the lease's fencing token and its owner identity.
//
// The holder's refresher extends the lease to TTL from now every TTL/3 on
// the client's clock. Lost is closed when a refresh fails, or when the
// refresher wakes (late: a paused client, a clock that jumped) to find on
// the client's clock that its last successful refresh started at least
// 2/3·TTL ago, TTL/3 before the lease can expire on the store: the safety
// margin. The margin holds as long as the client's clock neither runs
// slower than the store's nor jumps back; a pause longer than it still
// breaks mutual exclusion, and that is for the harness to show. Unlock stops
// the refresher, waits for it to exit, and frees the key only if this lease
// still holds it; otherwise it returns an error wrapping
// [lockers.ErrNoEffect]. A lease that is never unlocked keeps its refresher
// until a refresh fails or the lease is lost; a client whose clock never
// fires again (killed by the harness) leaves it parked for good, as a
// killed process leaves its memory: the contract gives a locker no signal
// that its client is gone.
//
// An in-memory refresh never fails on its own, so the store rejects a
// refresh with probability [StoreOptions.RefreshFailRate] (2% by default):
// the holder then raises Lost at once, while its lease still has at least
// 2/3·TTL to live on the store, and unlocks when its work is done. A holder
// whose work outlasts that remainder unlocks a lease it no longer holds,
// after someone else may have taken the key: harmless here, the path on
// which mutant-unlock-any does its damage.
//
// # The mutants
//
//   - mutant-double-grant: each Lock call, with probability
//     DoubleGrantRate (5% by default, drawn from env.Seed), takes the key
//     without checking that it is free, as a client that lost its
//     create-if-absent precondition would. Triggered whenever such a call
//     finds the key held, which under contention is most of the time: the
//     caller and the holder then both hold it, and the old holder learns it
//     only at its next refresh (and its Unlock is refused). The chance is
//     drawn once per call, not per attempt, so that how many draws a client
//     makes depends on its calls and not on timing.
//   - mutant-unlock-any: Unlock frees the key whoever holds it. Triggered
//     when a holder whose refresh failed (RefreshFailRate) keeps working
//     past the end of its lease: by then another client may hold the key,
//     and the late unlock frees that client's lock for a third one. Its
//     default TTL is 30 ms, not 200: the harness's default holds last up to
//     50 ms, and a lease that outlives every hold by 2/3·TTL after a failed
//     refresh would never be unlocked late.
//   - mutant-silent-expiry: no refresher; Lost is never closed. The lease
//     expires on the store TTL (30 ms by default) after it was taken while
//     the holder still works, and the next client takes the key. Triggered
//     by every hold longer than the TTL.
//
// Every locker here uses only env.Clock for time and env.Seed for chance.
package mutants

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/lockcheck/lockcheck/lockers"
)

// Names of the lockers, for the harness's list.
const (
	Lease        = "lease"
	DoubleGrant  = "mutant-double-grant"
	UnlockAny    = "mutant-unlock-any"
	SilentExpiry = "mutant-silent-expiry"
)

// Defaults.
const (
	DefaultTTL             = 200 * time.Millisecond
	DefaultUnlockAnyTTL    = 30 * time.Millisecond
	DefaultSilentExpiryTTL = 30 * time.Millisecond
	DefaultPollInterval    = 5 * time.Millisecond
	DefaultAcquireTimeout  = 30 * time.Second
	DefaultDoubleGrantRate = 0.05
	DefaultRefreshFailRate = 0.02
)

var (
	// ErrNotHeld: the lease is not (or no longer) the key's holder.
	ErrNotHeld = errors.New("lease not held")
	// ErrRefreshRejected is the store's simulated refresh failure.
	ErrRefreshRejected = errors.New("store rejected the refresh")
	// ErrAcquireTimeout: Lock gave up after AcquireTimeout.
	ErrAcquireTimeout = errors.New("acquire timeout")
)

// StoreOptions configures a Store.
type StoreOptions struct {
	// RefreshFailRate is the probability that the store rejects a
	// refresh. Zero means DefaultRefreshFailRate (2%); negative means
	// never. The chance is drawn from the refreshing client's env.Seed,
	// because a run's backend gets no seed of its own.
	RefreshFailRate float64

	_ struct{}
}

// Store is the backend shared by one run's clients: per key, the current
// holder and its expiry on the store's clock.
type Store struct {
	clock    lockers.Clock
	failRate float64

	mu   sync.Mutex
	keys map[string]*record
}

type record struct {
	// last is the last token granted; it outlives releases, so tokens
	// keep increasing.
	last    uint64
	holder  uint64 // token of the holder; 0 when free
	expires time.Time
}

// NewStore returns an empty store whose leases expire on clock.
func NewStore(clock lockers.Clock, opts StoreOptions) *Store {
	rate := opts.RefreshFailRate
	switch {
	case rate == 0:
		rate = DefaultRefreshFailRate
	case rate < 0:
		rate = 0
	}
	return &Store{clock: clock, failRate: rate, keys: map[string]*record{}}
}

func (s *Store) record(key string) *record {
	r, ok := s.keys[key]
	if !ok {
		r = &record{}
		s.keys[key] = r
	}
	return r
}

func (r *record) heldAt(now time.Time) bool {
	return r.holder != 0 && now.Before(r.expires)
}

// acquire grants key for ttl if it is free or expired, or regardless with
// careless, and returns the new token.
func (s *Store) acquire(key string, ttl time.Duration, careless bool) (uint64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock.Now()
	r := s.record(key)
	if r.heldAt(now) && !careless {
		return 0, false
	}
	r.last++
	r.holder, r.expires = r.last, now.Add(ttl)
	return r.last, true
}

// refresh extends token's lease on key to ttl from now. draw, uniform in
// [0, 1), decides a simulated failure.
func (s *Store) refresh(key string, token uint64, ttl time.Duration, draw float64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if draw < s.failRate {
		return ErrRefreshRejected
	}
	now := s.clock.Now()
	r := s.record(key)
	if r.holder != token || !r.heldAt(now) {
		return ErrNotHeld
	}
	r.expires = now.Add(ttl)
	return nil
}

// release frees key if token holds it, or, without checkOwner, if anyone
// does.
func (s *Store) release(key string, token uint64, checkOwner bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.record(key)
	if !r.heldAt(s.clock.Now()) || (checkOwner && r.holder != token) {
		return ErrNotHeld
	}
	r.holder = 0
	return nil
}

// Options configures a Locker. Zero fields take the defaults of the
// locker's kind.
type Options struct {
	// TTL is the lease lifetime on the store: DefaultTTL (200 ms) for
	// lease and mutant-double-grant, DefaultUnlockAnyTTL (30 ms) and
	// DefaultSilentExpiryTTL (30 ms) for those mutants.
	TTL time.Duration
	// PollInterval is the wait between attempts on a held key;
	// DefaultPollInterval (5 ms).
	PollInterval time.Duration
	// AcquireTimeout bounds a Lock call on the client's clock;
	// DefaultAcquireTimeout (30 s).
	AcquireTimeout time.Duration
	// DoubleGrantRate is mutant-double-grant's chance per Lock call of
	// ignoring the holder; DefaultDoubleGrantRate (5%). Ignored by the
	// others.
	DoubleGrantRate float64

	_ struct{}
}

// kind is what sets the lockers of this package apart.
type kind struct {
	name        string
	ttl         time.Duration
	refresher   bool // refresh the lease and raise Lost
	checkOwner  bool // Unlock frees only the caller's own lease
	doubleGrant bool
}

var (
	leaseKind        = kind{name: Lease, ttl: DefaultTTL, refresher: true, checkOwner: true}
	doubleGrantKind  = kind{name: DoubleGrant, ttl: DefaultTTL, refresher: true, checkOwner: true, doubleGrant: true}
	unlockAnyKind    = kind{name: UnlockAny, ttl: DefaultUnlockAnyTTL, refresher: true}
	silentExpiryKind = kind{name: SilentExpiry, ttl: DefaultSilentExpiryTTL, checkOwner: true}
)

// Locker is one client's lease locker on a Store.
type Locker struct {
	store *Store
	env   lockers.Env
	opts  Options
	kind  kind

	mu  sync.Mutex // guards rng: Lock and refreshers draw from it
	rng *rand.Rand
}

var _ lockers.Locker = (*Locker)(nil)

// NewLease returns the correct lease lock, the control.
func NewLease(store *Store, env lockers.Env, opts Options) *Locker {
	return newLocker(store, env, opts, leaseKind)
}

// NewDoubleGrant returns mutant-double-grant: some Lock calls take a held
// key.
func NewDoubleGrant(store *Store, env lockers.Env, opts Options) *Locker {
	return newLocker(store, env, opts, doubleGrantKind)
}

// NewUnlockAny returns mutant-unlock-any: Unlock frees whoever holds the
// key.
func NewUnlockAny(store *Store, env lockers.Env, opts Options) *Locker {
	return newLocker(store, env, opts, unlockAnyKind)
}

// NewSilentExpiry returns mutant-silent-expiry: leases are never refreshed
// and expire unnoticed.
func NewSilentExpiry(store *Store, env lockers.Env, opts Options) *Locker {
	return newLocker(store, env, opts, silentExpiryKind)
}

func newLocker(store *Store, env lockers.Env, opts Options, k kind) *Locker {
	if opts.TTL <= 0 {
		opts.TTL = k.ttl
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = DefaultPollInterval
	}
	if opts.AcquireTimeout <= 0 {
		opts.AcquireTimeout = DefaultAcquireTimeout
	}
	if opts.DoubleGrantRate <= 0 {
		opts.DoubleGrantRate = DefaultDoubleGrantRate
	}
	return &Locker{
		store: store, env: env, opts: opts, kind: k,
		rng: rand.New(rand.NewPCG(env.Seed, 0x6d7574616e7473)),
	}
}

func (l *Locker) draw() float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.rng.Float64()
}

// Lock takes key, retrying while it is held. It makes its first attempt
// whatever the context, and checks the context between attempts, as the
// memory port does: a caller with an ended context learns whether the key
// was free.
func (l *Locker) Lock(ctx context.Context, key string) (lockers.Lease, error) {
	timeout := l.env.Clock.After(l.opts.AcquireTimeout)
	careless := l.kind.doubleGrant && l.draw() < l.opts.DoubleGrantRate
	for {
		l.env.MarkAttempt()
		// Read before the request: the lease cannot have started on the
		// store earlier than this, so an expiry counted from here is
		// never later than the store's.
		start := l.env.Clock.Now()
		if token, ok := l.store.acquire(key, l.opts.TTL, careless); ok {
			return l.newLease(key, token, start), nil
		}
		select {
		case <-l.env.Clock.After(l.opts.PollInterval):
		case <-timeout:
			return nil, l.timedOut(key)
		case <-ctx.Done():
			return nil, l.cancelled(ctx, key)
		}
		// Checked apart from the wait so that a poll ready at the same
		// moment never buys one more attempt.
		select {
		case <-timeout:
			return nil, l.timedOut(key)
		case <-ctx.Done():
			return nil, l.cancelled(ctx, key)
		default:
		}
	}
}

func (l *Locker) timedOut(key string) error {
	return fmt.Errorf("%s: lock %q: %w after %v: %w", l.kind.name, key, ErrAcquireTimeout, l.opts.AcquireTimeout, lockers.ErrNoEffect)
}

func (l *Locker) cancelled(ctx context.Context, key string) error {
	return fmt.Errorf("%s: lock %q: %w: %w", l.kind.name, key, ctx.Err(), lockers.ErrNoEffect)
}

// lease is one acquisition.
type lease struct {
	locker *Locker
	key    string
	token  uint64

	lost     chan struct{}
	loseOnce sync.Once
	stop     chan struct{} // closed by Unlock
	stopOnce sync.Once
	done     chan struct{} // closed when the refresher has exited

	// refreshed is when the last successful refresh (or the acquisition)
	// started, on the client's clock. Only the refresher touches it.
	refreshed time.Time
}

var _ lockers.Lease = (*lease)(nil)

func (l *Locker) newLease(key string, token uint64, start time.Time) *lease {
	le := &lease{
		locker: l, key: key, token: token,
		lost: make(chan struct{}), stop: make(chan struct{}), done: make(chan struct{}),
		refreshed: start,
	}
	if !l.kind.refresher {
		// lost stays open: this holder cannot tell. It is the lease's
		// own channel, not a shared one, so that it belongs to the
		// synctest bubble the lease was made in, if any: a select on a
		// channel from outside a bubble keeps the bubble's time still.
		close(le.done)
		return le
	}
	go le.refresh()
	return le
}

func (le *lease) Token() uint64         { return le.token }
func (le *lease) Lost() <-chan struct{} { return le.lost }

func (le *lease) lose(why error) {
	le.loseOnce.Do(func() {
		le.locker.env.Logf("%s: lease on %q (token %d) lost: %v", le.locker.kind.name, le.key, le.token, why)
		close(le.lost)
	})
}

// refresh keeps the lease alive until Unlock, or until it cannot.
func (le *lease) refresh() {
	defer close(le.done)
	l := le.locker
	ttl := l.opts.TTL
	for {
		// Lost must be raised while the lease still lives on the store:
		// by refreshed+ttl at the latest, with ttl/3 to spare.
		deadline := le.refreshed.Add(ttl - ttl/3)
		wait := min(ttl/3, deadline.Sub(l.env.Clock.Now()))
		select {
		case <-le.stop:
			return
		case <-l.env.Clock.After(wait):
		}
		select {
		case <-le.stop:
			return
		default:
		}
		now := l.env.Clock.Now()
		if !now.Before(deadline) {
			le.lose(fmt.Errorf("no successful refresh since %v ago", now.Sub(le.refreshed)))
			return
		}
		if err := l.store.refresh(le.key, le.token, ttl, l.draw()); err != nil {
			le.lose(fmt.Errorf("refresh: %w", err))
			return
		}
		le.refreshed = now
	}
}

// Unlock stops the refresher, then frees the key if the lease holds it
// (mutant-unlock-any: if anyone does).
func (le *lease) Unlock(ctx context.Context) error {
	l := le.locker
	le.stopOnce.Do(func() { close(le.stop) })
	// A refresh racing the release could outlive it and find the key gone
	// or someone else's; wait the refresher out first.
	select {
	case <-le.done:
	case <-ctx.Done():
		return fmt.Errorf("%s: unlock %q: %w: %w", l.kind.name, le.key, ctx.Err(), lockers.ErrNoEffect)
	}
	if err := l.store.release(le.key, le.token, l.kind.checkOwner); err != nil {
		return fmt.Errorf("%s: unlock %q (token %d): %w: %w", l.kind.name, le.key, le.token, err, lockers.ErrNoEffect)
	}
	return nil
}
