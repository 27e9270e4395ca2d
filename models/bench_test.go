package models

import (
	"fmt"
	"runtime"
	"runtime/metrics"
	"sync"
	"testing"
	"time"

	"github.com/lockcheck/lockcheck/models/synth"
)

// BenchmarkCheck runs every checker on synthetic histories of a correct
// lock in the shape the harness records (see synth.Realistic). Besides time
// and allocation it reports the heap's high-water mark during the check
// (peak-heap-MB, which includes the history itself) and the heap the
// history alone occupies (history-heap-MB). A verdict other than valid —
// unknown included — fails the benchmark: a fast wrong answer is no
// answer. Goals: no unknown at 100k operations, 64 clients, one key; 1M
// operations, 64 clients, one key in under 5 s and 1 GB.
//
//	go test -run '^$' -bench BenchmarkCheck -benchtime 1x -benchmem ./models/ | go run ./models/internal/benchtable
func BenchmarkCheck(b *testing.B) {
	for _, ops := range []int{10_000, 100_000, 1_000_000} {
		for _, clients := range []int{8, 64} {
			for _, keys := range []int{1, 16} {
				name := fmt.Sprintf("ops=%s/clients=%d/keys=%d", count(ops), clients, keys)
				b.Run(name, func(b *testing.B) { benchCheck(b, ops, clients, keys) })
			}
		}
	}
}

// BenchmarkCheckUnreportedAttempts is the one-key, 64-client case for a
// locker that does not report when its winning attempt started: every
// blocking acquire's interval then spans its whole wait, and only the
// narrowing by holds (see CheckLinearizable) keeps the search small.
func BenchmarkCheckUnreportedAttempts(b *testing.B) {
	for _, ops := range []int{100_000, 1_000_000} {
		b.Run(fmt.Sprintf("ops=%s/clients=64/keys=1", count(ops)), func(b *testing.B) {
			cfg := synth.Realistic(uint64(ops), 64, 1, ops)
			cfg.OmitAttempt = true
			benchHistory(b, cfg)
		})
	}
}

func benchCheck(b *testing.B, ops, clients, keys int) {
	benchHistory(b, synth.Realistic(uint64(ops+clients+keys), clients, keys, ops))
}

func benchHistory(b *testing.B, cfg synth.Config) {
	res, err := synth.Generate(cfg)
	if err != nil {
		b.Fatal(err)
	}
	h := res.History
	runtime.GC()
	base := heapBytes()
	peak := watchHeap()
	b.ReportAllocs()
	for b.Loop() {
		r, err := Check(h, Options{AcceptPartial: true, LinearizabilityTimeout: time.Minute})
		if err != nil {
			b.Fatal(err)
		}
		if r.Verdict != Valid || r.Liveness.Verdict != Valid {
			b.Fatalf("a correct lock judged:\n%s", r.Summary())
		}
	}
	b.ReportMetric(float64(peak())/1e6, "peak-heap-MB")
	b.ReportMetric(float64(base)/1e6, "history-heap-MB")
	runtime.KeepAlive(h)
}

const heapMetric = "/memory/classes/heap/objects:bytes"

// heapBytes is the memory held by heap objects, live or not yet swept: what
// the process must have, as opposed to what it keeps after a collection.
func heapBytes() uint64 {
	s := []metrics.Sample{{Name: heapMetric}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// watchHeap samples the heap every 200µs until the returned function is
// called, which returns the highest value seen. Sampling can miss a peak
// shorter than the period, so the figure is a lower bound, close to the
// truth for a heap that grows over seconds.
func watchHeap() func() uint64 {
	var (
		mu   sync.Mutex
		high = heapBytes()
		stop = make(chan struct{})
		done = make(chan struct{})
	)
	go func() {
		defer close(done)
		tick := time.NewTicker(200 * time.Microsecond)
		defer tick.Stop()
		s := []metrics.Sample{{Name: heapMetric}}
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				metrics.Read(s)
				mu.Lock()
				high = max(high, s[0].Value.Uint64())
				mu.Unlock()
			}
		}
	}()
	return func() uint64 {
		close(stop)
		<-done
		mu.Lock()
		defer mu.Unlock()
		return max(high, heapBytes())
	}
}

func count(n int) string {
	switch {
	case n >= 1_000_000 && n%1_000_000 == 0:
		return fmt.Sprintf("%dM", n/1_000_000)
	case n >= 1000 && n%1000 == 0:
		return fmt.Sprintf("%dk", n/1000)
	}
	return fmt.Sprint(n)
}
