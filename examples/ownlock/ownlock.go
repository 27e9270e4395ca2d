// Package ownlock is a lock written by a lockcheck user, tested with
// lockcheck's Go API from this module's own tests (ownlock_test.go),
// without a fork of lockcheck.
//
// It is a lease lock in one process: a holder owns a key for TTL and a
// refresher extends the lease while it holds it; a lease that could not
// be extended in time is reported lost. Everything that touches time goes
// through the lockers.Env it is given, so lockcheck can pause, crash and
// skew its clients.
package ownlock

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/lockcheck/lockcheck/lockers"
)

// Store is where the leases live: one per process, shared by every client.
type Store struct {
	mu     sync.Mutex
	leases map[string]lease
	clock  lockers.Clock
	next   uint64
}

type lease struct {
	owner   uint64
	expires time.Time
}

// NewStore judges expiry on clock: the store's own, not a client's.
func NewStore(clock lockers.Clock) *Store {
	return &Store{leases: map[string]lease{}, clock: clock}
}

// Options tune a Locker.
type Options struct {
	// TTL is how long a lease lasts without a refresh.
	TTL time.Duration
	// SkipRefresh is the planted bug: the refresher never runs, so a
	// holder that works longer than TTL loses its lease without knowing.
	SkipRefresh bool
}

// Locker is one client's lock.
type Locker struct {
	store *Store
	env   lockers.Env
	opts  Options
}

var _ lockers.Locker = (*Locker)(nil)

// New is one client's locker on store.
func New(store *Store, env lockers.Env, opts Options) *Locker {
	return &Locker{store: store, env: env, opts: opts}
}

// Lock polls until key is free or expired, then takes it.
func (l *Locker) Lock(ctx context.Context, key string) (lockers.Lease, error) {
	for {
		l.env.MarkAttempt()
		// The lease is counted from before the take, on the holder's
		// clock, so the holder never believes in it longer than the
		// store does.
		start := l.env.Clock.Now()
		if h, ok := l.store.take(key, l.opts.TTL); ok {
			h.env, h.ttl, h.validUntil = l.env, l.opts.TTL, start.Add(l.opts.TTL)
			h.lost, h.stop = make(chan struct{}), make(chan struct{})
			if !l.opts.SkipRefresh {
				go h.refresh()
			}
			return h, nil
		}
		if err := lockers.Sleep(ctx, l.env.Clock, time.Millisecond); err != nil {
			return nil, fmt.Errorf("ownlock: %s: %w: %w", key, err, lockers.ErrNoEffect)
		}
	}
}

func (s *Store) take(key string, ttl time.Duration) (*held, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock.Now()
	if cur, ok := s.leases[key]; ok && now.Before(cur.expires) {
		return nil, false
	}
	s.next++
	s.leases[key] = lease{owner: s.next, expires: now.Add(ttl)}
	return &held{store: s, key: key, owner: s.next}, true
}

// extend pushes the lease's expiry out, if the owner still holds it.
func (s *Store) extend(key string, owner uint64, ttl time.Duration) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, ok := s.leases[key]
	now := s.clock.Now()
	if !ok || cur.owner != owner || !now.Before(cur.expires) {
		return false
	}
	s.leases[key] = lease{owner: owner, expires: now.Add(ttl)}
	return true
}

func (s *Store) release(key string, owner uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, ok := s.leases[key]
	if !ok || cur.owner != owner || !s.clock.Now().Before(cur.expires) {
		return false
	}
	delete(s.leases, key)
	return true
}

type held struct {
	store *Store
	key   string
	owner uint64
	env   lockers.Env
	ttl   time.Duration
	// validUntil is when the lease may expire in the store, by the
	// holder's clock; only the refresher moves it.
	validUntil time.Time

	lost     chan struct{}
	stop     chan struct{}
	stopOnce sync.Once
}

func (h *held) Token() uint64         { return h.owner }
func (h *held) Lost() <-chan struct{} { return h.lost }

// refresh extends the lease every third of its TTL. It tells the holder
// the lease is lost when an extension fails, or before the lease could
// expire unextended (a refresher that ran late): a holder must stop
// working before anyone else can take the key.
func (h *held) refresh() {
	margin := h.ttl / 5
	for {
		wait := min(h.ttl/3, h.validUntil.Add(-margin).Sub(h.env.Clock.Now()))
		select {
		case <-h.stop:
			return
		case <-h.env.Clock.After(wait):
		}
		start := h.env.Clock.Now()
		if !start.Before(h.validUntil.Add(-margin)) || !h.store.extend(h.key, h.owner, h.ttl) {
			close(h.lost)
			return
		}
		h.validUntil = start.Add(h.ttl)
	}
}

func (h *held) Unlock(context.Context) error {
	h.stopOnce.Do(func() { close(h.stop) })
	if !h.store.release(h.key, h.owner) {
		return fmt.Errorf("ownlock: %s: lease no longer held: %w", h.key, lockers.ErrNoEffect)
	}
	return nil
}
