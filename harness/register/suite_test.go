package register_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lockcheck/lockcheck/harness/register"

	"github.com/lockcheck/lockcheck/lockers"
)

// opener returns a store of one flavour. Stores of one test share a
// backend; each case uses its own key.
type opener func(t *testing.T, fenced bool) register.Store

// suiteTimeout bounds each case: a hung backend fails the test rather than
// the whole binary.
const suiteTimeout = 30 * time.Second

// runSuite is the conformance suite every store passes, in both flavours.
func runSuite(t *testing.T, open opener) {
	for _, fenced := range []bool{false, true} {
		flavour := "plain"
		if fenced {
			flavour = "fenced"
		}
		t.Run(flavour, func(t *testing.T) {
			for _, c := range suiteCases {
				if c.only != nil && *c.only != fenced {
					continue
				}
				t.Run(c.name, func(t *testing.T) {
					ctx, cancel := context.WithTimeout(context.Background(), suiteTimeout)
					defer cancel()
					c.run(ctx, t, open(t, fenced), caseKey(t))
				})
			}
		})
	}
}

// caseKey is a key no other case of the test uses.
func caseKey(t *testing.T) string {
	return strings.NewReplacer("/", "-", " ", "_").Replace(t.Name())
}

var (
	plainOnly  = new(false)
	fencedOnly = new(true)
)

var suiteCases = []struct {
	name string
	only *bool // nil: both flavours
	run  func(ctx context.Context, t *testing.T, s register.Store, key string)
}{
	{"absent-key-reads-0", nil, func(ctx context.Context, t *testing.T, s register.Store, key string) {
		wantFinal(ctx, t, s, key, 0)
		wantRead(ctx, t, s, key, 0, 0)
		wantRead(ctx, t, s, key, 3, 0)
		wantFinal(ctx, t, s, key, 0)
	}},
	{"write-then-read", nil, func(ctx context.Context, t *testing.T, s register.Store, key string) {
		mustWrite(ctx, t, s, key, 7, 1)
		wantRead(ctx, t, s, key, 1, 7)
		mustWrite(ctx, t, s, key, -3, 1)
		wantRead(ctx, t, s, key, 1, -3)
		wantFinal(ctx, t, s, key, -3)
	}},
	{"accepts-any-token-order", plainOnly, func(ctx context.Context, t *testing.T, s register.Store, key string) {
		wantRead(ctx, t, s, key, 5, 0)
		mustWrite(ctx, t, s, key, 1, 4)
		wantRead(ctx, t, s, key, 0, 1)
		mustWrite(ctx, t, s, key, 2, 9)
		mustWrite(ctx, t, s, key, 3, 2)
		wantRead(ctx, t, s, key, 1, 3)
		wantFinal(ctx, t, s, key, 3)
	}},
	{"refuses-stale-tokens", fencedOnly, func(ctx context.Context, t *testing.T, s register.Store, key string) {
		// A read raises the fence: the write of an older holder that
		// read before it must not land.
		wantRead(ctx, t, s, key, 5, 0)
		wantStaleWrite(ctx, t, s, key, 9, 4)
		wantFinal(ctx, t, s, key, 0)
		wantStaleRead(ctx, t, s, key, 4)
		// Equal tokens pass, reads and writes.
		wantRead(ctx, t, s, key, 5, 0)
		mustWrite(ctx, t, s, key, 3, 5)
		wantRead(ctx, t, s, key, 5, 3)
		// A higher token passes and raises the fence.
		mustWrite(ctx, t, s, key, 4, 7)
		wantStaleRead(ctx, t, s, key, 6)
		wantStaleWrite(ctx, t, s, key, 99, 6)
		wantStaleWrite(ctx, t, s, key, 99, 0)
		wantFinal(ctx, t, s, key, 4)
		wantRead(ctx, t, s, key, 7, 4)
		wantRead(ctx, t, s, key, 8, 4)
		wantStaleWrite(ctx, t, s, key, 99, 7)
		wantFinal(ctx, t, s, key, 4)
	}},
	{"read-of-absent-key-raises-fence", fencedOnly, func(ctx context.Context, t *testing.T, s register.Store, key string) {
		wantRead(ctx, t, s, key, 3, 0)
		wantStaleWrite(ctx, t, s, key, 1, 2)
		wantFinal(ctx, t, s, key, 0)
		mustWrite(ctx, t, s, key, 1, 3)
		wantFinal(ctx, t, s, key, 1)
	}},
	{"tokens-above-2^53-compare-exactly", fencedOnly, func(ctx context.Context, t *testing.T, s register.Store, key string) {
		// A float64 holds 1<<60 and 1<<60+1 as the same number.
		const big = uint64(1) << 60
		wantRead(ctx, t, s, key, big+1, 0)
		wantStaleWrite(ctx, t, s, key, 1, big)
		mustWrite(ctx, t, s, key, 2, big+1)
		mustWrite(ctx, t, s, key, 3, ^uint64(0))
		wantStaleRead(ctx, t, s, key, ^uint64(0)-1)
		wantFinal(ctx, t, s, key, 3)
	}},
	{"concurrent-holders-never-let-a-lower-token-win", fencedOnly, func(ctx context.Context, t *testing.T, s register.Store, key string) {
		calls := raceIncrements(ctx, t, s, key)
		final, err := s.Final(ctx, key)
		if err != nil {
			t.Fatalf("Final: %v", err)
		}
		if err := checkFenced(calls, final); err != nil {
			t.Fatal(err)
		}
		// The last token of all is never below the fence: its write must
		// land, or the store refuses what it should accept.
		last := uint64(raceClients * raceRounds)
		if !slices.ContainsFunc(calls, func(c call) bool { return c.op == "write" && c.token == last && c.ok }) {
			t.Fatalf("the write with token %d, the highest, was refused or never made", last)
		}
	}},
}

func cmpU(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Race shape: raceClients goroutines, each raceRounds read-increment-write
// rounds, every call with a token of its own.
const (
	raceClients = 8
	raceRounds  = 4
)

// call is one completed store call. inv and ret are ticks of one shared
// counter taken before the call and after it returned: ret of one call
// below inv of another means the first ended before the second began.
type call struct {
	op       string // "read" or "write"
	token    uint64
	value    int64 // read: the value returned; write: the value written
	ok       bool  // false: refused, definitely no effect
	inv, ret uint64
}

// raceIncrements runs the race on s and returns every call. Any error that
// is not a definite refusal fails the test: with no faults there is none.
func raceIncrements(ctx context.Context, t *testing.T, s register.Store, key string) []call {
	var (
		clock atomic.Uint64
		mu    sync.Mutex
		calls []call
		wg    sync.WaitGroup
		start = make(chan struct{})
	)
	record := func(c call) {
		mu.Lock()
		calls = append(calls, c)
		mu.Unlock()
	}
	for g := range raceClients {
		wg.Go(func() {
			<-start
			for r := range raceRounds {
				token := uint64(r*raceClients + g + 1)
				inv := clock.Add(1)
				v, err := s.Read(ctx, key, token)
				rc := call{op: "read", token: token, value: v, ok: err == nil, inv: inv, ret: clock.Add(1)}
				if err != nil && !errors.Is(err, lockers.ErrNoEffect) {
					t.Errorf("read with token %d: %v", token, err)
					return
				}
				record(rc)
				if err != nil {
					continue
				}
				inv = clock.Add(1)
				err = s.Write(ctx, key, v+1, token)
				record(call{op: "write", token: token, value: v + 1, ok: err == nil, inv: inv, ret: clock.Add(1)})
				if err != nil && !errors.Is(err, lockers.ErrNoEffect) {
					t.Errorf("write with token %d: %v", token, err)
					return
				}
			}
		})
	}
	close(start)
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	return calls
}

// checkFenced judges a race of read-increment-write clients, each call with
// a token no other client uses, against a fenced store:
//
//   - no accepted write has a lower token than a call accepted before the
//     write began (the fence was already above it);
//   - no update is lost: a client whose read raised the fence to b can only
//     have read after every accepted write with a lower token, so accepted
//     writes taken in token order carry 1, 2, …, n and the final value is n.
func checkFenced(calls []call, final int64) error {
	var writes []call
	for _, w := range calls {
		if w.op != "write" || !w.ok {
			continue
		}
		writes = append(writes, w)
		for _, c := range calls {
			if c.ok && c.token > w.token && c.ret < w.inv {
				return fmt.Errorf("write of %d with token %d was accepted after a %s with token %d had been accepted", w.value, w.token, c.op, c.token)
			}
		}
	}
	slices.SortFunc(writes, func(a, b call) int { return cmpU(a.token, b.token) })
	for i, w := range writes {
		if w.value != int64(i+1) {
			return fmt.Errorf("lost update: accepted write %d of %d in token order (token %d) wrote %d, want %d", i+1, len(writes), w.token, w.value, i+1)
		}
	}
	if final != int64(len(writes)) {
		return fmt.Errorf("lost update: final value %d after %d accepted increments", final, len(writes))
	}
	return nil
}

func wantRead(ctx context.Context, t *testing.T, s register.Store, key string, token uint64, want int64) {
	t.Helper()
	got, err := s.Read(ctx, key, token)
	if err != nil {
		t.Fatalf("Read(%q, token %d): %v", key, token, err)
	}
	if got != want {
		t.Fatalf("Read(%q, token %d) = %d, want %d", key, token, got, want)
	}
}

func mustWrite(ctx context.Context, t *testing.T, s register.Store, key string, value int64, token uint64) {
	t.Helper()
	if err := s.Write(ctx, key, value, token); err != nil {
		t.Fatalf("Write(%q, %d, token %d): %v", key, value, token, err)
	}
}

func wantFinal(ctx context.Context, t *testing.T, s register.Store, key string, want int64) {
	t.Helper()
	got, err := s.Final(ctx, key)
	if err != nil {
		t.Fatalf("Final(%q): %v", key, err)
	}
	if got != want {
		t.Fatalf("Final(%q) = %d, want %d", key, got, want)
	}
}

func wantStale(t *testing.T, what string, err error) {
	t.Helper()
	if !register.IsStale(err) || !errors.Is(err, lockers.ErrNoEffect) {
		t.Fatalf("%s: got %v, want a refusal wrapping register.ErrStale and ErrNoEffect", what, err)
	}
}

func wantStaleRead(ctx context.Context, t *testing.T, s register.Store, key string, token uint64) {
	t.Helper()
	_, err := s.Read(ctx, key, token)
	wantStale(t, fmt.Sprintf("Read(%q, token %d)", key, token), err)
}

func wantStaleWrite(ctx context.Context, t *testing.T, s register.Store, key string, value int64, token uint64) {
	t.Helper()
	err := s.Write(ctx, key, value, token)
	wantStale(t, fmt.Sprintf("Write(%q, %d, token %d)", key, value, token), err)
}

// The race check's own fixtures: a history it must pass and two it must
// fail, one per property.
func TestCheckFencedGood(t *testing.T) {
	calls := []call{
		{op: "read", token: 1, value: 0, ok: true, inv: 1, ret: 2},
		{op: "read", token: 2, value: 0, ok: true, inv: 3, ret: 6},
		{op: "write", token: 1, value: 1, ok: false, inv: 4, ret: 7},
		{op: "write", token: 2, value: 1, ok: true, inv: 8, ret: 9},
		{op: "read", token: 3, value: 1, ok: true, inv: 10, ret: 11},
		{op: "write", token: 3, value: 2, ok: true, inv: 12, ret: 13},
	}
	if err := checkFenced(calls, 2); err != nil {
		t.Fatalf("a fenced history judged bad: %v", err)
	}
}

func TestCheckFencedBadOrder(t *testing.T) {
	// What a plain store does: it lets token 4 write after token 5 read.
	ctx := context.Background()
	s := register.NewMemory(false)
	var calls []call
	v, err := s.Read(ctx, "k", 5)
	calls = append(calls, call{op: "read", token: 5, value: v, ok: err == nil, inv: 1, ret: 2})
	err = s.Write(ctx, "k", 1, 4)
	calls = append(calls, call{op: "write", token: 4, value: 1, ok: err == nil, inv: 3, ret: 4})
	final, _ := s.Final(ctx, "k")
	err = checkFenced(calls, final)
	if err == nil || !strings.Contains(err.Error(), "accepted after a read with token 5") {
		t.Fatalf("a stale write accepted after a higher read: got %v, want the order violation", err)
	}
}

func TestCheckFencedBadLostUpdate(t *testing.T) {
	// Both read 0 while overlapping, both writes land: one increment lost.
	calls := []call{
		{op: "read", token: 1, value: 0, ok: true, inv: 1, ret: 4},
		{op: "read", token: 2, value: 0, ok: true, inv: 2, ret: 5},
		{op: "write", token: 2, value: 1, ok: true, inv: 6, ret: 8},
		{op: "write", token: 1, value: 1, ok: true, inv: 3, ret: 9},
	}
	err := checkFenced(calls, 1)
	if err == nil || !strings.Contains(err.Error(), "lost update") {
		t.Fatalf("a lost increment: got %v, want a lost update", err)
	}
}

func TestMemory(t *testing.T) {
	runSuite(t, func(t *testing.T, fenced bool) register.Store { return register.NewMemory(fenced) })
}
