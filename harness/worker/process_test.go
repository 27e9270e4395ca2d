package worker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// childEnv makes the test binary a fake worker (see TestMain).
const childEnv = "LOCKCHECK_WORKER_TEST"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		if err := Serve(context.Background(), os.Stdin, os.Stdout, os.Stderr, (&fakeWorld{}).open); err != nil {
			fmt.Fprintln(os.Stderr, "fake worker:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// childEnviron is the environment of a fake worker. A race-enabled binary
// sleeps a second at exit unless told not to.
func childEnviron() []string {
	return append(os.Environ(), childEnv+"=1", "GORACE=atexit_sleep_ms=0")
}

// lineLog collects a worker's stderr.
type lineLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *lineLog) add(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, s)
}

func (l *lineLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

func startChild(t *testing.T, h Hello, hooks Hooks) (*Process, *lineLog) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if h.Identity == "" {
		h.Identity = "client-0"
	}
	return startCommand(t, Command{Path: exe, Args: []string{"-test.run=^$"}, Env: childEnviron()}, h, hooks)
}

// startCommand starts cmd as a worker, closed when the test ends, with
// its stderr logged if the test failed.
func startCommand(t *testing.T, cmd Command, h Hello, hooks Hooks) (*Process, *lineLog) {
	t.Helper()
	log := &lineLog{}
	if hooks.Log == nil {
		hooks.Log = log.add
	}
	p, err := Start(ctxBound(t), cmd, h, hooks)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		_ = p.Close(bound)
		if t.Failed() {
			t.Logf("worker stderr:\n%s", log)
		}
	})
	return p, log
}

// reaped reports whether pid is gone from the process table.
func reaped(pid int) bool {
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

func TestChildLockUnlockClose(t *testing.T) {
	p, _ := startChild(t, Hello{}, Hooks{})
	if p.PID() <= 0 || p.PID() == os.Getpid() {
		t.Fatalf("PID = %d, want the child's", p.PID())
	}
	a := mustLock(t, p, "k0")
	if a.Token() != 1 {
		t.Errorf("token = %d, want 1", a.Token())
	}
	if err := a.Unlock(ctxBound(t)); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(bound); err != nil {
		t.Fatalf("Close: %v", err)
	}
	await(t, "Exited", p.Exited())
	if err := p.ExitError(); err != nil {
		t.Errorf("the worker's exit after close = %v, want status 0", err)
	}
	if !reaped(p.PID()) {
		t.Errorf("pid %d is still in the process table after Exited", p.PID())
	}
	if err := p.Close(bound); err != nil {
		t.Errorf("a second Close = %v, want the first's nil", err)
	}
}

func TestChildStopHoldsAnswersUntilContinue(t *testing.T) {
	p, _ := startChild(t, Hello{}, Hooks{})
	mustLock(t, p, "k0") // the worker is serving
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	waiting := lockAsync(ctxBound(t), p, "k1") // free: answered at once when running
	// Not having an answer yet proves nothing about a slow machine, but
	// having one would prove the worker ran while stopped.
	select {
	case r := <-waiting:
		t.Fatalf("a stopped worker answered a Lock: %v, %v", r.lease, r.err)
	case <-time.After(200 * time.Millisecond):
	}
	if err := p.SetClock(time.Second, 0); err != nil {
		t.Fatalf("SetClock blocked on or failed with a stopped worker: %v", err)
	}
	if err := p.Continue(); err != nil {
		t.Fatal(err)
	}
	r := await(t, "the Lock after Continue", waiting)
	if r.err != nil || r.lease.Token() != 1 {
		t.Fatalf("Lock after Continue = %v, %v; want k1's token 1", r.lease, r.err)
	}
}

// Stop returns only once every thread of the worker is stopped: a worker
// still running just after kill(2) returned answered a Lock sent after
// Stop, and TestChildStopHoldsAnswersUntilContinue failed once so.
func TestChildStopReturnsOnceStopped(t *testing.T) {
	p, _ := startChild(t, Hello{}, Hooks{})
	mustLock(t, p, "k0") // the worker is serving, its threads started
	for round := range 50 {
		if err := p.Stop(); err != nil {
			t.Fatal(err)
		}
		if running := runningThreads(t, p.PID()); len(running) > 0 {
			t.Fatalf("round %d: Stop returned with threads %v of pid %d not stopped", round, running, p.PID())
		}
		if err := p.Continue(); err != nil {
			t.Fatal(err)
		}
	}
}

// runningThreads lists pid's threads whose state in /proc is not stopped.
func runningThreads(t *testing.T, pid int) []string {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/task", pid)
	tasks, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var running []string
	for _, task := range tasks {
		stat, err := os.ReadFile(dir + "/" + task.Name() + "/stat")
		if err != nil {
			continue // a thread that ended
		}
		// The state follows the command name, which is in parentheses.
		rest := stat[strings.LastIndexByte(string(stat), ')')+1:]
		if state := strings.Fields(string(rest)); len(state) == 0 || (state[0] != "T" && state[0] != "t") {
			running = append(running, task.Name()+":"+strings.Join(state[:min(1, len(state))], ""))
		}
	}
	return running
}

func TestChildKillFailsPendingCalls(t *testing.T) {
	attempts := make(chan time.Time, 10)
	p, _ := startChild(t, Hello{}, Hooks{AttemptStarted: func(at time.Time) { attempts <- at }})
	mustLock(t, p, "k0")
	await(t, "the first Lock's attempt", attempts)
	waiting := lockAsync(ctxBound(t), p, "k0")
	await(t, "the blocked Lock's attempt", attempts)
	if err := p.Kill(); err != nil {
		t.Fatal(err)
	}
	if r := await(t, "the pending Lock", waiting); !errors.Is(r.err, ErrExited) {
		t.Errorf("pending Lock after Kill = %v, %v; want ErrExited", r.lease, r.err)
	}
	await(t, "Exited", p.Exited())
	if !reaped(p.PID()) {
		t.Errorf("pid %d is still in the process table after Exited", p.PID())
	}
	if err := p.ExitError(); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Errorf("ExitError after Kill = %v, want the kill", err)
	}
	if _, err := p.Lock(ctxBound(t), "k1"); !errors.Is(err, ErrExited) {
		t.Errorf("Lock after Kill = %v, want ErrExited", err)
	}
	if err := p.Kill(); !errors.Is(err, ErrExited) {
		t.Errorf("a second Kill = %v, want ErrExited", err)
	}
	if err := p.Close(bound); err != nil {
		t.Errorf("Close of a killed worker = %v, want nil: it is already reaped", err)
	}
}

func TestChildStoppedIsStillClosed(t *testing.T) {
	p, _ := startChild(t, Hello{}, Hooks{})
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(bound); err != nil {
		t.Fatalf("Close of a stopped worker: %v", err)
	}
	select {
	case <-p.Exited():
	default:
		t.Fatal("Close returned before the worker was reaped")
	}
	if err := p.ExitError(); err != nil {
		t.Errorf("a stopped worker's exit after Close = %v, want status 0", err)
	}
	if !reaped(p.PID()) {
		t.Errorf("pid %d is still in the process table after Close", p.PID())
	}
}

func TestChildRefusedHelloQuotesStderr(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	log := &lineLog{}
	cmd := Command{Path: exe, Args: []string{"-test.run=^$"}, Env: childEnviron()}
	p, err := Start(ctxBound(t), cmd, Hello{Locker: keyBroken}, Hooks{Log: log.add})
	if err == nil {
		p.Close(bound)
		t.Fatal("Start succeeded with a locker the worker cannot open")
	}
	for _, want := range []string{"refused hello", "no such locker", "fake: cannot open broken"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Start's error does not say %q:\n%v", want, err)
		}
	}
	if !strings.Contains(log.String(), "fake: cannot open broken") {
		t.Errorf("the worker's stderr did not reach Hooks.Log; it got:\n%s", log)
	}
}

// startWrapped starts the fake worker behind sh, which forks it as a child
// rather than replacing itself (the trailing ':' keeps the shell waiting),
// as `sh -c`, npx, npm run and go run do; it returns the worker and the
// pid of the real worker process, the wrapper's child.
func startWrapped(t *testing.T) (*Process, int) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	p, _ := startCommand(t, Command{Path: "/bin/sh", Args: []string{"-c", `"$0" -test.run='^$'; :`, exe}, Env: childEnviron()}, Hello{Identity: "client-0"}, Hooks{})
	children, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", p.PID(), p.PID()))
	if err != nil {
		t.Fatal(err)
	}
	var inner int
	if _, err := fmt.Sscan(string(children), &inner); err != nil || inner <= 0 {
		t.Fatalf("the wrapper %d has children %q, want the worker", p.PID(), children)
	}
	return p, inner
}

// A worker behind a wrapper is paused and killed with it: a signal to the
// wrapper alone left the real worker serving, and a fault that never
// reached the holder read as a pass.
func TestWrappedWorkerStopAndKillReachTheWorker(t *testing.T) {
	p, inner := startWrapped(t)
	mustLock(t, p, "k0") // the worker is serving
	for round := range 5 {
		if err := p.Stop(); err != nil {
			t.Fatal(err)
		}
		if running := runningThreads(t, inner); len(running) > 0 {
			t.Fatalf("round %d: Stop returned with the wrapped worker's threads %v running", round, running)
		}
		if err := p.Continue(); err != nil {
			t.Fatal(err)
		}
	}
	// A pidfd turns readable when its process exits: a bounded wait for
	// the worker's death with no polling.
	pidfd, err := unix.PidfdOpen(inner, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(pidfd)
	if err := p.Kill(); err != nil {
		t.Fatal(err)
	}
	await(t, "Exited", p.Exited())
	fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(fds, int(bound/time.Millisecond))
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			t.Fatalf("the wrapped worker %d outlived the wrapper's kill by %v", inner, bound)
		}
		return
	}
}
