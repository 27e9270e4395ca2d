// Package fuzz lets a coverage-guided fuzzer drive the simulation: Go's
// native fuzzing (go test -fuzz) mutates a seed and a byte string, the
// bytes become the run's fault schedule (which fault, on which client,
// when, for how long), the seed the rest (the workload's choices, every
// request's latency), and the fuzzer keeps the inputs that reach code of
// the locker, its client library or the simulated backend that no earlier
// input reached. A random seed draws a schedule from a fixed distribution;
// the fuzzer can move one fault by a few milliseconds at a time towards a
// window that only a rare schedule opens.
//
// FuzzSim (fuzz_test.go) is the target; verify fuzz runs it on a
// scenario given by flags, and `make fuzz-table` compares it with random
// seeds on the same CPU budget. Each input runs through [runner.Run] into
// a run directory like any simulated seed's, with the decoded schedule
// written into its scenario.json (scenarios.Spec.FaultPlan), so a finding
// is a run directory that verify replay and verify shrink take as they
// are.
package fuzz

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/lockcheck/lockcheck/internal/bubble"
	"github.com/lockcheck/lockcheck/models"
	"github.com/lockcheck/lockcheck/runner"
	"github.com/lockcheck/lockcheck/scenarios"
)

// MaxFaults bounds the schedule one input decodes to.
const MaxFaults = 16

// faultBytes is how many bytes of the input one fault takes: kind, the
// quiet time before it, how long it lasts, its client.
const faultBytes = 4

// Schedule decodes data into a fault schedule for base (normalized, with
// faults) on seed: each four bytes are one fault, played one after another
// as every schedule is. The kind is one of base's faults; the quiet time
// before it is 0 to 2 of base's fault intervals; its length is within the
// bounds a drawn schedule gives that kind (so a fault that must outlast a
// few leases still does); decoding stops at the first fault that would
// not end by the end of the run. Fewer than four bytes, or a base without
// faults, decode to nil: the schedule the seed draws.
func Schedule(base scenarios.Spec, resolve scenarios.Resolve, seed uint64, data []byte) ([]scenarios.PlannedFault, error) {
	if len(base.Faults) == 0 || len(data) < faultBytes {
		return nil, nil
	}
	probe := base
	probe.FaultPlan = nil
	// Prepare creates nothing; the directory is only checked to be named.
	cfg, err := scenarios.Prepare(probe, resolve, seed, "schedule-probe", nil)
	if err != nil {
		return nil, err
	}
	opts := cfg.PlanOptions()
	var plan []scenarios.PlannedFault
	var at time.Duration
	for i := 0; i+faultBytes <= len(data) && len(plan) < MaxFaults; i += faultBytes {
		b := data[i : i+faultBytes]
		k := cfg.Faults[int(b[0])%len(cfg.Faults)]
		lo, hi := opts.Bounds(k)
		at += time.Duration(b[1]) * opts.Interval / 128
		d := lo + time.Duration(float64(hi-lo)*float64(b[2])/255)
		if at+d > cfg.Duration || d <= 0 {
			break
		}
		plan = append(plan, scenarios.PlannedFault{Kind: k.Name, Client: int(b[3]) % cfg.Clients, At: scenarios.Duration(at), Duration: scenarios.Duration(d)})
		at += d
	}
	return plan, nil
}

// Input is the run one fuzz input stands for: base on seed, with the
// schedule data decodes to.
func Input(base scenarios.Spec, resolve scenarios.Resolve, seed uint64, data []byte) (scenarios.Spec, error) {
	if seed == 0 {
		return scenarios.Spec{}, errors.New("seed 0: want a nonzero seed")
	}
	plan, err := Schedule(base, resolve, seed, data)
	if err != nil {
		return scenarios.Spec{}, err
	}
	s := base
	s.Seeds = []uint64{seed}
	if plan != nil {
		s.FaultPlan = plan
	}
	return s, nil
}

// Outcome is one input's run.
type Outcome struct {
	// Dir is its run directory, kept only when the verdict is not valid.
	Dir     string
	Verdict models.Verdict
	// Line is the verdict with its causes, as verify's last line says it.
	Line string
}

// Run simulates one input in pool, into dir (which must not exist),
// keeping the directory only when the verdict is not valid.
func Run(ctx context.Context, base scenarios.Spec, resolve scenarios.Resolve, pool *bubble.Pool, seed uint64, data []byte, dir string) (Outcome, error) {
	spec, err := Input(base, resolve, seed, data)
	if err != nil {
		return Outcome{}, err
	}
	res, err := runner.Run(ctx, runner.Job{Spec: spec, Resolve: resolve, Seed: seed, Dir: dir, Bubbles: pool, ReportFailuresOnly: true}, nil)
	if res == nil || res.Report == nil {
		if err == nil {
			err = errors.New("no verdict")
		}
		return Outcome{}, fmt.Errorf("seed %d: %w", seed, err)
	}
	out := Outcome{Dir: dir, Verdict: res.Verdict, Line: runner.VerdictLine(res.Verdict, res.History.Header.Run, res.Report, res.Checked)}
	if err == nil && res.Verdict == models.Valid {
		out.Dir = ""
		err = os.RemoveAll(dir)
	}
	return out, err
}
