package mutants_test

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/lockcheck/lockcheck/lockers"
	"github.com/lockcheck/lockcheck/lockers/lockertest"
	"github.com/lockcheck/lockcheck/lockers/mutants"
)

type constructor func(*mutants.Store, lockers.Env, mutants.Options) *mutants.Locker

// suite builds lockers of one kind with a TTL long against scheduling
// hiccups under the race detector, so that only the bug under test shows.
func suite(newLocker constructor) lockertest.Suite {
	const ttl = 2 * time.Second
	return lockertest.Suite{
		New: func(testing.TB) func(lockers.Env) lockers.Locker {
			store := mutants.NewStore(lockers.SystemClock{}, mutants.StoreOptions{})
			return func(env lockers.Env) lockers.Locker {
				return newLocker(store, env, mutants.Options{TTL: ttl, PollInterval: time.Millisecond})
			}
		},
		Fencing:    true,
		OwnerCheck: true,
		TTL:        ttl,
		// In virtual time: on real time a busy machine that stalls a
		// holder for the 2 s lease would break mutex-* for the correct
		// lease too, and the suite would blame it.
		Bubble: true,
	}
}

func TestConformance(t *testing.T) {
	t.Run(mutants.Lease, func(t *testing.T) {
		lockertest.Run(t, suite(mutants.NewLease))
	})
	t.Run(mutants.DoubleGrant, func(t *testing.T) {
		s := suite(mutants.NewDoubleGrant)
		s.Lacks = map[lockertest.Property]string{
			lockertest.MutexOneKey:   "5% of Lock calls take the key even when it is held",
			lockertest.MutexManyKeys: "5% of Lock calls take the key even when it is held",
		}
		lockertest.Run(t, s)
	})
	t.Run(mutants.UnlockAny, func(t *testing.T) {
		s := suite(mutants.NewUnlockAny)
		s.OwnerCheck = false
		s.Lacks = map[lockertest.Property]string{
			lockertest.OwnerCheck: "Unlock frees the key whoever holds it",
		}
		lockertest.Run(t, s)
	})
	t.Run(mutants.SilentExpiry, func(t *testing.T) {
		s := suite(mutants.NewSilentExpiry)
		s.Lacks = map[lockertest.Property]string{
			lockertest.LeaseKept: "no refresher: the lease expires under a holder that is never told",
		}
		lockertest.Run(t, s)
	})
}

func env(seed uint64) lockers.Env {
	return lockers.Env{Clock: lockers.SystemClock{}, Seed: seed}
}

func mustLock(t *testing.T, l lockers.Locker, key string) lockers.Lease {
	t.Helper()
	lease, err := l.Lock(context.Background(), key)
	if err != nil {
		t.Fatalf("Lock(%q) on a free key: %v", key, err)
	}
	return lease
}

// tryLock makes one attempt: the lockers check the context only after
// their first.
func tryLock(l lockers.Locker, key string) (lockers.Lease, error) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return l.Lock(ctx, key)
}

// elapse lets d of virtual time pass in a synctest bubble; whatever came due
// earlier has run to its next wait by the time it returns. It is how these
// tests move time, never how they wait for a goroutine.
func elapse(d time.Duration) { <-time.After(d) }

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// On virtual time: refreshed every TTL/3, a lease outlives its TTL many
// times over and keeps others out; Unlock stops the refresher (a refresher
// left running would deadlock the bubble at its end) and frees the key.
func TestLeaseRefreshKeepsLockUntilUnlock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := mutants.NewStore(lockers.SystemClock{}, mutants.StoreOptions{RefreshFailRate: -1})
		a := mutants.NewLease(store, env(1), mutants.Options{})
		b := mutants.NewLease(store, env(2), mutants.Options{})
		held := mustLock(t, a, "k")
		elapse(10 * mutants.DefaultTTL)
		if lease, err := tryLock(b, "k"); err == nil {
			t.Fatalf("took a refreshed lease's key (token %d)", lease.Token())
		}
		if isClosed(held.Lost()) {
			t.Fatal("Lost closed although every refresh succeeded")
		}
		if err := held.Unlock(context.Background()); err != nil {
			t.Fatalf("Unlock: %v", err)
		}
		next := mustLock(t, b, "k")
		if next.Token() <= held.Token() {
			t.Errorf("token %d after token %d", next.Token(), held.Token())
		}
		if err := next.Unlock(context.Background()); err != nil {
			t.Fatal(err)
		}
	})
}

// A rejected refresh raises Lost at once, while the store still holds the
// lease for the rest of its TTL: the safety margin.
func TestFailedRefreshRaisesLostBeforeExpiry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := mutants.NewStore(lockers.SystemClock{}, mutants.StoreOptions{RefreshFailRate: 1})
		a := mutants.NewLease(store, env(1), mutants.Options{})
		b := mutants.NewLease(store, env(2), mutants.Options{})
		start := time.Now()
		held := mustLock(t, a, "k")
		<-held.Lost()
		if lost := time.Since(start); lost != mutants.DefaultTTL/3 {
			t.Errorf("Lost after %v, want at the first refresh, %v", lost, mutants.DefaultTTL/3)
		}
		elapse(mutants.DefaultTTL - time.Since(start) - time.Nanosecond)
		if _, err := tryLock(b, "k"); err == nil {
			t.Fatal("the key was free before the lease's TTL had passed")
		}
		elapse(time.Nanosecond)
		late := mustLock(t, b, "k")
		if err := held.Unlock(context.Background()); !errors.Is(err, mutants.ErrNotHeld) || !errors.Is(err, lockers.ErrNoEffect) {
			t.Errorf("late Unlock of the lost lease: got %v, want ErrNotHeld wrapping ErrNoEffect", err)
		}
		if err := late.Unlock(context.Background()); err != nil {
			t.Errorf("the new holder's Unlock after a late one: %v", err)
		}
	})
}

// A refresher that wakes late (its client was paused, its clock jumped)
// finds on its own clock that the lease may be gone, and raises Lost
// instead of refreshing.
func TestLateRefresherRaisesLost(t *testing.T) {
	clientClock := lockertest.NewFakeClock(time.Unix(0, 0))
	storeClock := lockertest.NewFakeClock(time.Unix(0, 0))
	store := mutants.NewStore(storeClock, mutants.StoreOptions{RefreshFailRate: -1})
	a := mutants.NewLease(store, lockers.Env{Clock: clientClock, Seed: 1}, mutants.Options{})
	held := mustLock(t, a, "k")
	if err := clientClock.WaitForTimers(lockertest.Bounded(t), 1); err != nil {
		t.Fatal(err)
	}
	clientClock.Advance(mutants.DefaultTTL - mutants.DefaultTTL/3)
	lockertest.Recv(t, held.Lost(), "Lost")
	// The store's clock did not move: the lease is still there, so the
	// refresher did not extend it and the holder still frees it.
	if err := held.Unlock(context.Background()); err != nil {
		t.Errorf("Unlock of a lease lost only on the holder's clock: %v", err)
	}
}

func TestDoubleGrantTakesHeldKey(t *testing.T) {
	store := mutants.NewStore(lockers.SystemClock{}, mutants.StoreOptions{RefreshFailRate: -1})
	a := mutants.NewDoubleGrant(store, env(1), mutants.Options{TTL: time.Hour})
	b := mutants.NewDoubleGrant(store, env(2), mutants.Options{TTL: time.Hour, DoubleGrantRate: 1})
	held := mustLock(t, a, "k")
	second, err := tryLock(b, "k")
	if err != nil {
		t.Fatalf("a careless Lock did not take the held key: %v", err)
	}
	if err := second.Unlock(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The first holder's lease was overwritten: its owner check refuses.
	if err := held.Unlock(context.Background()); !errors.Is(err, lockers.ErrNoEffect) {
		t.Errorf("Unlock of the overwritten lease: got %v, want ErrNoEffect", err)
	}
}

func TestUnlockAnyFreesAnotherHolder(t *testing.T) {
	for _, tc := range []struct {
		name  string
		new   constructor
		frees bool
	}{
		{mutants.Lease, mutants.NewLease, false},
		{mutants.UnlockAny, mutants.NewUnlockAny, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store := mutants.NewStore(lockers.SystemClock{}, mutants.StoreOptions{RefreshFailRate: -1})
			opts := mutants.Options{TTL: time.Hour}
			a, b, c := tc.new(store, env(1), opts), tc.new(store, env(2), opts), tc.new(store, env(3), opts)
			stale := mustLock(t, a, "k")
			if err := stale.Unlock(context.Background()); err != nil {
				t.Fatal(err)
			}
			held := mustLock(t, b, "k")
			err := stale.Unlock(context.Background())
			took, lockErr := tryLock(c, "k")
			if !tc.frees {
				if !errors.Is(err, mutants.ErrNotHeld) || !errors.Is(err, lockers.ErrNoEffect) {
					t.Errorf("stale Unlock: got %v, want ErrNotHeld wrapping ErrNoEffect", err)
				}
				if lockErr == nil {
					t.Fatal("another client took the key after a stale unlock")
				}
				if err := held.Unlock(context.Background()); err != nil {
					t.Fatal(err)
				}
				return
			}
			if err != nil {
				t.Errorf("stale Unlock: %v; the mutant frees whoever holds the key", err)
			}
			if lockErr != nil {
				t.Fatalf("after the stale unlock freed b's lock, c could not take it: %v", lockErr)
			}
			for _, l := range []lockers.Lease{took, held} {
				_ = l.Unlock(context.Background())
			}
		})
	}
}

// On virtual time: the lease expires TTL after it was taken, and the next
// client takes the key while the holder has heard nothing.
func TestSilentExpiry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := mutants.NewStore(lockers.SystemClock{}, mutants.StoreOptions{})
		a := mutants.NewSilentExpiry(store, env(1), mutants.Options{})
		b := mutants.NewSilentExpiry(store, env(2), mutants.Options{})
		start := time.Now()
		held := mustLock(t, a, "k")
		took := mustLock(t, b, "k")
		if after := time.Since(start); after < mutants.DefaultSilentExpiryTTL || after > mutants.DefaultSilentExpiryTTL+mutants.DefaultPollInterval {
			t.Errorf("taken over after %v, want within a poll of the TTL, %v", after, mutants.DefaultSilentExpiryTTL)
		}
		if isClosed(held.Lost()) {
			t.Error("Lost closed: the mutant must never tell")
		}
		if err := held.Unlock(context.Background()); !errors.Is(err, lockers.ErrNoEffect) {
			t.Errorf("Unlock of the expired lease: got %v, want ErrNoEffect", err)
		}
		if err := took.Unlock(context.Background()); err != nil {
			t.Fatal(err)
		}
	})
}

func TestLockHonoursContextAndTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := mutants.NewStore(lockers.SystemClock{}, mutants.StoreOptions{RefreshFailRate: -1})
		a := mutants.NewLease(store, env(1), mutants.Options{})
		b := mutants.NewLease(store, env(2), mutants.Options{AcquireTimeout: time.Second})
		held := mustLock(t, a, "k")
		start := time.Now()
		_, err := b.Lock(context.Background(), "k")
		if !errors.Is(err, mutants.ErrAcquireTimeout) || !errors.Is(err, lockers.ErrNoEffect) {
			t.Errorf("Lock on a held key: got %v, want ErrAcquireTimeout wrapping ErrNoEffect", err)
		}
		if waited := time.Since(start); waited != time.Second {
			t.Errorf("gave up after %v, want 1s", waited)
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := b.Lock(ctx, "k"); !errors.Is(err, context.Canceled) || !errors.Is(err, lockers.ErrNoEffect) {
			t.Errorf("Lock with an ended context: got %v", err)
		}
		if err := held.Unlock(context.Background()); err != nil {
			t.Fatal(err)
		}
	})
}
