package memory_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/lockcheck/lockcheck/lockers"
	"github.com/lockcheck/lockcheck/lockers/lockertest"
	"github.com/lockcheck/lockcheck/lockers/memory"
)

func TestConformance(t *testing.T) {
	t.Run(memory.Name, func(t *testing.T) {
		lockertest.Run(t, lockertest.Suite{
			New: func(testing.TB) func(lockers.Env) lockers.Locker {
				store := memory.NewStore()
				return func(env lockers.Env) lockers.Locker { return memory.New(store, env, memory.Options{}) }
			},
			ReleaseRequest: true,
			Lacks: map[lockertest.Property]string{
				lockertest.OwnerCheck: "unlock deletes the id whoever holds it, as MemoryLocker.ts does",
			},
		})
	})
	t.Run(memory.OwnerName, func(t *testing.T) {
		lockertest.Run(t, lockertest.Suite{
			New: func(testing.TB) func(lockers.Env) lockers.Locker {
				store := memory.NewStore()
				return func(env lockers.Env) lockers.Locker { return memory.NewOwner(store, env, memory.Options{}) }
			},
			ReleaseRequest: true,
			OwnerCheck:     true,
		})
	})
}

var start = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// attempts counts the attempts a locker reports, as events to wait for.
type attempts chan struct{}

func newEnv(clock lockers.Clock, seen attempts) lockers.Env {
	env := lockers.Env{Clock: clock}
	if seen != nil {
		env.AttemptStarted = func() {
			select {
			case seen <- struct{}{}:
			default: // a spinning poll must not block on a test that stopped counting
			}
		}
	}
	return env
}

func mustLock(t *testing.T, l lockers.Locker, key string) lockers.Lease {
	t.Helper()
	lease, err := l.Lock(context.Background(), key)
	if err != nil {
		t.Fatalf("Lock(%q) on a free key: %v", key, err)
	}
	return lease
}

func requested(t *testing.T, lease lockers.Lease) <-chan struct{} {
	t.Helper()
	rr, ok := lease.(lockers.ReleaseRequester)
	if !ok {
		t.Fatalf("lease %T is not a lockers.ReleaseRequester", lease)
	}
	return rr.ReleaseRequested()
}

// The source's "will acquire a lock by notifying another to release it":
// the holder unlocks when asked, the waiter gets the lock, and nobody asks
// the new holder.
func TestReleaseRequestReachesHolder(t *testing.T) {
	store := memory.NewStore()
	a := memory.New(store, newEnv(lockers.SystemClock{}, nil), memory.Options{})
	b := memory.New(store, newEnv(lockers.SystemClock{}, nil), memory.Options{})
	held := mustLock(t, a, "upload-id-1")
	res := lockertest.LockAsync(context.Background(), b, "upload-id-1")
	lockertest.Recv(t, requested(t, held), "release request")
	if err := held.Unlock(context.Background()); err != nil {
		t.Fatalf("holder's Unlock: %v", err)
	}
	got := lockertest.Recv(t, res, "Lock outcome")
	if got.Err != nil {
		t.Fatalf("waiter's Lock after the holder let go: %v", got.Err)
	}
	select {
	case <-requested(t, got.Lease):
		t.Error("the new holder was asked to let go with nobody waiting")
	default:
	}
	if err := got.Lease.Unlock(context.Background()); err != nil {
		t.Fatalf("new holder's Unlock: %v", err)
	}
}

// The source's "will return a lock timeout error", on a fake clock: the
// waiter keeps polling until acquireLockTimeout has passed on its clock, not
// a moment before, and then fails with ERR_LOCK_TIMEOUT, having taken
// nothing.
func TestAcquireTimeoutHasNoEffect(t *testing.T) {
	clock := lockertest.NewFakeClock(start)
	store := memory.NewStore()
	a := memory.New(store, newEnv(clock, nil), memory.Options{})
	seen := make(attempts, 1)
	b := memory.New(store, newEnv(clock, seen), memory.Options{})
	held := mustLock(t, a, "id")

	res := lockertest.LockAsync(context.Background(), b, "id")
	if err := clock.WaitForTimers(lockertest.Bounded(t), 1); err != nil {
		t.Fatal(err)
	}
	lockertest.Recv(t, requested(t, held), "release request")
	clock.Advance(memory.DefaultAcquireLockTimeout - time.Nanosecond)
	// Attempts after the advance show the waiter still polling.
	drain(seen)
	lockertest.Recv(t, seen, "poll")
	select {
	case got := <-res:
		t.Fatalf("Lock returned before the timeout: %v", got.Err)
	default:
	}
	clock.Advance(time.Nanosecond)
	got := lockertest.Recv(t, res, "Lock outcome")
	if !errors.Is(got.Err, memory.ErrLockTimeout) || !errors.Is(got.Err, lockers.ErrNoEffect) {
		t.Fatalf("Lock after the timeout: got %v, want ErrLockTimeout wrapping ErrNoEffect", got.Err)
	}
	// The holder still holds: its unlock is the one that frees the id.
	if err := held.Unlock(context.Background()); err != nil {
		t.Fatalf("holder's Unlock after the waiter timed out: %v", err)
	}
}

func drain(ch attempts) {
	for {
		select {
		case <-ch:
		default:
			return
		}
	}
}

// The source's "will stop trying to acquire the lock if the abort signal
// is aborted": the holder was asked, the waiter fails with
// ERR_LOCK_TIMEOUT, and the error says why and that nothing was taken.
func TestCancelledWaitHasNoEffect(t *testing.T) {
	store := memory.NewStore()
	a := memory.New(store, newEnv(lockers.SystemClock{}, nil), memory.Options{})
	b := memory.New(store, newEnv(lockers.SystemClock{}, nil), memory.Options{})
	held := mustLock(t, a, "id")
	ctx, cancel := context.WithCancel(context.Background())
	res := lockertest.LockAsync(ctx, b, "id")
	lockertest.Recv(t, requested(t, held), "release request")
	cancel()
	got := lockertest.Recv(t, res, "Lock outcome")
	for _, want := range []error{memory.ErrLockTimeout, context.Canceled, lockers.ErrNoEffect} {
		if !errors.Is(got.Err, want) {
			t.Errorf("cancelled Lock: got %v, want it to wrap %v", got.Err, want)
		}
	}
	if err := held.Unlock(context.Background()); err != nil {
		t.Fatalf("holder's Unlock: %v", err)
	}
}

// The source checks the map before it can notice an aborted signal, so a
// free id is taken even by a call whose signal (here: context) has ended.
func TestEndedContextStillTakesFreeKey(t *testing.T) {
	l := memory.New(memory.NewStore(), newEnv(lockers.SystemClock{}, nil), memory.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	lease, err := l.Lock(ctx, "id")
	if err != nil {
		t.Fatalf("Lock with an ended context on a free id: %v; the source takes it", err)
	}
	if err := lease.Unlock(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// Every poll waits on the client's clock, so a client whose clock stops
// (a paused client) stops polling.
func TestPollsWaitOnClientClock(t *testing.T) {
	clock := lockertest.NewFakeClock(start)
	store := memory.NewStore()
	a := memory.New(store, newEnv(clock, nil), memory.Options{})
	seen := make(attempts, 16)
	b := memory.New(store, newEnv(clock, seen), memory.Options{PollInterval: 10 * time.Millisecond})
	held := mustLock(t, a, "id")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	res := lockertest.LockAsync(ctx, b, "id")
	lockertest.Recv(t, seen, "poll")
	// The timeout and the first poll.
	if err := clock.WaitForTimers(lockertest.Bounded(t), 2); err != nil {
		t.Fatal(err)
	}
	select {
	case <-seen:
		t.Fatal("a second attempt before the client's clock moved")
	default:
	}
	clock.Advance(10 * time.Millisecond)
	lockertest.Recv(t, seen, "poll")
	// Its second attempt failed once it waits on a new poll: unlocked
	// before that, the attempt would win and leave no poll to wait for
	// (a hang on a loaded machine, once).
	if err := clock.WaitForTimers(lockertest.Bounded(t), 2); err != nil {
		t.Fatal(err)
	}
	if err := held.Unlock(context.Background()); err != nil {
		t.Fatal(err)
	}
	clock.Advance(10 * time.Millisecond)
	got := lockertest.Recv(t, res, "Lock outcome")
	if got.Err != nil {
		t.Fatalf("Lock once free: %v", got.Err)
	}
	if err := got.Lease.Unlock(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// A lease that was already released unlocks again: memory frees whatever
// holds the id now (the source deletes by id), memory-owner refuses.
func TestStaleUnlock(t *testing.T) {
	for _, tc := range []struct {
		name      string
		new       func(*memory.Store, lockers.Env, memory.Options) *memory.Locker
		freesNext bool
	}{
		{memory.Name, memory.New, true},
		{memory.OwnerName, memory.NewOwner, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store := memory.NewStore()
			a := tc.new(store, newEnv(lockers.SystemClock{}, nil), memory.Options{})
			b := tc.new(store, newEnv(lockers.SystemClock{}, nil), memory.Options{})
			c := tc.new(store, newEnv(lockers.SystemClock{}, nil), memory.Options{})
			stale := mustLock(t, a, "id")
			if err := stale.Unlock(context.Background()); err != nil {
				t.Fatal(err)
			}
			held := mustLock(t, b, "id")
			err := stale.Unlock(context.Background())
			// An ended context: one check-and-set, then give up.
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			took, lockErr := c.Lock(ctx, "id")
			if tc.freesNext {
				if err != nil {
					t.Errorf("stale Unlock: %v; the source deletes by id without an owner check", err)
				}
				if lockErr != nil {
					t.Fatalf("after the stale unlock, another client could not take the id: %v", lockErr)
				}
				if err := took.Unlock(context.Background()); err != nil {
					t.Fatal(err)
				}
				// b's lock is gone: its own unlock finds nothing.
				if err := held.Unlock(context.Background()); !errors.Is(err, memory.ErrNotLocked) || !errors.Is(err, lockers.ErrNoEffect) {
					t.Errorf("holder's Unlock after its lock was freed: got %v, want ErrNotLocked wrapping ErrNoEffect", err)
				}
				return
			}
			if !errors.Is(err, memory.ErrNotOwner) || !errors.Is(err, lockers.ErrNoEffect) {
				t.Errorf("stale Unlock: got %v, want ErrNotOwner wrapping ErrNoEffect", err)
			}
			if !errors.Is(lockErr, lockers.ErrNoEffect) {
				t.Fatalf("Lock while b holds: got lease %v, error %v; want ErrNoEffect", took, lockErr)
			}
			if err := held.Unlock(context.Background()); err != nil {
				t.Errorf("holder's Unlock after a stale one: %v", err)
			}
		})
	}
}

// The source throws "Releasing an unlocked lock!"; the port says the
// unlock had no effect.
func TestUnlockUnlocked(t *testing.T) {
	for _, newLocker := range []func(*memory.Store, lockers.Env, memory.Options) *memory.Locker{memory.New, memory.NewOwner} {
		l := newLocker(memory.NewStore(), newEnv(lockers.SystemClock{}, nil), memory.Options{})
		lease := mustLock(t, l, "id")
		if err := lease.Unlock(context.Background()); err != nil {
			t.Fatal(err)
		}
		if err := lease.Unlock(context.Background()); !errors.Is(err, memory.ErrNotLocked) || !errors.Is(err, lockers.ErrNoEffect) {
			t.Errorf("second Unlock: got %v, want ErrNotLocked wrapping ErrNoEffect", err)
		}
	}
}
