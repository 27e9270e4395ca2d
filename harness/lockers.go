package harness

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/lockcheck/lockcheck/harness/gcs"
	"github.com/lockcheck/lockcheck/harness/register"
	"github.com/lockcheck/lockcheck/internal/redisserver"
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

// Lockers lists every locker a run can use, in the order `verify list`
// prints them.
func Lockers() []LockerSpec {
	return []LockerSpec{
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
			Setup: withGCS(func(ctx context.Context, t gcsTarget, p Params, env lockers.Env) (lockers.Locker, error) {
				return tus616.New(ctx, tus616.Config{Endpoint: t.endpoint, Bucket: t.bucket}, env, tus616.Options{TimeScale: p.TimeScale})
			}),
		},
		{
			Name:    lai.Name,
			Summary: "Hongli Lai's GCS lock, faithful: identity, instant recovery, refresher with a failure budget, expiry on the client's clock (300 s TTL)",
			TTL:     lai.DefaultTTL,
			Setup: withGCS(func(ctx context.Context, t gcsTarget, p Params, env lockers.Env) (lockers.Locker, error) {
				return lai.New(ctx, lai.Config{Endpoint: t.endpoint, Bucket: t.bucket}, env, lai.Options{TimeScale: p.TimeScale})
			}),
		},
		{
			Name:    gcslock.Name,
			Summary: "mco-gh/gcslock, faithful: create-if-absent, doubling backoff without cap, unconditional delete; no TTL, no owner",
			Setup: withGCS(func(ctx context.Context, t gcsTarget, p Params, env lockers.Env) (lockers.Locker, error) {
				return gcslock.New(ctx, gcslock.Config{Endpoint: t.endpoint, Bucket: t.bucket}, env, gcslock.Options{TimeScale: p.TimeScale})
			}),
		},
		{
			Name:    gmutex.Name,
			Summary: "ncruces/go-gcp gmutex, faithful: takeover by generation, expiry on server time, compose extend (5 s TTL)",
			TTL:     gmutex.DefaultTTL,
			Setup: withGCS(func(ctx context.Context, t gcsTarget, p Params, env lockers.Env) (lockers.Locker, error) {
				return gmutex.New(ctx, gmutex.Config{Endpoint: t.endpoint, Bucket: t.bucket}, env, gmutex.Options{TimeScale: p.TimeScale})
			}),
		},
		{
			Name:    fenced.Name,
			Summary: "lockcheck's own GCS lock: atomic takeover by generation, expiry on server time, generation as fencing token, Lost before expiry (12 s TTL)",
			Fencing: true,
			TTL:     fenced.DefaultTTL,
			Setup: withGCS(func(ctx context.Context, t gcsTarget, p Params, env lockers.Env) (lockers.Locker, error) {
				return fenced.New(ctx, fenced.Config{Endpoint: t.endpoint, Bucket: t.bucket}, env, fenced.Options{TimeScale: p.TimeScale})
			}),
		},
		{
			Name:    redis.Name,
			Summary: "tus-node-server PR #846 Redis locker, faithful: SET NX PX, Lua compare-and-delete/extend, watchdog, pub/sub release requests (30 s TTL)",
			TTL:     redis.DefaultRedisLockTimeout,
			Setup: withRedis(1, func(addrs []string, p Params, env lockers.Env) (lockers.Locker, error) {
				return redis.New(redis.Config{Addr: addrs[0]}, env, redis.Options{TimeScale: p.TimeScale})
			}),
		},
		{
			Name:    redislock.Name,
			Summary: "github.com/bsm/redislock as it is, with the refresh loop its README suggests (30 s TTL)",
			TTL:     redislock.DefaultTTL,
			Setup: withRedis(1, func(addrs []string, p Params, env lockers.Env) (lockers.Locker, error) {
				return redislock.New(redislock.Config{Addr: addrs[0]}, env, redislock.Options{TimeScale: p.TimeScale})
			}),
		},
		{
			Name:    redsync.Name,
			Summary: "github.com/go-redsync/redsync/v4 as it is, on one Redis, auto-extended (8 s expiry)",
			TTL:     redsync.DefaultTTL,
			Setup: withRedis(1, func(addrs []string, p Params, env lockers.Env) (lockers.Locker, error) {
				return redsync.New(redsync.Config{Addrs: addrs}, env, redsync.Options{TimeScale: p.TimeScale})
			}),
		},
		{
			Name:    redsync.NameRedlock,
			Summary: "redsync as Redlock over 3 independent Redis servers, each behind its own proxy per client (8 s expiry)",
			TTL:     redsync.DefaultTTL,
			Setup: withRedis(3, func(addrs []string, p Params, env lockers.Env) (lockers.Locker, error) {
				return redsync.New(redsync.Config{Addrs: addrs}, env, redsync.Options{TimeScale: p.TimeScale})
			}),
		},
	}
}

// withGCS gives a GCS locker its backend: by default one embedded GCS
// (fake-gcs-server behind the fidelity layer) for the run, which every
// client's locker reaches through its own HTTP client; a real bucket when
// Params.GCSBucket is set; the harness's embedded GCS when a worker
// attaches to it.
func withGCS(build func(context.Context, gcsTarget, Params, lockers.Env) (lockers.Locker, error)) func(context.Context, Params) (*Instance, error) {
	return func(ctx context.Context, p Params) (*Instance, error) {
		if p.GCSBucket != "" {
			return realGCS(ctx, p, func(ctx context.Context, t gcsTarget, env lockers.Env) (lockers.Locker, error) {
				return build(ctx, t, p, env)
			})
		}
		if a := p.Attach; a != nil {
			if a.GCSEndpoint == "" || a.GCSBucket == "" {
				return nil, errors.New("this is a GCS locker and the backend to attach to has no GCS endpoint and bucket")
			}
			return gcsInstance(gcsTarget{endpoint: a.GCSEndpoint, bucket: a.GCSBucket}, p, build, func() {}), nil
		}
		server, err := gcs.Start(ctx, gcs.Options{Wrap: p.ServerFront})
		if err != nil {
			return nil, fmt.Errorf("embedded GCS: %w", err)
		}
		inst := gcsInstance(gcsTarget{endpoint: server.Endpoint(), bucket: server.Bucket()}, p, build, func() { server.Close() })
		inst.ServerFront = p.ServerFront != nil
		return inst, nil
	}
}

func gcsInstance(t gcsTarget, p Params, build func(context.Context, gcsTarget, Params, lockers.Env) (lockers.Locker, error), closeBackend func()) *Instance {
	var upstreams []string
	if u, err := url.Parse(t.endpoint); err == nil && u.Host != "" {
		upstreams = []string{u.Host}
	}
	return &Instance{
		New: func(env lockers.Env) (lockers.Locker, error) {
			// The locker's client lives as long as the run; its
			// construction is local and quick.
			return build(context.Background(), t, p, env)
		},
		Register: func(ctx context.Context, env lockers.Env, fenced bool) (register.Store, error) {
			return register.NewGCS(ctx, t.endpoint, t.bucket, env.HTTP, fenced)
		},
		Close:     closeBackend,
		Upstreams: upstreams,
		Attach:    Attachment{GCSEndpoint: t.endpoint, GCSBucket: t.bucket},
	}
}

func memorySpec(name, summary string, build func(*memory.Store, lockers.Env, memory.Options) *memory.Locker) LockerSpec {
	return LockerSpec{Name: name, Summary: summary, Setup: func(context.Context, Params) (*Instance, error) {
		store := memory.NewStore()
		return &Instance{New: func(env lockers.Env) (lockers.Locker, error) {
			return build(store, env, memory.Options{}), nil
		}, Register: memoryRegisters(), Close: func() {}}, nil
	}}
}

// memoryRegisters gives an in-process locker in-process registers, one
// plain and one fenced store shared by every client of the run.
func memoryRegisters() func(context.Context, lockers.Env, bool) (register.Store, error) {
	plain, fenced := register.NewMemory(false), register.NewMemory(true)
	return func(_ context.Context, _ lockers.Env, wantFenced bool) (register.Store, error) {
		if wantFenced {
			return fenced, nil
		}
		return plain, nil
	}
}

// mutantSpec scales the lease's TTL by the run's time scale; the poll
// interval and acquire timeout stay as they are, being no part of the
// lease's safety.
func mutantSpec(name, summary string, ttl time.Duration, build func(*mutants.Store, lockers.Env, mutants.Options) *mutants.Locker) LockerSpec {
	return LockerSpec{Name: name, Summary: summary, Fencing: true, TTL: ttl, Setup: func(_ context.Context, p Params) (*Instance, error) {
		opts := mutants.Options{TTL: time.Duration(float64(ttl) * p.TimeScale)}
		// The store judges expiry on server time: the real clock, which
		// client clock faults do not touch.
		store := mutants.NewStore(lockers.SystemClock{}, mutants.StoreOptions{})
		return &Instance{New: func(env lockers.Env) (lockers.Locker, error) {
			return build(store, env, opts), nil
		}, Register: memoryRegisters(), Close: func() {}}, nil
	}}
}

// withRedis gives a Redis locker its servers: by default n embedded Redis
// servers (miniredis, keys expiring in real time) on loopback for the run;
// the first n of Params.RedisAddrs when set (a worker attaching to the
// harness's servers sets them too). Clients dial them through Env.Dial, so
// each client gets its own proxy per server. The registers live on the
// first server.
func withRedis(n int, build func(addrs []string, p Params, env lockers.Env) (lockers.Locker, error)) func(context.Context, Params) (*Instance, error) {
	return func(ctx context.Context, p Params) (*Instance, error) {
		given := p.RedisAddrs
		if p.Attach != nil {
			given = p.Attach.Redis
		}
		if len(given) > 0 {
			if len(given) < n {
				return nil, fmt.Errorf("this locker needs %d independent Redis servers and -redis-addr names %d", n, len(given))
			}
			return redisInstance(given[:n], p, build, func() {}), nil
		}
		var servers []*redisserver.Server
		closeAll := func() {
			for _, s := range servers {
				s.Close()
			}
		}
		var addrs []string
		for range n {
			s, err := redisserver.StartEmbedded()
			if err != nil {
				closeAll()
				return nil, fmt.Errorf("embedded Redis: %w", err)
			}
			servers = append(servers, s)
			addrs = append(addrs, s.Addr())
		}
		return redisInstance(addrs, p, build, closeAll), nil
	}
}

func redisInstance(addrs []string, p Params, build func(addrs []string, p Params, env lockers.Env) (lockers.Locker, error), closeBackend func()) *Instance {
	return &Instance{
		New: func(env lockers.Env) (lockers.Locker, error) { return build(addrs, p, env) },
		Register: func(_ context.Context, env lockers.Env, fenced bool) (register.Store, error) {
			// No retries: a resent SET after a lost reply would make
			// one increment look like two calls' worth of effect.
			client := goredis.NewClient(&goredis.Options{Addr: addrs[0], Dialer: env.Dial, MaxRetries: -1})
			return closingStore{Store: register.NewRedis(client, fenced), close: client.Close}, nil
		},
		Close:     closeBackend,
		Upstreams: addrs,
		Attach:    Attachment{Redis: addrs},
	}
}

// closingStore closes the client a store was built on when the run ends.
type closingStore struct {
	register.Store
	close func() error
}

func (s closingStore) Close() error { return s.close() }
