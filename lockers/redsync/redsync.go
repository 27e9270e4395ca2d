package redsync

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/go-redsync/redsync/v4"
	rsredis "github.com/go-redsync/redsync/v4/redis"
	"github.com/go-redsync/redsync/v4/redis/goredis/v9"
	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/lockcheck/lockcheck/lockers"
)

// The locker's names in the harness's list: one Redis, and Redlock over
// three independent ones.
const (
	Name        = "redsync"
	NameRedlock = "redlock"
)

// The library's published defaults, before TimeScale.
const (
	// DefaultTTL is redsync's default expiry.
	DefaultTTL = 8 * time.Second
	// MinRetryDelay and MaxRetryDelay bound redsync's default retry
	// delay, drawn uniformly between them.
	MinRetryDelay = 50 * time.Millisecond
	MaxRetryDelay = 250 * time.Millisecond
)

// ErrBadOptions reports a missing Config or Env field, or options that
// leave a duration at zero.
var ErrBadOptions = errors.New("redsync: bad options")

// Config lists the independent Redis servers: one for redsync, three for
// Redlock.
type Config struct {
	// Addrs are the servers' host:port; Env.Dial receives them.
	Addrs []string

	_ struct{}
}

// Options sets the lease's lifetime. The zero value is the library's
// defaults.
type Options struct {
	// TTL overrides DefaultTTL when positive; it is taken as given, not
	// scaled.
	TTL time.Duration
	// TimeScale multiplies every default duration alike: 0.1 gives an
	// 800 ms TTL and retry delays from 5 to 25 ms. Zero means 1.
	TimeScale float64

	_ struct{}
}

type settings struct {
	ttl, minDelay, maxDelay time.Duration
}

func (o Options) resolve() (settings, error) {
	if o.TimeScale < 0 {
		return settings{}, fmt.Errorf("%w: TimeScale %v is negative", ErrBadOptions, o.TimeScale)
	}
	if o.TimeScale == 0 {
		o.TimeScale = 1
	}
	scale := func(d time.Duration) time.Duration { return time.Duration(float64(d) * o.TimeScale) }
	s := settings{ttl: o.TTL, minDelay: scale(MinRetryDelay), maxDelay: scale(MaxRetryDelay)}
	if s.ttl <= 0 {
		s.ttl = scale(DefaultTTL)
	}
	// redsync sends the expiry in whole milliseconds; its per-node timeout
	// is 5 % of it.
	if s.ttl < 20*time.Millisecond || s.minDelay <= 0 || s.maxDelay <= s.minDelay {
		return settings{}, fmt.Errorf("%w: TimeScale %v or TTL %v leaves a duration too short", ErrBadOptions, o.TimeScale, o.TTL)
	}
	return s, nil
}

// Locker is one client's redsync instance over its Redis servers.
type Locker struct {
	env     lockers.Env
	set     settings
	clients []*redis.Client
	quorum  int
	// closed stops every refresher when the locker closes.
	closed    chan struct{}
	closeOnce sync.Once

	mu  sync.Mutex
	rng *rand.Rand // values and retry delays
}

var _ lockers.Locker = (*Locker)(nil)

// New returns a client's locker over cfg.Addrs, with one go-redis client
// per address. It uses env.Dial for every connection, env.Clock for
// refresh timing, env.Seed and env.Identity for lock values and retry
// delays, env.Log and env.AttemptStarted. It does not connect until the
// first Lock.
func New(cfg Config, env lockers.Env, opts Options) (*Locker, error) {
	set, err := opts.resolve()
	if err != nil {
		return nil, err
	}
	if len(cfg.Addrs) == 0 {
		return nil, fmt.Errorf("%w: Config.Addrs is empty", ErrBadOptions)
	}
	if env.Dial == nil || env.Clock == nil {
		return nil, fmt.Errorf("%w: Env.Dial and Env.Clock are required", ErrBadOptions)
	}
	h := fnv.New64a()
	h.Write([]byte(env.Identity))
	l := &Locker{
		env:    env,
		set:    set,
		quorum: len(cfg.Addrs)/2 + 1, // redsync's own
		closed: make(chan struct{}),
		rng:    rand.New(rand.NewPCG(env.Seed, h.Sum64())),
	}
	for _, addr := range cfg.Addrs {
		l.clients = append(l.clients, redis.NewClient(&redis.Options{
			Addr:   addr,
			Dialer: env.Dial,
			// redsync bounds each node's answer with a context timeout
			// (WithTimeoutFactor); go-redis ignores context deadlines on
			// its sockets unless told.
			ContextTimeoutEnabled: true,
			// Maintenance notifications (a Redis Enterprise feature) resolve
			// the address's host name at construction, outside Env.Dial;
			// the library needs none of it.
			MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
		}))
	}
	return l, nil
}

// TTL is the lease lifetime in force.
func (l *Locker) TTL() time.Duration { return l.set.ttl }

// Close stops every refresher and closes the Redis clients. Leases already
// handed out stop working; their keys expire on the servers.
func (l *Locker) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	var errs []error
	for _, c := range l.clients {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}

// value is redsync's genValue, fed from the seeded generator.
func (l *Locker) value() (string, error) {
	b := make([]byte, 16)
	l.mu.Lock()
	for i := range b {
		b[i] = byte(l.rng.Uint32())
	}
	l.mu.Unlock()
	return base64.StdEncoding.EncodeToString(b), nil
}

// delay is redsync's default retry delay, uniform in [min, max), scaled
// and seeded.
func (l *Locker) delay(int) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.set.minDelay + time.Duration(l.rng.Int64N(int64(l.set.maxDelay-l.set.minDelay)))
}

// Lock takes key with the library's LockContext, retrying until ctx ends,
// and starts the lease's refresher.
func (l *Locker) Lock(ctx context.Context, key string) (lockers.Lease, error) {
	w := &watcher{env: l.env, clock: l.env.Clock, quorum: l.quorum}
	w.watching.Store(true)
	pools := make([]rsredis.Pool, len(l.clients))
	for i, c := range l.clients {
		pools[i] = &watchedPool{Pool: goredis.NewPool(c), w: w}
	}
	m := redsync.New(pools...).NewMutex(key,
		redsync.WithExpiry(l.set.ttl),
		// Only ctx ends the retries: LockContext checks it before each.
		redsync.WithTries(math.MaxInt32),
		redsync.WithRetryDelayFunc(l.delay),
		redsync.WithGenValueFunc(l.value),
	)
	err := m.LockContext(ctx)
	w.watching.Store(false)
	if err != nil {
		if !w.uncertain.Load() {
			return nil, fmt.Errorf("redsync: lock %q: %w (%w)", key, lockers.ErrNoEffect, err)
		}
		return nil, fmt.Errorf("redsync: lock %q: %w", key, err)
	}
	ls := &lease{
		env:   l.env,
		ttl:   l.set.ttl,
		mutex: m,
		lost:  make(chan struct{}),
		stop:  make(chan struct{}),
	}
	go ls.refresh(w.roundStart(), l.closed)
	return ls, nil
}

// lease is one acquired mutex and its refresher.
type lease struct {
	env   lockers.Env
	ttl   time.Duration
	mutex *redsync.Mutex

	lost     chan struct{}
	lostOnce sync.Once
	stop     chan struct{}
	stopOnce sync.Once
}

var _ lockers.Lease = (*lease)(nil)

func (ls *lease) Token() uint64         { return 0 }
func (ls *lease) Lost() <-chan struct{} { return ls.lost }
func (ls *lease) stopRefresh()          { ls.stopOnce.Do(func() { close(ls.stop) }) }
func (ls *lease) markLost(why string) {
	ls.lostOnce.Do(func() {
		ls.env.Logf("redsync: %s lost: %s", ls.mutex.Name(), why)
		close(ls.lost)
	})
}

// Unlock stops the refresher and unlocks the mutex on every node that
// still holds this lease's value.
func (ls *lease) Unlock(ctx context.Context) error {
	ls.stopRefresh()
	ok, err := ls.mutex.UnlockContext(ctx)
	if ok {
		return nil
	}
	if err == nil {
		err = errors.New("unlocked on fewer nodes than a quorum")
	}
	// Below a quorum, every node that answered said "expired" or "someone
	// else's"; only a node that did not answer may have deleted the key.
	var netErr *redsync.RedisError
	if errors.As(err, &netErr) {
		return fmt.Errorf("redsync: unlock %q: %w", ls.mutex.Name(), err)
	}
	return fmt.Errorf("redsync: unlock %q: %w (%w)", ls.mutex.Name(), lockers.ErrNoEffect, err)
}

// refresh extends the mutex every TTL/2, counted from when the last
// successful extension (or the winning round) was sent, until Unlock,
// Close, or the lease is lost: an extension refused (below a quorum, or
// too slow for redsync's validity check) closes Lost at once, and so does
// a full TTL on Env.Clock without a successful one, even if one is still
// in flight.
func (ls *lease) refresh(lastOK time.Time, closed <-chan struct{}) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	clock := ls.env.Clock
	for {
		expired := clock.After(lastOK.Add(ls.ttl).Sub(clock.Now()))
		select {
		case <-ls.stop:
			return
		case <-closed:
			return
		case <-expired:
			ls.markLost(fmt.Sprintf("no extension succeeded within the TTL (%v)", ls.ttl))
			return
		case <-clock.After(lastOK.Add(ls.ttl / 2).Sub(clock.Now())):
		}
		sent := clock.Now()
		type result struct {
			ok  bool
			err error
		}
		done := make(chan result, 1)
		go func() {
			ok, err := ls.mutex.ExtendContext(ctx)
			done <- result{ok, err}
		}()
		var res result
		select {
		case <-ls.stop:
			return
		case <-closed:
			return
		case <-expired:
			ls.markLost(fmt.Sprintf("no extension succeeded within the TTL (%v); one still in flight", ls.ttl))
			return
		case res = <-done:
		}
		if !res.ok {
			ls.markLost(fmt.Sprintf("extend refused: %v", res.err))
			return
		}
		lastOK = sent
	}
}
