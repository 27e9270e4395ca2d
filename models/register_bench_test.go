package models

import (
	"encoding/json"
	"fmt"
	"strconv"
	"testing"

	"github.com/lockcheck/lockcheck/history"
)

// registerHistory is a register run of a correct lock on one key: sections
// one after another, round-robin over clients, each read and write 1ms
// apart, the next acquire invoked while the current holder works (as
// waiting clients do). Every unknownEvery-th write has an unknown outcome,
// taking effect on every other one, so the search carries open-ended
// increments to the end of the history.
func registerHistory(sections, clients, unknownEvery int) *history.History {
	const ms = int64(1_000_000)
	h := &history.History{Header: history.Header{Schema: history.Schema, Version: history.Version,
		Run: history.RunInfo{Workload: history.WorkloadRegister, Clients: clients, Keys: 1}}}
	add := func(t int64, p int, typ history.Type, f string, value int64, hasValue bool) {
		e := history.Event{Index: int64(len(h.Events)), Time: t, Process: history.Process(p), Client: p, Type: typ, F: f, Key: "k0"}
		if hasValue {
			e.Value = rawInt(value)
		}
		h.Events = append(h.Events, e)
	}
	v := int64(0)
	for i := range sections {
		p, t := i%clients, int64(i)*10*ms
		add(t, p, history.Invoke, history.Acquire, 0, false)
		add(t+ms, p, history.OK, history.Acquire, 0, false)
		add(t+2*ms, p, history.Invoke, history.ReadOp, 0, false)
		add(t+3*ms, p, history.OK, history.ReadOp, v, true)
		add(t+4*ms, p, history.Invoke, history.WriteOp, v+1, true)
		if unknownEvery > 0 && i%unknownEvery == unknownEvery-1 {
			add(t+5*ms, p, history.Info, history.WriteOp, 0, false)
			if (i/unknownEvery)%2 == 0 {
				v++
			}
		} else {
			add(t+5*ms, p, history.OK, history.WriteOp, v+1, true)
			v++
		}
		add(t+6*ms, p, history.Invoke, history.Release, 0, false)
		add(t+7*ms, p, history.OK, history.Release, 0, false)
	}
	h.Events = append(h.Events, history.Event{Index: int64(len(h.Events)), Time: int64(sections) * 10 * ms,
		Process: history.Nemesis, Client: -1, Type: history.Info, F: history.Final, Key: "k0", Value: rawInt(v)})
	return h
}

func TestRegisterHistoryGeneratorIsValid(t *testing.T) {
	r, err := Check(registerHistory(300, 4, 20), Options{AcceptPartial: true})
	if err != nil {
		t.Fatal(err)
	}
	if r.Verdict != Valid || r.LostUpdates.Keys[0].Unknown != 15 {
		t.Fatalf("verdict %s with %+v, want valid with 15 unknown writes\n%s", r.Verdict, r.LostUpdates.Keys, r.Summary())
	}
}

// BenchmarkRegisterCheck runs every checker on one key's register history.
// The register search is one porcupine call per key (no cuts: an
// increment of unknown outcome is open to the end), so its cost grows
// with the square of a key's operations through porcupine's bit sets.
//
//	go test -run '^$' -bench BenchmarkRegisterCheck -benchtime 1x -benchmem ./models/
func BenchmarkRegisterCheck(b *testing.B) {
	for _, sections := range []int{1_000, 10_000, 50_000} {
		for _, every := range []int{0, 50} {
			b.Run(fmt.Sprintf("sections=%d/unknown-every=%d", sections, every), func(b *testing.B) {
				h := registerHistory(sections, 8, every)
				b.ResetTimer()
				for range b.N {
					r, err := Check(h, Options{AcceptPartial: true})
					if err != nil {
						b.Fatal(err)
					}
					if r.Verdict != Valid {
						b.Fatalf("verdict %s on a correct lock:\n%s", r.Verdict, r.Summary())
					}
				}
			})
		}
	}
}

func rawInt(v int64) json.RawMessage { return strconv.AppendInt(nil, v, 10) }
