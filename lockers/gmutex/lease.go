package gmutex

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"

	"github.com/lockcheck/lockcheck/lockers"
)

var _ lockers.Lease = (*lease)(nil)

// lease is one held Mutex and the goroutine that extends it, as a user of
// the library would run it: Extend every extend interval, and at the first
// error stop and give the lock up for lost, since the library documents
// that an Extend error means mutual exclusion can no longer be ensured.
type lease struct {
	l *Locker

	mu sync.Mutex // the library's Mutex is not safe for concurrent use
	m  mutex

	lost     chan struct{}
	quit     chan struct{}      // closed by Unlock: extend no more
	abort    context.CancelFunc // ends an Extend in flight
	extender chan struct{}      // closed when the extender has returned
	once     sync.Once
}

func (l *Locker) hold(m mutex, gen string) *lease {
	m.generation = gen
	ctx, abort := context.WithCancel(context.Background())
	s := &lease{l: l, m: m, lost: make(chan struct{}), quit: make(chan struct{}), abort: abort, extender: make(chan struct{})}
	l.leasesMu.Lock()
	l.leases[s] = struct{}{}
	l.leasesMu.Unlock()
	go s.extendLoop(ctx)
	return s
}

// halt stops the extender and cancels an Extend in flight.
func (s *lease) halt() {
	s.once.Do(func() { close(s.quit) })
	s.abort()
}

func (s *lease) Token() uint64         { return 0 }
func (s *lease) Lost() <-chan struct{} { return s.lost }

func (s *lease) extendLoop(ctx context.Context) {
	defer func() {
		s.l.leasesMu.Lock()
		delete(s.l.leases, s)
		s.l.leasesMu.Unlock()
		close(s.extender)
	}()
	for {
		select {
		case <-s.l.env.Clock.After(s.l.d.extend):
		case <-s.quit:
			return
		}
		s.mu.Lock()
		err := s.extend(ctx)
		s.mu.Unlock()
		if err != nil {
			if ctx.Err() == nil {
				s.l.env.Logf("gmutex: %s: %v; lease lost", s.m.object, err)
				close(s.lost)
			}
			return
		}
	}
}

// extend is the library's Extend.
func (s *lease) extend(ctx context.Context) error {
	b := backoff{l: s.l}
	for {
		status, gen, err := s.m.extend(ctx, s.m.generation)
		if status == http.StatusOK {
			s.m.generation = gen
			return nil
		}
		// The library tests 404 here before its stale test, which also
		// names 404: a vanished lock object reads "bucket does not exist".
		if status == http.StatusNotFound {
			return errors.New("mutex: bucket does not exist")
		}
		if status == http.StatusPreconditionFailed {
			return fmt.Errorf("extend mutex: %w, abort", ErrStale)
		}
		if retriable(status, err) {
			if err := b.wait(ctx); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("extend mutex: %w", err)
		}
		return fmt.Errorf("extend mutex: http status %d: %s", status, http.StatusText(status))
	}
}

// Unlock stops the extender, lets an Extend in flight finish (so the
// delete names the generation it made), and runs the library's Unlock:
// delete at the generation held. If ctx ends first, the Extend is cancelled
// and Unlock fails without deleting.
func (s *lease) Unlock(ctx context.Context) error {
	s.once.Do(func() { close(s.quit) })
	select {
	case <-s.extender:
	case <-ctx.Done():
		s.abort()
		return fmt.Errorf("gmutex: unlock: %w", ctx.Err())
	}
	defer s.abort()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m.generation == "" {
		// The library panics here; a second Unlock sends nothing.
		return fmt.Errorf("gmutex: %w: unlock of unlocked mutex", lockers.ErrNoEffect)
	}
	b := backoff{l: s.l}
	definite := true // no delete of this call may have committed
	for {
		status, err := s.m.delete(ctx, s.m.generation)
		if status == http.StatusOK || status == http.StatusNoContent {
			s.m.generation = ""
			return nil
		}
		definite = definite && err == nil && refused(status)
		if status == http.StatusPreconditionFailed || status == http.StatusNotFound {
			return noEffectIf(definite, fmt.Errorf("unlock mutex: %w", ErrStale))
		}
		if retriable(status, err) {
			if err := b.wait(ctx); err != nil {
				return noEffectIf(definite, err)
			}
			continue
		}
		if err != nil {
			return noEffectIf(definite, fmt.Errorf("unlock mutex: %w", err))
		}
		return noEffectIf(definite, fmt.Errorf("unlock mutex: http status %d: %s", status, http.StatusText(status)))
	}
}
