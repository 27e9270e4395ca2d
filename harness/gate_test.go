package harness

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"testing/synctest"
	"time"

	"github.com/lockcheck/lockcheck/harness/internal/skewclock"
)

func TestPausedClockHoldsTimersUntilResume(t *testing.T) {
	g := newGate()
	c := &clientClock{gate: g}
	g.pause()
	fired := c.After(time.Nanosecond)
	// The timer is due almost at once; it must still be held. Wait for a
	// second, unpaused-clock timer that is due later to prove time passed.
	later := (&clientClock{gate: newGate()}).After(10 * time.Millisecond)
	<-later
	select {
	case <-fired:
		t.Fatal("timer fired while the client was paused")
	default:
	}
	g.resume()
	<-fired // must arrive now; a hang here fails the test by timeout
}

// In a simulation a timer of no delay still waits SimMinWait of virtual
// time; outside one it fires at once.
func TestSimulatedTimersHaveAFloor(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		<-(&clientClock{gate: newGate(), minWait: SimMinWait}).After(0)
		if waited := time.Since(start); waited != SimMinWait {
			t.Errorf("a simulated After(0) waited %v, want %v", waited, SimMinWait)
		}
		start = time.Now()
		<-(&clientClock{gate: newGate()}).After(0)
		if waited := time.Since(start); waited != 0 {
			t.Errorf("a live After(0) waited %v, want 0", waited)
		}
	})
}

func TestDeadGateDropsTimersAndBlocksPassUntilContextEnds(t *testing.T) {
	g := newGate()
	c := &clientClock{gate: g}
	g.pause()
	fired := c.After(time.Nanosecond)
	g.kill()
	g.resume() // no effect on a dead gate
	<-(&clientClock{gate: newGate()}).After(10 * time.Millisecond)
	select {
	case <-fired:
		t.Fatal("a dead client's timer fired")
	default:
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.pass(ctx) }()
	cancel()
	if err := <-done; err == nil {
		t.Fatal("pass through a dead gate returned nil")
	}
}

func TestPassWaitsForResume(t *testing.T) {
	g := newGate()
	if err := g.pass(context.Background()); err != nil {
		t.Fatal(err)
	}
	g.pause()
	passed := make(chan error, 1)
	go func() { passed <- g.pass(context.Background()) }()
	select {
	case <-passed:
		t.Fatal("passed a paused gate")
	case <-(&clientClock{gate: newGate()}).After(10 * time.Millisecond):
	}
	g.resume()
	if err := <-passed; err != nil {
		t.Fatal(err)
	}
}

// A machine clock steps by a shift, runs fast or slow by its drift rate,
// keeps the skew it reached when the drift stops, and shortens or
// lengthens timers by its rate.
func TestMachineClockShiftsAndDrifts(t *testing.T) {
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	real := base
	m := skewclock.New(func() time.Time { return real })
	skew := func() time.Duration { return m.Now().Sub(real) }
	if skew() != 0 {
		t.Fatalf("fresh clock skewed by %v", skew())
	}
	if got := m.Shift(time.Hour); got != time.Hour || skew() != time.Hour {
		t.Fatalf("after a 1h step: shift says %v, clock %v ahead", got, skew())
	}
	m.Drift(0.5)
	real = real.Add(10 * time.Second)
	if skew() != time.Hour+5*time.Second {
		t.Fatalf("10 s at +50%%: %v ahead, want 1h5s", skew())
	}
	if w := m.RealWait(3 * time.Second); w != 2*time.Second {
		t.Fatalf("3 s on a 1.5× clock takes %v of real time, want 2s", w)
	}
	if got := m.Drift(0); got != time.Hour+5*time.Second {
		t.Fatalf("drift stopped at %v, want the 1h5s reached", got)
	}
	real = real.Add(time.Minute)
	m.Shift(-time.Hour - 5*time.Second)
	if skew() != 0 || m.RealWait(time.Second) != time.Second {
		t.Fatalf("after stepping back: %v ahead, 1 s wait takes %v", skew(), m.RealWait(time.Second))
	}
	var none *machineClock
	if d := time.Until(none.Now()); d > time.Second || d < -time.Second {
		t.Fatalf("a client without a machine clock is %v off real time", d)
	}
}

// A paused client's raw connection neither sends nor hands back a reply
// until resume; a killed client's connection is dead.
func TestGatedConnHoldsTrafficWhilePausedAndDiesWithTheClient(t *testing.T) {
	g := newGate()
	mine, server := net.Pipe()
	defer server.Close()
	conn := gatedConn{Conn: mine, gate: g}

	g.pause()
	wrote := make(chan error, 1)
	go func() {
		_, err := conn.Write([]byte("PING"))
		wrote <- err
	}()
	// The server reads with a deadline: nothing may arrive while paused.
	server.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	buf := make([]byte, 4)
	if n, err := server.Read(buf); err == nil {
		t.Fatalf("server read %q from a paused client", buf[:n])
	}
	server.SetReadDeadline(time.Time{})
	g.resume()
	if _, err := io.ReadFull(server, buf); err != nil || string(buf) != "PING" {
		t.Fatalf("after resume the server read %q, %v; want PING", buf, err)
	}
	if err := <-wrote; err != nil {
		t.Fatalf("write: %v", err)
	}

	go server.Write([]byte("PONG"))
	got := make([]byte, 4)
	if _, err := io.ReadFull(conn, got); err != nil || string(got) != "PONG" {
		t.Fatalf("read %q, %v; want PONG", got, err)
	}
	g.kill()
	if _, err := conn.Write([]byte("x")); !errors.Is(err, errKilled) {
		t.Fatalf("write after kill: %v, want errKilled", err)
	}
	if _, err := conn.Read(got); !errors.Is(err, errKilled) {
		t.Fatalf("read after kill: %v, want errKilled", err)
	}
}

// A killed client's dials fail at once, whatever their context: a
// background reconnect must not hang its locker's Close.
func TestDeadClientsDialFailsAtOnce(t *testing.T) {
	r := &run{}
	g := newGate()
	dial := r.dialerFor(0, g)
	g.kill()
	if _, err := dial(context.Background(), "tcp", "127.0.0.1:1"); !errors.Is(err, errKilled) {
		t.Fatalf("dial after kill: %v, want errKilled", err)
	}
	g2 := newGate()
	dial2 := r.dialerFor(0, g2)
	g2.pause()
	done := make(chan error, 1)
	go func() {
		_, err := dial2(context.Background(), "tcp", "127.0.0.1:1")
		done <- err
	}()
	g2.kill() // killed while paused: the waiting dial fails too
	if err := <-done; !errors.Is(err, errKilled) {
		t.Fatalf("dial paused then killed: %v, want errKilled", err)
	}
}

// enter lets a call through an open gate, holds it while the gate is
// paused, and fails it at once when the gate is dead, however the death
// and the call interleave. TestDeadClientsDialFailsAtOnce used to hang
// (within 20,000 runs under -race, and once in a clean-clone make test)
// when the dialer looked at the gate, found it alive, and then waited on
// it dead.
func TestGateEnter(t *testing.T) {
	ctx := context.Background()
	g := newGate()
	if err := g.enter(ctx); err != nil {
		t.Fatalf("open gate: %v", err)
	}
	g.pause()
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if err := g.enter(cancelled); !errors.Is(err, context.Canceled) {
		t.Fatalf("paused gate, cancelled call: %v, want context.Canceled", err)
	}
	through := make(chan error, 1)
	go func() { through <- g.enter(ctx) }()
	g.resume()
	if err := <-through; err != nil {
		t.Fatalf("paused then resumed: %v", err)
	}
	g.kill()
	if err := g.enter(ctx); !errors.Is(err, errKilled) {
		t.Fatalf("dead gate: %v, want errKilled", err)
	}
}
