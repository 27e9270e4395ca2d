package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/lockcheck/lockcheck/internal/bubble"
	"github.com/lockcheck/lockcheck/models"
	"github.com/lockcheck/lockcheck/scenarios"
)

// Seeds simulated side by side in one process share what the process has
// once: math/rand's global source, from which client libraries draw their
// retry jitter, and a library's own process-wide state (go-redis draws a
// backoff on a circuit breaker's fast failure, with no request failing in
// the simulated network first). So verify sim -parallel N runs each of
// its N lanes in a child process of its own (verify sim-lane, not listed
// in the usage), which simulates one seed at a time as -parallel 1 does:
// a seed's history is then the same at any -parallel.

// simLaneCommand is the hidden command a lane runs as.
const simLaneCommand = "sim-lane"

// laneHello starts a lane: what every seed runs, and where.
type laneHello struct {
	Spec        scenarios.Spec `json:"spec"`
	Dir         string         `json:"dir"`
	Keep        bool           `json:"keep"`
	Determinism bool           `json:"determinism"`
}

// laneResult is one seed's seedResult on the wire.
type laneResult struct {
	Seed     uint64         `json:"seed"`
	Dir      string         `json:"dir"`
	Verdict  models.Verdict `json:"verdict"`
	Err      string         `json:"err,omitempty"`
	Virtual  time.Duration  `json:"virtual"`
	Mismatch string         `json:"mismatch,omitempty"`
	Line     string         `json:"line,omitempty"`
}

func toLane(r seedResult) laneResult {
	l := laneResult{Seed: r.seed, Dir: r.dir, Verdict: r.verdict, Virtual: r.virtual, Mismatch: r.mismatch, Line: r.line}
	if r.err != nil {
		l.Err = r.err.Error()
	}
	return l
}

func (l laneResult) seedResult() seedResult {
	r := seedResult{seed: l.Seed, dir: l.Dir, verdict: l.Verdict, virtual: l.Virtual, mismatch: l.Mismatch, line: l.Line}
	if l.Err != "" {
		r.err = errors.New(l.Err)
	}
	return r
}

// simLaneMain is a lane: it reads the hello, then one seed a line, and
// answers each with its result, until its input ends.
func simLaneMain(stdin io.Reader, stdout io.Writer) (int, error) {
	defer relaxGC()()
	in := bufio.NewScanner(stdin)
	in.Buffer(make([]byte, 1<<20), 1<<24)
	if !in.Scan() {
		return exitCouldNot, errors.New("sim-lane: no hello on stdin (this command is started by verify sim -parallel)")
	}
	var hello laneHello
	if err := json.Unmarshal(in.Bytes(), &hello); err != nil {
		return exitCouldNot, fmt.Errorf("sim-lane: hello: %w", err)
	}
	ex := &explorer{spec: hello.Spec, dir: hello.Dir, flags: simFlags{keep: hello.Keep, determinism: hello.Determinism, parallel: 1}}
	pool := bubble.Start(1)
	defer pool.Close()
	enc := json.NewEncoder(stdout)
	for in.Scan() {
		var seed uint64
		if err := json.Unmarshal(in.Bytes(), &seed); err != nil {
			return exitCouldNot, fmt.Errorf("sim-lane: seed: %w", err)
		}
		if err := enc.Encode(toLane(ex.runSeed(context.Background(), pool, seed))); err != nil {
			return exitCouldNot, err
		}
	}
	return exitValid, in.Err()
}

// lane is a running sim-lane child.
type lane struct {
	cmd  *exec.Cmd
	in   io.WriteCloser
	out  *bufio.Scanner
	once sync.Once
}

// startLane starts a lane for ex's seeds.
func startLane(ex *explorer) (*lane, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("sim lane: %w", err)
	}
	cmd := exec.Command(exe, simLaneCommand)
	cmd.Stderr = os.Stderr
	// Its own process group, so the terminal's Ctrl-C reaches only this
	// process, which lets the lane finish its seed; killed if this one
	// dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("sim lane: starting %s: %w", exe, err)
	}
	l := &lane{cmd: cmd, in: in, out: bufio.NewScanner(out)}
	l.out.Buffer(make([]byte, 1<<20), 1<<24)
	hello, _ := json.Marshal(laneHello{Spec: ex.spec, Dir: ex.dir, Keep: ex.flags.keep, Determinism: ex.flags.determinism})
	if _, err := fmt.Fprintf(in, "%s\n", hello); err != nil {
		l.close()
		return nil, fmt.Errorf("sim lane: hello: %w", err)
	}
	return l, nil
}

// run simulates seed in the lane.
func (l *lane) run(seed uint64) seedResult {
	if _, err := fmt.Fprintf(l.in, "%d\n", seed); err != nil {
		return seedResult{seed: seed, err: fmt.Errorf("sim lane: sending seed %d: %w", seed, err)}
	}
	if !l.out.Scan() {
		err := l.out.Err()
		if err == nil {
			err = errors.New("the lane exited (its stderr is above)")
		}
		return seedResult{seed: seed, err: fmt.Errorf("sim lane, seed %d: %w", seed, err)}
	}
	var r laneResult
	if err := json.Unmarshal(l.out.Bytes(), &r); err != nil {
		return seedResult{seed: seed, err: fmt.Errorf("sim lane, seed %d: %w", seed, err)}
	}
	return r.seedResult()
}

// close ends the lane: its input closes, it exits once its seed in hand
// is done, and it is reaped (killed past the wall limit of one seed).
func (l *lane) close() {
	l.once.Do(func() {
		l.in.Close()
		done := make(chan struct{})
		go func() { l.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(simWallLimitLane):
			_ = l.cmd.Process.Kill()
			<-done
		}
	})
}

// simWallLimitLane bounds waiting for a lane to exit: its seed in hand
// ends within the simulation's own wall limit, twice with -determinism.
const simWallLimitLane = 11 * time.Minute
