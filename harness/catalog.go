package harness

import (
	"context"
	"github.com/lockcheck/lockcheck/history"
	"net"
	"net/http"
	"time"

	"github.com/lockcheck/lockcheck/faults/netfault"
	"github.com/lockcheck/lockcheck/harness/register"
	"github.com/lockcheck/lockcheck/lockers"
)

// LockerSpec is one locker the harness can run, as a named value in the
// explicit list [Lockers].
type LockerSpec struct {
	Name    string
	Summary string
	// Fencing says the locker claims tokens that increase per key.
	Fencing bool
	// LostNotice is what the locker promises about telling a holder it
	// lost its lock (history.NoticeBeforeLeaseEnd), empty for nothing.
	LostNotice string
	// TTL is the published lease a lock lives without refresh, before any
	// time scale; zero for locks that never expire. A comparison scales
	// each locker so that leases are alike.
	TTL time.Duration
	// Setup prepares what all clients of one run share (a store, a
	// server, a bucket).
	Setup Setup
}

// Setup prepares a locker's backend for one run. Package backends has
// the networked ones; InProcess is the one for a locker whose state
// lives in the harness's process.
type Setup func(ctx context.Context, p Params) (*Instance, error)

// InProcess is the Setup of a locker whose clients share state inside
// this process: prepare makes the run's state (a store) and returns the
// factory of one client's locker on it. Its register workloads use
// in-memory registers, one plain and one fenced store shared by every
// client of the run. Network and server faults do not apply: no network
// lies between the clients and the state.
func InProcess(prepare func(p Params) func(lockers.Env) (lockers.Locker, error)) Setup {
	return func(_ context.Context, p Params) (*Instance, error) {
		plain, fenced := register.NewMemory(false), register.NewMemory(true)
		return &Instance{
			New: prepare(p),
			Register: func(_ context.Context, _ lockers.Env, wantFenced bool) (register.Store, error) {
				if wantFenced {
					return fenced, nil
				}
				return plain, nil
			},
			Close: func() {},
		}, nil
	}
}

// Instance is a locker's backend, prepared for one run.
type Instance struct {
	// New builds one client's locker.
	New func(lockers.Env) (lockers.Locker, error)
	// Close tears down what Setup prepared.
	Close func()
	// Upstreams are the backends' TCP addresses (host:port) when clients
	// reach them over the network; the harness may then put a proxy per
	// client in front of each, transparently to the locker. Several for
	// lockers that talk to independent servers at once (Redlock). Empty
	// for in-process backends.
	Upstreams []string
	// Network starts the per-client proxy plane in front of Upstreams,
	// for network faults and process clients; nil when the backend
	// brings none (an in-process one, or a real service reached
	// directly).
	Network func(ctx context.Context, upstreams []string, clients int) (Plane, error)
	// Links, when set, is each client's own path to a backend that lives
	// in this process with no socket (the simulation's in-memory GCS and
	// Redis): the HTTP transport and the dialer that the client's gate
	// wraps. Network faults then act on these paths (see Network). Nil
	// for backends reached over the loopback network.
	Links func(slot int) Link
	// ServerFront says Params.ServerFront was installed in front of the
	// backend, so server-side faults reach it.
	ServerFront bool
	// Register opens the register workloads' store on this backend, as
	// one client reaches it (through env's network); fenced picks the
	// store that refuses stale tokens. Nil when the backend has none.
	Register func(ctx context.Context, env lockers.Env, fenced bool) (register.Store, error)
	// Attach is how a worker process reaches this backend (zero for
	// in-process backends, which no other process can reach).
	Attach Attachment
	// NameConn, when set, names a client on each connection it opens to
	// the backend (Env.Dial), so that the backend's audit knows who sent
	// what (the embedded Redis).
	NameConn func(c net.Conn, client int) net.Conn
}

// Attachment locates a running backend, so that a locker in another
// process (a `verify worker`) can reach the backend this run started
// instead of starting its own.
type Attachment struct {
	// GCSEndpoint and GCSBucket locate an embedded GCS.
	GCSEndpoint string
	GCSBucket   string
	// Redis are the servers of a Redis locker, in the locker's order.
	Redis []string
}

// Params are the run settings a locker's setup may need.
type Params struct {
	// TimeScale multiplies every duration of an algorithm alike (its
	// TTLs, timeouts, intervals), keeping their ratios, so a scenario can
	// run a 12 s TTL as 1.2 s. 1 is the published algorithm. Lockers
	// without published durations ignore it.
	TimeScale float64
	// ServerFront, when the backend serves HTTP, goes in front of it:
	// the server-side fault middleware.
	ServerFront func(http.Handler) http.Handler
	// OnWrite, when the embedded backend can report the writes it
	// accepts (the GCS fidelity layer, the embedded Redis), hears of
	// each: the backend audit.
	OnWrite func(history.Write)
	// GCSBucket, when set, runs GCS lockers against this real bucket
	// (application default credentials) instead of the embedded GCS.
	GCSBucket string
	// RedisAddrs, when set, runs Redis lockers against these real
	// servers (host:port) instead of embedded ones; Redlock takes three.
	RedisAddrs []string
	// Attach, when set, reaches a backend another process started (a
	// worker joining the harness's run) instead of starting one.
	Attach *Attachment
	// Backend is Config.Backend: a backend the Setup starts instead of
	// its default, which a Setup that cannot honour it refuses.
	Backend string
	// InMemory asks for a backend in this process with no socket, reached
	// through Instance.Links: the simulation, inside a testing/synctest
	// bubble. A Setup that cannot refuses.
	InMemory bool
	// Clients and Seed are the run's, for an in-memory backend's network
	// (a path per client, latencies drawn from the seed).
	Clients int
	Seed    uint64
	// RunID names the run; backends shared with others (a real bucket)
	// keep the run's objects under it.
	RunID string
}

// HarnessLink is the slot of the harness's own path to an in-memory
// backend (its final reads of the registers), which no fault touches.
const HarnessLink = -1

// Link is one client's path to an in-process backend.
type Link struct {
	HTTP http.RoundTripper
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Plane is a network fault plane with a proxy per client in front of
// each backend: the faults, where each client must dial instead of a
// backend's address, and its teardown.
type Plane interface {
	netfault.Faults
	// Redirect is the address client must dial instead of addr, or addr
	// itself when no backend of the plane listens there.
	Redirect(client int, addr string) string
	Close() error
}

// Kind names the backend for a worker's hello: BackendGCS, BackendRedis,
// or BackendNone when no other process can reach it.
func (a Attachment) Kind() string {
	switch {
	case a.GCSEndpoint != "":
		return BackendGCS
	case len(a.Redis) > 0:
		return BackendRedis
	}
	return BackendNone
}

// Networked says a locker in another process can reach the backend.
func (a Attachment) Networked() bool { return a.GCSEndpoint != "" || len(a.Redis) > 0 }
