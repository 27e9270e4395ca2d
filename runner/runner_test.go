package runner_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lockcheck/lockcheck/catalog"
	"github.com/lockcheck/lockcheck/harness"
	"github.com/lockcheck/lockcheck/history"
	"github.com/lockcheck/lockcheck/internal/bubble"
	"github.com/lockcheck/lockcheck/lockers"
	"github.com/lockcheck/lockcheck/runner"
	"github.com/lockcheck/lockcheck/scenarios"
)

// BenchmarkSim is the simulation's speed: one seed of ten virtual seconds
// per iteration, reported as seeds per second and as virtual time over wall
// time, the two figures the simulation is judged by. It also reports a
// seed's round trips to its backend, by kind (HTTP requests to the
// in-memory GCS by method, commands to the in-memory Redis by name): times
// the client library's own cost of each kind (the BenchmarkClientFloor of
// lockers/internal/gcsclient and of lockers/redis) they bound how fast any
// in-memory backend could make a seed.
func BenchmarkSim(b *testing.B) {
	for _, locker := range []string{"lease", "fenced", "tus616", "redis"} {
		b.Run(locker, func(b *testing.B) {
			trips := &tripCounter{kinds: map[string]int{}}
			resolve := func(s scenarios.Spec) (harness.LockerSpec, error) {
				spec, err := resolve(s)
				return countTrips(spec, trips), err
			}
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
			total := 0
			for kind, n := range trips.kinds {
				total += n
				b.ReportMetric(float64(n)/float64(b.N), kind+"/seed")
			}
			b.ReportMetric(float64(total)/float64(b.N), "round-trips/seed")
		})
	}
}

// tripCounter counts round trips by kind.
type tripCounter struct {
	mu    sync.Mutex
	kinds map[string]int
}

func (c *tripCounter) add(kind string) {
	c.mu.Lock()
	c.kinds[kind]++
	c.mu.Unlock()
}

// countTrips makes spec's in-memory backend count every client's round
// trips to it, by kind, into n.
func countTrips(spec harness.LockerSpec, n *tripCounter) harness.LockerSpec {
	setup := spec.Setup
	spec.Setup = func(ctx context.Context, p harness.Params) (*harness.Instance, error) {
		inst, err := setup(ctx, p)
		if err != nil || inst.Links == nil {
			return inst, err
		}
		links := inst.Links
		inst.Links = func(slot int) harness.Link {
			link := links(slot)
			if slot == harness.HarnessLink {
				return link
			}
			if link.HTTP != nil {
				next := link.HTTP
				link.HTTP = roundTripFunc(func(r *http.Request) (*http.Response, error) {
					n.add(r.Method)
					return next.RoundTrip(r)
				})
			}
			if link.Dial != nil {
				dial := link.Dial
				link.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
					c, err := dial(ctx, network, addr)
					if err != nil {
						return c, err
					}
					return writeCounter{c, n}, nil
				}
			}
			return link
		}
		return inst, nil
	}
	return spec
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// writeCounter counts the commands written on a Redis connection by name.
type writeCounter struct {
	net.Conn
	n *tripCounter
}

// command is the name in each RESP array a write holds: *N, then the name
// as a bulk string, $len and the name.
var command = regexp.MustCompile(`(?:^|\r\n)\*\d+\r\n\$\d+\r\n([A-Za-z]+)\r\n`)

func (c writeCounter) Write(p []byte) (int, error) {
	for _, m := range command.FindAllSubmatch(p, -1) {
		c.n.add(strings.ToLower(string(m[1])))
	}
	return c.Conn.Write(p)
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

// One rule decides whether liveness counts, in every command: always when
// recovery is required; for a leased locker when the recovery window
// holds two leases; never otherwise.
func TestLivenessCounts(t *testing.T) {
	lease := func(l, window time.Duration) history.RunInfo {
		return history.RunInfo{Lease: history.Duration(l), RecoveryTimeout: history.Duration(window)}
	}
	cases := []struct {
		run      history.RunInfo
		required bool
		want     bool
		why      string
	}{
		{lease(time.Second, 10*time.Second), false, true, "the 10s recovery window holds two 1s leases"},
		{lease(12*time.Second, 10*time.Second), false, false, "shorter than two 12s leases; -require-recovery counts it"},
		{lease(12*time.Second, 10*time.Second), true, true, "recovery required"},
		{lease(0, 10*time.Second), false, false, "no lease to outlast"},
		{lease(0, 10*time.Second), true, true, "recovery required"},
	}
	for _, c := range cases {
		got, why := runner.LivenessCounts(c.run, runner.CheckOptions{RequireRecovery: c.required})
		if got != c.want || !strings.Contains(why, c.why) {
			t.Errorf("%+v, required %v: %v (%s), want %v (%s)", c.run, c.required, got, why, c.want, c.why)
		}
	}
}
