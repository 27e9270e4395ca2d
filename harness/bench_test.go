package harness_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"cloud.google.com/go/storage"
	"google.golang.org/api/googleapi"

	"github.com/lockcheck/lockcheck/backends"
	"github.com/lockcheck/lockcheck/backends/gcs"
	"github.com/lockcheck/lockcheck/faults/netfault/proxies"
	"github.com/lockcheck/lockcheck/harness"
	"github.com/lockcheck/lockcheck/history"
	"github.com/lockcheck/lockcheck/lockers"
)

// BenchmarkCycles measures create-if-absent + delete cycles per second on
// the embedded GCS, once with bare storage clients (mode=raw) and once
// through harness.Run with a minimal GCS locker (mode=harness), directly
// and through one toxiproxy per client, so the ratio raw/harness is the
// harness's overhead. Each sub-benchmark runs for a fixed wall window, so
// run it with -benchtime 1x:
//
//	go test -run '^$' -bench BenchmarkCycles -benchtime 1x ./harness/
func BenchmarkCycles(b *testing.B) {
	type key struct {
		net     string
		clients int
	}
	rates := map[string]map[key]float64{"raw": {}, "harness": {}}
	var mu sync.Mutex
	// Raw and harness of one setting run back to back, so a drift in the
	// machine's load hits both alike.
	for _, netMode := range []string{"direct", "proxy"} {
		for _, n := range []int{1, 8, 32} {
			for _, mode := range []string{"raw", "harness"} {
				name := fmt.Sprintf("mode=%s/net=%s/clients=%d", mode, netMode, n)
				b.Run(name, func(b *testing.B) {
					var sum float64
					for range b.N {
						var rate float64
						var err error
						if mode == "raw" {
							rate, err = rawCycles(n, netMode == "proxy", benchWindow)
						} else {
							rate, err = harnessCycles(b, n, netMode == "proxy", benchWindow)
						}
						if err != nil {
							b.Fatal(err)
						}
						sum += rate
					}
					rate := sum / float64(b.N)
					b.ReportMetric(rate, "cycles/s")
					b.ReportMetric(0, "ns/op") // a fixed window per op: meaningless
					mu.Lock()
					rates[mode][key{netMode, n}] = rate
					mu.Unlock()
				})
			}
		}
	}
	var t strings.Builder
	t.WriteString("\n| net | clients | raw cycles/s | harness cycles/s | raw/harness |\n|---|---|---|---|---|\n")
	rows := 0
	for _, netMode := range []string{"direct", "proxy"} {
		for _, n := range []int{1, 8, 32} {
			r, okR := rates["raw"][key{netMode, n}]
			h, okH := rates["harness"][key{netMode, n}]
			if !okR || !okH || h == 0 {
				continue
			}
			fmt.Fprintf(&t, "| %s | %d | %.0f | %.0f | %.2f× |\n", netMode, n, r, h, r/h)
			rows++
		}
	}
	if rows > 0 {
		// Stdout, not b.Log: a parent benchmark's log shows only with -v.
		fmt.Print(t.String())
	}
}

const (
	// benchWindow is how long each sub-benchmark keeps its clients busy.
	benchWindow = 3 * time.Second
	// benchChunkSize is set explicitly: the library default (16 MiB) costs
	// 16 MiB per open writer.
	benchChunkSize = 256 << 10
)

// benchCreate creates obj if it does not exist, with a one-byte body, in
// one request (no retries), and returns the new generation.
func benchCreate(ctx context.Context, obj *storage.ObjectHandle) (int64, error) {
	w := obj.If(storage.Conditions{DoesNotExist: true}).
		Retryer(storage.WithPolicy(storage.RetryNever)).NewWriter(ctx)
	w.ChunkSize = benchChunkSize
	if _, err := w.Write([]byte{'x'}); err != nil {
		w.Close()
		return 0, err
	}
	if err := w.Close(); err != nil {
		return 0, err
	}
	return w.Attrs().Generation, nil
}

// benchDelete deletes generation gen of obj, in one request.
func benchDelete(ctx context.Context, obj *storage.ObjectHandle, gen int64) error {
	return obj.If(storage.Conditions{GenerationMatch: gen}).
		Retryer(storage.WithPolicy(storage.RetryNever)).Delete(ctx)
}

func isStatus(err error, code int) bool {
	var ge *googleapi.Error
	return errors.As(err, &ge) && ge.Code == code
}

// rawCycles runs n goroutines, each looping create+delete on its own object
// with its own storage client and transport, for window, and returns the
// cycles per second. With proxy, each goroutine dials its own toxiproxy.
func rawCycles(n int, proxy bool, window time.Duration) (float64, error) {
	ctx := context.Background()
	srv, err := gcs.Start(ctx, gcs.Options{})
	if err != nil {
		return 0, err
	}
	defer srv.Close()
	u, err := url.Parse(srv.Endpoint())
	if err != nil {
		return 0, err
	}
	upstream := u.Host
	var plane *proxies.Plane
	if proxy {
		if plane, err = proxies.Start(ctx, upstream, n); err != nil {
			return 0, err
		}
		defer plane.Close()
	}
	objs := make([]*storage.ObjectHandle, n)
	for i := range n {
		t := http.DefaultTransport.(*http.Transport).Clone()
		if plane != nil {
			var d net.Dialer
			addr := plane.Addr(i)
			t.DialContext = func(ctx context.Context, network, a string) (net.Conn, error) {
				if a == upstream {
					a = addr
				}
				return d.DialContext(ctx, network, a)
			}
		}
		defer t.CloseIdleConnections()
		c, err := gcs.NewClient(ctx, srv.Endpoint(), &http.Client{Transport: t})
		if err != nil {
			return 0, err
		}
		defer c.Close()
		objs[i] = c.Bucket(srv.Bucket()).Object(fmt.Sprintf("bench/raw-%d", i))
	}

	var cycles atomic.Int64
	errs := make(chan error, n)
	var wg sync.WaitGroup
	start := time.Now()
	stop := start.Add(window)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(stop) {
				gen, err := benchCreate(ctx, objs[i])
				if err != nil {
					errs <- fmt.Errorf("raw client %d: create: %w", i, err)
					return
				}
				if err := benchDelete(ctx, objs[i], gen); err != nil {
					errs <- fmt.Errorf("raw client %d: delete: %w", i, err)
					return
				}
				cycles.Add(1)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	if err := <-errs; err != nil {
		return 0, err
	}
	return float64(cycles.Load()) / elapsed.Seconds(), nil
}

// harnessCycles runs the same cycle through harness.Run with n clients and
// counts released locks in the history's workload phase.
func harnessCycles(b *testing.B, n int, proxy bool, window time.Duration) (float64, error) {
	cfg := harness.Config{
		Locker:  benchGCSSpec(),
		Clients: n,
		// Keys: 1, but the locker puts each client's objects under its
		// identity, so every client has an object of its own: no
		// contention, exactly as in the raw mode.
		Workload:        harness.Workload{Name: "bench", Keys: 1, Rate: 0, AcquireTimeout: 5 * time.Second},
		Duration:        window,
		Proxy:           proxy,
		RecoveryTimeout: 5 * time.Second,
		Seed:            1,
		TimeScale:       1,
		Dir:             filepath.Join(b.TempDir(), "run"),
	}
	out, err := harness.Run(context.Background(), cfg)
	if err != nil {
		return 0, err
	}
	if out.Interrupted || len(out.Unfinished) > 0 {
		return 0, fmt.Errorf("harness run: interrupted %v, unfinished %v", out.Interrupted, out.Unfinished)
	}
	h, err := history.ReadFile(out.HistoryPath)
	if err != nil {
		return 0, err
	}
	first, recovery := int64(-1), int64(-1)
	var released, failed int
	for _, e := range h.Events {
		if e.Process == history.Nemesis {
			if e.F == history.Recovery {
				recovery = e.Time
				break
			}
			continue
		}
		if first < 0 && e.Type == history.Invoke {
			first = e.Time
		}
		switch {
		case e.Type == history.OK && e.F == history.Release:
			released++
		case e.Type == history.Fail || e.Type == history.Info:
			failed++
		}
	}
	if first < 0 || recovery <= first {
		return 0, errors.New("harness run: no workload phase in the history")
	}
	if failed > 0 {
		return 0, fmt.Errorf("harness run: %d calls failed or indeterminate; the benchmark expects none", failed)
	}
	return float64(released) / time.Duration(recovery-first).Seconds(), nil
}

// benchGCSSpec is a minimal GCS lock for the benchmark: Lock is
// create-if-absent, retried after 1 ms on 412; Unlock deletes the
// generation it created. It uses env.HTTP and env.Clock only.
func benchGCSSpec() harness.LockerSpec {
	return harness.LockerSpec{Name: "bench-gcs", Summary: "benchmark only", Setup: backends.GCS(
		func(ctx context.Context, t backends.GCSBucket, _ harness.Params, env lockers.Env) (lockers.Locker, error) {
			c, err := gcs.NewClient(ctx, t.Endpoint, env.HTTP)
			if err != nil {
				return nil, err
			}
			return &benchLocker{bucket: c.Bucket(t.Bucket), env: env}, nil
		})}
}

type benchLocker struct {
	bucket *storage.BucketHandle
	env    lockers.Env
}

type benchLease struct {
	obj *storage.ObjectHandle
	gen int64
}

func (l *benchLocker) Lock(ctx context.Context, key string) (lockers.Lease, error) {
	obj := l.bucket.Object("bench/" + l.env.Identity + "/" + key)
	for {
		l.env.MarkAttempt()
		gen, err := benchCreate(ctx, obj)
		switch {
		case err == nil:
			return &benchLease{obj: obj, gen: gen}, nil
		case !isStatus(err, http.StatusPreconditionFailed):
			return nil, err
		}
		if err := lockers.Sleep(ctx, l.env.Clock, time.Millisecond); err != nil {
			return nil, errors.Join(lockers.ErrNoEffect, err)
		}
	}
}

func (l *benchLease) Token() uint64         { return 0 }
func (l *benchLease) Lost() <-chan struct{} { return nil }
func (l *benchLease) Unlock(ctx context.Context) error {
	err := benchDelete(ctx, l.obj, l.gen)
	if isStatus(err, http.StatusPreconditionFailed) || isStatus(err, http.StatusNotFound) {
		return errors.Join(lockers.ErrNoEffect, err)
	}
	return err
}
