// Package bubble runs functions inside testing/synctest bubbles from a
// program that is not a test: each job gets a bubble of its own, with its
// own fake clock that advances only when every goroutine in the bubble is
// durably blocked, so a run of minutes takes milliseconds.
//
// synctest.Test is the only way into a bubble, and it wants a *testing.T.
// A Pool gets one by starting the testing package's own main
// (testing.MainStart) with a single test whose parallel subtests serve the
// jobs. MainStart is meant for generated test mains and may change from one
// Go release to the next; the dependency interface it wants is satisfied
// by deps below, which the compiler checks, so a Go upgrade that changes
// it breaks the build here and nowhere else.
//
// # The simulation, and what escapes determinism
//
// verify sim runs a whole run in one bubble: the harness, every client's
// locker, the fault schedule, the recorder, and the backend in memory
// (backends with harness.Params.InMemory: the embedded GCS's handler chain
// called by each client's transport, miniredis over in-memory pipes),
// each client's path to it through faults/netfault/memnet. Time is the
// bubble's; the seed decides the workload, the fault schedule, and every
// HTTP request's own latency (drawn per client), so that the run's events
// fall at distinct virtual instants and their order is the seed's. Clients
// that start together (the workload phase, the recovery phase) start a
// microsecond apart in slot order.
//
// What still escapes the seed, precisely:
//   - Goroutines woken at one virtual instant run in the Go scheduler's
//     order. Byte streams (Redis) get no latency of their own (see
//     memnet.Network.Dialer), so a Redis locker's reply falls at the
//     instant of its call, and two goroutines of one client that act at
//     one instant (two timers of one locker, a retry timer and the
//     deadline of the call it serves) race. A heal's closes, and the
//     ends of calls a partition held, reach each client a seeded network
//     delay after the heal (memnet.Network's heal), so they no longer race
//     the heal's own record; and in a simulation the nemesis records a
//     fault's stop before its heal, so what a resumed client does first
//     follows the record.
//   - A select with several ready cases picks one at random, and map
//     iteration order is random, in lockers and in the libraries they use.
//   - Randomness a library draws itself from crypto/rand (the lock values
//     of redsync and redislock) differs from run to run; it shapes no
//     ordering the harness records, but it is not the seed's. What
//     libraries draw from math/rand's global source (the storage client's
//     retry jitter, gax-go's Backoff.Pause; go-redis's retry backoff) is
//     the seed's: each simulated run seeds that source first (runner's
//     seedLibraryRand), in binaries built with //go:debug randseednop=0,
//     as verify is, and the in-memory network reseeds it from the seed and
//     the virtual instant at every failed request, broken connection and
//     failed dial, where the libraries draw (LibraryRand). Simulations
//     side by side (verify sim -parallel) take turns at the source, each
//     holding it from its reseed until its goroutines have settled, so
//     their draws do not interleave. A draw that follows no failure of the
//     network's would escape that beside another simulation (go-redis's
//     dial circuit breaker fails a command without dialing once PoolSize
//     dials in a row have failed, and the retry's backoff is drawn after
//     it), so verify sim -parallel runs each of its lanes in a process of
//     its own, as a Pool of one. A Go test of another module that runs a
//     simulation without the directive keeps the jitter unseeded.
//
// verify sim -determinism measures what is left: each seed run twice and
// the histories compared event line by event line.
//
// What cannot be simulated: a goroutine waiting on a sync.Mutex is never
// durably blocked, so a library that holds a mutex while it waits for
// virtual time, with another goroutine queued on that mutex, stalls the
// bubble; Run gives up on it after its wall-time bound (ErrStalled).
// miniredis did so while a full in-memory connection made its publish
// wait under its lock; memnet.Pipe's 8 MiB buffer each way ended that.
// Process clients, sockets and real backends cannot enter a bubble at all.
package bubble

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"reflect"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// Pool runs jobs in bubbles, at most Parallel at once.
type Pool struct {
	jobs chan job
	done chan struct{}
	code int
	once sync.Once
	// stalled is set once a job has stalled: its bubble holds a lane for
	// good, so the pool takes no more jobs and Close does not wait for it.
	stalled atomic.Bool
}

type job struct {
	f      func()
	result chan error
}

var started sync.Mutex

// Start starts a pool of parallel bubbles. Only one pool may run at a time
// in a process (the testing package keeps global state); Start waits for
// the previous one to be closed.
func Start(parallel int) *Pool {
	parallel = max(parallel, 1)
	started.Lock()
	p := &Pool{jobs: make(chan job), done: make(chan struct{})}
	ready := make(chan struct{})
	go func() {
		defer close(p.done)
		defer started.Unlock()
		// The testing package's flags: as many parallel subtests as
		// asked for, and nothing of the program's own command line.
		args := os.Args
		os.Args = []string{args[0], "-test.parallel=" + strconv.Itoa(parallel)}
		testing.Init()
		// Inside a test binary the flags are parsed already, and the
		// outer test's (its log file, profiles, filters, timeout) would
		// be this main's too: it would close the outer log file, or
		// filter out its own test. They are set for this main alone and
		// put back after it.
		restore := setFlags(map[string]string{
			"test.parallel": strconv.Itoa(parallel), "test.testlogfile": "", "test.run": "", "test.skip": "",
			"test.count": "1", "test.timeout": "0", "test.failfast": "false", "test.shuffle": "off",
			"test.cpuprofile": "", "test.memprofile": "", "test.blockprofile": "", "test.mutexprofile": "",
			"test.trace": "", "test.coverprofile": "", "test.fuzz": "", "test.bench": "", "test.list": "",
			// In a fuzzing worker (go test -fuzz runs the target in
			// processes of its own) this main would otherwise serve as
			// one too, through deps, which do no fuzzing: it returned at
			// once and Start waited forever for its test.
			"test.fuzzworker": "false",
			// The testing package appends -test.cpu's values to a list
			// it keeps for the process: the outer -cpu 1 would run this
			// main's test twice.
			"test.cpu": "",
		})
		defer restore()
		stdout := os.Stdout
		devNull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
		if err == nil {
			// Its PASS line is not the program's output.
			os.Stdout = devNull
		}
		m := testing.MainStart(deps{}, []testing.InternalTest{{Name: "bubbles", F: func(t *testing.T) {
			os.Args = args
			close(ready)
			for i := range parallel {
				t.Run(strconv.Itoa(i), func(t *testing.T) {
					t.Parallel()
					for j := range p.jobs {
						j.result <- runOne(t, j.f)
					}
				})
			}
		}}}, nil, nil, nil)
		p.code = m.Run()
		os.Stdout = stdout
		if devNull != nil {
			devNull.Close()
		}
	}()
	<-ready
	return p
}

// runOne runs f in a bubble of its own. A panic of f's own goroutine is
// returned as an error; a panic of another goroutine of the bubble ends
// the program, as it would outside one.
func runOne(t *testing.T, f func()) (err error) {
	defer func() {
		// synctest.Test panics after f when goroutines of the bubble are
		// still blocked with nothing to wake them: a lock that leaked a
		// goroutine (a lease nobody will ever stop). f's own work is done;
		// the goroutines stay behind, blocked for good.
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %v", ErrLeftBlocked, r)
		}
	}()
	synctest.Test(t, func(*testing.T) {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("bubble: panic: %v", r)
			}
		}()
		f()
	})
	return err
}

// ErrStalled is the error of a job that did not finish within its wall
// time: its bubble's clock could not advance, because a goroutine in it
// waits on something synctest does not count as durably blocking (a
// sync.Mutex held by a goroutine that waits for virtual time, a channel or
// I/O from outside the bubble). The job's goroutines are left behind, so
// the program should end soon after.
var ErrStalled = errors.New("bubble: the simulation stalled (a goroutine waits on a mutex or on something outside the bubble, so virtual time cannot advance)")

// ErrLeftBlocked is the error of a job that finished while goroutines it
// started were blocked for good (waiting on channels nothing will ever
// send on): f's results stand, and the goroutines are left behind.
var ErrLeftBlocked = errors.New("bubble: the job finished with goroutines of its bubble blocked for good")

// Run runs f in a bubble and returns once f and every goroutine it started
// have returned, or with ErrStalled once within of wall time has passed.
func (p *Pool) Run(f func(), within time.Duration) error {
	if p.stalled.Load() {
		return fmt.Errorf("%w: an earlier job of this pool stalled and holds its bubble; the pool takes no more jobs", ErrStalled)
	}
	j := job{f: f, result: make(chan error, 1)}
	limit := time.NewTimer(within)
	defer limit.Stop()
	select {
	case p.jobs <- j:
	case <-p.done:
		return errors.New("bubble: the pool is closed")
	case <-limit.C:
		return fmt.Errorf("%w; no bubble was free within %v of wall time", ErrStalled, within)
	}
	select {
	case err := <-j.result:
		return err
	case <-limit.C:
		p.stalled.Store(true)
		return fmt.Errorf("%w; gave up after %v of wall time", ErrStalled, within)
	}
}

// Close stops the pool once its running jobs are done, or at once when a
// job stalled: that job's goroutines never end, and they end with the
// program.
func (p *Pool) Close() {
	p.once.Do(func() { close(p.jobs) })
	if p.stalled.Load() {
		return
	}
	<-p.done
}

// setFlags sets the flags named in values that exist, and returns what
// puts them back.
func setFlags(values map[string]string) (restore func()) {
	old := map[string]string{}
	for name, v := range values {
		f := flag.Lookup(name)
		if f == nil {
			continue
		}
		old[name] = f.Value.String()
		f.Value.Set(v)
	}
	return func() {
		for name, v := range old {
			flag.Lookup(name).Value.Set(v)
		}
	}
}

// deps is what testing.MainStart needs of a test main: nothing here
// profiles, fuzzes or matches test names.
type deps struct{}

func (deps) MatchString(pat, str string) (bool, error)   { return true, nil }
func (deps) StartCPUProfile(io.Writer) error             { return nil }
func (deps) StopCPUProfile()                             {}
func (deps) WriteProfileTo(string, io.Writer, int) error { return nil }
func (deps) ImportPath() string                          { return "" }
func (deps) ModulePath() string                          { return "" }
func (deps) StartTestLog(io.Writer)                      {}
func (deps) StopTestLog() error                          { return nil }
func (deps) SetPanicOnExit0(bool)                        {}
func (deps) CoordinateFuzzing(time.Duration, int64, time.Duration, int64, int, []corpusEntry, []reflect.Type, string, string) error {
	return errors.New("bubble: no fuzzing")
}
func (deps) RunFuzzWorker(func(corpusEntry) error) error { return errors.New("bubble: no fuzzing") }
func (deps) ReadCorpus(string, []reflect.Type) ([]corpusEntry, error) {
	return nil, nil
}
func (deps) CheckCorpus([]any, []reflect.Type) error { return nil }
func (deps) ResetCoverage()                          {}
func (deps) SnapshotCoverage()                       {}
func (deps) InitRuntimeCoverage() (string, func(string, string) (string, error), func() float64) {
	return "", nil, nil
}

// corpusEntry has the shape of the testing package's fuzz corpus entry,
// which its dependency interface names.
type corpusEntry = struct {
	Parent     string
	Path       string
	Data       []byte
	Values     []any
	Generation int
	IsSeed     bool
}
