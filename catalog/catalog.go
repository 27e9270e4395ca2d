// Package catalog is the list of built-in lockers a run can name: each
// port and mutant under lockers/, paired with the backend it runs on
// (package backends). The harness itself knows no locker by name; the
// command line and the process workers look them up here.
package catalog

import (
	"context"
	"fmt"
	"github.com/lockcheck/lockcheck/history"
	"slices"
	"strings"
	"time"

	"github.com/lockcheck/lockcheck/backends"
	"github.com/lockcheck/lockcheck/harness"
	"github.com/lockcheck/lockcheck/harness/register"
	"github.com/lockcheck/lockcheck/harness/worker"
	"github.com/lockcheck/lockcheck/lockers"
	"github.com/lockcheck/lockcheck/lockers/fenced"
	"github.com/lockcheck/lockcheck/lockers/gcslock"
	"github.com/lockcheck/lockcheck/lockers/gmutex"
	"github.com/lockcheck/lockcheck/lockers/lai"
	"github.com/lockcheck/lockcheck/lockers/memory"
	"github.com/lockcheck/lockcheck/lockers/mutants"
	"github.com/lockcheck/lockcheck/lockers/redis"
	"github.com/lockcheck/lockcheck/lockers/redislock"
	"github.com/lockcheck/lockcheck/lockers/redsync"
	"github.com/lockcheck/lockcheck/lockers/tus616"
)

// Lookup finds a built-in locker by name, failing with the list of known
// ones.
func Lookup(name string) (harness.LockerSpec, error) {
	all := Lockers()
	i := slices.IndexFunc(all, func(s harness.LockerSpec) bool { return s.Name == name })
	if i < 0 {
		return harness.LockerSpec{}, fmt.Errorf("unknown locker %q; known lockers: %s", name, strings.Join(Names(), ", "))
	}
	return all[i], nil
}

// Resolve is the locker a run names: with worker set, an external worker
// process on the backend the harness starts for it, reported as name;
// otherwise the built-in locker called name.
func Resolve(name string, worker []string, backend string) (harness.LockerSpec, error) {
	if len(worker) == 0 {
		return Lookup(name)
	}
	return harness.LockerSpec{
		Name:    name,
		Summary: "external worker: " + strings.Join(worker, " "),
		Setup:   backends.External(backend),
	}, nil
}

// Names lists the built-in lockers' names in catalog order.
func Names() []string {
	var names []string
	for _, s := range Lockers() {
		names = append(names, s.Name)
	}
	return names
}

// Lockers lists every locker a run can use, in the order `verify list`
// prints them.
func Lockers() []harness.LockerSpec {
	return []harness.LockerSpec{
		memorySpec("memory", "tus MemoryLocker, faithful: request-release, 30 s acquire timeout, unlock without owner check", memory.New),
		memorySpec("memory-owner", "tus MemoryLocker with an owner check on unlock", memory.NewOwner),
		mutantSpec(mutants.Lease, "correct in-memory TTL lease with refresher, lost signal and owner check: the mutants' control", mutants.DefaultTTL, mutants.NewLease),
		mutantSpec(mutants.DoubleGrant, "BROKEN on purpose: sometimes grants a held lock", mutants.DefaultTTL, mutants.NewDoubleGrant),
		mutantSpec(mutants.UnlockAny, "BROKEN on purpose: unlock frees whoever holds the lock", mutants.DefaultUnlockAnyTTL, mutants.NewUnlockAny),
		mutantSpec(mutants.SilentExpiry, "BROKEN on purpose: the lease expires while the holder works, and nobody tells it", mutants.DefaultSilentExpiryTTL, mutants.NewSilentExpiry),
		{
			Name:    tus616.Name,
			TTL:     tus616.DefaultLockTTL,
			Summary: "tus-node-server PR #616 GCS locker, faithful (12 s TTL, 10 s watcher, 30 s acquire timeout; scaled by -time-scale), on the embedded GCS",
			Setup: backends.GCS(func(ctx context.Context, t backends.GCSBucket, p harness.Params, env lockers.Env) (lockers.Locker, error) {
				return tus616.New(ctx, tus616.Config{Endpoint: t.Endpoint, Bucket: t.Bucket}, env, tus616.Options{TimeScale: p.TimeScale})
			}),
		},
		{
			Name:    lai.Name,
			Summary: "Hongli Lai's GCS lock, faithful: identity, instant recovery, refresher with a failure budget, expiry on the client's clock (300 s TTL)",
			TTL:     lai.DefaultTTL,
			Setup: backends.GCS(func(ctx context.Context, t backends.GCSBucket, p harness.Params, env lockers.Env) (lockers.Locker, error) {
				return lai.New(ctx, lai.Config{Endpoint: t.Endpoint, Bucket: t.Bucket}, env, lai.Options{TimeScale: p.TimeScale})
			}),
		},
		{
			Name:    gcslock.Name,
			Summary: "mco-gh/gcslock, faithful: create-if-absent, doubling backoff without cap, unconditional delete; no TTL, no owner",
			Setup: backends.GCS(func(ctx context.Context, t backends.GCSBucket, p harness.Params, env lockers.Env) (lockers.Locker, error) {
				return gcslock.New(ctx, gcslock.Config{Endpoint: t.Endpoint, Bucket: t.Bucket}, env, gcslock.Options{TimeScale: p.TimeScale})
			}),
		},
		{
			Name:    gmutex.Name,
			Summary: "ncruces/go-gcp gmutex, faithful: takeover by generation, expiry on server time, compose extend (5 s TTL)",
			TTL:     gmutex.DefaultTTL,
			Setup: backends.GCS(func(ctx context.Context, t backends.GCSBucket, p harness.Params, env lockers.Env) (lockers.Locker, error) {
				return gmutex.New(ctx, gmutex.Config{Endpoint: t.Endpoint, Bucket: t.Bucket}, env, gmutex.Options{TimeScale: p.TimeScale})
			}),
		},
		{
			Name:    fenced.Name,
			Summary: "lockcheck's own GCS lock: atomic takeover by generation, expiry on server time, generation as fencing token, Lost before expiry (12 s TTL)",
			Fencing: true,
			// Its deadline runs from each refresh's send, a margin short
			// of the lease the backend counts from its acceptance.
			LostNotice: history.NoticeBeforeLeaseEnd,
			TTL:        fenced.DefaultTTL,
			Setup: backends.GCS(func(ctx context.Context, t backends.GCSBucket, p harness.Params, env lockers.Env) (lockers.Locker, error) {
				return fenced.New(ctx, fenced.Config{Endpoint: t.Endpoint, Bucket: t.Bucket}, env, fenced.Options{TimeScale: p.TimeScale})
			}),
		},
		fencedMutant(mutants.BlindDelete, "BROKEN on purpose: fenced whose Unlock deletes with no precondition and lets the client library retry"),
		fencedMutant(mutants.MetagenerationToken, "BROKEN on purpose: fenced with the metageneration (1 for every new lock object) as its fencing token"),
		fencedMutant(mutants.UnlockKeeps, "BROKEN on purpose: fenced whose Unlock neither deletes nor stops refreshing: the lock is kept for good"),
		fencedMutant(mutants.FailedExtendCounts, "BROKEN on purpose: fenced counting a refresh that failed at once (connection refused) as confirmed"),
		fencedMutant(mutants.BlindExtend, "BROKEN on purpose: fenced refreshing with no precondition, so a refresh that lands late rewrites the next holder's lock"),
		fencedMutant(mutants.DeadlineOnSend, "BROKEN on purpose: fenced moving its local deadline when a refresh is sent, not when it is confirmed"),
		{
			Name:    redis.Name,
			Summary: "tus-node-server PR #846 Redis locker, faithful: SET NX PX, Lua compare-and-delete/extend, watchdog, pub/sub release requests (30 s TTL)",
			TTL:     redis.DefaultRedisLockTimeout,
			Setup: backends.Redis(1, func(addrs []string, p harness.Params, env lockers.Env) (lockers.Locker, error) {
				return redis.New(redis.Config{Addr: addrs[0]}, env, redis.Options{TimeScale: p.TimeScale})
			}),
		},
		{
			Name:    mutants.RedisBlindExtend,
			Summary: "BROKEN on purpose: redis whose watchdog extends with a bare PEXPIRE, so an extend that lands late extends the next holder's key",
			TTL:     redis.DefaultRedisLockTimeout,
			Setup: backends.Redis(1, func(addrs []string, p harness.Params, env lockers.Env) (lockers.Locker, error) {
				return mutants.NewRedis(redis.Config{Addr: addrs[0]}, env, redis.Options{TimeScale: p.TimeScale})
			}),
		},
		{
			Name:    redislock.Name,
			Summary: "github.com/bsm/redislock as it is, with the refresh loop its README suggests (30 s TTL)",
			TTL:     redislock.DefaultTTL,
			Setup: backends.Redis(1, func(addrs []string, p harness.Params, env lockers.Env) (lockers.Locker, error) {
				return redislock.New(redislock.Config{Addr: addrs[0]}, env, redislock.Options{TimeScale: p.TimeScale})
			}),
		},
		{
			Name:    redsync.Name,
			Summary: "github.com/go-redsync/redsync/v4 as it is, on one Redis, auto-extended (8 s expiry)",
			TTL:     redsync.DefaultTTL,
			Setup: backends.Redis(1, func(addrs []string, p harness.Params, env lockers.Env) (lockers.Locker, error) {
				return redsync.New(redsync.Config{Addrs: addrs}, env, redsync.Options{TimeScale: p.TimeScale})
			}),
		},
		{
			Name:    redsync.NameRedlock,
			Summary: "redsync as Redlock over 3 independent Redis servers, each behind its own proxy per client (8 s expiry)",
			TTL:     redsync.DefaultTTL,
			Setup: backends.Redis(3, func(addrs []string, p harness.Params, env lockers.Env) (lockers.Locker, error) {
				return redsync.New(redsync.Config{Addrs: addrs}, env, redsync.Options{TimeScale: p.TimeScale})
			}),
		},
	}
}

// fencedMutant is fenced with one planted defect (package mutants).
func fencedMutant(name, summary string) harness.LockerSpec {
	return harness.LockerSpec{
		Name: name, Summary: summary, Fencing: true, LostNotice: history.NoticeBeforeLeaseEnd, TTL: fenced.DefaultTTL,
		Setup: backends.GCS(func(ctx context.Context, t backends.GCSBucket, p harness.Params, env lockers.Env) (lockers.Locker, error) {
			return mutants.NewFenced(ctx, name, fenced.Config{Endpoint: t.Endpoint, Bucket: t.Bucket}, env, fenced.Options{TimeScale: p.TimeScale})
		}),
	}
}

func memorySpec(name, summary string, build func(*memory.Store, lockers.Env, memory.Options) *memory.Locker) harness.LockerSpec {
	return harness.LockerSpec{Name: name, Summary: summary, Setup: harness.InProcess(func(harness.Params) func(lockers.Env) (lockers.Locker, error) {
		store := memory.NewStore()
		return func(env lockers.Env) (lockers.Locker, error) { return build(store, env, memory.Options{}), nil }
	})}
}

// mutantSpec scales the lease's TTL by the run's time scale; the poll
// interval and acquire timeout stay as they are, being no part of the
// lease's safety.
func mutantSpec(name, summary string, ttl time.Duration, build func(*mutants.Store, lockers.Env, mutants.Options) *mutants.Locker) harness.LockerSpec {
	return harness.LockerSpec{Name: name, Summary: summary, Fencing: true, TTL: ttl, Setup: harness.InProcess(func(p harness.Params) func(lockers.Env) (lockers.Locker, error) {
		opts := mutants.Options{TTL: time.Duration(float64(ttl) * p.TimeScale)}
		// The store judges expiry on server time: the real clock, which
		// client clock faults do not touch.
		store := mutants.NewStore(lockers.SystemClock{}, mutants.StoreOptions{})
		return func(env lockers.Env) (lockers.Locker, error) { return build(store, env, opts), nil }
	})}
}

// OpenWorker is what `verify worker` runs for each process client: the
// locker named in the hello, attached to the harness's backend, and the
// register store the workload asks for.
func OpenWorker(ctx context.Context, h worker.Hello, env lockers.Env) (lockers.Locker, register.Store, error) {
	spec, err := Lookup(h.Locker)
	if err != nil {
		return nil, nil, err
	}
	attach := &harness.Attachment{Redis: h.Redis}
	if h.GCS != nil {
		attach.GCSEndpoint, attach.GCSBucket = h.GCS.Endpoint, h.GCS.Bucket
	}
	if !attach.Networked() {
		return nil, nil, fmt.Errorf("locker %s: the hello names no backend to attach to", h.Locker)
	}
	inst, err := spec.Setup(ctx, harness.Params{TimeScale: h.TimeScale, Attach: attach})
	if err != nil {
		return nil, nil, fmt.Errorf("locker %s: %w", h.Locker, err)
	}
	locker, err := inst.New(env)
	if err != nil {
		return nil, nil, fmt.Errorf("locker %s: %w", h.Locker, err)
	}
	if h.Register == "" {
		return locker, nil, nil
	}
	if inst.Register == nil {
		return nil, nil, fmt.Errorf("locker %s has no register store", h.Locker)
	}
	store, err := inst.Register(ctx, env, h.Register == worker.RegisterFenced)
	if err != nil {
		return nil, nil, fmt.Errorf("register store: %w", err)
	}
	return locker, store, nil
}
