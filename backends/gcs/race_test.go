package gcs

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"cloud.google.com/go/storage"
)

// raceRounds runs rounds of {delete(ifGenerationMatch=g0); create-if-absent}
// from n goroutines on one object and returns, per round, how many creates
// succeeded. g0 is the generation the previous round's winner created, so
// exactly one delete can succeed per round and, on GCS, exactly one create.
func raceRounds(ctx context.Context, b backend, name string, n, rounds int) ([]int, error) {
	h := b.obj(b.client, name)
	_ = h.Delete(ctx)
	first, err := write(ctx, h.If(storage.Conditions{DoesNotExist: true}), "0", false)
	if err != nil {
		return nil, fmt.Errorf("race: initial create: %w", err)
	}
	g0 := first.Generation
	wins := make([]int, rounds)
	for round := range rounds {
		var (
			wg      sync.WaitGroup
			created atomic.Int64
			winGen  atomic.Int64
			errMu   sync.Mutex
			errs    []error
		)
		start := make(chan struct{}) // released at once so all goroutines race
		for range n {
			wg.Go(func() {
				<-start
				derr := h.If(storage.Conditions{GenerationMatch: g0}).Delete(ctx)
				if s := status(derr); s != 200 && s != 404 && s != 412 {
					errMu.Lock()
					errs = append(errs, fmt.Errorf("delete: %w", derr))
					errMu.Unlock()
				}
				a, cerr := write(ctx, h.If(storage.Conditions{DoesNotExist: true}), strconv.Itoa(round), false)
				switch status(cerr) {
				case 200:
					created.Add(1)
					winGen.Store(a.Generation)
				case 412:
				default:
					errMu.Lock()
					errs = append(errs, fmt.Errorf("create: %w", cerr))
					errMu.Unlock()
				}
			})
		}
		close(start)
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return wins, fmt.Errorf("race: round %d: %w", round, err)
		}
		wins[round] = int(created.Load())
		if wins[round] == 0 {
			return wins, fmt.Errorf("race: round %d: no create succeeded", round)
		}
		g0 = winGen.Load()
	}
	return wins, nil
}

func checkOneWinner(t *testing.T, wins []int) {
	t.Helper()
	bad := 0
	for i, w := range wins {
		if w != 1 {
			bad++
			if bad <= 5 {
				t.Errorf("round %d: %d successful creates, want exactly 1", i, w)
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d rounds had more than one successful create", bad, len(wins))
	}
}

func roundsWithManyWinners(wins []int) int {
	n := 0
	for _, w := range wins {
		if w > 1 {
			n++
		}
	}
	return n
}

// TestDeleteCreateRace: 50 goroutines x 40 rounds through the fidelity
// layer, exactly one winner each. The bare emulator lets several win in
// nearly every round (TestDeleteCreateRaceFailsOnTheRawEmulator), so 40
// rounds tell the two apart many times over; the measurement at full
// size, 200 rounds, is BenchmarkDeleteCreateRace (make bench).
func TestDeleteCreateRace(t *testing.T) {
	_, b := newTestBackend(t, false)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	wins, err := raceRounds(ctx, b, "race/delete-create", 50, 40)
	if err != nil {
		t.Fatal(err)
	}
	checkOneWinner(t, wins)
}

// The known-bad side of TestDeleteCreateRace: on the bare emulator the
// same race has rounds with more than one winner, and the count says so.
func TestDeleteCreateRaceFailsOnTheRawEmulator(t *testing.T) {
	_, b := newTestBackend(t, true)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	wins, err := raceRounds(ctx, b, "race/delete-create", 50, 10)
	if err != nil {
		t.Fatal(err)
	}
	if n := roundsWithManyWinners(wins); n == 0 {
		t.Errorf("the bare emulator had one winner in each of %d rounds (%v): the race no longer shows the gap the fidelity layer closes", len(wins), wins)
	} else {
		t.Logf("bare emulator: %d of %d rounds had several winners: %v", n, len(wins), wins)
	}
}

// BenchmarkDeleteCreateRace is the full 50 goroutines x 200 rounds; one
// iteration is the whole experiment.
func BenchmarkDeleteCreateRace(b *testing.B) {
	_, be := newTestBackend(b, false)
	for b.Loop() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		wins, err := raceRounds(ctx, be, "race/delete-create-bench", 50, 200)
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		for i, w := range wins {
			if w != 1 {
				b.Fatalf("round %d: %d successful creates, want exactly 1", i, w)
			}
		}
	}
}

// TestUpdateRacingDelete: an update and a delete of the same generation run
// concurrently; whatever order they take effect in, a successful delete must
// leave no object (the emulator alone sometimes brought the object back).
func TestUpdateRacingDelete(t *testing.T) {
	_, b := newTestBackend(t, false)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	h := b.obj(b.client, "race/update-delete")
	for round := range 200 {
		a, err := write(ctx, h, "v", false)
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		var uerr, derr error
		start := make(chan struct{})
		wg.Go(func() {
			<-start
			_, uerr = patch(ctx, h.If(storage.Conditions{GenerationMatch: a.Generation}), strconv.Itoa(round))
		})
		wg.Go(func() {
			<-start
			derr = h.If(storage.Conditions{GenerationMatch: a.Generation}).Delete(ctx)
		})
		close(start)
		wg.Wait()
		if derr != nil {
			t.Fatalf("round %d: delete: %v", round, derr)
		}
		if s := status(uerr); s != 200 && s != 404 {
			t.Fatalf("round %d: update: %v", round, uerr)
		}
		if _, err := h.Attrs(ctx); !errors.Is(err, storage.ErrObjectNotExist) {
			t.Fatalf("round %d: after a successful delete the object is back (update err %v, attrs err %v)", round, uerr, err)
		}
	}
}

// TestMetagenerationCAS: n goroutines per round patch the object with
// ifMetagenerationMatch=m; exactly one wins and metageneration becomes m+1.
// This is the compare-and-set that metageneration-based lockers rely on.
func TestMetagenerationCAS(t *testing.T) {
	const n, rounds = 16, 50
	_, b := newTestBackend(t, false)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	h := b.obj(b.client, "race/meta-cas")
	a, err := write(ctx, h, "v", false)
	if err != nil {
		t.Fatal(err)
	}
	m := a.Metageneration
	for round := range rounds {
		var wg sync.WaitGroup
		var won atomic.Int64
		var bad atomic.Int64
		start := make(chan struct{})
		for i := range n {
			wg.Go(func() {
				<-start
				_, err := patch(ctx, h.If(storage.Conditions{MetagenerationMatch: m}), strconv.Itoa(i))
				switch status(err) {
				case 200:
					won.Add(1)
				case 412:
				default:
					bad.Add(1)
				}
			})
		}
		close(start)
		wg.Wait()
		if w := won.Load(); w != 1 || bad.Load() != 0 {
			t.Fatalf("round %d: %d winners, %d unexpected errors; want 1 and 0", round, w, bad.Load())
		}
		now, err := h.Attrs(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if now.Metageneration != m+1 || now.Generation != a.Generation {
			t.Fatalf("round %d: generation/metageneration %d/%d, want %d/%d", round, now.Generation, now.Metageneration, a.Generation, m+1)
		}
		m = now.Metageneration
	}
}
