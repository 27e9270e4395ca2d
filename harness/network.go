package harness

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/lockcheck/lockcheck/faults"
	"github.com/lockcheck/lockcheck/faults/serverfault"
	"github.com/lockcheck/lockcheck/history"
)

// attachNetwork puts one proxy per client in front of each networked
// backend when the run schedules network faults, runs process clients
// (each dials through its own proxy), or asks for proxies anyway.
func (r *run) attachNetwork(ctx context.Context, inst *Instance, target *faults.Target) error {
	// An in-memory backend's paths are its network, faulted or not.
	wanted := r.cfg.Proxy || r.cfg.processes() || inst.Links != nil || slices.ContainsFunc(r.cfg.Faults, func(k faults.Kind) bool { return k.Needs == faults.NeedsNetwork })
	if len(inst.Upstreams) == 0 || inst.Network == nil || !wanted {
		return nil
	}
	plane, err := inst.Network(ctx, inst.Upstreams, r.cfg.Clients)
	if err != nil {
		return fmt.Errorf("network fault plane: %w", err)
	}
	r.plane = plane
	target.Network = plane
	return nil
}

// dialerFor opens a client's non-HTTP connections (Redis), through the
// client's gate and, with a proxy plane, to the client's proxy in front of
// the backend it asked for.
func (r *run) dialerFor(slot int, g *gate) func(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		// A killed client's dial fails at once, as its connections do:
		// a library reconnecting in the background (a pub/sub
		// subscriber) would otherwise wait forever, holding its own
		// locks, and the locker's Close with it.
		if err := g.enter(ctx); err != nil {
			return nil, err
		}
		if g.isDead() {
			return nil, errKilled
		}
		if r.plane != nil {
			addr = r.plane.Redirect(slot, addr)
		}
		dial := d.DialContext
		if r.inst != nil && r.inst.Links != nil && r.inst.Links(slot).Dial != nil {
			dial = r.inst.Links(slot).Dial
		}
		conn, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		if r.inst != nil && r.inst.NameConn != nil {
			conn = r.inst.NameConn(conn, slot)
		}
		return gatedConn{Conn: conn, gate: g}, nil
	}
}

func (r *run) closeNetwork() {
	if r.plane != nil {
		r.plane.Close()
	}
}

// transportFor gives a client its own connections; with a proxy plane, a
// dial to the backend goes to the client's proxy instead, so the locker,
// configured with the backend's address, never knows the proxy is there.
func (r *run) transportFor(slot int) http.RoundTripper {
	if r.inst != nil && r.inst.Links != nil {
		return r.inst.Links(slot).HTTP
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	if r.plane != nil {
		var d net.Dialer
		plane := r.plane
		t.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			return d.DialContext(ctx, network, plane.Redirect(slot, addr))
		}
	}
	r.mu.Lock()
	r.transports = append(r.transports, t)
	r.mu.Unlock()
	return t
}

// keepCloser keeps v (a locker, a store, a worker) to close when the run
// is over, if it holds anything to close.
func (r *run) keepCloser(v any) {
	if c, ok := v.(io.Closer); ok {
		r.mu.Lock()
		r.closers = append(r.closers, c)
		r.mu.Unlock()
	}
}

func (r *run) closeLockers() {
	r.mu.Lock()
	closers := r.closers
	r.closers = nil
	r.mu.Unlock()
	// At once, not one after another: a worker process given seconds to
	// stop in order must not make the last one wait for all the others.
	done := make(chan struct{})
	var wg sync.WaitGroup
	for _, c := range closers {
		wg.Add(1)
		go func() { defer wg.Done(); c.Close() }()
	}
	go func() { wg.Wait(); close(done) }()
	// A locker library that hangs in Close must not hang the run: its
	// history is complete by now.
	select {
	case <-done:
	case <-time.After(closeLockersWithin):
		r.log.Logf("lockers still closing after %v; the run goes on without them", closeLockersWithin)
	}
}

// closeLockersWithin bounds the wait for every locker's Close at the end
// of a run.
const closeLockersWithin = 10 * time.Second

func (r *run) closeTransports() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, t := range r.transports {
		t.CloseIdleConnections()
	}
}

// serverFault is the value of a server-fault event.
type serverFault struct {
	Kind    string `json:"kind"`
	Method  string `json:"method"`
	Object  string `json:"object,omitempty"`
	Status  int    `json:"status,omitempty"`
	Backend int    `json:"backend,omitempty"`
}

// recordWrite puts a write the backend accepted into the history, for the
// backend audit.
func (r *run) recordWrite(w history.Write) {
	if !r.recording.Load() {
		return
	}
	r.rec.record(nemesisEvent(history.BackendWrite, w))
}

// writerName is what client slot's requests to the embedded GCS carry
// (gcs.WriterHeader) so that the backend audit knows who wrote; nothing
// for a real bucket, which has no audit and no business with the header.
func (r *run) writerName(slot int) string {
	if r.cfg.GCSBucket != "" {
		return ""
	}
	return strconv.Itoa(slot)
}

// recordServerFault puts every faulted request into the history, so a
// counterexample can be read against the faults that shaped it.
func (r *run) recordServerFault(e serverfault.Event) {
	if !r.recording.Load() {
		return
	}
	r.rec.record(nemesisEvent(history.ServerFault, serverFault{
		Kind: e.Kind.String(), Method: e.Method, Object: e.Object, Status: e.Status, Backend: e.Backend,
	}))
}
