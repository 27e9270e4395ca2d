package runner_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lockcheck/lockcheck/catalog"
	"github.com/lockcheck/lockcheck/harness"
	"github.com/lockcheck/lockcheck/internal/bubble"
	"github.com/lockcheck/lockcheck/lockers"
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

// panicky wraps a locker so that its first Lock call panics: the run goes
// on (the harness recovers a locker's panic), and the panic must reach the
// result as a warning, not vanish.
type panicky struct {
	lockers.Locker
	once *sync.Once
}

func (p panicky) Lock(ctx context.Context, key string) (lockers.Lease, error) {
	p.once.Do(func() { panic("planted: the locker's first Lock panics") })
	return p.Locker.Lock(ctx, key)
}

func TestALockerPanicIsAWarning(t *testing.T) {
	control, err := catalog.Lookup("lease")
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	spec := harness.LockerSpec{Name: "panicky", Fencing: true, TTL: control.TTL, Setup: func(ctx context.Context, p harness.Params) (*harness.Instance, error) {
		inst, err := control.Setup(ctx, p)
		if err != nil {
			return nil, err
		}
		next := inst.New
		inst.New = func(env lockers.Env) (lockers.Locker, error) {
			l, err := next(env)
			return panicky{l, &once}, err
		}
		return inst, nil
	}}
	resolve := func(scenarios.Spec) (harness.LockerSpec, error) { return spec, nil }
	s, err := scenarios.Spec{Name: "panic", Locker: "panicky", Clients: 2, Duration: scenarios.Duration(time.Second)}.Normalize(resolve)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "run")
	res, err := runner.Run(context.Background(), runner.Job{Spec: s, Resolve: resolve, Seed: 1, Dir: dir}, nil)
	if res == nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(res.Warnings, func(w string) bool { return strings.Contains(w, "locker panicked: planted") }) {
		t.Errorf("warnings %q lack the locker's panic", res.Warnings)
	}
	saved, rerr := runner.ReadResult(filepath.Join(dir, "result.json"))
	if rerr != nil || !slices.ContainsFunc(saved.Warnings, func(w string) bool { return strings.Contains(w, "locker panicked") }) {
		t.Errorf("result.json warnings: %v %+v", rerr, saved)
	}
}
