package main

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/lockcheck/lockcheck/history"
	"github.com/lockcheck/lockcheck/models"
)

// progress reports a long run while it goes: a line redrawn in place on a
// terminal, a plain line every few seconds otherwise (CI logs).
type progress struct {
	w        io.Writer
	total    time.Duration
	terminal bool
	quiet    bool

	mu     sync.Mutex
	began  time.Time
	ops    int
	faults int
	// recovering is set once the recovery phase begins, which runs past
	// the workload's duration.
	recovering bool
	overlap    *models.LiveMutex
	done       chan struct{}
	stopped    chan struct{}
}

func newProgress(w io.Writer, total time.Duration, quiet bool) *progress {
	return &progress{w: w, total: total, terminal: isTerminal(w), quiet: quiet,
		overlap: models.NewLiveMutex(), done: make(chan struct{}), stopped: make(chan struct{})}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func (p *progress) observe(e history.Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if e.Process != history.Nemesis && e.Type != history.Invoke && e.F != history.Lost {
		p.ops++
	}
	switch e.F {
	case history.FaultStart:
		p.faults++
	case history.Recovery:
		p.recovering = true
	}
	p.overlap.Observe(e)
}

func (p *progress) line() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	phase := fmt.Sprintf("workload %v", p.total)
	if p.recovering {
		phase = "recovery"
	}
	return fmt.Sprintf("%5.1fs  %s  ops %d  faults %d  violations so far %d",
		time.Since(p.began).Seconds(), phase, p.ops, p.faults, p.overlap.Violations())
}

func (p *progress) start() {
	p.began = time.Now()
	if p.quiet {
		close(p.stopped)
		return
	}
	every := 5 * time.Second
	if p.terminal {
		every = 250 * time.Millisecond
	}
	go func() {
		defer close(p.stopped)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-p.done:
				if p.terminal {
					fmt.Fprintf(p.w, "\r%s\n", p.line())
				}
				return
			case <-tick.C:
				if p.terminal {
					fmt.Fprintf(p.w, "\r%s\x1b[K", p.line())
				} else {
					fmt.Fprintln(p.w, p.line())
				}
			}
		}
	}()
}

func (p *progress) stop() {
	close(p.done)
	<-p.stopped
}
