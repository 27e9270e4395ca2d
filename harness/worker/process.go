package worker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// helloTimeout bounds how long Start waits for a worker to answer hello
// when ctx allows longer: opening a locker is a few round trips at most.
const helloTimeout = 30 * time.Second

// stderrTailLines is how much of a worker's stderr an error quotes.
const stderrTailLines = 20

// Command is how to run a worker: typically the verify binary with the
// argument "worker".
type Command struct {
	Path string
	Args []string
	// Env is the worker's environment; nil inherits the harness's.
	Env []string

	_ struct{}
}

// osProcess is the operating-system side of a worker run as a child.
type osProcess struct {
	cmd        *exec.Cmd
	stderrDone chan struct{}

	mu      sync.Mutex
	tail    []string // the last lines of stderr
	waitErr error    // cmd.Wait's, once reaped
	exited  <-chan struct{}
}

// ErrNotProcess is the error of the signals of a Process that is not a
// child process.
var ErrNotProcess = errors.New("worker: not a child process: it cannot be signalled")

// Start runs cmd as a worker, sends it hello and waits for its answer
// (bounded by ctx and by 30 s). The child gets its own process group, so a
// Ctrl-C in the terminal reaches only the harness, which then stops its
// children in order; and it is killed if the harness dies (Linux's
// parent-death signal, sent when the thread that started it ends; the Go
// runtime does not end its threads while goroutines run on them, apart
// from locked ones). Each line of its stderr goes to hooks.Log. A
// goroutine reaps it as soon as it exits. If it exits or refuses hello,
// the error quotes the end of its stderr.
func Start(ctx context.Context, cmd Command, hello Hello, hooks Hooks) (*Process, error) {
	var files []*os.File
	closeAll := func() {
		for _, f := range files {
			f.Close()
		}
	}
	pipe := func() (*os.File, *os.File, error) {
		r, w, err := os.Pipe()
		if err == nil {
			files = append(files, r, w)
		}
		return r, w, err
	}
	inR, inW, err := pipe()
	if err != nil {
		return nil, fmt.Errorf("worker: making its stdin: %w", err)
	}
	outR, outW, err := pipe()
	if err != nil {
		closeAll()
		return nil, fmt.Errorf("worker: making its stdout: %w", err)
	}
	errR, errW, err := pipe()
	if err != nil {
		closeAll()
		return nil, fmt.Errorf("worker: making its stderr: %w", err)
	}
	c := exec.Command(cmd.Path, cmd.Args...)
	c.Env = cmd.Env
	c.Stdin, c.Stdout, c.Stderr = inR, outW, errW
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := c.Start(); err != nil {
		closeAll()
		return nil, fmt.Errorf("worker: starting %s: %w", cmd.Path, err)
	}
	// The child has its copies; keeping ours would hide its exit from
	// the readers.
	inR.Close()
	outW.Close()
	errW.Close()

	o := &osProcess{cmd: c, stderrDone: make(chan struct{})}
	p := newProcess(outR, inW, hooks, o)
	// greeted is set once the worker answered hello. An exit before that
	// is the hello's failure, which this function reports with the
	// worker's stderr; the reader's EOF and this waiter race to end the
	// hello, and either way the error must say the same.
	var greeted atomic.Bool
	go o.readStderr(errR, hooks)
	go func() {
		err := c.Wait()
		o.mu.Lock()
		o.waitErr = err
		o.mu.Unlock()
		if !p.stopping.Load() {
			// Its last words explain the exit.
			select {
			case <-o.stderrDone:
			case <-time.After(time.Second):
			}
			how := "with status 0"
			if err != nil {
				how = "(" + err.Error() + ")"
			}
			if greeted.Load() {
				p.violate("exited by itself %s while the run went on%s", how, o.tailText())
			} else {
				p.violate("the worker exited %s before it answered hello", how)
			}
		}
		close(p.exited)
		p.markGone()
	}()

	hctx, cancel := context.WithTimeout(ctx, helloTimeout)
	defer cancel()
	err = p.hello(hctx, hello)
	if err == nil {
		greeted.Store(true)
	}
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			err = fmt.Errorf("%w: the worker did not answer hello within %v (it must read one JSON line from stdin and answer with one on stdout)", ErrProtocol, helloTimeout)
		}
		p.stopping.Store(true)
		o.killGroup()
		select {
		case <-p.exited:
		case <-time.After(helloTimeout):
		}
		// Its stderr ends when it exits; wait for the last lines.
		select {
		case <-o.stderrDone:
		case <-time.After(time.Second):
		}
		if errors.Is(err, ErrExited) {
			how := "with status 0"
			if werr := p.ExitError(); werr != nil {
				how = "(" + werr.Error() + ")"
			}
			err = fmt.Errorf("%w: the worker exited %s before it answered hello", ErrProtocol, how)
		}
		return nil, fmt.Errorf("%w%s", err, o.tailText())
	}
	return p, nil
}

func (o *osProcess) readStderr(r *os.File, hooks Hooks) {
	defer close(o.stderrDone)
	defer r.Close()
	logf := func(format string, args ...any) {
		if hooks.Log != nil {
			hooks.Log(fmt.Sprintf("protocol: worker stderr: "+format, args...))
		}
	}
	scanLines(r, logf, func(b []byte, _ time.Time) bool {
		line := string(b)
		o.mu.Lock()
		o.tail = append(o.tail, line)
		if len(o.tail) > stderrTailLines {
			o.tail = o.tail[len(o.tail)-stderrTailLines:]
		}
		o.mu.Unlock()
		if hooks.Log != nil {
			hooks.Log(line)
		}
		return true
	})
}

func (o *osProcess) tailText() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.tail) == 0 {
		return "; its stderr was empty"
	}
	return "; its stderr ended with:\n\t" + strings.Join(o.tail, "\n\t")
}

// exitErr describes the reaped child's exit when it was not clean.
func (o *osProcess) exitErr() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.waitErr != nil {
		return fmt.Errorf("worker exited after the close request: %w", o.waitErr)
	}
	return nil
}

// killGroup kills the child and whatever it started in its process group
// (a wrapper's worker), which would otherwise outlive the run.
func (o *osProcess) killGroup() {
	_ = o.cmd.Process.Kill()
	_ = unix.Kill(-o.cmd.Process.Pid, unix.SIGKILL)
}

// killAndReap kills a child that did not exit when asked and waits (up to
// wait) for it to be reaped.
func (o *osProcess) killAndReap(wait time.Duration) error {
	o.killGroup()
	select {
	case <-o.exited:
		return fmt.Errorf("worker did not exit within %v of the close request; killed it", wait)
	case <-time.After(wait):
		return fmt.Errorf("worker did not exit within %v of the close request, nor within %v of SIGKILL: pid %d is not reaped", wait, wait, o.cmd.Process.Pid)
	}
}

func (p *Process) signal(sig syscall.Signal) error {
	if p.os == nil {
		return ErrNotProcess
	}
	// os.Process signals through a pidfd: a reaped pid reused by someone
	// else is never hit.
	if err := p.os.cmd.Process.Signal(sig); err != nil {
		if errors.Is(err, os.ErrProcessDone) {
			return ErrExited
		}
		return fmt.Errorf("worker: sending %v to pid %d: %w", sig, p.pid, err)
	}
	// Then its whole process group: a worker started through a wrapper
	// (sh -c, npx, npm run, go run) is the wrapper's child, and a pause or
	// a kill that reached the wrapper alone would leave the real worker
	// serving. The leader is alive, so the group's id is still its own.
	if err := unix.Kill(-p.pid, sig); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("worker: sending %v to process group %d: %w", sig, p.pid, err)
	}
	return nil
}

// Stop pauses the worker (SIGSTOP to its process group): it answers
// nothing until Continue. It returns once every thread of every process
// in the group has stopped, or is gone: a signal is delivered after
// kill(2) returns, and a worker still running for that moment answered a
// request sent after Stop.
func (p *Process) Stop() error {
	if err := p.signal(syscall.SIGSTOP); err != nil {
		return err
	}
	deadline := time.Now().Add(stopWait)
	if err := p.os.awaitStopped(stopWait); err != nil {
		return err
	}
	return awaitGroupStopped(p.pid, deadline)
}

// stopWait bounds how long Stop waits for the kernel to stop the worker,
// which takes microseconds.
const stopWait = 10 * time.Second

// groupPoll is the pause between looks at a process group's members while
// they stop: only a wrapped worker's grandchildren are waited for this
// way, and the kernel stops them within microseconds.
const groupPoll = time.Millisecond

// awaitGroupStopped waits until every thread of every process in group
// pgid is stopped or dead. Only the leader is the harness's child, so
// waitid cannot see the others; /proc can.
func awaitGroupStopped(pgid int, deadline time.Time) error {
	for {
		running, err := groupRunning(pgid)
		if err != nil {
			return err
		}
		if len(running) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("worker: process group %d had threads %v still running %v after SIGSTOP", pgid, running, stopWait)
		}
		time.Sleep(groupPoll)
	}
}

// groupRunning lists, as pid/tid:state, the threads of group pgid's
// processes that are neither stopped nor dead.
func groupRunning(pgid int) ([]string, error) {
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("worker: listing processes to see group %d stop: %w", pgid, err)
	}
	var running []string
	for _, proc := range procs {
		pid := proc.Name()
		if pid[0] < '0' || pid[0] > '9' {
			continue
		}
		if _, group, ok := procStat("/proc/" + pid + "/stat"); !ok || group != pgid {
			continue
		}
		tasks, err := os.ReadDir("/proc/" + pid + "/task")
		if err != nil {
			continue // it exited
		}
		for _, task := range tasks {
			state, _, ok := procStat("/proc/" + pid + "/task/" + task.Name() + "/stat")
			if !ok {
				continue // a thread that ended
			}
			switch state {
			case "T", "t", "Z", "X", "x":
			default:
				running = append(running, pid+"/"+task.Name()+":"+state)
			}
		}
	}
	return running, nil
}

// procStat reads a /proc stat file's state and process group; false when
// it is gone or unreadable.
func procStat(path string) (state string, pgid int, ok bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", 0, false
	}
	// The fields after the command name, which is in parentheses and may
	// hold anything: state, ppid, pgrp, …
	fields := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	if len(fields) < 3 {
		return "", 0, false
	}
	pgid, err = strconv.Atoi(fields[2])
	if err != nil {
		return "", 0, false
	}
	return fields[0], pgid, true
}

// awaitStopped waits for the child's group stop to complete, as its parent
// is told of it: waitid with WSTOPPED, and WEXITED for a child that died
// instead, both with WNOWAIT so that cmd.Wait still reaps it.
func (o *osProcess) awaitStopped(wait time.Duration) error {
	pid := o.cmd.Process.Pid
	done := make(chan error, 1)
	// waitid has no timeout of its own. Past wait this goroutine stays
	// blocked until the child stops or dies; Close makes sure it dies (it
	// kills a worker that does not exit when asked).
	go func() {
		var info unix.Siginfo
		for {
			err := unix.Waitid(unix.P_PID, pid, &info, unix.WSTOPPED|unix.WEXITED|unix.WNOWAIT, nil)
			if !errors.Is(err, unix.EINTR) {
				done <- err
				return
			}
		}
	}()
	select {
	case err := <-done:
		if err != nil && !errors.Is(err, unix.ECHILD) { // ECHILD: reaped already
			return fmt.Errorf("worker: waiting for pid %d to stop: %w", pid, err)
		}
		return nil
	case <-time.After(wait):
		return fmt.Errorf("worker: pid %d had not stopped %v after SIGSTOP", pid, wait)
	}
}

// Continue resumes a stopped worker (SIGCONT).
func (p *Process) Continue() error { return p.signal(syscall.SIGCONT) }

// Kill ends the worker at once (SIGKILL). Pending calls then fail with
// ErrExited; Exited is closed once it is reaped.
func (p *Process) Kill() error {
	p.stopping.Store(true)
	return p.signal(syscall.SIGKILL)
}

// ExitError is how the child's process ended: nil for exit code 0, an
// *exec.ExitError otherwise. It is meaningful once Exited is closed.
func (p *Process) ExitError() error {
	if p.os == nil {
		return ErrNotProcess
	}
	select {
	case <-p.exited:
	default:
		return errors.New("worker: still running")
	}
	p.os.mu.Lock()
	defer p.os.mu.Unlock()
	return p.os.waitErr
}

// String is the command line, for messages that name the worker.
func (c Command) String() string {
	return strings.TrimSpace(c.Path + " " + strings.Join(c.Args, " "))
}
