package worker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/lockcheck/lockcheck/harness/register"
	"github.com/lockcheck/lockcheck/lockers"
)

// Keys with a behaviour of their own in fakeLocker.
const (
	keyNoEffect = "refuse" // Lock fails with no effect
	keyUnknown  = "flaky"  // Lock and store calls fail with an unknown outcome
	keyLate     = "late"   // Lock ignores its context and grants when fakeLocker.grantLate is closed
	keyBroken   = "broken" // as a hello's locker: open fails
)

// fakeLocker is a mutex per key with increasing tokens, whose leases the
// test can make lost or asked to let go.
type fakeLocker struct {
	env       lockers.Env
	grantLate chan struct{}

	mu       sync.Mutex
	tokens   map[string]uint64
	holder   map[string]*fakeLease
	freed    map[string]chan struct{} // closed when key's holder lets go
	granted  []*fakeLease
	attempts []time.Time // real time just after each AttemptStarted
	closed   bool

	// attempted and ended receive each attempt and each finished Lock's
	// error, for tests to wait on; they hold more than any test makes.
	attempted chan struct{}
	ended     chan error
}

var _ lockers.Locker = (*fakeLocker)(nil)

func newFakeLocker(env lockers.Env) *fakeLocker {
	return &fakeLocker{
		env:       env,
		grantLate: make(chan struct{}),
		tokens:    map[string]uint64{},
		holder:    map[string]*fakeLease{},
		freed:     map[string]chan struct{}{},
		attempted: make(chan struct{}, 100),
		ended:     make(chan error, 100),
	}
}

func (f *fakeLocker) Lock(ctx context.Context, key string) (_ lockers.Lease, err error) {
	defer func() {
		select {
		case f.ended <- err:
		default:
		}
	}()
	switch key {
	case keyNoEffect:
		return nil, fmt.Errorf("fake: %s is refused: %w", key, lockers.ErrNoEffect)
	case keyUnknown:
		return nil, errors.New("fake: the backend timed out")
	case keyLate:
		select {
		case f.attempted <- struct{}{}:
		default:
		}
		select {
		case <-f.grantLate:
		case <-time.After(time.Minute):
			return nil, errors.New("fake: grantLate never closed")
		}
		return f.grant(key), nil
	}
	for {
		f.env.MarkAttempt()
		f.mu.Lock()
		f.attempts = append(f.attempts, time.Now())
		select {
		case f.attempted <- struct{}{}:
		default:
		}
		if f.holder[key] == nil {
			f.mu.Unlock()
			return f.grant(key), nil
		}
		freed := f.freed[key]
		f.mu.Unlock()
		select {
		case <-freed:
		case <-ctx.Done():
			return nil, fmt.Errorf("fake: gave up waiting for %s: %w: %w", key, ctx.Err(), lockers.ErrNoEffect)
		}
	}
}

func (f *fakeLocker) grant(key string) *fakeLease {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tokens[key]++
	l := &fakeLease{f: f, key: key, token: f.tokens[key], lost: make(chan struct{}), asked: make(chan struct{}), unlocked: make(chan struct{})}
	f.holder[key] = l
	f.freed[key] = make(chan struct{})
	f.granted = append(f.granted, l)
	return l
}

func (f *fakeLocker) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	return nil
}

func (f *fakeLocker) lease(i int) *fakeLease {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.granted[i]
}

func (f *fakeLocker) attemptTimes() []time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]time.Time(nil), f.attempts...)
}

func (f *fakeLocker) isClosed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.closed
}

type fakeLease struct {
	f        *fakeLocker
	key      string
	token    uint64
	lost     chan struct{}
	asked    chan struct{}
	unlocked chan struct{}
	once     sync.Once
	gone     bool // guarded by f.mu
}

var _ lockers.ReleaseRequester = (*fakeLease)(nil)

func (l *fakeLease) Token() uint64                     { return l.token }
func (l *fakeLease) Lost() <-chan struct{}             { return l.lost }
func (l *fakeLease) ReleaseRequested() <-chan struct{} { return l.asked }

// lose takes the lease away, as an expiry would.
func (l *fakeLease) lose() {
	l.f.mu.Lock()
	defer l.f.mu.Unlock()
	l.release()
	close(l.lost)
}

// ask asks the holder to let go.
func (l *fakeLease) ask() { close(l.asked) }

// release frees the key if l holds it; f.mu is held.
func (l *fakeLease) release() bool {
	if l.gone {
		return false
	}
	l.gone = true
	delete(l.f.holder, l.key)
	close(l.f.freed[l.key])
	return true
}

func (l *fakeLease) Unlock(ctx context.Context) error {
	l.f.mu.Lock()
	defer l.f.mu.Unlock()
	if !l.release() {
		return fmt.Errorf("fake: lease of %s token %d is no longer held: %w", l.key, l.token, lockers.ErrNoEffect)
	}
	close(l.unlocked)
	return nil
}

// fakeStore is a register store, fenced when asked.
type fakeStore struct {
	fenced bool

	mu     sync.Mutex
	values map[string]int64
	fence  map[string]uint64
}

var _ register.Store = (*fakeStore)(nil)

func newFakeStore(fenced bool) *fakeStore {
	return &fakeStore{fenced: fenced, values: map[string]int64{}, fence: map[string]uint64{}}
}

func (s *fakeStore) check(key string, token uint64) error {
	if key == keyUnknown {
		return errors.New("fake store: connection reset")
	}
	if !s.fenced {
		return nil
	}
	if token < s.fence[key] {
		return fmt.Errorf("fake store: %s token %d below %d: %w", key, token, s.fence[key], register.ErrStale)
	}
	s.fence[key] = token
	return nil
}

func (s *fakeStore) Read(ctx context.Context, key string, token uint64) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(key, token); err != nil {
		return 0, err
	}
	return s.values[key], nil
}

func (s *fakeStore) Write(ctx context.Context, key string, value int64, token uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(key, token); err != nil {
		return err
	}
	s.values[key] = value
	return nil
}

func (s *fakeStore) Final(ctx context.Context, key string) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.values[key], nil
}

// fakeWorld is what one fake worker opened.
type fakeWorld struct {
	mu     sync.Mutex
	hello  Hello
	locker *fakeLocker
	store  *fakeStore
}

func (w *fakeWorld) open(ctx context.Context, h Hello, env lockers.Env) (lockers.Locker, register.Store, error) {
	if h.Locker == keyBroken {
		env.Logf("fake: cannot open %s", h.Locker)
		return nil, nil, errors.New("fake: no such locker")
	}
	l := newFakeLocker(env)
	var s *fakeStore
	if h.Register != RegisterNone {
		s = newFakeStore(h.Register == RegisterFenced)
	}
	w.mu.Lock()
	w.hello, w.locker, w.store = h, l, s
	w.mu.Unlock()
	if s == nil {
		return l, nil, nil
	}
	return l, s, nil
}

func (w *fakeWorld) fake() *fakeLocker {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.locker
}
