package harness

import (
	"context"
	"errors"
	"github.com/lockcheck/lockcheck/internal/gcsapi"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/lockcheck/lockcheck/lockers"
)

// A gate stands between one client incarnation and the world: while the
// gate is paused the client's timers do not fire and its requests do not
// move, as if its process were stopped; once the gate is dead nothing of the
// client ever moves again, as if the process were killed. Goroutine clients
// have no process to signal, so every way a locker can observe the world
// (its clock and its network, per the Env contract) passes through the gate.
type gate struct {
	mu      sync.Mutex
	paused  bool
	dead    bool
	resumed chan struct{} // closed at resume or death; replaced at each pause
	held    []func()      // timer deliveries that came due while paused
	// graves are the timer deliveries that came due after death: a dead
	// client's goroutines wait for them forever, as a dead process's
	// would, until the run buries it (simulation only).
	graves []func()
	buried bool
}

func newGate() *gate {
	g := &gate{resumed: make(chan struct{})}
	close(g.resumed)
	return g
}

func (g *gate) pause() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.paused || g.dead {
		return
	}
	g.paused = true
	g.resumed = make(chan struct{})
}

func (g *gate) resume() {
	g.mu.Lock()
	if !g.paused || g.dead {
		g.mu.Unlock()
		return
	}
	g.paused = false
	held := g.held
	g.held = nil
	close(g.resumed)
	g.mu.Unlock()
	// In due order, as a resumed process would see its expired timers.
	for _, deliver := range held {
		deliver()
	}
}

// kill makes the gate dead for good. Held deliveries are dropped, and
// anything waiting on the gate stays blocked: a killed process does not get
// to run its cleanup.
func (g *gate) kill() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.dead {
		return
	}
	g.dead = true
	g.held = nil
	if g.paused {
		g.paused = false
		close(g.resumed)
	}
}

// bury lets a dead client's goroutines run to their end: every timer it
// waits for fires, and every call it makes fails at once. A simulated run
// does this once its history is complete, since a testing/synctest bubble
// ends only when every goroutine in it has returned; a live run leaves
// them frozen, as a dead process is.
func (g *gate) bury() {
	g.mu.Lock()
	if !g.dead || g.buried {
		g.mu.Unlock()
		return
	}
	g.buried = true
	graves := g.graves
	g.graves = nil
	g.mu.Unlock()
	for _, f := range graves {
		f()
	}
}

func (g *gate) isDead() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.dead
}

// deliver runs f now, at resume, or never, depending on the gate.
func (g *gate) deliver(f func()) {
	g.mu.Lock()
	switch {
	case g.dead && g.buried:
		g.mu.Unlock()
		f()
	case g.dead:
		g.graves = append(g.graves, f)
		g.mu.Unlock()
	case g.paused:
		g.held = append(g.held, f)
		g.mu.Unlock()
	default:
		g.mu.Unlock()
		f()
	}
}

// pass blocks while the gate is paused and forever once it is dead, unless
// ctx ends first.
func (g *gate) pass(ctx context.Context) error {
	if err := g.enter(ctx); !errors.Is(err, errKilled) {
		return err
	}
	g.mu.Lock()
	buried := g.buried
	g.mu.Unlock()
	if buried {
		return errKilled
	}
	<-ctx.Done()
	return ctx.Err()
}

// enter blocks while the gate is paused, as pass does, but fails at once
// with errKilled once the gate is dead, in the same look at the gate: for
// calls that must not wait on a dead client (a dial), which pass holds
// until their context ends.
func (g *gate) enter(ctx context.Context) error {
	for {
		g.mu.Lock()
		dead, paused, resumed := g.dead, g.paused, g.resumed
		g.mu.Unlock()
		switch {
		case dead:
			return errKilled
		case !paused:
			return nil
		}
		select {
		case <-resumed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// clientClock is the clock a client's locker sees: its machine's clock
// (skewed and drifting under clock faults; real time when nil), with
// timers that wait for the client's gate.
type clientClock struct {
	gate    *gate
	machine *machineClock
	// minWait, in a simulation, is the least a timer waits (SimMinWait).
	minWait time.Duration
}

// SimMinWait is the least a client's timer waits in a simulation. Virtual
// time advances only when every goroutine of the run is blocked, and a
// locker that polls with no delay between attempts (tus's MemoryLocker,
// whose setImmediate is After(0)) is never blocked while a holder works:
// the run's clock would stand still and no seed would finish. A live
// poll loop also takes time, a turn of an event loop or of the
// scheduler, so in a simulation a shorter timer waits this long; the
// order of the run's events stays the seed's.
const SimMinWait = 100 * time.Microsecond

var _ lockers.Clock = (*clientClock)(nil)

func (c *clientClock) Now() time.Time {
	return c.machine.Now()
}

func (c *clientClock) After(d time.Duration) <-chan time.Time {
	d = max(d, c.minWait)
	ch := make(chan time.Time, 1)
	time.AfterFunc(c.machine.RealWait(d), func() {
		c.gate.deliver(func() { ch <- c.Now() })
	})
	return ch
}

// gatedTransport holds a client's HTTP requests at its gate before they are
// sent and before their responses are handed back, so a paused client
// neither sends nor learns anything.
type gatedTransport struct {
	gate *gate
	base http.RoundTripper
	// writer, when set, names the client on each request it sends
	// (gcsapi.WriterHeader), for the backend audit.
	writer string
}

func (t gatedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if err := t.gate.pass(req.Context()); err != nil {
		return nil, err
	}
	if t.writer != "" {
		req = req.Clone(req.Context())
		req.Header.Set(gcsapi.WriterHeader, t.writer)
	}
	resp, err := t.base.RoundTrip(req)
	if perr := t.gate.pass(req.Context()); perr != nil {
		if resp != nil {
			resp.Body.Close()
		}
		return nil, perr
	}
	return resp, err
}

// errKilled is what a killed client's connections answer: the process is
// gone, so nothing it had open can be used again.
var errKilled = errors.New("client killed")

// gatedConn holds a client's reads and writes on a raw connection (Redis)
// at its gate, as gatedTransport does for HTTP: a paused client neither
// sends nor learns anything, and a killed one's connections are dead. A
// read already blocked in the kernel when the pause begins still returns
// what arrives; the next one waits.
type gatedConn struct {
	net.Conn
	gate *gate
}

func (c gatedConn) wait() error {
	for {
		c.gate.mu.Lock()
		dead, paused, resumed := c.gate.dead, c.gate.paused, c.gate.resumed
		c.gate.mu.Unlock()
		switch {
		case dead:
			c.Conn.Close()
			return errKilled
		case !paused:
			return nil
		}
		// A pause ends with resume or kill, both of which close resumed;
		// the nemesis bounds every pause.
		<-resumed
	}
}

func (c gatedConn) Read(b []byte) (int, error) {
	if err := c.wait(); err != nil {
		return 0, err
	}
	n, err := c.Conn.Read(b)
	if werr := c.wait(); werr != nil {
		return 0, werr
	}
	return n, err
}

func (c gatedConn) Write(b []byte) (int, error) {
	if err := c.wait(); err != nil {
		return 0, err
	}
	return c.Conn.Write(b)
}
