package memnet

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/lockcheck/lockcheck/faults/netfault"
)

// handlerRT serves requests with a handler that counts them: a request
// the count saw reached the server.
type handlerRT struct{ served *atomic.Int64 }

func (h handlerRT) RoundTrip(r *http.Request) (*http.Response, error) {
	h.served.Add(1)
	rec := httptest.NewRecorder()
	rec.WriteString("ok")
	return rec.Result(), nil
}

func get(ctx context.Context, rt http.RoundTripper) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://backend.invalid/", nil)
	resp, err := rt.RoundTrip(req)
	if err == nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	return err
}

// Each fault does to one client's requests what its toxiproxy twin does,
// and nothing to the other client's; every heal undoes it.
func TestFaultsActOnOneClientsRequests(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var served atomic.Int64
		n := NewNetwork(2, 1, time.Millisecond, 2*time.Millisecond)
		c0, c1 := n.Transport(0, handlerRT{&served}), n.Transport(1, handlerRT{&served})
		start := time.Now()
		if err := get(t.Context(), c0); err != nil || served.Load() != 1 {
			t.Fatalf("no fault: %v, served %d", err, served.Load())
		}
		if d := time.Since(start); d < 2*time.Millisecond || d > 4*time.Millisecond {
			t.Errorf("a request and its reply took %v, want 2-4 ms of seeded latency", d)
		}

		heal, _ := n.Partition([]int{0}, netfault.Upstream)
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		if err := get(ctx, c0); !errors.Is(err, context.DeadlineExceeded) || served.Load() != 1 {
			t.Errorf("upstream partition: %v, served %d; want the caller's deadline and nothing served", err, served.Load())
		}
		cancel()
		if err := get(t.Context(), c1); err != nil || served.Load() != 2 {
			t.Errorf("the other client under client 0's partition: %v", err)
		}
		heal()

		heal, _ = n.LoseReplies([]int{0})
		ctx, cancel = context.WithTimeout(t.Context(), time.Second)
		if err := get(ctx, c0); !errors.Is(err, context.DeadlineExceeded) || served.Load() != 3 {
			t.Errorf("lost reply: %v, served %d; want the request served and its reply lost", err, served.Load())
		}
		cancel()
		// A call held by the partition ends when it heals.
		done := make(chan error, 1)
		go func() { done <- get(t.Context(), c0) }()
		// Past the request's own latency, in the bubble's virtual time,
		// to where the lost reply holds it.
		time.Sleep(10 * time.Millisecond)
		synctest.Wait()
		heal()
		if err := <-done; !errors.Is(err, errHealed) {
			t.Errorf("a call held across the heal: %v, want the closed connection", err)
		}

		heal, _ = n.Reset([]int{0}, netfault.Upstream)
		if err := get(t.Context(), c0); !errors.Is(err, errReset) {
			t.Errorf("reset: %v", err)
		}
		heal()
		heal, _ = n.Latency([]int{0}, time.Second, 0, netfault.Both)
		start = time.Now()
		get(t.Context(), c0)
		if d := time.Since(start); d < 2*time.Second {
			t.Errorf("1 s of latency each way took %v", d)
		}
		n.HealAll()
		if err := get(t.Context(), c0); err != nil {
			t.Errorf("after HealAll: %v", err)
		}
	})
}

// The pipe queues writes as a socket's buffer does, delivers what was
// written before a close, and honours deadlines in virtual time.
func TestPipeBuffersAndHonoursDeadlines(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b := Pipe()
		for range 10 {
			if _, err := a.Write([]byte("PUBLISH ")); err != nil {
				t.Fatal(err) // no reader yet: a net.Pipe would block here
			}
		}
		a.Close()
		got, err := io.ReadAll(b)
		if len(got) != 80 || err != nil {
			t.Fatalf("read %d bytes, %v; want the 80 written before the close", len(got), err)
		}
		c, _ := Pipe()
		c.SetReadDeadline(time.Now().Add(time.Second))
		start := time.Now()
		if _, err := c.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) || time.Since(start) != time.Second {
			t.Errorf("read past its deadline: %v after %v", err, time.Since(start))
		}
	})
}

// A reader that stops (a paused subscriber) does not stop its writer until
// pipeBuffer bytes wait unread, however many writes that takes; past it the
// writer waits, durably, until the reader takes some.
func TestPipeHoldsPipeBufferBytesForAReaderThatStopped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b := Pipe()
		msg := make([]byte, 88) // one published notification
		n := 0
		for ; (n+1)*len(msg) <= pipeBuffer && n < 5000; n++ {
			if _, err := a.Write(msg); err != nil {
				t.Fatal(err)
			}
		}
		if n != 5000 {
			t.Fatalf("only %d writes of %d bytes went in before the buffer filled", n, len(msg))
		}
		big := make([]byte, pipeBuffer)
		var wrote atomic.Bool
		go func() {
			if _, err := a.Write(big); err == nil {
				wrote.Store(true)
			}
		}()
		synctest.Wait()
		if wrote.Load() {
			t.Fatalf("a write past %d unread bytes went in", pipeBuffer)
		}
		if _, err := io.ReadFull(b, make([]byte, n*len(msg))); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if !wrote.Load() {
			t.Error("the writer still waits after the reader emptied the buffer")
		}
		a.Close()
	})
}
