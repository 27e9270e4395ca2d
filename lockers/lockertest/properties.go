package lockertest

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lockcheck/lockcheck/lockers"
)

// contention is what a run of contend saw.
type contention struct {
	holds int
	// overlaps counts sightings of a second holder, at entry to a
	// section or at exit from one: one overlap may be seen twice.
	overlaps int
	first    string // the first sighting
	// unlockErrs are the errors unlocking a lease that was never lost.
	// An owner check that refuses such an unlock says someone else took
	// the lock while its holder rightly believed it held: a violation
	// even when the two sections did not overlap in time.
	unlockErrs []string
	// tokens lists, per key, the token of each hold in the order the
	// holds began.
	tokens map[string][]uint64
}

// contend runs clients goroutines that each take a key iterations times and
// counts, with an atomic counter per key, the holders inside the critical
// section. The section runs from Lock's return to the call of Unlock, as
// the harness's view of a hold does, and lasts until two attempts of other
// clients on the same key have ended (or holdCap passes): an overlap needs
// a competitor that tried while the lock was held, and waiting for
// attempts rather than for time makes one likely however fast or slow the
// locker and the machine are. An attempt ends when its client starts the
// next one or its Lock returns; the latter is signalled only after the
// winner has entered the section, so a competitor granted a held lock is
// always counted before the holder leaves.
func (r *rig) contend(clients, keys, iterations int) contention {
	holders := make([]atomic.Int32, keys)
	ended := make([]beacon, keys) // attempts ended, per key
	index := make(map[string]int, keys)
	for k := range keys {
		index[keyName(k)] = k
	}

	// A check of a property documented as lacking needs one overlap, not
	// all of them: it stops every client at the first, which spares a lock
	// that never frees (tus616 on GCS) minutes of waits on stale leases.
	_, proving := r.t.(*recorder)
	waits, stopWaits := context.WithCancel(context.Background())
	defer stopWaits()

	var mu sync.Mutex
	seen := contention{tokens: map[string][]uint64{}}
	overlap := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		if seen.overlaps == 0 {
			seen.first = fmt.Sprintf(format, args...)
		}
		seen.overlaps++
		if proving {
			stopWaits()
		}
	}

	var wg sync.WaitGroup
	for i := range clients {
		c := r.client(i)
		c.onAttempt = func(key string, again bool) {
			if again {
				ended[index[key]].signal()
			}
		}
		wg.Go(func() {
			failures := 0
			for it := 0; it < iterations && waits.Err() == nil; {
				k := (i + it) % keys
				key := keyName(k)
				ctx, cancel := context.WithTimeout(waits, bound)
				lease, err := c.lock(ctx, key)
				stuck := ctx.Err() != nil
				cancel()
				if err != nil && waits.Err() != nil {
					return // stopped at the first overlap
				}
				if err != nil {
					ended[k].signal()
					if stuck {
						r.t.Errorf("%v: still without %q after %v: %v", c, key, bound, err)
						return
					}
					// A locker may give up on its own (an acquire
					// timeout); that is allowed, endlessly is not.
					if failures++; failures > 3*iterations {
						r.t.Errorf("%v: Lock(%q) failed %d times, last: %v", c, key, failures, err)
						return
					}
					continue
				}
				it++
				mu.Lock()
				n := holders[k].Add(1)
				seen.holds++
				seen.tokens[key] = append(seen.tokens[key], lease.Token())
				mu.Unlock()
				if n > 1 {
					overlap("%v took %q (token %d) while %d other client(s) held it", c, key, lease.Token(), n-1)
				}
				ended[k].signal()
				r.hold(&ended[k], lease.Lost())
				if n := holders[k].Load(); n > 1 && !closed(lease.Lost()) {
					overlap("%v, leaving %q (token %d), found %d other holder(s) inside", c, key, lease.Token(), n-1)
				}
				holders[k].Add(-1)
				ctx, cancel = context.WithTimeout(context.Background(), bound)
				err = c.unlock(ctx, lease)
				cancel()
				if err != nil && !closed(lease.Lost()) {
					mu.Lock()
					seen.unlockErrs = append(seen.unlockErrs, fmt.Sprintf("%v: Unlock of its lease on %q (token %d): %v", c, key, lease.Token(), err))
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	return seen
}

// exclusive says whether contend saw nothing but exclusive holds.
func (c contention) exclusive() bool { return c.overlaps == 0 && len(c.unlockErrs) == 0 }

func mutex(clients, keys, iterations int) func(r *rig) {
	return func(r *rig) {
		seen := r.contend(clients, keys, iterations)
		if seen.overlaps > 0 {
			r.t.Errorf("mutual exclusion broken (%d sightings of a second holder) in %d holds by %d clients on %d key(s); first: %s",
				seen.overlaps, seen.holds, clients, keys, seen.first)
		}
		if n := len(seen.unlockErrs); n > 0 {
			r.t.Errorf("%d unlock(s) of leases never lost failed; first: %s", n, seen.unlockErrs[0])
		}
	}
}

// hold waits inside a critical section until two competing attempts on its
// key have ended, the lease is lost, or holdCap passes.
func (r *rig) hold(ended *beacon, lost <-chan struct{}) {
	limit := time.NewTimer(holdCap)
	defer limit.Stop()
	from, _ := ended.state()
	for {
		n, more := ended.state()
		if n >= from+2 {
			return
		}
		select {
		case <-more:
		case <-lost:
			return
		case <-limit.C:
			return
		}
	}
}

func unlockFrees(r *rig) {
	a, b := r.client(0), r.client(1)
	const key = "k0"
	for round := range 3 {
		holder, next := a, b
		if round%2 == 1 {
			holder, next = b, a
		}
		lease := r.mustLock(holder, key)
		r.mustUnlock(holder, lease, key)
		ctx, cancel := context.WithTimeout(context.Background(), bound)
		got, err := next.lock(ctx, key)
		cancel()
		if err != nil {
			r.t.Fatalf("round %d: %v unlocked %q, then %v could not take it: %v", round, holder, key, next, err)
		}
		if n := next.callAttempts(); n > 1 {
			r.t.Errorf("round %d: %v needed %d attempts to take %q right after it was unlocked", round, next, n, key)
		}
		r.mustUnlock(next, got, key)
	}
}

func cancelWait(r *rig) {
	a, b := r.client(0), r.client(1)
	const key = "k0"
	// Each client takes and frees another key first, so connections it
	// keeps open for reuse (and the goroutines an in-process server runs
	// for them) exist before the count: only what the cancelled Lock
	// leaves behind may differ.
	for _, c := range []*client{a, b} {
		r.mustUnlock(c, r.mustLock(c, "warm-up"), "warm-up")
	}
	base := runtime.NumGoroutine()
	held := r.mustLock(a, key)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	from, _ := b.attempts.state()
	res := b.lockAsync(ctx, key)
	// Cancel once b has found the key held and is waiting to try again.
	if got, done := r.waitAttempts(b, from, 2, res); done {
		if got.err == nil {
			r.t.Fatalf("%v took %q while %v held it", b, key, a)
		}
		r.t.Fatalf("%v gave up on %q before it was cancelled: %v", b, key, got.err)
	}
	cancel()
	var got lockResult
	select {
	case got = <-res:
	case <-time.After(promptly):
		r.t.Fatalf("%v: Lock(%q) still running %v after its context was cancelled", b, key, promptly)
	}
	if got.err == nil {
		r.t.Errorf("%v: a cancelled Lock(%q) returned a lease (token %d) while %v held the key", b, key, got.lease.Token(), a)
	} else if !errors.Is(got.err, lockers.ErrNoEffect) {
		r.t.Logf("a cancelled Lock reported an indeterminate error (allowed, but the checkers must then assume it may have acquired): %v", got.err)
	}
	r.mustUnlock(a, held, key)
	if got.err == nil {
		r.mustUnlock(b, got.lease, key)
	}
	r.settleGoroutines(base)
}

// fencing checks tokens taken one after another, then under contention:
// there, each token must be unique per key, and, if the holds were
// exclusive, increase in the order the holds began. When mutual exclusion
// broke (the mutex properties report that), hold order is not grant order
// and only uniqueness is checked.
func fencing(r *rig) {
	clients := []*client{r.client(0), r.client(1), r.client(2)}
	last := map[string]uint64{}
	for round := range 12 {
		key := keyName(round % 2)
		c := clients[round%len(clients)]
		lease := r.mustLock(c, key)
		switch tok := lease.Token(); {
		case tok == 0:
			r.t.Errorf("round %d: %v got token 0 for %q", round, c, key)
		case tok <= last[key]:
			r.t.Errorf("round %d: %v got token %d for %q after token %d", round, c, tok, key, last[key])
		default:
			last[key] = tok
		}
		r.mustUnlock(c, lease, key)
	}

	seen := r.contend(8, 2, 12)
	for key, tokens := range seen.tokens {
		unique := map[uint64]bool{}
		for i, tok := range tokens {
			switch {
			case tok == 0:
				r.t.Errorf("%q: hold %d under contention had token 0", key, i)
			case unique[tok]:
				r.t.Errorf("%q: token %d handed out twice", key, tok)
			case seen.exclusive() && i > 0 && tok <= tokens[i-1]:
				r.t.Errorf("%q: hold %d had token %d after token %d", key, i, tok, tokens[i-1])
			}
			unique[tok] = true
		}
	}
}

func releaseRequest(r *rig) {
	a, b := r.client(0), r.client(1)
	const key = "k0"
	held := r.mustLock(a, key)
	rr, ok := held.(lockers.ReleaseRequester)
	if !ok {
		r.t.Fatalf("lease %T does not implement lockers.ReleaseRequester", held)
	}
	if closed(rr.ReleaseRequested()) {
		r.t.Fatalf("release requested before anyone else wanted %q", key)
	}
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	res := b.lockAsync(ctx, key)
	select {
	case <-rr.ReleaseRequested():
	case got := <-res:
		if got.err == nil {
			r.t.Fatalf("%v took %q while %v held it", b, key, a)
		}
		r.t.Fatalf("%v gave up on %q without asking the holder to let go: %v", b, key, got.err)
	case <-time.After(bound):
		r.t.Fatalf("%v waited %v for %q, and the holder was never asked to let go", b, bound, key)
	}
	r.mustUnlock(a, held, key)
	var got lockResult
	select {
	case got = <-res:
	case <-time.After(bound):
		r.t.Fatalf("%v: still without %q %v after the holder let go", b, key, bound)
	}
	if got.err != nil {
		r.t.Fatalf("%v: Lock(%q) after the holder let go: %v", b, key, got.err)
	}
	if rr, ok := got.lease.(lockers.ReleaseRequester); ok && closed(rr.ReleaseRequested()) {
		r.t.Errorf("the new holder of %q was asked to let go with nobody waiting", key)
	}
	r.mustUnlock(b, got.lease, key)
}

// ownerCheck unlocks a lease a second time after another client took the
// key: the generic way to make a lease that lost its lock, whatever made it
// lose (expiry, takeover, a release already done).
func ownerCheck(r *rig) {
	a, b, c := r.client(0), r.client(1), r.client(2)
	const key = "k0"
	stale := r.mustLock(a, key)
	r.mustUnlock(a, stale, key)
	held := r.mustLock(b, key)
	if got := r.probe(c, key); got != nil {
		r.mustUnlock(c, got, key)
		r.t.Fatalf("%v took %q while %v held it, before any stale unlock", c, key, b)
	}

	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	err := stale.Unlock(ctx)
	switch {
	case err == nil:
		r.t.Errorf("%v: unlocking a lease whose lock %v now holds reported success", a, b)
	case !errors.Is(err, lockers.ErrNoEffect):
		r.t.Logf("stale unlock reported an indeterminate error (the checkers must then assume it may have released): %v", err)
	}
	if got := r.probe(c, key); got != nil {
		r.t.Errorf("%v's stale unlock freed %v's lock: %v then took %q", a, b, c, key)
		r.mustUnlock(c, got, key)
		return
	}
	if err := b.unlock(ctx, held); err != nil {
		r.t.Errorf("%v: Unlock of its lease after %v's stale unlock: %v", b, a, err)
	}
}

// leaseKept runs in a synctest bubble, on virtual time: a holds the key for
// five TTLs while b keeps trying. b may take it only after a was told its
// lease is lost; in the bubble, time stands still until every goroutine is
// blocked, so a's refresher has done whatever it does at an instant before
// b's attempt at a later one.
func leaseKept(r *rig) {
	ttl := r.s.TTL
	a, b := r.client(0), r.client(1)
	const key = "k0"
	start := time.Now()
	held := r.mustLock(a, key)

	type takeover struct {
		lease      lockers.Lease
		after      time.Duration
		holderLost bool
		err        error
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	res := make(chan takeover, 1)
	go func() {
		for tries := 0; ; tries++ {
			lease, err := b.lock(ctx, key)
			if err == nil {
				res <- takeover{lease: lease, after: time.Since(start), holderLost: closed(held.Lost())}
				return
			}
			if ctx.Err() != nil {
				res <- takeover{}
				return
			}
			if tries > 1000 {
				res <- takeover{err: fmt.Errorf("Lock gave up %d times, last: %w", tries, err)}
				return
			}
		}
	}()
	var got takeover
	select {
	case got = <-res:
	case <-time.After(5 * ttl):
		cancel()
		got = <-res
	}
	unlockCtx, cancelUnlock := context.WithTimeout(context.Background(), bound)
	defer cancelUnlock()
	switch {
	case got.err != nil:
		r.t.Errorf("%v: %v", b, got.err)
	case got.lease == nil && !closed(held.Lost()):
		if err := a.unlock(unlockCtx, held); err != nil {
			r.t.Errorf("%v kept %q for %v (TTL %v), then could not unlock it: %v", a, key, 5*ttl, ttl, err)
		}
	case got.lease == nil:
		r.t.Logf("the holder was told its lease was lost, and nobody took the key in %v: allowed", 5*ttl)
	case !got.holderLost:
		r.t.Errorf("%v took %q %v into %v's hold (TTL %v), and the holder had not been told its lease was lost",
			b, key, got.after, a, ttl)
	default:
		r.t.Logf("the holder was told its lease was lost; %v took %q %v into the hold: allowed", b, key, got.after)
	}
	if got.lease != nil {
		if err := b.unlock(unlockCtx, got.lease); err != nil {
			r.t.Errorf("%v: Unlock of the lease it took over: %v", b, err)
		}
	}
}
