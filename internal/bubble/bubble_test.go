package bubble

import (
	"errors"
	"flag"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// Jobs run in bubbles of their own, in parallel, in virtual time: ten
// minutes of sleep take no wall time worth waiting for.
func TestJobsRunInVirtualTime(t *testing.T) {
	p := Start(3)
	defer p.Close()
	var wg sync.WaitGroup
	elapsed := make([]time.Duration, 6)
	for i := range elapsed {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := p.Run(func() {
				start := time.Now()
				time.Sleep(10 * time.Minute)
				elapsed[i] = time.Since(start)
			}, time.Minute)
			if err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	for i, e := range elapsed {
		if e != 10*time.Minute {
			t.Errorf("job %d: %v of virtual time, want exactly 10m", i, e)
		}
	}
	if err := p.Run(func() { panic("boom") }, time.Minute); err == nil {
		t.Error("a job's panic was not returned")
	}
}

// A bubble whose clock cannot advance is given up on within its wall
// time, not waited for forever.
func TestAStalledBubbleIsGivenUpOn(t *testing.T) {
	p := Start(1)
	outside := make(chan struct{}) // made outside the bubble: no durable wait on it
	err := p.Run(func() {
		<-outside
		time.Sleep(time.Hour) // would take no wall time, were the clock free
	}, 200*time.Millisecond)
	if !errors.Is(err, ErrStalled) {
		t.Fatalf("error %v, want ErrStalled", err)
	}
	close(outside)
	p.Close()
	// Close does not wait for a stalled job; the test does, so that the
	// pool's end (putting the testing flags back) is over before the next
	// test starts.
	<-p.done
}

// After a job stalled, its bubble holds the pool's lane for good: the next
// job is refused at once (it once waited forever for the lane, and an
// interrupted verify sim never exited), and Close does not wait for the
// stalled job.
func TestAPoolWithAStalledJobTakesNoMoreAndClosesAtOnce(t *testing.T) {
	p := Start(1)
	outside := make(chan struct{})
	if err := p.Run(func() { <-outside }, 100*time.Millisecond); !errors.Is(err, ErrStalled) {
		t.Fatalf("first job: %v, want ErrStalled", err)
	}
	ran := false
	err := p.Run(func() { ran = true }, 10*time.Second)
	if !errors.Is(err, ErrStalled) || !strings.Contains(err.Error(), "takes no more jobs") || ran {
		t.Errorf("a job after a stall: ran %v, error %v; want it refused at once", ran, err)
	}
	closed := make(chan struct{})
	go func() { p.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Error("Close waited for the stalled job")
	}
	// Let the stalled job end, so the next test may start a pool.
	close(outside)
	<-p.done
}

// In a process that go test -fuzz started as a fuzzing worker, a pool
// still runs its jobs (the fuzz target simulates each input in one).
func TestAPoolStartsInAFuzzingWorker(t *testing.T) {
	f := flag.Lookup("test.fuzzworker")
	if f == nil {
		t.Skip("this testing package has no -test.fuzzworker flag")
	}
	old := f.Value.String()
	f.Value.Set("true")
	defer f.Value.Set(old)
	started := make(chan *Pool, 1)
	go func() { started <- Start(1) }()
	var p *Pool
	select {
	case p = <-started:
	case <-time.After(20 * time.Second):
		t.Fatal("Start did not return in a fuzzing worker")
	}
	ran := false
	if err := p.Run(func() { ran = true }, 20*time.Second); err != nil || !ran {
		t.Errorf("a job in a fuzzing worker's pool: ran %v, %v", ran, err)
	}
	p.Close()
}

// A job that leaves a goroutine blocked for good (a lease nobody stops)
// finishes with ErrLeftBlocked, its own work done, and the pool goes on.
func TestAJobThatLeavesAGoroutineBlockedFinishes(t *testing.T) {
	p := Start(1)
	defer p.Close()
	done := false
	err := p.Run(func() {
		never := make(chan struct{})
		go func() { <-never }()
		done = true
	}, time.Minute)
	if !errors.Is(err, ErrLeftBlocked) || !done {
		t.Fatalf("error %v, done %v; want ErrLeftBlocked after the job's work", err, done)
	}
	if err := p.Run(func() { time.Sleep(time.Hour) }, time.Minute); err != nil {
		t.Errorf("the next job: %v", err)
	}
}

// A pool started in a test binary run with -test.cpu (go test -cpu 1, as
// a benchmark on one core is run) starts once: the testing package keeps
// the -cpu list for the process and appended the pool's own to it, which
// ran the pool's main twice and panicked.
func TestAPoolStartsOnceUnderTheCPUFlag(t *testing.T) {
	if os.Getenv("BUBBLE_CPU_CHILD") != "" {
		p := Start(1)
		defer p.Close()
		if err := p.Run(func() {}, 10*time.Second); err != nil {
			t.Fatal(err)
		}
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestAPoolStartsOnceUnderTheCPUFlag$", "-test.cpu=1", "-test.count=1")
	cmd.Env = append(os.Environ(), "BUBBLE_CPU_CHILD=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("the test binary run with -test.cpu=1: %v\n%s", err, out)
	}
}
