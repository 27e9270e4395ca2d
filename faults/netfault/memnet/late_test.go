package memnet

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"
)

// servedAt is a server that notes when each request reached it.
type servedAt struct {
	mu sync.Mutex
	at []time.Time
}

func (s *servedAt) RoundTrip(r *http.Request) (*http.Response, error) {
	s.mu.Lock()
	s.at = append(s.at, time.Now())
	s.mu.Unlock()
	rec := httptest.NewRecorder()
	rec.WriteString("ok")
	return rec.Result(), nil
}

func (s *servedAt) times() []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Time(nil), s.at...)
}

// A request held by deliver-late reaches the server late later although
// its sender gave up long before; the heal hands over what is still held
// at once; the other client's requests are never held.
func TestDeliverLateLandsAfterTheSenderGaveUp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := &servedAt{}
		n := NewNetwork(2, 1, time.Millisecond, 2*time.Millisecond)
		c0, c1 := n.Transport(0, srv), n.Transport(1, srv)
		heal, err := n.DeliverLate([]int{0}, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		if err := get(ctx, c0); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("a held request: %v, want its sender's deadline", err)
		}
		cancel()
		other := time.Now()
		if err := get(t.Context(), c1); err != nil {
			t.Errorf("the other client: %v", err)
		}
		if got := srv.times(); len(got) != 1 || got[0].Sub(other) > 10*time.Millisecond {
			t.Errorf("served %v after the other client sent, want its request alone, at once", sub(got, other))
		}
		time.Sleep(3 * time.Second)
		got := srv.times()
		if len(got) != 2 || got[1].Sub(start) < 2*time.Second || got[1].Sub(start) > 2*time.Second+5*time.Millisecond {
			t.Errorf("served %v after the start, want the held request 2 s late", sub(got, start))
		}

		// Held across the heal: handed over at the heal, and its sender,
		// still waiting, gets the reply.
		done := make(chan error, 1)
		sent := time.Now()
		go func() { done <- get(t.Context(), c0) }()
		time.Sleep(500 * time.Millisecond)
		heal()
		if err := <-done; err != nil {
			t.Errorf("a request held across the heal: %v", err)
		}
		if got := srv.times(); len(got) != 3 || got[2].Sub(sent) < 500*time.Millisecond || got[2].Sub(sent) > 505*time.Millisecond {
			t.Errorf("served %v after it was sent, want at the heal, 500 ms", sub(got, sent))
		}
		if err := get(t.Context(), c0); err != nil || len(srv.times()) != 4 {
			t.Errorf("after the heal: %v", err)
		}
	})
}

func sub(ts []time.Time, from time.Time) []time.Duration {
	var out []time.Duration
	for _, t := range ts {
		out = append(out, t.Sub(from))
	}
	return out
}

// On a byte stream, deliver-late holds each write without blocking the
// writer, keeps the order of later writes behind it, and a stream the
// client closes meanwhile closes only after the held bytes arrived.
func TestDeliverLateHoldsAStreamsWritesInOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := NewNetwork(1, 1, time.Millisecond, 2*time.Millisecond)
		server := make(chan net.Conn, 1)
		dial := n.Dialer(0, func(context.Context, string, string) (net.Conn, error) {
			a, b := Pipe()
			server <- b
			return a, nil
		})
		c, err := dial(t.Context(), "tcp", "redis")
		if err != nil {
			t.Fatal(err)
		}
		srv := <-server
		heal, _ := n.DeliverLate([]int{0}, time.Second)
		start := time.Now()
		c.Write([]byte("DEL "))
		heal()
		c.Write([]byte("lock"))
		c.Close()
		if d := time.Since(start); d != 0 {
			t.Errorf("held writes took %v of the writer's time, want none", d)
		}
		got, err := io.ReadAll(srv)
		if string(got) != "DEL lock" || err != nil {
			t.Errorf("the server read %q, %v; want every byte, in order, then the close", got, err)
		}

		c, _ = dial(t.Context(), "tcp", "redis")
		srv = <-server
		n.DeliverLate([]int{0}, time.Second)
		start = time.Now()
		c.Write([]byte("PEXPIRE"))
		c.Close()
		buf := make([]byte, 16)
		k, _ := srv.Read(buf)
		if string(buf[:k]) != "PEXPIRE" || time.Since(start) < time.Second {
			t.Errorf("the server read %q after %v, want the write a second late", buf[:k], time.Since(start))
		}
		n.HealAll()
	})
}

// Refuse fails one client's requests and dials at once with
// ECONNREFUSED, closes its open streams under it, and leaves the other
// client alone; the heal lets it connect again.
func TestRefuseFailsAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := &servedAt{}
		n := NewNetwork(2, 1, time.Millisecond, 2*time.Millisecond)
		c0, c1 := n.Transport(0, srv), n.Transport(1, srv)
		dial := n.Dialer(0, func(context.Context, string, string) (net.Conn, error) {
			a, _ := Pipe()
			return a, nil
		})
		open, err := dial(t.Context(), "tcp", "redis")
		if err != nil {
			t.Fatal(err)
		}
		reading := make(chan error, 1)
		go func() { _, err := open.Read(make([]byte, 1)); reading <- err }()
		heal, _ := n.Refuse([]int{0})
		start := time.Now()
		if err := get(t.Context(), c0); !errors.Is(err, syscall.ECONNREFUSED) || time.Since(start) != 0 {
			t.Errorf("a request under refuse: %v after %v, want ECONNREFUSED at once", err, time.Since(start))
		}
		if _, err := dial(t.Context(), "tcp", "redis"); !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("a dial under refuse: %v", err)
		}
		if err := <-reading; !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("a read on a stream open at the outage: %v, want the stream closed, refused", err)
		}
		if err := get(t.Context(), c1); err != nil {
			t.Errorf("the other client: %v", err)
		}
		if len(srv.times()) != 1 {
			t.Errorf("served %d requests, want the other client's alone", len(srv.times()))
		}
		heal()
		if err := get(t.Context(), c0); err != nil {
			t.Errorf("after the heal: %v", err)
		}
		if _, err := dial(t.Context(), "tcp", "redis"); err != nil {
			t.Errorf("a dial after the heal: %v", err)
		}
	})
}
