// Package lockertest is the conformance suite every locker runs in its own
// tests: a fixed list of properties, each checked against a fresh backend,
// so that a harness verdict about a locker is never the first sign that it
// breaks its contract in the simplest, fault-free setting.
//
// A locker states what it claims in a [Suite]. The always-claimed properties
// are mutual exclusion (on one key and on many), unlock freeing the lock,
// and cancellation. Fencing, release requests, an owner check on unlock and
// a lease kept alive past its TTL are claimed explicitly. A property the
// locker documents that it lacks goes in [Suite.Lacks] with the reason; the
// suite then runs it anyway and requires it to fail, so a claim of weakness
// is evidence too, and a suite that stopped catching the weakness is noticed.
//
// The suite runs on the real clock ([lockers.SystemClock]) except for
// [LeaseKept], which runs in a testing/synctest bubble where that clock is
// virtual: holding a lock for five TTLs then costs no wall time. Waits on
// the real clock only bound how long a broken locker can stall the suite;
// what the suite checks never depends on how fast the machine is. Where the
// suite must know that a client has looked at a held key, it waits for the
// client's locker to report attempts (Env.AttemptStarted); a locker that
// never reports any gets a short real-time grace instead, which can only
// make the check weaker, never a false alarm. Do not call Run from a
// parallel test: [Cancel] counts goroutines.
//
// The suite's own tests run it, with a recorder in place of the test,
// against the deliberately broken lockers of package mutants, and require
// each bug to be caught by the property made for it.
package lockertest

import (
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/lockcheck/lockcheck/lockers"
)

// Property names one check of the suite.
type Property string

// The properties, in the order Run checks them.
const (
	// MutexOneKey: 32 clients contend for one key; no two ever hold it at
	// once, and no holder that was never told its lease is lost finds its
	// Unlock refused (someone took the lock from under it).
	MutexOneKey Property = "mutex-1key"
	// MutexManyKeys: 32 clients contend for 8 keys; no key ever has two
	// holders.
	MutexManyKeys Property = "mutex-8keys"
	// UnlockFrees: once a holder unlocks, another client's first attempt
	// takes the lock.
	UnlockFrees Property = "unlock-frees"
	// Cancel: a Lock waiting for a held key returns promptly, with an
	// error and no lease, when its context is cancelled, and leaves no
	// goroutine behind.
	Cancel Property = "cancel"
	// Fencing: tokens are non-zero and increase with each acquisition of a
	// key. Claimed by [Suite.Fencing].
	Fencing Property = "fencing"
	// ReleaseRequest: a client that finds the key held asks the holder to
	// let go, and gets the lock once it does. Claimed by
	// [Suite.ReleaseRequest].
	ReleaseRequest Property = "release-request"
	// OwnerCheck: unlocking a lease whose lock is now someone else's
	// reports an error and leaves the new holder alone. Claimed by
	// [Suite.OwnerCheck].
	OwnerCheck Property = "owner-check"
	// LeaseKept: a holder keeps its lock for five TTLs while another
	// client keeps trying, unless it is told (Lost) that the lease is gone
	// before anyone else takes it. Claimed by a positive [Suite.TTL].
	LeaseKept Property = "lease-kept"
)

// Suite describes a locker to the conformance suite.
type Suite struct {
	// New prepares one backend and returns the constructor of a client's
	// locker on it. It is called once per property, so properties never
	// share a backend. For [LeaseKept] it is called inside a synctest
	// bubble: what it creates must work there (no real network).
	New func(t testing.TB) (newLocker func(env lockers.Env) lockers.Locker)

	// Fencing claims tokens that increase per key.
	Fencing bool
	// ReleaseRequest claims leases that implement
	// [lockers.ReleaseRequester] and a Lock that uses it.
	ReleaseRequest bool
	// OwnerCheck claims that Unlock only frees the caller's own lock.
	OwnerCheck bool
	// TTL is how long the lockers' leases live on the backend without a
	// refresh; positive claims [LeaseKept], unless Lacks lists it, and
	// sets how long that check holds. Give the lockers a TTL that is long
	// against a scheduling hiccup under the race detector (a second or
	// more): the other properties check mutual exclusion, not timing.
	TTL time.Duration

	// Lacks lists the properties the locker documents it does not have,
	// each with the reason. Run requires each of them to fail.
	Lacks map[Property]string

	// Bubble runs every property, not only [LeaseKept], in a
	// testing/synctest bubble, on virtual time: for a locker whose New
	// makes an in-memory backend (backends/gcs.NewInMemory), so the suite
	// takes milliseconds where the waits of its lockers would take
	// minutes of real time. New is then always called inside the bubble.
	Bubble bool
	// RealTime lists properties that run outside a bubble even with
	// Bubble set: those whose backend needs real sockets (a redis-server
	// process), which a bubble cannot hold.
	RealTime []Property
	// Parallel runs the properties side by side, each on its own backend:
	// for a suite on real time whose minutes go to waiting (acquire
	// timeouts, stale leases), not to work. The properties' clients then
	// share the machine, so give them a TTL that is long against a hiccup.
	Parallel bool

	// Seed derives every client's Env.Seed, so a seeded locker behaves the
	// same on every run of the suite. Zero means 1.
	Seed uint64

	_ struct{}
}

// LackTries bounds how often a property documented as lacking is checked
// before the claim is judged wrong. A defect that needs a race may hide in
// one check: tus616's mutex-8keys under the fidelity layer (-race, 2
// cores) showed its overlap on the second try in 2 of 8 runs. At that rate
// three tries would fail a correct claim about once in 60 runs; five, once
// in 1000. Only a hiding defect pays for the extra tries.
const LackTries = 5

// Run checks every property against s, each in its own subtest.
func Run(t *testing.T, s Suite) {
	t.Helper()
	if err := s.validate(); err != nil {
		t.Fatalf("lockertest: %v", err)
	}
	// t.Run may be called from several goroutines at once; that, not
	// t.Parallel, runs the properties side by side, so -test.parallel
	// (the core count) does not cap a suite that mostly waits. The batch
	// starts once the properties that must run alone are done.
	var (
		wg    sync.WaitGroup
		batch []func()
	)
	for _, p := range properties {
		runProperty := func() {
			t.Run(string(p.name), func(t *testing.T) {
				if reason, lacks := s.Lacks[p.name]; lacks {
					// A defect that needs a race to show may hide in one
					// bounded check; one failure in a few tries is proof,
					// and the property holding every time refutes the claim.
					var failures []string
					tries := 0
					for tries < LackTries && len(failures) == 0 {
						tries++
						failures = check(t, s, p)
					}
					if len(failures) == 0 {
						t.Errorf("documented as lacking %s (%s), but the property held in %d tries: the claim or the suite is wrong", p.name, reason, LackTries)
						return
					}
					t.Logf("fails as documented, on try %d of %d (%s):\n\t%s", tries, LackTries, reason, strings.Join(failures, "\n\t"))
					return
				}
				if claimed, why := p.claimed(s); !claimed {
					t.Skipf("not claimed: %s", why)
				}
				if s.inBubble(p) {
					synctest.Test(t, func(t *testing.T) { p.run(newRig(t, t, s, p.name)) })
					return
				}
				p.run(newRig(t, t, s, p.name))
			})
		}
		if s.Parallel && !p.alone {
			batch = append(batch, runProperty)
		} else {
			runProperty()
		}
	}
	for _, runProperty := range batch {
		wg.Go(runProperty)
	}
	wg.Wait()
}

// inBubble says whether p runs in a synctest bubble for s.
func (s Suite) inBubble(p property) bool {
	return p.bubble || s.Bubble && !slices.Contains(s.RealTime, p.name)
}

func (s Suite) validate() error {
	if s.New == nil {
		return fmt.Errorf("Suite.New is nil")
	}
	for name, reason := range s.Lacks {
		i := slices.IndexFunc(properties, func(p property) bool { return p.name == name })
		if i < 0 {
			return fmt.Errorf("Lacks names unknown property %q; known: %s", name, propertyNames())
		}
		if strings.TrimSpace(reason) == "" {
			return fmt.Errorf("Lacks[%q] gives no reason", name)
		}
		p := properties[i]
		// TTL both claims LeaseKept and sizes its check, so a locker that
		// lacks it still sets TTL.
		if claimed, _ := p.claimed(s); claimed && p.optional && p.name != LeaseKept {
			return fmt.Errorf("property %q is both claimed and listed in Lacks", name)
		}
		if p.name == LeaseKept && s.TTL <= 0 {
			return fmt.Errorf("Lacks[%q] needs Suite.TTL, the lease lifetime the check holds past", name)
		}
	}
	return nil
}

func propertyNames() string {
	var names []string
	for _, p := range properties {
		names = append(names, string(p.name))
	}
	return strings.Join(names, ", ")
}

type property struct {
	name Property
	// claimed says whether s claims the property, and why not.
	claimed func(s Suite) (bool, string)
	// optional properties are claimed by a field of Suite; the others by
	// every locker.
	optional bool
	// bubble runs the property in a synctest bubble, on virtual time.
	bubble bool
	// alone keeps the property out of a Parallel batch: it counts the
	// process's goroutines, which the other properties' clients would
	// change under it.
	alone bool
	run   func(r *rig)
}

func always(Suite) (bool, string) { return true, "" }

var properties = []property{
	{name: MutexOneKey, claimed: always, run: mutex(32, 1, 10)},
	{name: MutexManyKeys, claimed: always, run: mutex(32, 8, 16)},
	{name: UnlockFrees, claimed: always, run: unlockFrees},
	{name: Cancel, claimed: always, alone: true, run: cancelWait},
	{name: Fencing, optional: true, claimed: func(s Suite) (bool, string) {
		return s.Fencing, "the locker hands out no fencing tokens (Suite.Fencing is false)"
	}, run: fencing},
	{name: ReleaseRequest, optional: true, claimed: func(s Suite) (bool, string) {
		return s.ReleaseRequest, "the locker has no release request (Suite.ReleaseRequest is false)"
	}, run: releaseRequest},
	{name: OwnerCheck, optional: true, claimed: func(s Suite) (bool, string) {
		return s.OwnerCheck, "the locker does not claim an owner check on unlock (Suite.OwnerCheck is false)"
	}, run: ownerCheck},
	{name: LeaseKept, optional: true, claimed: func(s Suite) (bool, string) {
		return s.TTL > 0, "the locker's leases have no TTL (Suite.TTL is zero)"
	}, bubble: true, run: leaseKept},
}

// check runs p against s with a recorder in place of the test, and returns
// the failures it recorded. Setup failures of s.New still fail t: they say
// nothing about the property.
func check(t *testing.T, s Suite, p property) []string {
	rec := &recorder{}
	body := func(setup testing.TB) {
		rec.run(func() { p.run(newRig(rec, setup, s, p.name)) })
	}
	if s.inBubble(p) {
		synctest.Test(t, func(t *testing.T) { body(t) })
	} else {
		body(t)
	}
	return rec.failures()
}

// tb is what a property needs from a test. *testing.T has it; so does the
// recorder with which the suite proves it can fail.
type tb interface {
	Helper()
	Logf(format string, args ...any)
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
	Failed() bool
	Cleanup(func())
}

var _ tb = (*testing.T)(nil)

// recorder stands in for a test and keeps the failures instead of failing.
// Fatalf ends the goroutine that calls it, as testing.T's does, so a
// property must run under recorder.run.
type recorder struct {
	mu       sync.Mutex
	failed   []string
	cleanups []func()
}

var _ tb = (*recorder)(nil)

func (r *recorder) Helper() {}

// Logf drops the log: the recording is of a property expected to fail, and
// its failures are what the caller reports.
func (r *recorder) Logf(format string, args ...any) {}

func (r *recorder) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failed = append(r.failed, fmt.Sprintf(format, args...))
}

func (r *recorder) Fatalf(format string, args ...any) {
	r.Errorf(format, args...)
	runtime.Goexit()
}

func (r *recorder) Failed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.failed) > 0
}

func (r *recorder) Cleanup(f func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cleanups = append(r.cleanups, f)
}

func (r *recorder) failures() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.failed)
}

// run calls f on a goroutine of its own, so that Fatalf's Goexit ends f and
// not the caller, then runs the cleanups, last registered first.
func (r *recorder) run(f func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() {
			for {
				r.mu.Lock()
				n := len(r.cleanups)
				if n == 0 {
					r.mu.Unlock()
					return
				}
				c := r.cleanups[n-1]
				r.cleanups = r.cleanups[:n-1]
				r.mu.Unlock()
				c()
			}
		}()
		f()
	}()
	<-done
}
