//go:debug randseednop=0

package fuzz_test

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/lockcheck/lockcheck/catalog"
	"github.com/lockcheck/lockcheck/fuzz"
	"github.com/lockcheck/lockcheck/harness"
	"github.com/lockcheck/lockcheck/internal/bubble"
	"github.com/lockcheck/lockcheck/models"
	"github.com/lockcheck/lockcheck/runner"
	"github.com/lockcheck/lockcheck/scenarios"
)

// The environment verify fuzz sets for FuzzSim: the scenario to search
// (a scenarios.Spec as JSON) and where findings go.
const (
	scenarioEnv = "LOCKCHECK_FUZZ_SCENARIO"
	outEnv      = "LOCKCHECK_FUZZ_OUT"
)

func resolve(s scenarios.Spec) (harness.LockerSpec, error) {
	return catalog.Resolve(s.Locker, s.Worker, s.Backend)
}

// defaultTarget is what FuzzSim searches when verify fuzz did not name a
// scenario (a plain go test runs its seed corpus on it): a correct lease
// under holder pauses and crashes, which must stay valid on every input.
func defaultTarget() scenarios.Spec {
	return scenarios.Spec{
		Name: "fuzz-default", Locker: "lease", Sim: true, Clients: 4, Keys: 1,
		Faults: []string{"pause-holder", "crash"}, FaultCoverage: "any",
		Duration: scenarios.Duration(4e9), TTL: scenarios.Duration(1e9),
	}
}

func target(tb testing.TB) (scenarios.Spec, string) {
	spec := defaultTarget()
	if path := os.Getenv(scenarioEnv); path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			tb.Fatalf("%s: %v", scenarioEnv, err)
		}
		spec = scenarios.Spec{}
		if err := json.Unmarshal(b, &spec); err != nil {
			tb.Fatalf("%s: %s: %v", scenarioEnv, path, err)
		}
	}
	spec.Sim = true
	spec, err := spec.Normalize(resolve)
	if err != nil {
		tb.Fatalf("the scenario to fuzz: %v", err)
	}
	out := os.Getenv(outEnv)
	if out == "" {
		out = tb.TempDir()
	}
	return spec, out
}

var (
	poolOnce sync.Once
	pool     *bubble.Pool
)

// FuzzSim searches a scenario in simulation: the fuzzer's seed and bytes
// are one run's seed and fault schedule (fuzz.Schedule). An input whose
// run is invalid fails, with its run directory kept in the findings
// folder for verify replay and verify shrink.
func FuzzSim(f *testing.F) {
	spec, out := target(f)
	// The seeds' own schedules, then a few decoded ones: one fault of
	// each of the first kinds, early and late, short and long.
	for seed := uint64(1); seed <= 3; seed++ {
		f.Add(seed, []byte{})
	}
	f.Add(uint64(1), []byte{0, 64, 0, 0, 1, 64, 255, 1})
	f.Add(uint64(2), []byte{1, 200, 128, 2, 0, 10, 30, 3})
	poolOnce.Do(func() { pool = bubble.Start(1) })
	f.Fuzz(func(t *testing.T, seed uint64, data []byte) {
		if seed == 0 {
			t.Skip("seed 0 is not a seed")
		}
		o, err := fuzz.Run(t.Context(), spec, resolve, pool, seed, data, runDir(out, seed, data))
		if err != nil {
			t.Fatalf("the run did not give a verdict: %v", err)
		}
		switch o.Verdict {
		case models.Invalid:
			t.Fatalf("%s\n  run directory: %s\n  replay: verify replay %s\n  shrink: verify shrink %s", o.Line, o.Dir, o.Dir, o.Dir)
		case models.Unknown:
			t.Logf("%s (kept: %s)", o.Line, o.Dir)
		}
	})
}

// runDir names an input's run directory after its seed and a digest of
// its bytes; an input run again (the fuzzer minimizing it) gets a fresh
// one beside it.
func runDir(out string, seed uint64, data []byte) string {
	sum := sha256.Sum256(data)
	base := filepath.Join(out, fmt.Sprintf("s%d-%x", seed, sum[:4]))
	dir := base
	for i := 2; i <= 1000; i++ {
		if _, err := os.Stat(dir); os.IsNotExist(err) {
			break
		}
		dir = fmt.Sprintf("%s-%d", base, i)
	}
	return dir
}

// Every input decodes to a schedule the scenario accepts: kinds of its
// faults, clients in range, one fault after another, each within its
// kind's bounds, all ended by the end of the run.
func TestEveryInputDecodesToAPlayableSchedule(t *testing.T) {
	spec, err := scenarios.Spec{Name: "decode", Locker: "fenced", Sim: true, Clients: 3, TTL: scenarios.Duration(1e9),
		Faults: []string{"pause-holder", "partition", "deliver-late-holder", "fail-fast"}, FaultCoverage: "any"}.Normalize(resolve)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	decoded := 0
	for i := range 500 {
		data := make([]byte, rng.IntN(80))
		for j := range data {
			data[j] = byte(rng.Uint32())
		}
		seed := uint64(i + 1)
		in, err := fuzz.Input(spec, resolve, seed, data)
		if err != nil {
			t.Fatalf("input %x: %v", data, err)
		}
		if len(data) < 4 {
			if in.FaultPlan != nil {
				t.Errorf("input %x of fewer than 4 bytes decoded to %v, want the seed's own schedule", data, in.FaultPlan)
			}
			continue
		}
		if len(in.FaultPlan) > fuzz.MaxFaults {
			t.Errorf("input %x: %d faults, want at most %d", data, len(in.FaultPlan), fuzz.MaxFaults)
		}
		decoded += len(in.FaultPlan)
		if _, err := scenarios.Prepare(in, resolve, seed, t.TempDir(), nil); err != nil {
			t.Errorf("input %x decoded to a schedule the scenario refuses: %v", data, err)
		}
	}
	if decoded < 500 {
		t.Errorf("500 inputs decoded to %d faults in all; the decoding drops most of what it is given", decoded)
	}
}

// An input a planted mutant fails on keeps its run directory, whose
// scenario.json holds the decoded schedule, and running that record again
// gives the same history; the same input on the mutant's correct control
// is valid and keeps nothing.
func TestAFindingIsARunDirectoryThatReplays(t *testing.T) {
	data := []byte{0, 40, 200, 0, 0, 10, 20, 1}
	base := scenarios.Spec{Name: "finding", Sim: true, Clients: 3, Keys: 1, Faults: []string{"crash"}, FaultCoverage: "any",
		Duration: scenarios.Duration(3e9), TTL: scenarios.Duration(200e6)}
	poolOnce.Do(func() { pool = bubble.Start(1) })
	out := t.TempDir()
	for _, c := range []struct {
		locker string
		want   models.Verdict
	}{{"mutant-double-grant", models.Invalid}, {"lease", models.Valid}} {
		s := base
		s.Locker = c.locker
		spec, err := s.Normalize(resolve)
		if err != nil {
			t.Fatal(err)
		}
		dir := filepath.Join(out, c.locker)
		o, err := fuzz.Run(t.Context(), spec, resolve, pool, 1, data, dir)
		if err != nil {
			t.Fatalf("%s: %v", c.locker, err)
		}
		if o.Verdict != c.want {
			t.Fatalf("%s: %s, want %s", c.locker, o.Line, c.want)
		}
		if c.want == models.Valid {
			if _, err := os.Stat(dir); !os.IsNotExist(err) {
				t.Errorf("%s: a valid input's run directory was kept (%v)", c.locker, err)
			}
			continue
		}
		rec, err := scenarios.ReadRecord(o.Dir)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := fuzz.Schedule(spec, resolve, 1, data)
		if len(want) != 2 || !slices.Equal(rec.FaultPlan, want) {
			t.Fatalf("the finding recorded the schedule %v, want the input's two faults %v", rec.FaultPlan, want)
		}
		again := filepath.Join(out, c.locker+"-replay")
		res, err := runner.Run(t.Context(), runner.Job{Spec: rec, Resolve: resolve, Seed: rec.Seeds[0], Dir: again, Bubbles: pool}, nil)
		if err != nil || res.Verdict != models.Invalid {
			t.Fatalf("the finding's record ran again: %v, %v", res.Verdict, err)
		}
		a, _ := os.ReadFile(filepath.Join(o.Dir, "history.jsonl"))
		b, _ := os.ReadFile(filepath.Join(again, "history.jsonl"))
		if ea, eb := events(a), events(b); ea != eb {
			la, lb := strings.Split(ea, "\n"), strings.Split(eb, "\n")
			for i := range min(len(la), len(lb)) {
				if la[i] != lb[i] {
					t.Errorf("the finding's record ran again to a different history: event %d\n  %s\n  %s", i+1, la[i], lb[i])
					break
				}
			}
		}
	}
}

// events is a history without its header line (which names its run
// directory).
func events(history []byte) string {
	_, rest, _ := strings.Cut(string(history), "\n")
	return rest
}
