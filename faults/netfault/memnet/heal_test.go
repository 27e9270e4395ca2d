// As in verify: a simulated network seeds math/rand's global source.
//
//go:debug randseednop=0
package memnet

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/googleapis/gax-go/v2"
	"github.com/lockcheck/lockcheck/faults/netfault"
	"github.com/lockcheck/lockcheck/internal/bubble"
)

const (
	testBaseMin = 50 * time.Microsecond
	testBaseMax = time.Millisecond
)

// closeTimes partitions clients 0 and 1, each with two connections being
// read, heals the partition, and returns, for each connection, how long
// after the heal its reader saw the connection end.
func closeTimes(t *testing.T, seed uint64) []time.Duration {
	n := NewNetwork(2, seed, testBaseMin, testBaseMax)
	var servers []net.Conn
	dial := func(context.Context, string, string) (net.Conn, error) {
		c, s := Pipe()
		servers = append(servers, s)
		return c, nil
	}
	var healedAt time.Time
	ended := make([]time.Duration, 4)
	var over atomic.Int64
	var wg sync.WaitGroup
	for i := range ended {
		c, err := n.Dialer(i/2, dial)(t.Context(), "tcp", "redis.invalid:6379")
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := c.Read(make([]byte, 1))
			if !errors.Is(err, io.EOF) {
				t.Errorf("connection %d: %v, want the end of the connection", i, err)
			}
			ended[i] = time.Since(healedAt)
			over.Add(1)
		}()
	}
	heal, _ := n.Partition([]int{0, 1}, netfault.Both)
	time.Sleep(time.Second)
	healedAt = time.Now()
	heal()
	synctest.Wait()
	if n := over.Load(); n != 0 {
		t.Errorf("%d connections ended at the heal's own instant", n)
	}
	wg.Wait()
	for _, s := range servers {
		s.Close()
	}
	return ended
}

// A partition's heal closes the connections it held, as toxiproxy does;
// each close reaches its client a seeded network delay later, not at the
// heal's instant: the heal's record and the failures it causes fall at
// distinct instants, in an order the seed decides.
func TestAHealsClosesReachEachConnectionASeededDelayLater(t *testing.T) {
	var first []time.Duration
	synctest.Test(t, func(t *testing.T) { first = closeTimes(t, 7) })
	for i, d := range first {
		if d < testBaseMin || d > testBaseMax {
			t.Errorf("connection %d ended %v after the heal, want a network delay of %v to %v", i, d, testBaseMin, testBaseMax)
		}
	}
	sorted := slices.Clone(first)
	slices.Sort(sorted)
	if len(slices.Compact(sorted)) != len(first) {
		t.Errorf("connections ended %v after the heal: two at one instant", first)
	}
	var again []time.Duration
	synctest.Test(t, func(t *testing.T) { again = closeTimes(t, 7) })
	if !slices.Equal(first, again) {
		t.Errorf("seed 7 twice: connections ended %v, then %v after the heal", first, again)
	}
}

// A request held by a partition ends a network delay after the heal.
func TestARequestHeldAcrossTheHealEndsAfterIt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := NewNetwork(1, 3, testBaseMin, testBaseMax)
		rt := n.Transport(0, http.NewFileTransport(http.Dir(t.TempDir())))
		heal, _ := n.Partition([]int{0}, netfault.Upstream)
		done := make(chan error, 1)
		go func() { done <- get(t.Context(), rt) }()
		time.Sleep(time.Second)
		at := time.Now()
		heal()
		if err := <-done; !errors.Is(err, errHealed) {
			t.Fatalf("held across the heal: %v, want the closed connection", err)
		}
		if d := time.Since(at); d < testBaseMin || d > testBaseMax {
			t.Errorf("the held request ended %v after the heal, want a network delay", d)
		}
	})
}

// failAndPause is requests answered 503 through a simulated network, each
// followed by the storage client's retry pause, drawn as its retry loop
// draws it: after some work of the library's own, which lets other
// simulations run.
func failAndPause(t *testing.T, seed uint64) []time.Duration {
	n := NewNetwork(1, seed, testBaseMin, testBaseMax)
	rt := n.Transport(0, unavailable{})
	var pauses []time.Duration
	for range 20 {
		// A context of this bubble's own: the test's is from outside it.
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, "http://backend.invalid/", nil)
		resp, err := rt.RoundTrip(req)
		if err != nil {
			t.Error(err)
			return nil
		}
		resp.Body.Close()
		runtime.Gosched()
		bo := gax.Backoff{Initial: time.Second, Max: time.Minute}
		d := bo.Pause()
		pauses = append(pauses, d)
		time.Sleep(d)
	}
	return pauses
}

type unavailable struct{}

func (unavailable) RoundTrip(*http.Request) (*http.Response, error) {
	rec := httptest.NewRecorder()
	rec.WriteHeader(http.StatusServiceUnavailable)
	return rec.Result(), nil
}

// After a failed request the library's retry jitter is the seed's, even
// with simulations side by side drawing from the same global source.
func TestTheJitterAfterAFailureIsTheSeeds(t *testing.T) {
	pool := bubble.Start(2)
	defer pool.Close()
	pauses := map[uint64][][]time.Duration{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range 4 {
		for _, seed := range []uint64{7, 8} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var ds []time.Duration
				if err := pool.Run(func() { ds = failAndPause(t, seed) }, time.Minute); err != nil {
					t.Error(err)
				}
				mu.Lock()
				pauses[seed] = append(pauses[seed], ds)
				mu.Unlock()
			}()
		}
	}
	wg.Wait()
	for seed, runs := range pauses {
		for _, ds := range runs[1:] {
			if !slices.Equal(ds, runs[0]) {
				t.Errorf("seed %d: pauses %v, then %v", seed, runs[0][:3], ds[:3])
			}
		}
	}
	if slices.Equal(pauses[7][0], pauses[8][0]) {
		t.Errorf("seeds 7 and 8 both paused %v: the seed does not reach the jitter", pauses[7][0][:3])
	}
}
