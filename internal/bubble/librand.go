package bubble

import (
	"fmt"
	mathrand "math/rand"
	"math/rand/v2"
	"strings"
	"sync"
	"testing/synctest"
	"time"
)

// libraryRandMu is held by one simulation at a time while it owns
// math/rand's global source: from the moment it seeds the source until
// the library draws that follow have been made. The source is the
// process's, so simulations side by side (verify sim -parallel) would
// otherwise interleave their draws, and a seed's retry jitter would
// depend on what ran beside it.
var libraryRandMu sync.Mutex

// SeedLibraryRand seeds math/rand's global source, waiting first for any
// simulation that owns it. rand.Seed has effect only in a binary built
// with //go:debug randseednop=0.
func SeedLibraryRand(seed int64) {
	libraryRandMu.Lock()
	defer libraryRandMu.Unlock()
	mathrand.Seed(seed) //nolint:staticcheck // the global source is the one the libraries draw from
}

// LibraryRand gives one simulation math/rand's global source, the one
// client libraries draw their retry jitter from (gax-go's Backoff.Pause
// for the storage client, go-redis's retry backoff), for each draw they
// make: Reseed, called where a library may draw next (a request that
// failed, a connection that broke), takes the source for the caller's
// bubble, seeds it from the simulation's seed and the virtual instant, and
// keeps it until every goroutine of the bubble has blocked.
// Library code draws in the goroutine that saw the failure before that
// goroutine waits for anything (the retry's pause is a timer), so the
// draws after a Reseed come from the seeded source whatever other bubbles
// do meanwhile. The instant, rather than a count of reseeds, decides the
// seed, so a failure that leaves no trace in the history (a background
// dial that lost a race with its deadline at one instant) does not shift
// the jitter of every retry after it.
//
// A LibraryRand must be made inside the bubble it serves, and a bubble
// should have only one: two in one bubble would wait on each other. The
// hold ends through synctest.Wait, which one goroutine of a bubble may
// call at a time: a test that calls it in a bubble whose network failed a
// request at that instant should block on something first (any sleep),
// which lets the hold end. Outside a bubble Reseed still seeds the
// source; the draws are not ordered then, and nothing needs them to be.
// A bubble that stalls (ErrStalled) with the source held keeps it, and
// every other simulation of the process stalls at its next failure.
type LibraryRand struct {
	seed uint64
	mu   sync.Mutex
	held bool // this bubble owns libraryRandMu
}

// NewLibraryRand is a simulation's access to math/rand's global source,
// its seeds drawn from seed.
func NewLibraryRand(seed uint64) *LibraryRand {
	return &LibraryRand{seed: seed}
}

// Reseed seeds the global source for the draws the caller's library is
// about to make. Until the bubble settles, later calls find the source
// still the bubble's and leave it, so the draws of goroutines woken at one
// instant come in turn from one stream.
func (l *LibraryRand) Reseed() {
	// l.mu stays held while this goroutine waits for another bubble to
	// let go of the source, so that another goroutine of this bubble waits
	// here and then finds the source held. Were it to wait on
	// libraryRandMu instead, it would still be waiting once this bubble
	// held the source, and a bubble with a goroutine waiting on a mutex
	// never settles: the source would stay held for good.
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.held {
		return
	}
	libraryRandMu.Lock()
	l.held = true
	at := uint64(time.Now().UnixNano())
	mathrand.Seed(rand.New(rand.NewPCG(l.seed, at^0x11b7a2d)).Int64()) //nolint:staticcheck // the global source is the one the libraries draw from
	go func() {
		settle()
		l.mu.Lock()
		l.held = false
		libraryRandMu.Unlock()
		l.mu.Unlock()
	}()
}

// settle returns once every other goroutine of the caller's bubble is
// durably blocked: the goroutines woken at this instant have made their
// draws. It does not wait for the clock to move, which stops for good
// once the bubble's main goroutine returns. Outside a bubble it returns at
// once.
func settle() {
	for {
		switch waitIdle() {
		case idle, unbubbled:
			return
		case busy:
			// Another goroutine of the bubble is in synctest.Wait (a
			// test's): it returns first once this one sleeps, and the
			// next look finds the bubble's goroutines settled again.
			time.Sleep(time.Nanosecond)
		}
	}
}

type waitResult int

const (
	idle waitResult = iota
	unbubbled
	busy
)

// waitIdle is synctest.Wait, which panics outside a bubble and while
// another goroutine of the bubble waits in it.
func waitIdle() (res waitResult) {
	defer func() {
		if r := recover(); r != nil {
			res = unbubbled
			if strings.Contains(fmt.Sprint(r), "in progress") {
				res = busy
			}
		}
	}()
	synctest.Wait()
	return idle
}
