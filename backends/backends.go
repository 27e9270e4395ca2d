// Package backends gives a locker the servers it runs against, as the
// Setup of a harness.LockerSpec: the embedded GCS (fake-gcs-server behind
// the fidelity layer), embedded Redis servers (miniredis), a real bucket
// or real Redis servers when a run names them, or the backend of the
// harness that started this process when a worker attaches to it. Each
// networked backend also brings its register stores and the per-client
// proxy plane (toxiproxy) that network faults act on.
//
// A locker whose state lives in the harness's process needs none of this
// (harness.InProcess), and a program that runs only such lockers never
// links the storage clients, the emulators or toxiproxy.
package backends

import (
	"context"
	"errors"
	"fmt"
	"github.com/lockcheck/lockcheck/history"
	"net"
	"net/url"
	"strconv"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/lockcheck/lockcheck/backends/gcs"
	"github.com/lockcheck/lockcheck/backends/redisserver"
	"github.com/lockcheck/lockcheck/backends/stores"
	"github.com/lockcheck/lockcheck/faults/netfault/memnet"
	"github.com/lockcheck/lockcheck/faults/netfault/proxies"
	"github.com/lockcheck/lockcheck/harness"
	"github.com/lockcheck/lockcheck/harness/register"
	"github.com/lockcheck/lockcheck/lockers"
)

// GCSBucket is where a GCS locker's objects live. An empty Endpoint is
// the real service.
type GCSBucket struct {
	Endpoint string
	Bucket   string
}

// GCSBuild builds one client's GCS locker on bucket b.
type GCSBuild func(ctx context.Context, b GCSBucket, p harness.Params, env lockers.Env) (lockers.Locker, error)

// GCS gives a GCS locker its backend: by default one embedded GCS for the
// run, which every client's locker reaches through its own HTTP client;
// a real bucket when Params.GCSBucket is set; the harness's embedded GCS
// when a worker attaches to it.
func GCS(build GCSBuild) harness.Setup {
	return func(ctx context.Context, p harness.Params) (*harness.Instance, error) {
		if p.GCSBucket != "" {
			return realGCS(ctx, p, func(ctx context.Context, b GCSBucket, env lockers.Env) (lockers.Locker, error) {
				return build(ctx, b, p, env)
			})
		}
		if p.InMemory {
			return inMemoryGCS(p, build)
		}
		if a := p.Attach; a != nil {
			if a.GCSEndpoint == "" || a.GCSBucket == "" {
				return nil, errors.New("this is a GCS locker and the backend to attach to has no GCS endpoint and bucket")
			}
			return gcsInstance(GCSBucket{Endpoint: a.GCSEndpoint, Bucket: a.GCSBucket}, p, build, func() {}), nil
		}
		server, err := gcs.Start(ctx, gcs.Options{Wrap: p.ServerFront, OnWrite: auditWrites(p.OnWrite)})
		if err != nil {
			return nil, fmt.Errorf("embedded GCS: %w", err)
		}
		inst := gcsInstance(GCSBucket{Endpoint: server.Endpoint(), Bucket: server.Bucket()}, p, build, func() { server.Close() })
		inst.ServerFront = p.ServerFront != nil
		return inst, nil
	}
}

func gcsInstance(b GCSBucket, p harness.Params, build GCSBuild, closeBackend func()) *harness.Instance {
	var upstreams []string
	if u, err := url.Parse(b.Endpoint); err == nil && u.Host != "" {
		upstreams = []string{u.Host}
	}
	var newLocker func(lockers.Env) (lockers.Locker, error)
	if build != nil {
		newLocker = func(env lockers.Env) (lockers.Locker, error) {
			// The locker's client lives as long as the run; its
			// construction is local and quick.
			return build(context.Background(), b, p, env)
		}
	}
	return &harness.Instance{
		New: newLocker,
		Register: func(ctx context.Context, env lockers.Env, fenced bool) (register.Store, error) {
			return stores.NewGCS(ctx, b.Endpoint, b.Bucket, env.HTTP, fenced)
		},
		Close:     closeBackend,
		Upstreams: upstreams,
		Network:   startProxies,
		Attach:    harness.Attachment{GCSEndpoint: b.Endpoint, GCSBucket: b.Bucket},
	}
}

// RedisBuild builds one client's Redis locker on the servers addrs.
type RedisBuild func(addrs []string, p harness.Params, env lockers.Env) (lockers.Locker, error)

// Redis gives a Redis locker its n servers: by default n embedded Redis
// servers (miniredis, keys expiring in real time) on loopback for the
// run; the first n of Params.RedisAddrs when set (a worker attaching to
// the harness's servers sets them too). Clients dial them through
// Env.Dial, so each client gets its own proxy per server. The registers
// live on the first server.
func Redis(n int, build RedisBuild) harness.Setup {
	return func(ctx context.Context, p harness.Params) (*harness.Instance, error) {
		if p.Backend != "" && p.Backend != harness.BackendRedisServer && p.Backend != harness.BackendRedis {
			return nil, fmt.Errorf("a Redis locker cannot run on backend %q; give %q or none", p.Backend, harness.BackendRedisServer)
		}
		if p.InMemory {
			return inMemoryRedis(n, p, build), nil
		}
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
			s, err := startRedis(ctx, p.Backend)
			if err != nil {
				closeAll()
				return nil, err
			}
			servers = append(servers, s)
			addrs = append(addrs, s.Addr())
		}
		inst := redisInstance(addrs, p, build, closeAll)
		auditRedis(inst, servers, p.OnWrite)
		return inst, nil
	}
}

// auditRedis has the run's embedded Redis servers report the writes they
// accept to its backend audit, each client naming itself on the
// connections it opens. A real redis-server is not audited (its scripts
// run where nothing outside sees what they write), nor are the
// connections of worker processes, which the harness does not open.
func auditRedis(inst *harness.Instance, servers []*redisserver.Server, record func(history.Write)) {
	if record == nil || len(servers) == 0 || !servers[0].Embedded() {
		return
	}
	for i, s := range servers {
		s.Audit(func(w redisserver.Write) {
			object := w.Key
			if len(servers) > 1 {
				object = fmt.Sprintf("server %d: %s", i, w.Key)
			}
			record(history.Write{Object: object, Op: w.Op, Client: w.Client, Before: w.Before, After: w.After})
		})
	}
	inst.NameConn = redisserver.NameConn
}

func redisInstance(addrs []string, p harness.Params, build RedisBuild, closeBackend func()) *harness.Instance {
	var newLocker func(lockers.Env) (lockers.Locker, error)
	if build != nil {
		newLocker = func(env lockers.Env) (lockers.Locker, error) { return build(addrs, p, env) }
	}
	return &harness.Instance{
		New: newLocker,
		Register: func(_ context.Context, env lockers.Env, fenced bool) (register.Store, error) {
			// No retries: a resent SET after a lost reply would make
			// one increment look like two calls' worth of effect.
			client := goredis.NewClient(&goredis.Options{Addr: addrs[0], Dialer: env.Dial, MaxRetries: -1,
				// As in the lockers: maintenance notifications resolve the
				// address's host name at construction, outside env.Dial (a
				// DNS lookup from inside a simulation's bubble).
				MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}})
			return closingStore{Store: stores.NewRedis(client, fenced), close: client.Close}, nil
		},
		Close:     closeBackend,
		Upstreams: addrs,
		Network:   startProxies,
		Attach:    harness.Attachment{Redis: addrs},
	}
}

// startRedis starts one Redis server on loopback for a run: a
// redis-server process for backend redis-server, miniredis otherwise.
func startRedis(ctx context.Context, backend string) (*redisserver.Server, error) {
	if backend == harness.BackendRedisServer {
		s, err := redisserver.StartReal(ctx, redisserver.Options{})
		if err != nil {
			return nil, fmt.Errorf("backend %s: %w", backend, err)
		}
		return s, nil
	}
	s, err := redisserver.StartEmbedded()
	if err != nil {
		return nil, fmt.Errorf("embedded Redis: %w", err)
	}
	return s, nil
}

// External is the backend of a locker that runs in an external worker
// process (verify run -worker): what the harness starts for the workers
// to share, named by backend: the embedded GCS (BackendGCS), one embedded
// Redis (BackendRedis) or redis-server (BackendRedisServer), or nothing
// (BackendNone: the worker brings its own, which no network or server
// fault reaches, and which has no registers the harness can read). The
// Instance builds no in-process locker: its clients are worker processes.
func External(backend string) harness.Setup {
	return func(ctx context.Context, p harness.Params) (*harness.Instance, error) {
		switch backend {
		case harness.BackendGCS:
			p.GCSBucket = ""
			return GCS(nil)(ctx, p)
		case harness.BackendRedis, harness.BackendRedisServer:
			p.Backend = backend
			return Redis(1, nil)(ctx, p)
		case harness.BackendNone:
			return &harness.Instance{Close: func() {}}, nil
		}
		return nil, fmt.Errorf("unknown backend %q for an external worker; want %s, %s, %s or %s", backend,
			harness.BackendGCS, harness.BackendRedis, harness.BackendRedisServer, harness.BackendNone)
	}
}

// closingStore closes the client a store was built on when the run ends.
type closingStore struct {
	register.Store
	close func() error
}

func (s closingStore) Close() error { return s.close() }

// startProxies is the network plane of every networked backend: a
// toxiproxy proxy per client in front of each upstream.
func startProxies(ctx context.Context, upstreams []string, clients int) (harness.Plane, error) {
	return proxies.StartGroup(ctx, upstreams, clients)
}

// Requests and replies in memory each take a seeded 50 µs to 1 ms of
// virtual time before any fault: a network's own delay, which keeps
// clients' calls apart in the simulation's virtual time.
const (
	inMemoryLatencyMin = 50 * time.Microsecond
	inMemoryLatencyMax = time.Millisecond
)

// inMemoryGCS is the embedded GCS in this process with no socket (the
// same handler chain: server faults, fidelity layer, emulator), each
// client reaching it through its own path of an in-memory network.
func inMemoryGCS(p harness.Params, build GCSBuild) (*harness.Instance, error) {
	m, err := gcs.NewInMemory(gcs.Options{Wrap: p.ServerFront, OnWrite: auditWrites(p.OnWrite)})
	if err != nil {
		return nil, fmt.Errorf("in-memory GCS: %w", err)
	}
	inst := gcsInstance(GCSBucket{Endpoint: m.Endpoint(), Bucket: m.Bucket()}, p, build, m.Close)
	inst.ServerFront = p.ServerFront != nil
	network := memnet.NewNetwork(p.Clients, p.Seed, inMemoryLatencyMin, inMemoryLatencyMax)
	base := m.HTTPClient(nil).Transport
	inst.Links = func(slot int) harness.Link { return harness.Link{HTTP: network.Transport(slot, base)} }
	inst.Network = func(context.Context, []string, int) (harness.Plane, error) { return network, nil }
	inst.Attach = harness.Attachment{}
	return inst, nil
}

// inMemoryRedis is n in-memory Redis servers (miniredis, keys expiring on
// the bubble's clock), told apart by address, each client reaching them
// through its own paths of an in-memory network.
func inMemoryRedis(n int, p harness.Params, build RedisBuild) *harness.Instance {
	servers := map[string]*redisserver.Server{}
	var addrs []string
	var ordered []*redisserver.Server
	for i := range n {
		addr := fmt.Sprintf("redis-%d.in-memory.invalid:6379", i)
		servers[addr] = redisserver.NewInMemoryAt(addr)
		addrs = append(addrs, addr)
		ordered = append(ordered, servers[addr])
	}
	closeAll := func() {
		for _, s := range servers {
			s.Close()
		}
	}
	inst := redisInstance(addrs, p, build, closeAll)
	network := memnet.NewNetwork(p.Clients, p.Seed, inMemoryLatencyMin, inMemoryLatencyMax)
	dial := func(ctx context.Context, netw, addr string) (net.Conn, error) {
		s, ok := servers[addr]
		if !ok {
			return nil, fmt.Errorf("in-memory Redis: no server at %s (the run's are %v)", addr, addrs)
		}
		return s.Dial(ctx, netw, addr)
	}
	inst.Links = func(slot int) harness.Link { return harness.Link{Dial: network.Dialer(slot, dial)} }
	inst.Network = func(context.Context, []string, int) (harness.Plane, error) { return network, nil }
	inst.Attach = harness.Attachment{}
	auditRedis(inst, ordered, p.OnWrite)
	return inst
}

// auditWrites hands the embedded GCS's accepted writes to the run's
// audit, the writer read from the slot its requests carry.
func auditWrites(record func(history.Write)) func(gcs.Write) {
	if record == nil {
		return nil
	}
	return func(w gcs.Write) {
		client, err := strconv.Atoi(w.Writer)
		if err != nil {
			client = -1
		}
		record(history.Write{Object: w.Object, Op: w.Op, Client: client, Before: w.Before, After: w.After})
	}
}
