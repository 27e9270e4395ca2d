package runner_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/lockcheck/lockcheck/catalog"
	"github.com/lockcheck/lockcheck/harness"
	"github.com/lockcheck/lockcheck/internal/bubble"
	"github.com/lockcheck/lockcheck/runner"
	"github.com/lockcheck/lockcheck/scenarios"
)

// BenchmarkSim is the simulation's speed: one seed of ten virtual seconds
// per iteration, reported as seeds per second and as virtual time over wall
// time, the two figures the simulation is judged by.
func BenchmarkSim(b *testing.B) {
	for _, locker := range []string{"lease", "fenced", "tus616", "redis"} {
		b.Run(locker, func(b *testing.B) {
			spec, err := scenarios.Spec{Name: "bench", Locker: locker, Sim: true}.Normalize(resolve)
			if err != nil {
				b.Fatal(err)
			}
			pool := bubble.Start(1)
			defer pool.Close()
			dir := b.TempDir()
			var virtual time.Duration
			b.ResetTimer()
			for i := range b.N {
				seed := uint64(i + 1)
				res, err := runner.Run(context.Background(), runner.Job{
					Spec: spec, Resolve: resolve, Seed: seed, Bubbles: pool, ReportFailuresOnly: true,
					Dir: filepath.Join(dir, fmt.Sprint(seed)),
				}, nil)
				if err != nil {
					b.Fatal(err)
				}
				if n := len(res.History.Events); n > 0 {
					virtual += time.Duration(res.History.Events[n-1].Time)
				}
			}
			wall := b.Elapsed()
			b.ReportMetric(float64(b.N)/wall.Seconds(), "seeds/s")
			b.ReportMetric(virtual.Seconds()/wall.Seconds(), "virtual/wall")
		})
	}
}

func resolve(s scenarios.Spec) (harness.LockerSpec, error) {
	return catalog.Resolve(s.Locker, s.Worker, s.Backend)
}
