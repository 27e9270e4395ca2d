package redislock

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/bsm/redislock"
	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/lockcheck/lockcheck/lockers"
)

// Name is the locker's name in the harness's list.
const Name = "redislock"

// The adapter's published durations, before TimeScale.
const (
	// DefaultTTL is the lease's lifetime on the server without a refresh.
	DefaultTTL = 30 * time.Second
	// MinBackoff and MaxBackoff bound the library's exponential backoff
	// between refused attempts.
	MinBackoff = 16 * time.Millisecond
	MaxBackoff = 512 * time.Millisecond
)

// ErrBadOptions reports a missing Config or Env field, or options that
// leave a duration at zero.
var ErrBadOptions = errors.New("redislock: bad options")

// Config says where the Redis server is.
type Config struct {
	// Addr is the server's host:port; Env.Dial receives it.
	Addr string

	_ struct{}
}

// Options sets the lease's lifetime. The zero value is the defaults.
type Options struct {
	// TTL overrides DefaultTTL when positive; it is taken as given, not
	// scaled.
	TTL time.Duration
	// TimeScale multiplies every default duration alike: 0.1 gives a 3 s
	// TTL and a backoff from 1.6 ms to 51.2 ms. Zero means 1.
	TimeScale float64

	_ struct{}
}

// settings are the durations in force.
type settings struct {
	ttl, minBackoff, maxBackoff time.Duration
}

func (o Options) resolve() (settings, error) {
	if o.TimeScale < 0 {
		return settings{}, fmt.Errorf("%w: TimeScale %v is negative", ErrBadOptions, o.TimeScale)
	}
	if o.TimeScale == 0 {
		o.TimeScale = 1
	}
	scale := func(d time.Duration) time.Duration { return time.Duration(float64(d) * o.TimeScale) }
	s := settings{ttl: o.TTL, minBackoff: scale(MinBackoff), maxBackoff: scale(MaxBackoff)}
	if s.ttl <= 0 {
		s.ttl = scale(DefaultTTL)
	}
	// The library sends the TTL in whole milliseconds and treats a zero
	// backoff as "stop retrying".
	if s.ttl < time.Millisecond || s.minBackoff <= 0 || s.maxBackoff <= 0 {
		return settings{}, fmt.Errorf("%w: TimeScale %v or TTL %v rounds a duration to zero", ErrBadOptions, o.TimeScale, o.TTL)
	}
	return s, nil
}

// Locker is one client's redislock client.
type Locker struct {
	env    lockers.Env
	set    settings
	client *redis.Client
	// closed stops every refresher when the locker closes.
	closed    chan struct{}
	closeOnce sync.Once

	mu  sync.Mutex
	rng *rand.Rand // token source
}

var _ lockers.Locker = (*Locker)(nil)

// New returns a client's locker on the Redis at cfg.Addr. It uses
// env.Dial for every connection, env.Clock for refresh timing, env.Seed
// and env.Identity for tokens, env.Log and env.AttemptStarted. It does not
// connect until the first Lock.
func New(cfg Config, env lockers.Env, opts Options) (*Locker, error) {
	set, err := opts.resolve()
	if err != nil {
		return nil, err
	}
	if cfg.Addr == "" {
		return nil, fmt.Errorf("%w: Config.Addr is empty", ErrBadOptions)
	}
	if env.Dial == nil || env.Clock == nil {
		return nil, fmt.Errorf("%w: Env.Dial and Env.Clock are required", ErrBadOptions)
	}
	h := fnv.New64a()
	h.Write([]byte(env.Identity))
	return &Locker{
		env: env,
		set: set,
		client: redis.NewClient(&redis.Options{
			Addr:   cfg.Addr,
			Dialer: env.Dial,
			// Maintenance notifications (a Redis Enterprise feature) resolve
			// the address's host name at construction, outside Env.Dial;
			// the library needs none of it.
			MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
		}),
		closed: make(chan struct{}),
		rng:    rand.New(rand.NewPCG(env.Seed, h.Sum64())),
	}, nil
}

// TTL is the lease lifetime in force.
func (l *Locker) TTL() time.Duration { return l.set.ttl }

// Close stops every refresher and closes the Redis client. Leases already
// handed out stop working; their keys expire on the server.
func (l *Locker) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return l.client.Close()
}

func (l *Locker) token() string {
	b := make([]byte, 16)
	l.mu.Lock()
	for i := range b {
		b[i] = byte(l.rng.Uint32())
	}
	l.mu.Unlock()
	return base64.RawURLEncoding.EncodeToString(b)
}

// Lock obtains key with the library's Obtain, retrying refused attempts
// until ctx ends, and starts the lease's refresher.
func (l *Locker) Lock(ctx context.Context, key string) (lockers.Lease, error) {
	w := &watcher{Scripter: l.client, env: l.env}
	w.watching.Store(true)
	lock, err := redislock.New(w).Obtain(ctx, key, l.set.ttl, &redislock.Options{
		RetryStrategy: redislock.ExponentialBackoff(l.set.minBackoff, l.set.maxBackoff),
		Token:         l.token(),
	})
	w.watching.Store(false)
	if err != nil {
		definite := errors.Is(err, redislock.ErrNotObtained) ||
			(isContextErr(err) && !w.uncertain.Load())
		if definite {
			return nil, fmt.Errorf("redislock: obtain %q: %w (%w)", key, lockers.ErrNoEffect, err)
		}
		return nil, fmt.Errorf("redislock: obtain %q: %w", key, err)
	}
	ls := &lease{
		env:  l.env,
		ttl:  l.set.ttl,
		lock: lock,
		lost: make(chan struct{}),
		stop: make(chan struct{}),
	}
	go ls.refresh(w.lastSent(), l.closed)
	return ls, nil
}

// lease is one obtained lock and its refresher.
type lease struct {
	env  lockers.Env
	ttl  time.Duration
	lock *redislock.Lock

	lost     chan struct{}
	lostOnce sync.Once
	stop     chan struct{}
	stopOnce sync.Once
}

var _ lockers.Lease = (*lease)(nil)

func (ls *lease) Token() uint64         { return 0 }
func (ls *lease) Lost() <-chan struct{} { return ls.lost }
func (ls *lease) markLost(why string) {
	ls.lostOnce.Do(func() { ls.env.Logf("redislock: %s lost: %s", ls.lock.Key(), why); close(ls.lost) })
}
func (ls *lease) stopRefresh() { ls.stopOnce.Do(func() { close(ls.stop) }) }

// Unlock stops the refresher and releases the lock if it still holds this
// lease's token.
func (ls *lease) Unlock(ctx context.Context) error {
	ls.stopRefresh()
	err := ls.lock.Release(ctx)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, redislock.ErrLockNotHeld):
		return fmt.Errorf("redislock: release %q: %w (%w)", ls.lock.Key(), lockers.ErrNoEffect, err)
	default:
		return fmt.Errorf("redislock: release %q: %w", ls.lock.Key(), err)
	}
}

// refresh extends the lease every TTL/2, counted from when the last
// successful extension (or the winning attempt) was sent, until Unlock,
// Close, or the lease is lost. See the package doc for when it gives up.
func (ls *lease) refresh(lastOK time.Time, closed <-chan struct{}) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	clock := ls.env.Clock
	wait := ls.ttl / 2
	for {
		expired := clock.After(lastOK.Add(ls.ttl).Sub(clock.Now()))
		select {
		case <-ls.stop:
			return
		case <-closed:
			return
		case <-expired:
			ls.markLost(fmt.Sprintf("no refresh succeeded within the TTL (%v)", ls.ttl))
			return
		case <-clock.After(wait):
		}
		sent := clock.Now()
		done := make(chan error, 1)
		go func() { done <- ls.lock.Refresh(ctx, ls.ttl, nil) }()
		var err error
		select {
		case <-ls.stop:
			return
		case <-closed:
			return
		case <-expired:
			ls.markLost(fmt.Sprintf("no refresh succeeded within the TTL (%v); one still in flight", ls.ttl))
			return
		case err = <-done:
		}
		switch {
		case err == nil:
			lastOK, wait = sent, ls.ttl/2
		case errors.Is(err, redislock.ErrNotObtained):
			ls.markLost("refresh answered: not held")
			return
		default:
			ls.env.Logf("redislock: refresh %s: %v", ls.lock.Key(), err)
			wait = ls.ttl / 10
		}
	}
}

// isContextErr is true of a context's own error. The library returns one
// unwrapped when its wait between attempts ends; go-redis returns one when
// a command could not start, but then the watcher saw an uncertain answer.
func isContextErr(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}
