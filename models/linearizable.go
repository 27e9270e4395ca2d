package models

import (
	"cmp"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/lockcheck/lockcheck/history"
)

// LinearizabilityName is the linearizability checker's name in reports.
const LinearizabilityName = "linearizability"

// DefaultChunkOps is how many model operations one porcupine search gets at
// most (unless a single segment is larger). Porcupine's cache copies an
// n-bit set at every step, so one search costs n²/8 bytes of garbage: 100k
// operations on one key would take 1.4 GB. A thousand keeps each search to
// about a hundred kilobytes while still amortising its set-up (a
// goroutine, a timer and a sort per call); measured on 1M-operation
// histories, smaller chunks save little and larger ones only add garbage.
const DefaultChunkOps = 1000

// LinearizabilityResult is the verdict of the linearizability checker.
type LinearizabilityResult struct {
	Verdict Verdict `json:"verdict"`
	// Result is porcupine's answer over all chunks, unaltered: Illegal if
	// any chunk is, else Unknown if any search ran out of time, else Ok.
	Result  porcupine.CheckResult `json:"porcupine"`
	Summary string                `json:"summary"`
	Keys    int                   `json:"keys"`
	// Operations is the number of model operations searched: ok calls,
	// indeterminate releases, and releases derived from crashes, lost
	// notices and abandoned holds.
	Operations int `json:"operations"`
	// Dropped counts calls left out because they cannot matter.
	Dropped int `json:"dropped"`
	// Segments counts the stretches between cuts; Chunks the porcupine
	// searches they were merged into. A large LargestSegment (thousands
	// of overlapping operations, say from blocking acquires whose
	// attempts are not reported) is what makes a search slow.
	Segments       int `json:"segments"`
	LargestSegment int `json:"largest_segment"`
	Chunks         int `json:"chunks"`
	LargestChunk   int `json:"largest_chunk"`
	IllegalChunks  int `json:"illegal_chunks"`
	UnknownChunks  int `json:"unknown_chunks"`
	// Elapsed is the wall-clock time of the search, counterexamples
	// included.
	Elapsed         time.Duration                   `json:"elapsed_ns"`
	Counterexamples []LinearizabilityCounterexample `json:"counterexamples,omitempty"`

	visual      []porcupine.Operation
	info        *porcupine.LinearizationInfo
	annotations []porcupine.Annotation
	timeout     time.Duration
	// notShown explains why the evidence could not be drawn, if so.
	notShown string
}

// LinearizabilityCounterexample is one stretch of one key's history that
// has no legal order, as porcupine left it.
type LinearizabilityCounterexample struct {
	Key string `json:"key"`
	// From and To bound the stretch: the first call and the last return
	// (ns since the run started).
	From       int64 `json:"from_ns"`
	To         int64 `json:"to_ns"`
	Operations int   `json:"operations"`
	// Prefix is the end of the longest legal order porcupine found, and
	// State the lock's state after it.
	Prefix []string `json:"longest_legal_prefix"`
	State  string   `json:"state"`
	// Blocked lists the operations one of which had to come next (each
	// must precede something still unordered), none of which the lock
	// allows in that state.
	Blocked []string `json:"blocked"`
	// Carried says how the stretch starts when the lock was held at its
	// start: the acquisition, before the stretch, that made the owner.
	Carried string `json:"carried,omitempty"`
	// AfterViolation is set when the stretch starts after an earlier
	// violation of the same key, so its starting owner is a guess and
	// this finding may be a consequence of that one.
	AfterViolation bool   `json:"after_violation,omitempty"`
	Description    string `json:"description"`
}

// CheckLinearizable runs the linearizability checker alone.
//
// The history becomes model operations (see [LockModel]) like this:
//
//   - An acquire that returned ok is an acquire on [attempt, ok], where
//     attempt is when the winning attempt started if the locker said, else
//     the invocation: the acquisition took effect during its last attempt,
//     so the narrower interval is still sound.
//   - A release that returned ok is a release on [invoke, ok].
//   - Definite failures (acquire or release) had no effect and are dropped.
//   - Indeterminate acquires are dropped. Their process never acts again
//     (after an info the client goes on under a new process), so if such
//     an acquire took effect, the lock was owned by a process that would
//     never use or release it, until at best its lease expired, and while
//     it was owned no other operation was legal. In any legal order in
//     which it took effect, nothing lies between it and that expiry (if
//     any), so cutting both out leaves a legal order of everything else:
//     the order in which it took no effect. Conversely, taking no effect is
//     one of its possible outcomes. So dropping it changes no verdict. The
//     same holds for an acquire still open when the history ends, and for
//     one a crash cut short (the crash event then frees nothing of it).
//   - An indeterminate release by P (info, or open at the end) is a release
//     on [invoke, +∞): it may take effect any time after its invocation,
//     and "never" is the same as "after everything else".
//   - A crash of P while P held a lock (acquire ok, no release invoked) is a
//     release by P on [crash, +∞): a lease lock frees an abandoned lock at
//     some unknown later time.
//   - A lost notice for P is a release by P on [start of P's acquire
//     interval, notice]: the lease was gone by the time P learned it. A
//     release call by P after that notice (or open when it came), for the
//     same acquisition (before P acquires the key again), carries no
//     information and is dropped: if it wrongly freed someone else's lock,
//     the later acquire that overlaps that holder is what shows it.
//   - A release of a held lock that definitely failed had no effect, yet
//     it ends the hold: the holder is done with the lock and goes on
//     without it (the harness's clients move to their next cycle). If the
//     lease was still held, a lease lock frees it at some unknown later
//     time, as after a crash; if it had already expired (which is why the
//     release failed: "not held"), it was freed earlier, and placing that
//     freeing after the release's invocation loses nothing, since before
//     it P was inside its critical section and a grant to anyone else
//     there is a violation anyway. So the hold ends with a release on
//     [invocation, +∞), and a later release call by P for it carries no
//     information and is dropped, as after a lost notice. Treating the
//     failure as "P still holds" instead would make every later grant of
//     an expired lease look illegal.
//   - A release that returned ok to a process that held nothing is kept,
//     and is illegal in the model. One that failed or is indeterminate is
//     dropped: it may have had no effect.
//
// Then the search is cut down to size, exactly (no verdict changes):
//
// Keys are independent locks, so each key is checked alone.
//
// Intervals are narrowed by the lock's structure. A hold — an acquire and
// the release that ends it — is a block with nothing inside in every legal
// order, since while P owns the lock no other operation is legal. So if
// one hold's acquire returned before another's release was called, the
// first block comes wholly before the second: the later acquire's start
// can be raised to the earlier release's call, and the earlier release's
// end lowered to the later acquire's return. Every ordering this adds is
// one all legal orders already have, so the set of legal orders does not
// change. It gives a blocking acquire whose winning attempt was not
// reported the interval in which it can really have taken effect, which
// brings the cuts back (see narrow).
//
// Each key's history is then cut into segments at cut points: times inside
// no finite (narrowed) operation interval. Every operation before a cut must be ordered
// before every operation after it, so the lock's state at the cut does not
// depend on the order chosen before it: it is found by counting. Starting
// from the state at the previous cut, each process's acquisitions minus
// releases must be 0 or 1 and at most one process may end at 1 (the owner);
// otherwise the segment has no legal order at all. The next segment starts
// with a carried acquire by that owner placed before all its operations
// (FromCarry, shown as such in the visualisation).
//
// Operations that end at +∞ (indeterminate, crash and abandon releases)
// would forbid every later cut, so they do not count when looking for cuts
// and their return is clamped to the end of the segment holding their call.
// That loses no legal order: such a release R by P follows an acquire A by
// P that returned before R's call, and while P owns the lock no other
// operation is legal, so in any legal order R comes right after A. Moving
// R's linearization point back to just after max(A's point, R's call) —
// which is at most the segment's end, since A returns before R's call and
// every operation after the cut starts after the segment's end — keeps
// every operation ordered after R after it and every one before it before
// it. Clamping only narrows an interval, so it cannot make an illegal
// history legal either.
//
// Consecutive segments are then merged into chunks of about
// [Options.ChunkOps] operations, each searched by its own porcupine call
// on a bounded pool of workers (porcupine would start one goroutine per
// partition). A history is linearizable if and only if every chunk is.
//
// When a chunk is illegal, its segments are searched one by one to find
// the first illegal one, and porcupine is run again on it to keep the
// partial linearizations: they give the counterexample and the
// visualisation ([LinearizabilityResult.WriteVisualization]).
func CheckLinearizable(h *history.History, opts Options) (*LinearizabilityResult, error) {
	d, err := newDigest(h)
	if err != nil {
		return nil, err
	}
	return checkLinearizable(d, opts), nil
}

// stretch is a run of consecutive model operations of one key,
// key.ops[lo:hi], that starts at a cut and so can be searched on its own,
// from the owner counted at that cut. A segment is a stretch with no cut
// inside; a chunk is a stretch of whole segments.
type stretch struct {
	key         *keyHist
	lo, hi      int
	owner       history.Process
	ownerClient int
	// certain is false once an earlier segment of the key could not be
	// counted (it has no legal order): owner is then a guess.
	certain bool
}

// size is the number of operations porcupine gets, the carried acquire
// included.
func (s *stretch) size() int {
	n := s.hi - s.lo
	if s.owner != noOwner {
		n++
	}
	return n
}

type searchPlan struct {
	chunks         []stretch
	segments       int
	largestSegment int
}

// cuts calls fn with each segment of ops[lo:hi], which must be sorted by
// start, and with the segment's end: the latest end in it, counting an
// open-ended operation as ending at its start. With whole, there are no
// cuts.
func cuts(ops []LockOp, lo, hi int, whole bool, fn func(lo, hi int, end int64)) {
	if lo >= hi {
		return
	}
	start, end := lo, int64(0)
	for i := lo; i < hi; i++ {
		if i > start && !whole && ops[i].start > end {
			fn(start, i, end)
			start = i
		}
		e := ops[i].end
		if e == Forever {
			e = ops[i].start
		}
		if i == start {
			end = e
		} else {
			end = max(end, e)
		}
	}
	fn(start, hi, end)
}

func (d *digest) plan(opts Options) *searchPlan {
	pl := &searchPlan{}
	limit := opts.chunkOps()
	var nets netCounter
	for _, k := range d.keys {
		ops := k.ops
		for i := range ops {
			ops[i].start, ops[i].end = ops[i].Call, ops[i].Return
		}
		if !opts.noCuts {
			narrow(ops, int(k.holds))
		}
		sortOps(ops)
		next := stretch{key: k, owner: noOwner, ownerClient: -1, certain: true}
		var cur stretch
		cuts(ops, 0, len(ops), opts.noCuts, func(lo, hi int, end int64) {
			for i := lo; i < hi; i++ {
				if ops[i].end == Forever && !opts.noCuts {
					ops[i].end = end
				}
			}
			seg := next
			seg.lo, seg.hi = lo, hi
			pl.segments++
			pl.largestSegment = max(pl.largestSegment, seg.size())
			// Greedy merge: a chunk grows until the next segment would
			// take it past the limit; a segment larger than the limit
			// is a chunk on its own, since it cannot be split.
			if cur.key != nil && cur.size()+hi-lo <= limit {
				cur.hi = hi
			} else {
				if cur.key != nil {
					pl.chunks = append(pl.chunks, cur)
				}
				cur = seg
			}
			owner, client, ok := nets.next(ops[lo:hi], seg.owner, seg.ownerClient)
			next.owner, next.ownerClient, next.certain = owner, client, seg.certain && ok
		})
		if cur.key != nil {
			pl.chunks = append(pl.chunks, cur)
		}
	}
	return pl
}

// segmentsOf cuts a chunk back into its segments, each with the owner
// counted at its start.
func segmentsOf(c stretch, nets *netCounter) []stretch {
	var segs []stretch
	next := c
	cuts(c.key.ops, c.lo, c.hi, false, func(lo, hi int, _ int64) {
		seg := next
		seg.lo, seg.hi = lo, hi
		segs = append(segs, seg)
		owner, client, ok := nets.next(c.key.ops[lo:hi], seg.owner, seg.ownerClient)
		next.owner, next.ownerClient, next.certain = owner, client, seg.certain && ok
	})
	return segs
}

// narrow tightens the intervals of acquisitions and releases using what
// every legal order of a lock must look like; see CheckLinearizable for
// the argument. holds is the number of hold ids in ops.
//
// A hold is an acquire A and the release R that ends it, by the same
// process. In a legal order nothing lies between A and R, so two holds W
// and Q appear as two blocks, one wholly before the other. If Q's acquire
// returned before W's release was called (A_Q.ret < R_W.call), A_Q comes
// before R_W, so Q's block comes first: A_W comes after R_Q, and A_W's
// start can be raised to R_Q's call. Symmetrically, if A_W.ret <
// R_Q.call, W's block comes first, R_W comes before A_Q, and R_W's end can
// be lowered to A_Q's return. All of it is computed from the original
// intervals, and each change only adds orderings that every legal order
// already has, so the set of legal orders is the same. An interval that
// would become empty means the holds overlap and the history is illegal;
// it is left as it was, which keeps it illegal.
func narrow(ops []LockOp, holds int) {
	if holds < 2 {
		return
	}
	acq := make([]int32, holds)
	rel := make([]int32, holds)
	for i := range acq {
		acq[i], rel[i] = -1, -1
	}
	for i := range ops {
		if h := ops[i].hold; h >= 0 {
			if ops[i].Kind == OpAcquire {
				acq[h] = int32(i)
			} else {
				rel[h] = int32(i)
			}
		}
	}
	// The four ends of each complete hold, gathered so that the sorts
	// and searches below run over small contiguous values.
	type holdEnds struct {
		aCall, aRet, rCall, rRet int64
		a, r                     int32 // indices into ops
	}
	var hs []holdEnds
	for h := range acq {
		if a, r := acq[h], rel[h]; a >= 0 && r >= 0 {
			hs = append(hs, holdEnds{aCall: ops[a].Call, aRet: ops[a].Return, rCall: ops[r].Call, rRet: ops[r].Return, a: a, r: r})
		}
	}
	if len(hs) < 2 {
		return
	}
	order := make([]holdKey, len(hs))

	// Raise each A_W's start to the latest R_Q.call among the other
	// holds whose acquire returned before R_W.call.
	for i := range hs {
		order[i] = holdKey{hs[i].aRet, int32(i)}
	}
	slices.SortFunc(order, func(x, y holdKey) int { return cmp.Compare(x.v, y.v) })
	best := bestTwo(order, func(h int32) int64 { return hs[h].rCall }, func(a, b int64) bool { return a > b })
	newStart := make([]int64, len(hs))
	for w := range hs {
		n := sortSearch(len(order), func(i int) bool { return order[i].v >= hs[w].rCall })
		newStart[w] = hs[w].aCall
		if n > 0 {
			if q, ok := best[n-1].other(int32(w)); ok {
				newStart[w] = max(newStart[w], hs[q].rCall)
			}
		}
	}

	// Lower each R_W's end to the earliest A_Q.ret among the other holds
	// whose release was called after A_W returned.
	for i := range hs {
		order[i] = holdKey{hs[i].rCall, int32(i)}
	}
	slices.SortFunc(order, func(x, y holdKey) int { return cmp.Compare(y.v, x.v) }) // latest first
	best = bestTwo(order, func(h int32) int64 { return hs[h].aRet }, func(a, b int64) bool { return a < b })
	for w := range hs {
		n := sortSearch(len(order), func(i int) bool { return order[i].v <= hs[w].aRet })
		end := hs[w].rRet
		if n > 0 {
			if q, ok := best[n-1].other(int32(w)); ok {
				end = min(end, hs[q].aRet)
			}
		}
		if a := &ops[hs[w].a]; newStart[w] <= a.end {
			a.start = newStart[w]
		}
		if r := &ops[hs[w].r]; end >= r.start {
			r.end = end
		}
	}
}

// sortSearch is sort.Search: the first i in [0, n) with f(i), or n.
func sortSearch(n int, f func(int) bool) int {
	lo, hi := 0, n
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if f(m) {
			hi = m
		} else {
			lo = m + 1
		}
	}
	return lo
}

// topTwo holds the two best values of a prefix, with their hold ids, so
// that the best of the prefix other than a given hold is at hand.
type topTwo struct {
	first, second int32 // hold ids, -1 if none
}

func (t topTwo) other(h int32) (int32, bool) {
	if t.first >= 0 && t.first != h {
		return t.first, true
	}
	if t.second >= 0 {
		return t.second, true
	}
	return -1, false
}

// holdKey is a hold (an index into narrow's list) and the value it is
// sorted by.
type holdKey struct {
	v int64
	h int32
}

// bestTwo returns, for each prefix of order, its two best holds by value.
func bestTwo(order []holdKey, value func(int32) int64, better func(a, b int64) bool) []topTwo {
	out := make([]topTwo, len(order))
	cur := topTwo{first: -1, second: -1}
	for i, o := range order {
		h := o.h
		switch {
		case cur.first < 0 || better(value(h), value(cur.first)):
			cur.second, cur.first = cur.first, h
		case cur.second < 0 || better(value(h), value(cur.second)):
			cur.second = h
		}
		out[i] = cur
	}
	return out
}

// sortOps orders ops by start, ties by their position before sorting (the
// digest appends them in a deterministic order). Sorting the operations
// themselves would move each large struct many times; sorting small keys
// and then moving each operation once into place is several times faster
// on a million of them.
func sortOps(ops []LockOp) {
	keys := make([]holdKey, len(ops))
	for i := range ops {
		keys[i] = holdKey{v: ops[i].start, h: int32(i)}
	}
	slices.SortFunc(keys, func(x, y holdKey) int {
		if c := cmp.Compare(x.v, y.v); c != 0 {
			return c
		}
		return cmp.Compare(x.h, y.h)
	})
	// Position i takes the operation at keys[i].h; follow each cycle of
	// that permutation once, marking done positions with -1.
	for i := range keys {
		if keys[i].h < 0 || int(keys[i].h) == i {
			continue
		}
		held := ops[i]
		j := i
		for {
			from := int(keys[j].h)
			keys[j].h = -1
			if from == i {
				ops[j] = held
				break
			}
			ops[j] = ops[from]
			j = from
		}
	}
}

// netCounter counts acquisitions minus releases per process over a
// segment. Most segments hold a handful of operations, for which a slice
// beats a map; a map is used only for the rare large segment.
type netCounter struct {
	small []procNet
}

type procNet struct {
	proc   history.Process
	client int
	net    int
}

// next returns the owner after ops, starting from owner, and whether the
// counts admit any legal order. When they do not, it still returns its
// best guess so that later segments can be searched.
func (nc *netCounter) next(ops []LockOp, owner history.Process, ownerClient int) (history.Process, int, bool) {
	nc.small = nc.small[:0]
	var big map[history.Process]*procNet
	get := func(p history.Process, client int) *procNet {
		if big != nil {
			pn, ok := big[p]
			if !ok {
				pn = &procNet{proc: p, client: client}
				big[p] = pn
			}
			return pn
		}
		for i := range nc.small {
			if nc.small[i].proc == p {
				return &nc.small[i]
			}
		}
		if len(nc.small) < 32 {
			nc.small = append(nc.small, procNet{proc: p, client: client})
			return &nc.small[len(nc.small)-1]
		}
		big = make(map[history.Process]*procNet, 64)
		for i := range nc.small {
			pn := nc.small[i]
			big[pn.proc] = &pn
		}
		nc.small = nc.small[:0]
		pn := &procNet{proc: p, client: client}
		big[p] = pn
		return pn
	}
	if owner != noOwner {
		get(owner, ownerClient).net++
	}
	for i := range ops {
		pn := get(ops[i].Process, ops[i].Client)
		if ops[i].Kind == OpAcquire {
			pn.net++
		} else {
			pn.net--
		}
	}
	ok := true
	next, nextClient := noOwner, -1
	holders := 0
	visit := func(pn *procNet) {
		switch {
		case pn.net == 1:
			holders++
			next, nextClient = pn.proc, pn.client
		case pn.net != 0:
			ok = false
		}
	}
	if big != nil {
		// Deterministic choice of the guess among several holders.
		procs := make([]history.Process, 0, len(big))
		for p := range big {
			procs = append(procs, p)
		}
		slices.Sort(procs)
		for _, p := range procs {
			visit(big[p])
		}
	} else {
		for i := range nc.small {
			visit(&nc.small[i])
		}
	}
	if holders > 1 {
		ok = false
		next, nextClient = noOwner, -1
	}
	return next, nextClient, ok
}

// operations builds the porcupine history of a stretch. With copied, the
// LockOps are copied so that a result kept for later does not pin the
// whole key's operations; meta, if not nil, gives each operation its
// Metadata.
func (s *stretch) operations(copied bool, meta func(*LockOp) any) []porcupine.Operation {
	return s.appendOperations(nil, copied, meta)
}

// appendOperations is operations appending to buf, so that a worker can
// reuse one buffer: porcupine copies what it needs before it returns.
func (s *stretch) appendOperations(buf []porcupine.Operation, copied bool, meta func(*LockOp) any) []porcupine.Operation {
	src := s.key.ops[s.lo:s.hi]
	if copied {
		src = slices.Clone(src)
	}
	out := slices.Grow(buf, len(src)+1)
	add := func(op *LockOp) {
		o := porcupine.Operation{ClientId: max(op.Client, 0), Input: op, Call: op.start, Return: op.end}
		if meta != nil {
			o.Metadata = meta(op)
		}
		out = append(out, o)
	}
	if s.owner != noOwner && len(src) > 0 {
		// Before every operation of the stretch, so that porcupine must
		// order it first.
		t := src[0].start - 1
		add(&LockOp{Kind: OpAcquire, Origin: FromCarry, hold: -1, Key: s.key.name, Process: s.owner,
			Client: s.ownerClient, Event: -1, Call: t, Return: t, start: t, end: t})
	}
	for i := range src {
		add(&src[i])
	}
	return out
}

// budget is the time the search may still take.
type budget struct {
	limited  bool
	deadline time.Time
	now      func() time.Time
}

// left returns the timeout to give porcupine (0 = none) and false once the
// time is up.
func (b budget) left() (time.Duration, bool) {
	if !b.limited {
		return 0, true
	}
	rem := b.deadline.Sub(b.now())
	return rem, rem > 0
}

// searchModel has no partition function: the checker hands porcupine one
// chunk at a time.
func searchModel() porcupine.Model {
	m := LockModel()
	m.Partition = nil
	return m
}

func checkLinearizable(d *digest, opts Options) *LinearizabilityResult {
	now := opts.clock()
	began := now()
	b := budget{limited: opts.LinearizabilityTimeout > 0, deadline: began.Add(opts.LinearizabilityTimeout), now: now}
	pl := d.plan(opts)
	r := &LinearizabilityResult{Keys: len(d.keys), Dropped: d.counts.Dropped, Segments: pl.segments,
		LargestSegment: pl.largestSegment, Chunks: len(pl.chunks), timeout: opts.LinearizabilityTimeout}
	for _, k := range d.keys {
		r.Operations += len(k.ops)
	}
	for i := range pl.chunks {
		r.LargestChunk = max(r.LargestChunk, pl.chunks[i].size())
	}

	model := searchModel()
	results := make([]porcupine.CheckResult, len(pl.chunks))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(opts.workers(), len(pl.chunks)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf []porcupine.Operation
			for {
				i := int(next.Add(1) - 1)
				if i >= len(pl.chunks) {
					return
				}
				timeout, ok := b.left()
				if !ok {
					results[i] = porcupine.Unknown
					continue
				}
				buf = pl.chunks[i].appendOperations(buf[:0], false, nil)
				results[i] = porcupine.CheckOperationsTimeout(model, buf, timeout)
			}
		}()
	}
	wg.Wait()

	var illegal []int
	for i, res := range results {
		switch res {
		case porcupine.Illegal:
			r.IllegalChunks++
			illegal = append(illegal, i)
		case porcupine.Ok:
		default:
			r.UnknownChunks++
		}
	}
	switch {
	case r.IllegalChunks > 0:
		r.Result = porcupine.Illegal
	case r.UnknownChunks > 0:
		r.Result = porcupine.Unknown
	default:
		r.Result = porcupine.Ok
	}
	r.Verdict = verdictOf(r.Result)
	r.annotations = annotations(d)
	if r.Result == porcupine.Illegal {
		r.explain(pl, illegal, model, b, opts)
	} else {
		r.pickVisual(pl, results, opts)
	}
	r.Elapsed = now().Sub(began)
	r.Summary = r.summary(opts)
	return r
}

// explain finds, in the first few illegal chunks, the first illegal
// segment of each, and describes it from porcupine's partial
// linearizations.
func (r *LinearizabilityResult) explain(pl *searchPlan, illegal []int, model porcupine.Model, b budget, opts Options) {
	// Chunks that start from a counted owner first: their findings are
	// certain; the others may echo an earlier violation.
	slices.SortStableFunc(illegal, func(a, c int) int {
		ca, cc := pl.chunks[a].certain, pl.chunks[c].certain
		switch {
		case ca == cc:
			return 0
		case ca:
			return -1
		}
		return 1
	})
	var nets netCounter
	var units []stretch
	for _, ci := range illegal[:min(len(illegal), opts.maxCounterexamples())] {
		u := pl.chunks[ci]
		if segs := segmentsOf(u, &nets); len(segs) > 1 {
			for _, seg := range segs {
				timeout, ok := b.left()
				if !ok {
					break
				}
				if porcupine.CheckOperationsTimeout(model, seg.operations(false, nil), timeout) == porcupine.Illegal {
					u = seg
					break
				}
			}
		}
		units = append(units, u)
	}
	var ops []porcupine.Operation
	for part := range units {
		ops = append(ops, units[part].operations(true, func(op *LockOp) any { return visMeta{part: part, note: opNote(op)} })...)
	}
	res, info := porcupine.CheckOperationsVerbose(visualModel(), ops, opts.LinearizabilityTimeout)
	partials := info.PartialLinearizationsOperations()
	byPart := make([][]porcupine.Operation, len(units))
	for _, op := range ops {
		p := op.Metadata.(visMeta).part
		byPart[p] = append(byPart[p], op)
	}
	for i := range units {
		u := &units[i]
		var ps [][]porcupine.Operation
		if i < len(partials) {
			ps = partials[i]
		}
		cx := describeUnit(u.key.name, byPart[i], ps)
		cx.AfterViolation = !u.certain
		if u.owner != noOwner {
			cx.Carried = fmt.Sprintf("P%d held %s when this stretch began", u.owner, u.key.name)
			if acq := ownerAcquire(u); acq != nil {
				cx.Carried += ", since " + acq.String() + " " + acq.interval()
			}
			cx.Description += " (" + cx.Carried + ".)"
		}
		if res == porcupine.Unknown {
			cx.Description += " (The second search, which keeps the partial orders, ran out of time; the prefix shown may not be the longest.)"
		}
		r.Counterexamples = append(r.Counterexamples, cx)
	}
	// Draw as many counterexamples as fit; always the first, unless it
	// alone is too large to draw.
	limit := opts.visualizationOps()
	n, total := 0, 0
	for n < len(units) && (n == 0 || total+len(byPart[n]) <= limit) {
		total += len(byPart[n])
		n++
	}
	if total > maxVisualOps {
		r.notShown = fmt.Sprintf("the first illegal segment has %d operations, more than the %d a readable drawing can hold; "+
			"its counterexample is in the report", total, maxVisualOps)
		return
	}
	if n == len(units) {
		r.visual, r.info = ops, &info
		return
	}
	for _, op := range ops {
		if op.Metadata.(visMeta).part < n {
			r.visual = append(r.visual, op)
		}
	}
}

// pickVisual keeps the first chunks that were searched to the end, up to
// the drawing budget, for a visualisation of a valid (or undecided)
// history.
func (r *LinearizabilityResult) pickVisual(pl *searchPlan, results []porcupine.CheckResult, opts Options) {
	limit := opts.visualizationOps()
	total, part := 0, 0
	for i := range pl.chunks {
		c := &pl.chunks[i]
		if results[i] != porcupine.Ok {
			continue
		}
		if total+c.size() > limit && total > 0 || c.size() > maxVisualOps {
			break
		}
		p := part
		r.visual = append(r.visual, c.operations(true, func(op *LockOp) any { return visMeta{part: p, note: opNote(op)} })...)
		total += c.size()
		part++
		if total >= limit {
			break
		}
	}
}

// ownerAcquire finds the acquisition that made the owner carried into s:
// the owner's latest acquire before it.
func ownerAcquire(s *stretch) *LockOp {
	ops := s.key.ops
	for i := s.lo - 1; i >= 0 && i >= s.lo-100_000; i-- {
		if op := &ops[i]; op.Kind == OpAcquire && op.Process == s.owner {
			return op
		}
	}
	return nil
}

func opNote(op *LockOp) string {
	var b strings.Builder
	fmt.Fprintf(&b, "client %d, P%d, %s; interval %s", op.Client, op.Process, op.Origin, op.interval())
	if op.Event >= 0 {
		fmt.Fprintf(&b, "; history event %d", op.Event)
	}
	return b.String()
}

// describeUnit turns porcupine's partial linearizations of one illegal
// stretch into something a person can check by hand: where the longest
// legal order stops, the state it leaves, and the operations none of which
// can come next.
func describeUnit(key string, ops []porcupine.Operation, partials [][]porcupine.Operation) LinearizabilityCounterexample {
	cx := LinearizabilityCounterexample{Key: key}
	for _, op := range ops {
		if op.Input.(*LockOp).Origin == FromCarry {
			continue
		}
		if cx.Operations == 0 {
			cx.From, cx.To = op.Call, op.Return
		}
		cx.Operations++
		cx.From = min(cx.From, op.Call)
		cx.To = max(cx.To, op.Return)
	}
	var longest []porcupine.Operation
	for _, p := range partials {
		if len(p) > len(longest) {
			longest = p
		}
	}
	in := make(map[*LockOp]bool, len(longest))
	var state any = noOwner
	for _, op := range longest {
		lop := op.Input.(*LockOp)
		in[lop] = true
		_, state = stepLock(state, lop, nil)
	}
	owner := state.(history.Process)
	cx.State = describeState(state)
	for _, op := range longest[max(0, len(longest)-3):] {
		lop := op.Input.(*LockOp)
		cx.Prefix = append(cx.Prefix, lop.String()+" "+lop.interval())
	}
	// Of the operations left, the one that returns first must come before
	// all the others that start after it, so one of those that start no
	// later than it returns has to be next.
	var rest []*LockOp
	first := Forever
	for _, op := range ops {
		lop := op.Input.(*LockOp)
		if !in[lop] {
			rest = append(rest, lop)
			first = min(first, lop.end)
		}
	}
	var why []string
	for _, lop := range rest {
		if lop.start > first {
			continue
		}
		cx.Blocked = append(cx.Blocked, lop.String()+" "+lop.interval())
		if w := whyIllegal(lop, owner); w != "" && !slices.Contains(why, w) {
			why = append(why, w)
		}
	}
	var b strings.Builder
	if cx.Operations == 1 {
		fmt.Fprintf(&b, "key %s: the operation from %s to %s has no legal place. ", key, fmtTime(cx.From), fmtTimeOrForever(cx.To))
	} else {
		fmt.Fprintf(&b, "key %s: the %d operations from %s to %s have no legal order. ", key, cx.Operations, fmtTime(cx.From), fmtTimeOrForever(cx.To))
	}
	if len(longest) == 0 {
		fmt.Fprintf(&b, "Not even the first operation fits: the lock starts %s", cx.State)
	} else {
		fmt.Fprintf(&b, "The longest legal order found ends with %s, leaving the lock %s", strings.Join(cx.Prefix, ", then "), cx.State)
	}
	if len(cx.Blocked) > 0 {
		fmt.Fprintf(&b, "; one of %s must come next, and none can", strings.Join(cx.Blocked, "; "))
	}
	b.WriteString(".")
	if len(why) > 0 {
		b.WriteString(" " + strings.Join(why, " "))
	}
	cx.Description = b.String()
	return cx
}

func whyIllegal(op *LockOp, owner history.Process) string {
	switch {
	case op.Kind == OpAcquire && owner != noOwner && owner != op.Process:
		return fmt.Sprintf("The lock granted %s to P%d while P%d held it.", op.Key, op.Process, owner)
	case op.Kind == OpAcquire && owner == op.Process:
		return fmt.Sprintf("The lock granted %s to P%d, which already held it.", op.Key, op.Process)
	case op.Kind == OpRelease && owner == noOwner:
		return fmt.Sprintf("P%d released %s, which nobody held.", op.Process, op.Key)
	case op.Kind == OpRelease && owner != op.Process:
		return fmt.Sprintf("P%d released %s, which P%d held.", op.Process, op.Key, owner)
	}
	return ""
}

func fmtTimeOrForever(ns int64) string {
	if ns == Forever {
		return "∞"
	}
	return fmtTime(ns)
}

func (r *LinearizabilityResult) summary(opts Options) string {
	switch r.Result {
	case porcupine.Ok:
		return fmt.Sprintf("all %d operations on %d keys have a legal order for an owner-aware lock (%d dropped as unable to matter; searched in %d chunks of up to %d operations).",
			r.Operations, r.Keys, r.Dropped, r.Chunks, r.LargestChunk)
	case porcupine.Illegal:
		s := fmt.Sprintf("%d of the %d independently searched stretches of the history have no legal order", r.IllegalChunks, r.Chunks)
		if len(r.Counterexamples) > 0 {
			s += "; first: " + r.Counterexamples[0].Description
		}
		return s
	}
	limit := "no time limit"
	if opts.LinearizabilityTimeout > 0 {
		limit = "the limit of " + opts.LinearizabilityTimeout.String()
	}
	return fmt.Sprintf("the search did not finish within %s on %d of %d chunks (largest segment %d operations); "+
		"no violation found in the rest, which is not a pass.", limit, r.UnknownChunks, r.Chunks, r.LargestSegment)
}

func (o Options) workers() int {
	if o.Workers > 0 {
		return o.Workers
	}
	return runtime.GOMAXPROCS(0)
}
