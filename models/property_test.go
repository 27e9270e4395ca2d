package models

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/lockcheck/lockcheck/history"
	"github.com/lockcheck/lockcheck/models/synth"
)

func generate(t testing.TB, cfg synth.Config) *synth.Result {
	t.Helper()
	res, err := synth.Generate(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// stressed turns up every rare event, so that small histories still hold
// indeterminate calls, lost leases and crashes.
func stressed(seed uint64, clients, keys, ops int) synth.Config {
	cfg := synth.Realistic(seed, clients, keys, ops)
	cfg.IndeterminateAcquire, cfg.IndeterminateRelease, cfg.Lost = 0.05, 0.05, 0.03
	cfg.Crashes, cfg.Pauses = 4, 2
	return cfg
}

func TestCorrectSyntheticHistoriesAreValid(t *testing.T) {
	for seed := uint64(1); seed <= 8; seed++ {
		clients, keys := []int{2, 5, 12}[seed%3], []int{1, 3}[seed%2]
		cfg := stressed(seed, clients, keys, 1500)
		if seed%4 == 0 {
			cfg.OmitAttempt = true
		}
		t.Run(fmt.Sprintf("seed=%d/clients=%d/keys=%d", seed, clients, keys), func(t *testing.T) {
			res := generate(t, cfg)
			r, err := Check(res.History, Options{AcceptPartial: true, ChunkOps: 50})
			if err != nil {
				t.Fatal(err)
			}
			if r.Mutex.Verdict != Valid || r.Linearizability.Verdict != Valid || r.Liveness.Verdict != Valid {
				t.Fatalf("a correct lock was judged:\n%s", r.Summary())
			}
			c := r.Counts
			// The history must hold what the checkers are meant to
			// cope with, or this test proves little.
			if c.Indeterminate == 0 || c.LostNotices == 0 || c.Crashes == 0 || c.Failed == 0 {
				t.Errorf("history lacks the hard cases: %+v", c)
			}
		})
	}
}

func TestPlantedDoubleGrantIsCaught(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	for seed := uint64(1); seed <= 8; seed++ {
		cfg := stressed(seed, 3+int(seed%4), 1+int(seed%2), 1500)
		cfg.Bug, cfg.BugAt = synth.DoubleGrant, rng.Float64()*0.9
		t.Run(fmt.Sprintf("seed=%d/at=%.2f", seed, cfg.BugAt), func(t *testing.T) {
			res := generate(t, cfg)
			r, err := Check(res.History, Options{AcceptPartial: true, ChunkOps: 100})
			if err != nil {
				t.Fatal(err)
			}
			if r.Mutex.Verdict != Invalid || r.Linearizability.Verdict != Invalid {
				t.Fatalf("planted %+v not caught:\n%s", res.Planted, r.Summary())
			}
			plant := res.Planted[0]
			o := r.Mutex.Overlaps[0]
			if got := []history.Process{o.Held.Process, o.Entered.Process}; o.Key != plant.Key || !sameSet(got, plant.Processes) {
				t.Errorf("mutual exclusion blames %s %v, planted on %s %v", o.Key, got, plant.Key, plant.Processes)
			}
			cx := r.Linearizability.Counterexamples[0]
			if cx.Key != plant.Key || cx.AfterViolation || plant.Time < cx.From || plant.Time > cx.To {
				t.Errorf("linearizability blames %s %s..%s, planted on %s at %s",
					cx.Key, fmtTime(cx.From), fmtTime(cx.To), plant.Key, fmtTime(plant.Time))
			}
		})
	}
}

func TestPlantedNonOwnerReleaseIsCaught(t *testing.T) {
	for seed := uint64(1); seed <= 4; seed++ {
		cfg := stressed(seed, 4, 2, 1000)
		cfg.Bug, cfg.BugAt = synth.NonOwnerRelease, 0.5
		res := generate(t, cfg)
		r, err := Check(res.History, Options{AcceptPartial: true})
		if err != nil {
			t.Fatal(err)
		}
		// The release took no effect, so the clients never overlapped:
		// only the model sees that the lock lied.
		if r.Mutex.Verdict != Valid || r.Linearizability.Verdict != Invalid {
			t.Fatalf("seed %d: planted %+v:\n%s", seed, res.Planted, r.Summary())
		}
		want := fmt.Sprintf("P%d released %s", res.Planted[0].Processes[0], res.Planted[0].Key)
		if d := r.Linearizability.Counterexamples[0].Description; !strings.Contains(d, want) {
			t.Errorf("seed %d: counterexample lacks %q:\n%s", seed, want, d)
		}
	}
}

func sameSet(a, b []history.Process) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// The cuts, the clamping of open-ended releases and the chunking must not
// change a single verdict: compare them with porcupine searching each
// key's history whole, on histories small enough for that, both from a
// simulated lock (correct or not) and from clients whose calls succeed at
// random.
func TestCutsAgreeWithWholeSearch(t *testing.T) {
	var hs []*history.History
	rng := rand.New(rand.NewPCG(11, 12))
	for seed := uint64(1); seed <= 60; seed++ {
		cfg := stressed(seed, 2+int(seed%4), 1+int(seed%2), 40)
		cfg.Crashes = int(seed % 3)
		cfg.Recovery = seed%2 == 0
		cfg.Bug = synth.Bug(seed % 3)
		cfg.BugAt = rng.Float64() * 0.8
		res, err := synth.Generate(cfg)
		if err != nil {
			continue // no chance to plant the bug in so short a run
		}
		hs = append(hs, res.History)
	}
	for seed := uint64(1); seed <= 600; seed++ {
		bugRate := []float64{0, 0.05, 0.2}[seed%3]
		h := randomHistory(seed, 2+int(seed%3), 1+int(seed%2), 60, bugRate)
		if bugRate == 0 {
			// A lock that keeps its promise passes, however it answers.
			r, err := Check(h, Options{AcceptPartial: true})
			if err != nil {
				t.Fatal(err)
			}
			if r.Verdict != Valid {
				t.Fatalf("%s: a correct lock judged %s:\n%s\n%s", h.Header.Run.ID, r.Verdict, r.Summary(), dump(h))
			}
		}
		hs = append(hs, h)
	}
	tally := map[Verdict]int{}
	for i, h := range hs {
		whole := linVerdict(t, h, Options{noCuts: true})
		for _, opts := range []Options{{}, {ChunkOps: 1}, {ChunkOps: 7}} {
			if got := linVerdict(t, h, opts); got != whole {
				t.Fatalf("history %d (%s): %s with cuts (chunk %d), %s searched whole\n%s",
					i, h.Header.Run.ID, got, opts.ChunkOps, whole, dump(h))
			}
		}
		tally[whole]++
	}
	// Both outcomes must be well represented, or the agreement is hollow.
	t.Logf("verdicts: %v", tally)
	if tally[Valid] < 30 || tally[Invalid] < 30 || tally[Unknown] > 0 {
		t.Errorf("verdicts %v: too few of one kind to compare", tally)
	}
}

func linVerdict(t *testing.T, h *history.History, opts Options) Verdict {
	t.Helper()
	r, err := CheckLinearizable(h, opts)
	if err != nil {
		t.Fatal(err)
	}
	return r.Verdict
}

func dump(h *history.History) string {
	var b strings.Builder
	for _, e := range h.Events {
		line, _ := json.Marshal(e)
		b.Write(line)
		b.WriteByte('\n')
	}
	return b.String()
}

// randomHistory is what clients record from a lock that answers at
// random but, unless bugRate says otherwise, never breaks its promise: a
// grant goes only to a free key, an indeterminate call may or may not take
// effect, a lock whose holder crashed, walked away or was told its lease
// is gone is freed some time later. With bugRate > 0 it sometimes grants a
// held key, frees a key for a release by a non-owner, or lets a lease
// expire without telling the holder. Clients pick keys, outcomes and
// timing at random, so calls overlap in every way a real run can produce.
func randomHistory(seed uint64, clients, keys, steps int, bugRate float64) *history.History {
	rng := rand.New(rand.NewPCG(seed, 99))
	type cl struct {
		proc  history.Process
		open  *history.Event
		holds map[string]bool
	}
	next := history.Process(0)
	cs := make([]*cl, clients)
	for i := range cs {
		cs[i] = &cl{proc: next, holds: map[string]bool{}}
		next++
	}
	owner := map[string]history.Process{} // the lock's own view
	grant := map[string]int{}             // which grant the owner holds
	grants := 0
	take := func(key string, p history.Process) {
		grants++
		owner[key], grant[key] = p, grants
	}
	type orphan struct {
		grant int
		left  int // steps until its lease expires
	}
	orphans := map[string]orphan{}
	var events []history.Event
	now := int64(1)
	emit := func(e history.Event) {
		e.Index, e.Time = int64(len(events)), now
		events = append(events, e)
	}
	bug := func() bool { return rng.Float64() < bugRate }
	abandon := func(key string) { orphans[key] = orphan{grant: grant[key], left: 1 + rng.IntN(6)} }
	for range steps {
		now += rng.Int64N(4)
		for key, o := range orphans {
			if o.left > 1 {
				orphans[key] = orphan{grant: o.grant, left: o.left - 1}
				continue
			}
			if _, ok := owner[key]; ok && grant[key] == o.grant {
				delete(owner, key)
			}
			delete(orphans, key)
		}
		slot := rng.IntN(clients)
		c := cs[slot]
		key := fmt.Sprintf("k%d", rng.IntN(keys))
		switch {
		case rng.IntN(30) == 0: // crash and restart
			if c.open != nil {
				emit(history.Event{Process: c.proc, Client: slot, Type: history.Info, F: c.open.F, Key: c.open.Key})
				c.open = nil
			}
			for k, p := range owner {
				if p == c.proc {
					abandon(k)
				}
			}
			ref, _ := json.Marshal(history.ClientRef{Client: slot, Process: c.proc})
			emit(history.Event{Process: history.Nemesis, Client: -1, Type: history.Info, F: history.Crash, Value: ref})
			c.proc, c.holds = next, map[string]bool{}
			next++
			ref, _ = json.Marshal(history.ClientRef{Client: slot, Process: c.proc})
			emit(history.Event{Process: history.Nemesis, Client: -1, Type: history.Info, F: history.Restart, Value: ref})
		case c.open != nil:
			e := *c.open
			cur, held := owner[e.Key]
			mine := held && cur == c.proc
			e.Type = history.Fail
			switch {
			case e.F == history.Acquire && (!held || bug()):
				if rng.IntN(8) == 0 {
					e.Type = history.Info
					if rng.IntN(2) == 0 { // took effect, for nobody
						take(e.Key, c.proc)
						abandon(e.Key)
					}
				} else if rng.IntN(6) > 0 {
					e.Type = history.OK
					take(e.Key, c.proc)
					e.Token = uint64(len(events))
					if rng.IntN(2) == 0 {
						e.Attempt = c.open.Time + rng.Int64N(now-c.open.Time+1)
					}
					c.holds[e.Key] = true
				}
			case e.F == history.Acquire && rng.IntN(8) == 0:
				e.Type = history.Info
			case e.F == history.Release && (mine || held && bug()):
				switch r := rng.IntN(8); {
				case r == 0:
					e.Type = history.Info
					if rng.IntN(2) == 0 {
						delete(owner, e.Key)
					} else {
						abandon(e.Key)
					}
				case r == 1: // refused; the holder walks away
					abandon(e.Key)
				default:
					e.Type = history.OK
					delete(owner, e.Key)
				}
			case e.F == history.Release && rng.IntN(8) == 0:
				e.Type = history.Info
			}
			delete(c.holds, e.Key)
			if e.F == history.Acquire && e.Type == history.OK {
				c.holds[e.Key] = true
			}
			emit(e)
			c.open = nil
			if e.Type == history.Info {
				c.proc, c.holds = next, map[string]bool{}
				next++
			}
		case len(c.holds) > 0 && rng.IntN(6) == 0:
			for k := range c.holds {
				key = k
			}
			if p, ok := owner[key]; ok && p == c.proc {
				delete(owner, key)
				if !bug() { // a silent expiry tells nobody
					emit(history.Event{Process: c.proc, Client: slot, Type: history.Info, F: history.Lost, Key: key})
				}
			}
		default:
			f := history.Acquire
			if c.holds[key] || rng.IntN(8) == 0 {
				f = history.Release
			}
			emit(history.Event{Process: c.proc, Client: slot, Type: history.Invoke, F: f, Key: key})
			o := events[len(events)-1]
			c.open = &o
		}
	}
	return &history.History{
		Header: history.Header{Schema: history.Schema, Version: history.Version,
			Run: history.RunInfo{ID: fmt.Sprintf("random-%d-bug%.2f", seed, bugRate), Clients: clients, Keys: keys}},
		Events: events,
	}
}
