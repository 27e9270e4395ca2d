package models

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/lockcheck/lockcheck/history"
)

func TestSortOpsIsAStableSortByStart(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	for n := range 200 {
		ops := make([]LockOp, n)
		for i := range ops {
			ops[i].start = rng.Int64N(int64(n/3 + 1)) // many ties
			ops[i].Event = int64(i)                   // the position before sorting
		}
		want := slices.Clone(ops)
		slices.SortStableFunc(want, func(a, b LockOp) int { return int(a.start - b.start) })
		sortOps(ops)
		if !slices.Equal(ops, want) {
			t.Fatalf("n=%d: got %v\nwant %v", n, ops, want)
		}
	}
}

// The owner at a cut is whoever acquired without releasing; counts that
// fit no legal order are reported, with a guess to go on from.
func TestNetCounter(t *testing.T) {
	acq := func(p int) LockOp { return LockOp{Kind: OpAcquire, Process: historyProcess(p), Client: p} }
	rel := func(p int) LockOp { return LockOp{Kind: OpRelease, Process: historyProcess(p), Client: p} }
	many := []LockOp{}
	for p := range 40 { // past the small-slice limit, into the map
		many = append(many, acq(p), rel(p))
	}
	cases := []struct {
		name  string
		start int
		ops   []LockOp
		owner int
		ok    bool
	}{
		{"empty, free", -1, nil, -1, true},
		{"hand-off", 1, []LockOp{rel(1), acq(2)}, 2, true},
		{"acquire and release", -1, []LockOp{acq(3), rel(3)}, -1, true},
		{"double grant", -1, []LockOp{acq(1), acq(2)}, -1, false},
		{"release by a non-owner", 1, []LockOp{rel(2)}, 1, false},
		{"many processes", 7, append(slices.Clone(many), rel(7), acq(41)), 41, true},
		{"many, one too many", -1, append(slices.Clone(many), acq(5)), 5, true},
		{"many, two holders", -1, append(slices.Clone(many), acq(5), acq(6)), -1, false},
	}
	var nc netCounter
	for _, c := range cases {
		start := noOwner
		if c.start >= 0 {
			start = historyProcess(c.start)
		}
		owner, client, ok := nc.next(c.ops, start, c.start)
		want := noOwner
		if c.owner >= 0 {
			want = historyProcess(c.owner)
		}
		if owner != want || ok != c.ok || (c.owner >= 0 && client != c.owner) {
			t.Errorf("%s: owner %d (client %d), ok %v; want %d, %v", c.name, owner, client, ok, want, c.ok)
		}
	}
}

func historyProcess(p int) history.Process { return history.Process(p) }

// Three clients queue for one key and the locker reports no attempts: each
// acquire's interval spans its whole wait. The holds are blocks in any
// legal order, so each waiter can only have taken the lock once the
// previous holder called release.
func TestNarrowGivesBlockingAcquiresTheirRealInterval(t *testing.T) {
	op := func(kind OpKind, p int, call, ret int64) LockOp {
		return LockOp{Kind: kind, Origin: FromCall, hold: int32(p), Process: historyProcess(p), Call: call, Return: ret, start: call, end: ret}
	}
	ops := []LockOp{
		op(OpAcquire, 0, 0, 10), op(OpRelease, 0, 20, 22),
		op(OpAcquire, 1, 5, 30), op(OpRelease, 1, 40, 42),
		op(OpAcquire, 2, 6, 50), op(OpRelease, 2, 60, Forever),
	}
	narrow(ops, 3)
	want := [][2]int64{{0, 10}, {20, 22}, {20, 30}, {40, 42}, {40, 50}, {60, Forever}}
	for i, w := range want {
		if got := [2]int64{ops[i].start, ops[i].end}; got != w {
			t.Errorf("%s: searched as %v, want %v", ops[i].String(), got, w)
		}
	}

	// Overlapping holds (a double grant) admit no legal order; an interval
	// that would become empty is left alone rather than inverted.
	ops = []LockOp{
		op(OpAcquire, 0, 0, 10), op(OpRelease, 0, 30, 32),
		op(OpAcquire, 1, 5, 12), op(OpRelease, 1, 40, 42),
	}
	narrow(ops, 2)
	for _, o := range ops {
		if o.start > o.end {
			t.Errorf("%s: inverted to [%d, %d]", o.String(), o.start, o.end)
		}
	}
}
