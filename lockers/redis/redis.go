package redis

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/lockcheck/lockcheck/lockers"
)

// Name is the locker's name in the harness's list.
const Name = "redis"

// The source's defaults (RedisLockEngine's constructor).
const (
	DefaultAcquireLockTimeout = 30 * time.Second
	DefaultAcquireLockRetry   = 100 * time.Millisecond
	DefaultRedisLockTimeout   = 30 * time.Second
)

// The source's key and channel prefixes: the lock on upload id is the key
// "lock:<id>", its release requests travel on "lock:release:<id>".
const (
	Prefix    = "lock"
	SubPrefix = "lock:release"
)

// releaseMessage is what a waiter publishes; the holder ignores the text.
const releaseMessage = "if you aint gonna play pass the controller"

// releaseScript and extendScript are the source's RELEASE_SCRIPT and
// EXTEND_SCRIPT: compare the key's value with our token, then DEL or
// PEXPIRE, atomically on the server. Both answer 1 on success, 0 when the
// key is not ours (gone, or someone else's).
const (
	releaseScript = `if redis.call("get", KEYS[1]) == ARGV[1] then
  return redis.call("del", KEYS[1])
else
  return 0
end`
	extendScript = `if redis.call("get", KEYS[1]) == ARGV[1] then
  return redis.call("pexpire", KEYS[1], ARGV[2])
else
  return 0
end`
	// blindExtendScript is DefectBlindExtend's: PEXPIRE with no look at
	// whose key it is.
	blindExtendScript = `return redis.call("pexpire", KEYS[1], ARGV[2])`
)

var (
	// ErrLockTimeout is the source's ERR_LOCK_TIMEOUT: the lock was not
	// taken before acquireLockTimeout, or the caller's context ended.
	ErrLockTimeout = errors.New("failed to acquire lock before timeout")
	// ErrNotLocked is the source's "Releasing an unlocked lock!": Unlock
	// of a lease already unlocked.
	ErrNotLocked = errors.New("releasing an unlocked lock")
	// ErrNotOwner reports an Unlock whose compare-and-delete found the key
	// no longer ours (expired, or taken by another client).
	ErrNotOwner = errors.New("the lock key no longer holds this lease's token")
	// ErrBadOptions reports unusable options, config or env.
	ErrBadOptions = errors.New("redis: bad options")
)

// Config says where the Redis server is.
type Config struct {
	// Addr is the server's host:port; it is passed to Env.Dial.
	Addr string

	_ struct{}
}

// Options sets the source's three durations. The zero value is the
// source's defaults.
type Options struct {
	// TimeScale multiplies every default duration alike: 0.1 gives a 3 s
	// acquire timeout, a 10 ms retry interval and a 3 s TTL (so a 1.5 s
	// watchdog). Zero means 1.
	TimeScale float64
	// AcquireLockTimeout, AcquireLockRetry and RedisLockTimeout (the TTL)
	// override one duration each when positive, unscaled.
	AcquireLockTimeout time.Duration
	AcquireLockRetry   time.Duration
	RedisLockTimeout   time.Duration

	// Defect plants one deliberate bug, for the planted mutants of
	// package mutants; zero, the only value a user has reason to give,
	// is the source's locker.
	Defect Defect

	_ struct{}
}

// Defect is one deliberate bug of a planted mutant; see Options.Defect.
type Defect int

const (
	// NoDefect is the source's locker.
	NoDefect Defect = iota
	// DefectBlindExtend: the watchdog extends the key's TTL with no
	// owner check, so an extend that lands late (after the key expired
	// and another client took it) extends the next holder's lock, and
	// the late holder, told the key is there, believes it still holds.
	DefectBlindExtend
)

func (o Options) resolve() (Options, error) {
	if err := lockers.ApplyTimeScale(&o.TimeScale,
		lockers.Published{Option: &o.AcquireLockTimeout, Default: DefaultAcquireLockTimeout},
		lockers.Published{Option: &o.AcquireLockRetry, Default: DefaultAcquireLockRetry},
		lockers.Published{Option: &o.RedisLockTimeout, Default: DefaultRedisLockTimeout}); err != nil {
		return o, fmt.Errorf("%w: %w", ErrBadOptions, err)
	}
	// The TTL travels in whole milliseconds and the watchdog runs every
	// half of it: below 2 ms there is no watchdog interval.
	if o.RedisLockTimeout < 2*time.Millisecond {
		return o, fmt.Errorf("%w: TimeScale %v makes the TTL %v, under the 2 ms a watchdog needs", ErrBadOptions, o.TimeScale, o.RedisLockTimeout)
	}
	return o, nil
}

// Locker is one client's RedisLockEngine with its ioredis-like adapter: a
// command connection pool and one subscriber connection.
type Locker struct {
	env    lockers.Env
	opts   Options
	client *goredis.Client
	sub    *subscriber

	mu     sync.Mutex
	rnd    *rand.Rand
	leases map[*lease]struct{} // held, so Close can stop their watchdogs
}

var _ lockers.Locker = (*Locker)(nil)

// New returns a client's locker on the Redis server at cfg.Addr. Every
// connection, commands and subscriber alike, is opened by env.Dial.
func New(cfg Config, env lockers.Env, opts Options) (*Locker, error) {
	opts, err := opts.resolve()
	if err != nil {
		return nil, err
	}
	if cfg.Addr == "" {
		return nil, fmt.Errorf("%w: Config.Addr is empty", ErrBadOptions)
	}
	if env.Dial == nil || env.Clock == nil {
		return nil, fmt.Errorf("%w: Env.Dial and Env.Clock are required", ErrBadOptions)
	}
	client := goredis.NewClient(&goredis.Options{
		Addr:   cfg.Addr,
		Dialer: env.Dial,
		// ioredis speaks RESP2 and announces nothing on connect.
		Protocol:                 2,
		DisableIdentity:          true,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
		// ioredis's connectTimeout.
		DialTimeout: 10 * time.Second,
		// ioredis has no command timeout: a command waits for its reply
		// as long as the connection lives. Only a context bounds one here.
		ReadTimeout:           -1,
		WriteTimeout:          -1,
		ContextTimeoutEnabled: true,
		// See the package doc: a retried SET NX could not be told from a
		// lost race.
		MaxRetries: -1,
	})
	l := &Locker{
		env:    env,
		opts:   opts,
		client: client,
		rnd:    rand.New(rand.NewPCG(env.Seed, 0x9e3779b97f4a7c15)),
		leases: map[*lease]struct{}{},
	}
	l.sub = newSubscriber(client, env)
	return l, nil
}

// Options returns the durations in force, defaults and scale applied.
func (l *Locker) Options() Options { return l.opts }

// Close stops the watchdogs of the leases still held, the subscriber and
// the client. Those leases stay on the server until their TTL.
func (l *Locker) Close() error {
	l.mu.Lock()
	held := l.leases
	l.leases = map[*lease]struct{}{}
	l.mu.Unlock()
	for ls := range held {
		ls.stopWatchdog()
	}
	l.sub.close()
	return l.client.Close()
}

// token is the source's randomUUID(), drawn from the seeded generator: a
// version 4 UUID.
func (l *Locker) token() string {
	l.mu.Lock()
	hi, lo := l.rnd.Uint64(), l.rnd.Uint64()
	l.mu.Unlock()
	hi = hi&^0xf000 | 0x4000     // version 4
	lo = lo&^(3<<62) | (1 << 63) // variant 10
	return fmt.Sprintf("%08x-%04x-%04x-%04x-%012x", hi>>32, (hi>>16)&0xffff, hi&0xffff, lo>>48, lo&0xffffffffffff)
}

// Lock is RedisEngineLock.lock: SET NX PX until it wins, publishing a
// release request and waiting the retry interval after each loss, until
// acquireLockTimeout passes or ctx ends.
func (l *Locker) Lock(ctx context.Context, id string) (lockers.Lease, error) {
	key, channel := Prefix+":"+id, SubPrefix+":"+id
	token := l.token()
	deadline := l.env.Clock.Now().Add(l.opts.AcquireLockTimeout)

	for ctx.Err() == nil && l.env.Clock.Now().Before(deadline) {
		// Every earlier SET of this call answered nil: none had an effect.
		l.env.MarkAttempt()
		won, err := l.setNX(ctx, key, token)
		if err != nil {
			// The source lets a failed tryAcquire reject lock(). The SET
			// may have been applied: a lock nobody holds until its TTL.
			return nil, fmt.Errorf("%s: lock %q: SET NX PX: %w (indeterminate)", Name, id, err)
		}
		if won {
			return l.hold(ctx, id, key, channel, token, deadline)
		}
		if err := l.client.Publish(ctx, channel, releaseMessage).Err(); err != nil {
			return nil, fmt.Errorf("%s: lock %q: publish release request: %w: %w", Name, id, err, lockers.ErrNoEffect)
		}
		if err := lockers.Sleep(ctx, l.env.Clock, l.opts.AcquireLockRetry); err != nil {
			break
		}
	}
	return nil, l.timeout(ctx, id)
}

// setNX is the source's tryAcquire, `SET key token PX ttl NX` word for word
// (go-redis's SetNX would send EX for a whole number of seconds): true if
// we won the key, false on the nil reply of a key already held.
func (l *Locker) setNX(ctx context.Context, key, token string) (bool, error) {
	err := l.client.Do(ctx, "set", key, token, "PX", l.opts.RedisLockTimeout.Milliseconds(), "NX").Err()
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, goredis.Nil):
		return false, nil
	}
	return false, err
}

func (l *Locker) timeout(ctx context.Context, id string) error {
	if err := context.Cause(ctx); err != nil {
		return fmt.Errorf("%s: lock %q: %w: %w: %w", Name, id, ErrLockTimeout, err, lockers.ErrNoEffect)
	}
	return fmt.Errorf("%s: lock %q: %w after %v: %w", Name, id, ErrLockTimeout, l.opts.AcquireLockTimeout, lockers.ErrNoEffect)
}

// hold is the source's path after a won SET: subscribe to release requests,
// give the key back if that fails or if the call was stopped or ran out of
// time meanwhile, else start the watchdog.
func (l *Locker) hold(ctx context.Context, id, key, channel, token string, deadline time.Time) (lockers.Lease, error) {
	ls := &lease{
		l: l, id: id, key: key, token: token,
		asked: make(chan struct{}),
		lost:  make(chan struct{}),
	}
	cleanup, err := l.sub.subscribe(ctx, channel, ls.requestRelease)
	if err != nil {
		// The source releases with errors ignored, then rethrows.
		rctx, cancel := l.rollbackContext(ctx)
		_, rerr := ls.release(rctx)
		cancel()
		if rerr != nil {
			return nil, fmt.Errorf("%s: lock %q: subscribe: %w (indeterminate: releasing the won key failed: %v)", Name, id, err, rerr)
		}
		return nil, fmt.Errorf("%s: lock %q: subscribe: %w (won key released): %w", Name, id, err, lockers.ErrNoEffect)
	}
	ls.cleanup = cleanup
	if ctx.Err() != nil || !l.env.Clock.Now().Before(deadline) {
		rctx, cancel := l.rollbackContext(ctx)
		_, err := ls.releaseOwnership(rctx)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("%s: lock %q: giving back a key won too late: %w", Name, id, err)
		}
		return nil, l.timeout(ctx, id)
	}
	ls.acquired = true
	ls.watchCtx, ls.stopWatch = context.WithCancel(context.Background())
	ls.watchDone = make(chan struct{})
	l.mu.Lock()
	l.leases[ls] = struct{}{}
	l.mu.Unlock()
	go ls.watch()
	return ls, nil
}

// rollbackContext bounds a give-back that the source runs however its
// caller was stopped: the caller's values, not its cancellation, and at
// most one TTL on the client's clock, after which the key is gone anyway.
func (l *Locker) rollbackContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return clockContext(context.WithoutCancel(ctx), l.env.Clock, l.opts.RedisLockTimeout)
}

// clockContext returns a child of parent cancelled once d has passed on
// clock.
func clockContext(parent context.Context, clock lockers.Clock, d time.Duration) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(parent)
	fired := clock.After(d)
	go func() {
		select {
		case <-fired:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// lease is one RedisEngineLock that holds its key.
type lease struct {
	l     *Locker
	id    string
	key   string
	token string

	mu       sync.Mutex
	acquired bool
	cleanup  func(context.Context) error

	watchCtx  context.Context
	stopWatch context.CancelFunc
	watchDone chan struct{}

	asked   chan struct{}
	askOnce sync.Once
	lost    chan struct{}
}

var (
	_ lockers.Lease            = (*lease)(nil)
	_ lockers.ReleaseRequester = (*lease)(nil)
)

func (ls *lease) Token() uint64                     { return 0 }
func (ls *lease) Lost() <-chan struct{}             { return ls.lost }
func (ls *lease) ReleaseRequested() <-chan struct{} { return ls.asked }

// requestRelease is the source's requestRelease callback: the holder is
// asked to let go. Only the first request closes the channel.
func (ls *lease) requestRelease() {
	ls.askOnce.Do(func() { close(ls.asked) })
}

// watch is the source's watchdog: every floor(ttl/2) ms, extend the key's
// TTL if it still holds our token. A "not ours" answer stops the watchdog
// and asks the holder to let go; the port also closes Lost, since the key
// is then certainly not ours. An error is ignored: the next tick retries.
func (ls *lease) watch() {
	defer close(ls.watchDone)
	ttl := ls.l.opts.RedisLockTimeout
	ttlMs := ttl.Milliseconds()
	interval := time.Duration(ttlMs/2) * time.Millisecond
	clock := ls.l.env.Clock
	next := clock.After(interval)
	for {
		select {
		case <-ls.watchCtx.Done():
			return
		case <-next:
		}
		// setInterval arms the next tick as this one starts.
		next = clock.After(interval)
		ctx, cancel := clockContext(ls.watchCtx, clock, interval)
		script := extendScript
		if ls.l.opts.Defect == DefectBlindExtend {
			script = blindExtendScript
		}
		n, err := ls.l.client.Eval(ctx, script, []string{ls.key}, ls.token, strconv.FormatInt(ttlMs, 10)).Int()
		cancel()
		if ls.watchCtx.Err() != nil {
			return
		}
		if err != nil {
			ls.l.env.Logf("%s: lock %q: extend failed, retrying next tick: %v", Name, ls.id, err)
			continue
		}
		if n != 1 {
			ls.l.env.Logf("%s: lock %q: extend found the key no longer ours", Name, ls.id)
			close(ls.lost)
			ls.requestRelease()
			return
		}
	}
}

// stopWatchdog is clearInterval, plus waiting for a tick in flight, whose
// extend it cancels, so that no goroutine outlives the lease.
func (ls *lease) stopWatchdog() {
	ls.stopWatch()
	<-ls.watchDone
}

// Unlock is RedisEngineLock.unlock: refuse a lease already unlocked, stop
// the watchdog, unsubscribe, then compare-and-delete even if the
// unsubscribe failed.
func (ls *lease) Unlock(ctx context.Context) error {
	ls.mu.Lock()
	if !ls.acquired {
		ls.mu.Unlock()
		return fmt.Errorf("%s: unlock %q: %w: %w", Name, ls.id, ErrNotLocked, lockers.ErrNoEffect)
	}
	ls.acquired = false
	ls.mu.Unlock()
	ls.stopWatchdog()
	ls.l.mu.Lock()
	delete(ls.l.leases, ls)
	ls.l.mu.Unlock()
	freed, err := ls.releaseOwnership(ctx)
	switch {
	case err != nil:
		return fmt.Errorf("%s: unlock %q: %w", Name, ls.id, err)
	case !freed:
		return fmt.Errorf("%s: unlock %q: %w: %w", Name, ls.id, ErrNotOwner, lockers.ErrNoEffect)
	}
	return nil
}

// releaseOwnership is the source's: unsubscribe, then, as its finally,
// compare-and-delete. freed says whether the delete removed our key. The
// error is the release's if it failed (the finally's throw wins), else the
// unsubscribe's; it wraps ErrNoEffect only when the release surely freed
// nothing.
func (ls *lease) releaseOwnership(ctx context.Context) (freed bool, err error) {
	ls.mu.Lock()
	cleanup := ls.cleanup
	ls.cleanup = nil
	ls.mu.Unlock()
	var cerr error
	if cleanup != nil {
		cerr = cleanup(ctx)
	}
	freed, rerr := ls.release(ctx)
	switch {
	case rerr != nil:
		return false, fmt.Errorf("compare-and-delete: %w (indeterminate)", rerr)
	case cerr != nil && freed:
		return true, fmt.Errorf("unsubscribe: %w (the key was released)", cerr)
	case cerr != nil:
		return false, fmt.Errorf("unsubscribe: %w (%w): %w", cerr, ErrNotOwner, lockers.ErrNoEffect)
	}
	return freed, nil
}

// release runs the compare-and-delete script.
func (ls *lease) release(ctx context.Context) (freed bool, err error) {
	n, err := ls.l.client.Eval(ctx, releaseScript, []string{ls.key}, ls.token).Int()
	return n == 1, err
}

// subscriber is the source's IoRedisClient subscriber side: one connection
// for every lock of this client, one handler per channel, messages
// dispatched by channel name.
type subscriber struct {
	ps  *goredis.PubSub
	env lockers.Env

	mu       sync.Mutex
	handlers map[string]func()
	// waiters, by "<kind> <channel>", are closed when the server confirms
	// that (un)subscription: ioredis's subscribe() and unsubscribe()
	// resolve on that reply.
	waiters map[string][]chan struct{}
	// reading is closed when the current reader goroutine ends; nil while
	// none runs. A reader runs only while the connection has channels.
	reading chan struct{}
	closed  bool
	stop    chan struct{}
}

func newSubscriber(client *goredis.Client, env lockers.Env) *subscriber {
	return &subscriber{
		ps:       client.Subscribe(context.Background()), // connects on first use
		env:      env,
		handlers: map[string]func(){},
		waiters:  map[string][]chan struct{}{},
		stop:     make(chan struct{}),
	}
}

var errSubscriberClosed = errors.New("subscriber closed")

// subscribe is IoRedisClient.subscribe: SUBSCRIBE, wait for the server's
// confirmation, with the handler in place (see the package doc for why it
// is installed first). The returned cleanup removes the handler, then
// UNSUBSCRIBEs and waits for that confirmation, as ioredis's
// unsubscribe() does.
func (s *subscriber) subscribe(ctx context.Context, channel string, onMessage func()) (func(context.Context) error, error) {
	s.mu.Lock()
	s.handlers[channel] = onMessage
	s.mu.Unlock()
	err := s.confirmed(ctx, "subscribe", channel, func() error { return s.ps.Subscribe(ctx, channel) })
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		delete(s.handlers, channel)
		return nil, err
	}
	return func(ctx context.Context) error {
		s.mu.Lock()
		delete(s.handlers, channel)
		s.mu.Unlock()
		return s.confirmed(ctx, "unsubscribe", channel, func() error { return s.ps.Unsubscribe(ctx, channel) })
	}, nil
}

// confirmed sends a (un)subscription with send and waits until the server
// confirms it, ctx ends or the subscriber is closed. It starts the reader
// if none runs.
func (s *subscriber) confirmed(ctx context.Context, kind, channel string, send func() error) error {
	w := make(chan struct{})
	k := kind + " " + channel
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return errSubscriberClosed
	}
	s.waiters[k] = append(s.waiters[k], w)
	if s.reading == nil {
		s.reading = make(chan struct{})
		go s.read(s.reading)
	}
	reading := s.reading
	s.mu.Unlock()

	err := send()
	if err == nil {
		select {
		case <-w:
			return nil
		case <-ctx.Done():
			err = ctx.Err()
		case <-reading:
			// The reader ends right after the confirmation that leaves
			// the connection without channels: both may be ready.
			select {
			case <-w:
				return nil
			default:
			}
			err = errSubscriberClosed
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ws := s.waiters[k]
	for i, x := range ws {
		if x == w {
			s.waiters[k] = append(ws[:i], ws[i+1:]...)
			break
		}
	}
	if len(s.waiters[k]) == 0 {
		delete(s.waiters, k)
	}
	return err
}

// read reads the subscriber connection until close, or until the server
// says the connection has no channel left and nobody waits for one: an
// idle client then has no goroutine. The connection stays open, as
// ioredis's does. After a read error go-redis reconnects and resubscribes
// on the next read, as ioredis does; the wait between attempts is
// ioredis's default retryStrategy, min(attempt·50 ms, 2 s), on the client's
// clock.
func (s *subscriber) read(done chan struct{}) {
	defer close(done)
	failures := 0
	for {
		msg, err := s.ps.Receive(context.Background())
		if err != nil {
			select {
			case <-s.stop:
				return
			default:
			}
			failures++
			select {
			case <-s.env.Clock.After(min(time.Duration(failures)*50*time.Millisecond, 2*time.Second)):
			case <-s.stop:
				return
			}
			continue
		}
		failures = 0
		switch m := msg.(type) {
		case *goredis.Subscription:
			s.mu.Lock()
			k := m.Kind + " " + m.Channel
			for _, w := range s.waiters[k] {
				close(w)
			}
			delete(s.waiters, k)
			if m.Count == 0 && len(s.waiters) == 0 && len(s.handlers) == 0 {
				s.reading = nil
				s.mu.Unlock()
				return
			}
			s.mu.Unlock()
		case *goredis.Message:
			s.mu.Lock()
			h := s.handlers[m.Channel]
			s.mu.Unlock()
			if h != nil {
				h()
			}
		}
	}
}

// close closes the subscriber connection and waits for the reader.
func (s *subscriber) close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	reading := s.reading
	close(s.stop)
	s.mu.Unlock()
	s.ps.Close()
	if reading != nil {
		<-reading
	}
}
