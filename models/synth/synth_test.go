package synth

import (
	"bytes"
	"reflect"
	"testing"

	"github.com/lockcheck/lockcheck/history"
)

func TestSameSeedSameHistory(t *testing.T) {
	a, err := Generate(Realistic(5, 6, 2, 3000))
	if err != nil {
		t.Fatal(err)
	}
	b, err := Generate(Realistic(5, 6, 2, 3000))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(a.History, b.History) {
		t.Fatal("one seed gave two histories")
	}
	c, err := Generate(Realistic(6, 6, 2, 3000))
	if err != nil {
		t.Fatal(err)
	}
	if reflect.DeepEqual(a.History.Events, c.History.Events) {
		t.Fatal("two seeds gave one history")
	}
}

// What the generator writes is a history the reader accepts, unchanged.
func TestRoundTripThroughReader(t *testing.T) {
	res, err := Generate(Realistic(1, 4, 2, 2000))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	w, err := history.NewWriter(&buf, res.History.Header)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range res.History.Events {
		if _, err := w.Append(e); err != nil {
			t.Fatal(err)
		}
	}
	back, err := history.Read(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if back.Truncated || !reflect.DeepEqual(back.Events, res.History.Events) || !reflect.DeepEqual(back.Header.Run, res.History.Header.Run) {
		t.Fatal("history changed on its way through the reader")
	}
}

// The shape the checkers are benchmarked on: mostly sequential hand-offs,
// with every rare event present at about its configured rate.
func TestRealisticShape(t *testing.T) {
	const ops = 40000
	res, err := Generate(Realistic(2, 16, 1, ops))
	if err != nil {
		t.Fatal(err)
	}
	var calls, acquires, infoAcq, infoRel, releases, failed, lost, crashes, restarts, recoveries, withAttempt, okAcq int
	last := int64(0)
	for i, e := range res.History.Events {
		if e.Index != int64(i) || e.Time < last {
			t.Fatalf("event %d: index %d, time %d after %d", i, e.Index, e.Time, last)
		}
		last = e.Time
		switch {
		case e.F == history.Crash:
			crashes++
		case e.F == history.Restart:
			restarts++
		case e.F == history.Recovery:
			recoveries++
		case e.F == history.Lost:
			lost++
		case e.Type == history.Invoke:
			calls++
			if e.F == history.Acquire {
				acquires++
			} else {
				releases++
			}
		case e.F == history.Acquire && e.Type == history.Info:
			infoAcq++
		case e.F == history.Release && e.Type == history.Info:
			infoRel++
		case e.Type == history.Fail:
			failed++
		case e.F == history.Acquire && e.Type == history.OK:
			okAcq++
			if e.Attempt > 0 {
				withAttempt++
			}
		}
	}
	within := func(name string, got int, lo, hi float64) {
		if float64(got) < lo || float64(got) > hi {
			t.Errorf("%s: %d, want between %.0f and %.0f", name, got, lo, hi)
		}
	}
	within("calls", calls, ops, ops*1.01)
	within("indeterminate acquires", infoAcq, 0.005*float64(acquires), 0.02*float64(acquires))
	within("indeterminate releases", infoRel, 0.002*float64(releases), 0.01*float64(releases))
	within("lost notices", lost, 1, 0.01*float64(okAcq))
	within("definite failures", failed, 1, 0.5*float64(calls))
	if crashes != 2 || restarts != 2 || recoveries != 1 || withAttempt != okAcq {
		t.Errorf("crashes %d, restarts %d, recoveries %d, attempts reported %d of %d", crashes, restarts, recoveries, withAttempt, okAcq)
	}
}

func TestBugsArePlanted(t *testing.T) {
	for _, bug := range []Bug{DoubleGrant, NonOwnerRelease} {
		cfg := Realistic(3, 4, 1, 2000)
		cfg.Bug, cfg.BugAt = bug, 0.5
		res, err := Generate(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Planted) != 1 || res.Planted[0].Bug != bug || len(res.Planted[0].Processes) != 2 || res.Planted[0].Key != "k0" {
			t.Fatalf("%s: planted %+v", bug, res.Planted)
		}
	}
	// One client can never be granted a lock another holds.
	cfg := Realistic(3, 1, 1, 500)
	cfg.Bug = DoubleGrant
	if _, err := Generate(cfg); err == nil {
		t.Error("a double grant with one client was reported planted")
	}
}

func TestConfigIsValidated(t *testing.T) {
	for _, cfg := range []Config{
		{Clients: 0, Keys: 1, Ops: 10},
		{Clients: 1, Keys: 0, Ops: 10},
		{Clients: 1, Keys: 1, Ops: -1},
		{Clients: 1, Keys: 1, Ops: 10, Lost: 2},
		{Clients: 1, Keys: 1, Ops: 10, Crashes: -1},
	} {
		if _, err := Generate(cfg); err == nil {
			t.Errorf("%+v accepted", cfg)
		}
	}
}
