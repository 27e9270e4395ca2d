// As in verify: the simulations here seed math/rand's global source.
//
//go:debug randseednop=0
package bubble

import (
	"math/rand"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"
)

// jittery is a simulation whose library draws retry jitter from
// math/rand's global source after each failure: two goroutines fail at
// each of a few instants, and each draws twice, yielding the processor
// between its draws as a library does between its own steps. It returns
// the draws of each goroutine.
func jittery(seed uint64) [2][]int64 {
	lib := NewLibraryRand(seed)
	var out [2][]int64
	var wg sync.WaitGroup
	for g := range out {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// The two goroutines fail at distinct instants: which of two
			// goroutines woken at one instant draws first is the Go
			// scheduler's choice, a tie no seeding can break.
			time.Sleep(time.Duration(g+1) * time.Millisecond)
			for range 20 {
				lib.Reseed()
				out[g] = append(out[g], rand.Int63())
				runtime.Gosched()
				out[g] = append(out[g], rand.Int63())
				time.Sleep(3 * time.Millisecond)
			}
		}()
	}
	wg.Wait()
	return out
}

// Simulations side by side in one process share math/rand's global
// source; each still draws what its seed gives, as it does alone.
func TestParallelSimulationsDrawTheirOwnLibraryJitter(t *testing.T) {
	seeds := []uint64{1, 2, 3, 4, 5, 6}
	alone := map[uint64][2][]int64{}
	p := Start(1)
	for _, seed := range seeds {
		if err := p.Run(func() { alone[seed] = jittery(seed) }, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	p.Close()
	if slices.Equal(alone[1][0], alone[2][0]) {
		t.Fatal("seeds 1 and 2 drew the same jitter: the seed does not reach the source")
	}

	p = Start(3)
	defer p.Close()
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range 3 {
		for _, seed := range seeds {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var got [2][]int64
				if err := p.Run(func() { got = jittery(seed) }, time.Minute); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				defer mu.Unlock()
				for g := range got {
					if !slices.Equal(got[g], alone[seed][g]) {
						t.Errorf("seed %d, goroutine %d, beside other simulations: drew %v, alone %v", seed, g, got[g][:4], alone[seed][g][:4])
					}
				}
			}()
		}
	}
	wg.Wait()
}

// Goroutines of one bubble that fail at one instant share the bubble's
// hold on the source instead of waiting for one another: the bubble
// neither stalls nor moves its clock.
func TestFailuresAtOneInstantShareTheSource(t *testing.T) {
	p := Start(2)
	defer p.Close()
	var wg sync.WaitGroup
	for seed := range uint64(4) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := p.Run(func() {
				lib := NewLibraryRand(seed + 1)
				start := time.Now()
				var inner sync.WaitGroup
				for range 8 {
					inner.Add(1)
					go func() {
						defer inner.Done()
						for range 50 {
							lib.Reseed()
							rand.Int63()
						}
					}()
				}
				inner.Wait()
				if d := time.Since(start); d != 0 {
					t.Errorf("the failures took %v of virtual time, want none", d)
				}
			}, 30*time.Second)
			if err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
}

// A bubble whose main goroutine returns right after a failure, its clock
// stopped for good, still lets go of the source: the next simulation's
// failures do not wait for it forever.
func TestASimulationThatEndsAtAFailureLetsGoOfTheSource(t *testing.T) {
	p := Start(1)
	defer p.Close()
	for seed := range uint64(3) {
		err := p.Run(func() {
			lib := NewLibraryRand(seed + 1)
			SeedLibraryRand(int64(seed))
			lib.Reseed()
			rand.Int63()
		}, 10*time.Second)
		if err != nil {
			t.Fatalf("simulation %d: %v", seed, err)
		}
	}
}
