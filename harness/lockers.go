package harness

import (
	"context"

	"github.com/lockcheck/lockcheck/lockers"
	"github.com/lockcheck/lockcheck/lockers/memory"
	"github.com/lockcheck/lockcheck/lockers/mutants"
)

// Lockers lists every locker a run can use, in the order `verify list`
// prints them.
func Lockers() []LockerSpec {
	return []LockerSpec{
		memorySpec("memory", "tus MemoryLocker, faithful: request-release, 30 s acquire timeout, unlock without owner check", memory.New),
		memorySpec("memory-owner", "tus MemoryLocker with an owner check on unlock", memory.NewOwner),
		mutantSpec(mutants.Lease, "correct in-memory TTL lease with refresher, lost signal and owner check: the mutants' control", true, mutants.NewLease),
		mutantSpec(mutants.DoubleGrant, "BROKEN on purpose: sometimes grants a held lock", true, mutants.NewDoubleGrant),
		mutantSpec(mutants.UnlockAny, "BROKEN on purpose: unlock frees whoever holds the lock", true, mutants.NewUnlockAny),
		mutantSpec(mutants.SilentExpiry, "BROKEN on purpose: the lease expires while the holder works, and nobody tells it", true, mutants.NewSilentExpiry),
	}
}

func memorySpec(name, summary string, build func(*memory.Store, lockers.Env, memory.Options) *memory.Locker) LockerSpec {
	return LockerSpec{Name: name, Summary: summary, Setup: func(context.Context) (func(lockers.Env) (lockers.Locker, error), func(), error) {
		store := memory.NewStore()
		return func(env lockers.Env) (lockers.Locker, error) {
			return build(store, env, memory.Options{}), nil
		}, func() {}, nil
	}}
}

func mutantSpec(name, summary string, fencing bool, build func(*mutants.Store, lockers.Env, mutants.Options) *mutants.Locker) LockerSpec {
	return LockerSpec{Name: name, Summary: summary, Fencing: fencing, Setup: func(context.Context) (func(lockers.Env) (lockers.Locker, error), func(), error) {
		// The store judges expiry on server time: the real clock, which
		// client clock faults do not touch.
		store := mutants.NewStore(lockers.SystemClock{}, mutants.StoreOptions{})
		return func(env lockers.Env) (lockers.Locker, error) {
			return build(store, env, mutants.Options{}), nil
		}, func() {}, nil
	}}
}
