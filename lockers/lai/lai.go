package lai

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"cloud.google.com/go/storage"
	"github.com/googleapis/gax-go/v2"
	"google.golang.org/api/googleapi"

	"github.com/lockcheck/lockcheck/lockers"
	"github.com/lockcheck/lockcheck/lockers/internal/gcsclient"
)

// Name is the locker's name in the harness's list.
const Name = "lai"

// The source's defaults (constants.rb; refresh_interval and the lock
// timeout are derived in lock.rb).
const (
	DefaultTTL               = 300 * time.Second
	DefaultMaxRefreshFails   = 3
	DefaultBackoffMin        = 1 * time.Second
	DefaultBackoffMax        = 30 * time.Second
	DefaultBackoffMultiplier = 2.0
)

// The storage client's retries, as the source's Ruby client (google-cloud-
// storage 1.34.1 on google-apis-core 0.4.1) configured them: 3 retries of
// every call on 5xx, 429 and transmission errors, exponential from 1 s.
const (
	clientMaxAttempts   = 4
	clientRetryInitial  = 1 * time.Second
	clientRetryMax      = 60 * time.Second
	clientRetryMultiply = 2.0
)

// ChunkSize is the Writer.ChunkSize of every upload: the smallest the client
// accepts. Any non-zero value keeps the client's upload retries (zero turns
// them off); the default 16 MiB costs 16 MiB per open writer. The body is
// empty, so every create is one request.
const ChunkSize = googleapi.MinUploadChunkSize

var (
	// ErrTimeout is the source's TimeoutError: the lock was not acquired
	// within the lock timeout.
	ErrTimeout = errors.New("failed to acquire lock within timeout")
	// ErrAlreadyLocked is the source's AlreadyLockedError: this client
	// already holds the key according to its own state.
	ErrAlreadyLocked = errors.New("already locked")
	// ErrNotLocked is the source's NotLockedError: Unlock of a lease this
	// client no longer holds according to its own state.
	ErrNotLocked = errors.New("not locked")
	// ErrWasNotHeld is the source's `false` from unlock: the delete found
	// the object gone (404) or of another metageneration (412).
	ErrWasNotHeld = errors.New("lock object was already deleted or changed")
	// ErrBadOptions reports options the source refuses, or a missing Config.
	ErrBadOptions = errors.New("lai: bad options")
)

// Config names the bucket the lock objects live in and where to reach it.
type Config struct {
	// Endpoint is the JSON API endpoint, e.g.
	// "http://127.0.0.1:4443/storage/v1/"; empty means the client's default.
	Endpoint string
	// Bucket holds the lock objects; it must exist.
	Bucket string

	_ struct{}
}

// Options sets the source's parameters. The zero value is the source's
// defaults.
type Options struct {
	// TimeScale multiplies every default duration alike, keeping their
	// ratios: the TTL, the refresh interval, the backoff bounds, the lock
	// timeout and the storage client's retry backoff. 0.1 gives a 30 s TTL,
	// a 3.33 s refresh interval, a 0.1–3 s backoff and a 60 s timeout. Zero
	// means 1.
	TimeScale float64
	// TTL, RefreshInterval, BackoffMin, BackoffMax and LockTimeout override
	// one duration each when positive, taken as given, not scaled. An
	// unset RefreshInterval is TTL/(3·MaxRefreshFails) and an unset
	// LockTimeout 2·TTL of the TTL in force, as in the source.
	TTL             time.Duration
	RefreshInterval time.Duration
	BackoffMin      time.Duration
	BackoffMax      time.Duration
	LockTimeout     time.Duration
	// MaxRefreshFails and BackoffMultiplier override when positive.
	MaxRefreshFails   int
	BackoffMultiplier float64
	// Identity overrides the instance identity written into the lock
	// object; empty means env.Identity (see the package doc).
	Identity string

	_ struct{}
}

func (o Options) resolve() (Options, error) {
	if err := lockers.ApplyTimeScale(&o.TimeScale,
		lockers.Published{Option: &o.TTL, Default: DefaultTTL},
		lockers.Published{Option: &o.BackoffMin, Default: DefaultBackoffMin},
		lockers.Published{Option: &o.BackoffMax, Default: DefaultBackoffMax}); err != nil {
		return o, fmt.Errorf("%w: %w", ErrBadOptions, err)
	}
	if o.MaxRefreshFails <= 0 {
		o.MaxRefreshFails = DefaultMaxRefreshFails
	}
	if o.BackoffMultiplier <= 0 {
		o.BackoffMultiplier = DefaultBackoffMultiplier
	}
	// The source checks only a refresh interval given explicitly.
	if o.RefreshInterval > 0 && o.RefreshInterval >= o.TTL/time.Duration(o.MaxRefreshFails) {
		return o, fmt.Errorf("%w: refresh_interval must be smaller than ttl / max_refresh_fails", ErrBadOptions)
	}
	if o.RefreshInterval <= 0 {
		o.RefreshInterval = o.TTL / time.Duration(3*o.MaxRefreshFails)
	}
	if o.BackoffMax < o.BackoffMin {
		return o, fmt.Errorf("%w: backoff_max may not be smaller than backoff_min", ErrBadOptions)
	}
	if o.LockTimeout <= 0 {
		o.LockTimeout = 2 * o.TTL
	}
	if o.RefreshInterval <= 0 {
		return o, fmt.Errorf("%w: TimeScale %v rounds a duration to zero", ErrBadOptions, o.TimeScale)
	}
	return o, nil
}

// Locker is one client's set of Lock instances, one per key, all with the
// same identity.
type Locker struct {
	env      lockers.Env
	opts     Options
	identity string
	client   *storage.Client
	bucket   *storage.BucketHandle

	mu sync.Mutex
	// held is the source's internal state (@owner) per key.
	held map[string]*lease
	// rng is the backoff jitter, seeded from env.Seed.
	rng *rand.Rand

	// life ends at Close, which stops every refresher and waits for it,
	// so that no request outlives the locker.
	life     context.Context
	endLife  context.CancelFunc
	watchers sync.WaitGroup
}

var _ lockers.Locker = (*Locker)(nil)

// New returns a client's locker on cfg's bucket. Every request goes through
// env.HTTP; the client sends no credentials.
func New(ctx context.Context, cfg Config, env lockers.Env, opts Options) (*Locker, error) {
	opts, err := opts.resolve()
	if err != nil {
		return nil, err
	}
	if cfg.Bucket == "" {
		return nil, fmt.Errorf("%w: Config.Bucket is empty", ErrBadOptions)
	}
	if env.HTTP == nil || env.Clock == nil {
		return nil, fmt.Errorf("%w: Env.HTTP and Env.Clock are required", ErrBadOptions)
	}
	client, err := gcsclient.New(ctx, cfg.Endpoint, countingClient(env.HTTP))
	if err != nil {
		return nil, fmt.Errorf("lai: storage client: %w", err)
	}
	scale := lockers.Scale(opts.TimeScale).Of
	client.SetRetry(
		storage.WithPolicy(storage.RetryAlways),
		storage.WithMaxAttempts(clientMaxAttempts),
		storage.WithBackoff(gax.Backoff{
			Initial:    scale(clientRetryInitial),
			Max:        scale(clientRetryMax),
			Multiplier: clientRetryMultiply,
		}),
	)
	rng := rand.New(rand.NewPCG(env.Seed, 0x6c6169))
	identity := opts.Identity
	if identity == "" {
		identity = env.Identity
	}
	if identity == "" {
		// The source's default: a random per-process prefix (12 random
		// bytes in hex) and the pid, here drawn from the seed.
		identity = fmt.Sprintf("%016x%08x-%d", rng.Uint64(), rng.Uint32(), rng.IntN(1<<22))
	}
	life, endLife := context.WithCancel(context.Background())
	return &Locker{
		env: env, opts: opts, identity: identity,
		client: client, bucket: client.Bucket(cfg.Bucket),
		held: map[string]*lease{},
		rng:  rng,
		life: life, endLife: endLife,
	}, nil
}

// Options returns the parameters in force, defaults and scale applied.
func (l *Locker) Options() Options { return l.opts }

// Identity is the instance identity this locker writes into lock objects.
func (l *Locker) Identity() string { return l.identity }

// Close stops every lease's refresher, cancelling a refresh in flight,
// waits for them, then closes the storage client. Leases already handed
// out stop working.
func (l *Locker) Close() error {
	l.endLife()
	l.watchers.Wait()
	return l.client.Close()
}

// counterKey carries, in a request's context, the budget of HTTP requests
// of one storage call: the only way to learn whether the client retried it,
// and the way to stop it after the source's client would have.
type counterKey struct{}

// errRetriesExhausted ends a call whose client would send a fifth request:
// the source's client makes at most clientMaxAttempts, and the Go client's
// upload retries ignore WithMaxAttempts.
var errRetriesExhausted = errors.New("storage call retried the maximum number of times")

// budget counts the requests of one call and cancels it past the maximum.
type budget struct {
	sent   atomic.Int64
	cancel context.CancelFunc
	last   atomic.Value // string: the last reply's status or error
}

// countingTransport counts requests, then sends them through the transport
// of the client the harness gave, read at each request so that a harness
// that swaps it keeps its faults.
type countingTransport struct{ env *http.Client }

func (t countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	b, _ := r.Context().Value(counterKey{}).(*budget)
	if b != nil && b.sent.Add(1) > clientMaxAttempts {
		b.sent.Add(-1)
		b.cancel()
		return nil, errRetriesExhausted
	}
	base := t.env.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	resp, err := base.RoundTrip(r)
	if b != nil {
		if err != nil {
			b.last.Store(err.Error())
		} else {
			b.last.Store(resp.Status)
		}
	}
	return resp, err
}

func countingClient(c *http.Client) *http.Client {
	cc := *c
	cc.Transport = countingTransport{env: c}
	return &cc
}

// counted returns ctx carrying a fresh budget; call done when the call
// returns, with its error, to learn how many requests it made and to turn
// the cancellation of an exhausted budget into an error that says so.
func counted(ctx context.Context) (context.Context, func(error) (int64, error)) {
	ctx, cancel := context.WithCancel(ctx)
	b := &budget{cancel: cancel}
	ctx = context.WithValue(ctx, counterKey{}, b)
	return ctx, func(err error) (int64, error) {
		cancel()
		if err != nil && b.sent.Load() >= clientMaxAttempts && ctx.Err() != nil && errors.Is(err, context.Canceled) {
			last, _ := b.last.Load().(string)
			err = fmt.Errorf("%w (%d requests, last: %s)", errRetriesExhausted, b.sent.Load(), last)
		}
		return b.sent.Load(), err
	}
}

// Lock is Lock#lock: create the lock object; on 412 investigate, retrying
// at once or after a jittered backoff, until the lock timeout.
func (l *Locker) Lock(ctx context.Context, key string) (lockers.Lease, error) {
	l.mu.Lock()
	_, owned := l.held[key]
	l.mu.Unlock()
	if owned {
		return nil, fmt.Errorf("%s: lock %q: %w: %w", Name, key, ErrAlreadyLocked, lockers.ErrNoEffect)
	}
	a := &acquisition{l: l, key: key, obj: l.bucket.Object(key), definite: true}
	metageneration, err := a.run(ctx)
	if err != nil {
		return nil, err
	}
	return l.startLease(key, metageneration), nil
}

// acquisition is one Lock call: retry_with_backoff_until_success and its
// block.
type acquisition struct {
	l   *Locker
	key string
	obj *storage.ObjectHandle
	// definite stays true while every create of this call definitely had
	// no effect; then, and only then, Lock reports attempts and its errors
	// wrap lockers.ErrNoEffect.
	definite bool
}

// outcome is what the source's block returns.
type outcome int

const (
	success outcome = iota
	retryImmediately
	retryLater
)

func (a *acquisition) run(ctx context.Context) (int64, error) {
	l := a.l
	// The deadline is checked only after a failed attempt, as the source's
	// monotonic deadline is: an attempt in flight, or a backoff sleep, is
	// not cut short by it.
	deadline := l.env.Clock.After(l.opts.LockTimeout)
	passed := false
	sleep := l.opts.BackoffMin
	for {
		out, metageneration, err := a.attempt(ctx)
		if err != nil {
			return 0, a.wrap(err)
		}
		if out == success {
			return metageneration, nil
		}
		if !passed {
			select {
			case <-deadline:
				passed = true
			default:
			}
		}
		if passed {
			return 0, a.wrap(fmt.Errorf("%s: lock %q: %w (%v)", Name, a.key, ErrTimeout, l.opts.LockTimeout))
		}
		if out == retryImmediately {
			continue
		}
		l.env.Logf("%s: lock %q: unable to acquire lock, will try again in %v", Name, a.key, sleep)
		if err := lockers.Sleep(ctx, l.env.Clock, sleep); err != nil {
			return 0, a.wrap(fmt.Errorf("%s: lock %q: %w", Name, a.key, err))
		}
		sleep = l.nextSleep(sleep)
	}
}

// nextSleep is calc_sleep_time: decorrelated jitter,
// min(rand(backoff_min .. last·multiplier), backoff_max).
func (l *Locker) nextSleep(last time.Duration) time.Duration {
	lo := float64(l.opts.BackoffMin)
	hi := float64(last) * l.opts.BackoffMultiplier
	l.mu.Lock()
	r := l.rng.Float64()
	l.mu.Unlock()
	d := lo
	if hi > lo {
		d = lo + r*(hi-lo)
	}
	return min(time.Duration(d), l.opts.BackoffMax)
}

func (a *acquisition) wrap(err error) error {
	if a.definite {
		return fmt.Errorf("%w: %w", err, lockers.ErrNoEffect)
	}
	return fmt.Errorf("%w (indeterminate: an earlier create may have committed)", err)
}

// attempt is the block given to retry_with_backoff_until_success. An error
// ends Lock: the source lets every error but the create's 412 and the
// delete's 404/412 propagate out of lock.
func (a *acquisition) attempt(ctx context.Context) (outcome, int64, error) {
	l := a.l
	if a.definite {
		l.env.MarkAttempt()
	}
	attrs, sent, err := a.create(ctx)
	if err == nil {
		return success, attrs.Metageneration, nil
	}
	if !definiteNoEffect(sent, err) {
		a.definite = false
	}
	if !isStatus(err, http.StatusPreconditionFailed) {
		return 0, 0, fmt.Errorf("%s: lock %q: create: %w", Name, a.key, err)
	}
	rctx, done := counted(ctx)
	attrs, err = a.obj.Attrs(rctx)
	_, err = done(err)
	switch {
	case errors.Is(err, storage.ErrObjectNotExist):
		l.env.Logf("%s: lock %q: lock was deleted right after having created it, retrying", Name, a.key)
		return retryImmediately, 0, nil
	case err != nil:
		return 0, 0, fmt.Errorf("%s: lock %q: read: %w", Name, a.key, err)
	}
	if attrs.Metadata["identity"] == l.identity {
		l.env.Logf("%s: lock %q: lock was already owned by this instance, but was abandoned; resetting lock", Name, a.key)
		if _, err := deleteLockObject(ctx, a.obj, attrs.Metageneration); err != nil {
			return 0, 0, fmt.Errorf("%s: lock %q: delete abandoned lock: %w", Name, a.key, err)
		}
		return retryImmediately, 0, nil
	}
	if l.stale(attrs) {
		l.env.Logf("%s: lock %q: lock is stale; resetting lock", Name, a.key)
		if _, err := deleteLockObject(ctx, a.obj, attrs.Metageneration); err != nil {
			return 0, 0, fmt.Errorf("%s: lock %q: delete stale lock: %w", Name, a.key, err)
		}
	}
	return retryLater, 0, nil
}

// create is create_lock_object: an empty object, no-store, metadata
// {expires_at, identity}, ifGenerationMatch=0. It returns how many HTTP
// requests the client made for it.
func (a *acquisition) create(ctx context.Context) (*storage.ObjectAttrs, int64, error) {
	l := a.l
	ctx, done := counted(ctx)
	w := a.obj.If(storage.Conditions{DoesNotExist: true}).NewWriter(ctx)
	w.ChunkSize = ChunkSize
	w.CacheControl = "no-store"
	w.Metadata = map[string]string{
		"expires_at": formatExpiry(l.env.Clock.Now().Add(l.opts.TTL)),
		"identity":   l.identity,
	}
	sent, err := done(w.Close())
	if err != nil {
		return nil, sent, err
	}
	return w.Attrs(), sent, nil
}

// stale is lock_stale?: the client's clock past expires_at. A missing or
// unparsable expires_at is 0.0 in Ruby, so always stale.
func (l *Locker) stale(attrs *storage.ObjectAttrs) bool {
	return unixSeconds(l.env.Clock.Now()) > rubyToF(attrs.Metadata["expires_at"])
}

// deleteLockObject is delete_lock_object: delete with
// ifMetagenerationMatch; true if it deleted, false on 404 or 412, an
// error otherwise.
func deleteLockObject(ctx context.Context, obj *storage.ObjectHandle, metageneration int64) (bool, error) {
	deleted, _, err := deleteCounted(ctx, obj, metageneration)
	return deleted, err
}

// deleteCounted is deleteLockObject that also returns how many HTTP
// requests the delete took.
func deleteCounted(ctx context.Context, obj *storage.ObjectHandle, metageneration int64) (bool, int64, error) {
	ctx, done := counted(ctx)
	sent, err := done(obj.If(storage.Conditions{MetagenerationMatch: metageneration}).Delete(ctx))
	switch {
	case err == nil:
		return true, sent, nil
	case errors.Is(err, storage.ErrObjectNotExist), isStatus(err, http.StatusPreconditionFailed):
		return false, sent, nil
	default:
		return false, sent, err
	}
}

// definiteNoEffect says whether a failed write surely changed nothing: it
// never reached the server, or its one and only request got a reply the
// server gives without writing (a 4xx other than 408 and 429). After a
// retry, a 412 or 404 may be the work of our own first attempt.
func definiteNoEffect(sent int64, err error) bool {
	if sent == 0 {
		return true
	}
	var gerr *googleapi.Error
	if sent != 1 || !errors.As(err, &gerr) {
		return false
	}
	return gerr.Code >= 400 && gerr.Code < 500 && gerr.Code != http.StatusRequestTimeout && gerr.Code != http.StatusTooManyRequests
}

func isStatus(err error, code int) bool {
	var gerr *googleapi.Error
	return errors.As(err, &gerr) && gerr.Code == code
}

// unixSeconds is Ruby's Time#to_f.
func unixSeconds(t time.Time) float64 {
	return float64(t.Unix()) + float64(t.Nanosecond())/1e9
}

// formatExpiry is Ruby's Float#to_s of Time#to_f: the shortest decimal that
// reads back exactly, with ".0" when it is whole.
func formatExpiry(t time.Time) string {
	s := strconv.FormatFloat(unixSeconds(t), 'f', -1, 64)
	if !strings.Contains(s, ".") {
		s += ".0"
	}
	return s
}

// rubyToF is Ruby's String#to_f (and nil.to_f): the longest leading decimal
// number, 0 when there is none.
func rubyToF(s string) float64 {
	s = strings.TrimLeft(s, " \t\n\v\f\r")
	end, digits := 0, false
	if end < len(s) && (s[end] == '+' || s[end] == '-') {
		end++
	}
	for end < len(s) && s[end] >= '0' && s[end] <= '9' {
		end, digits = end+1, true
	}
	if end+1 < len(s) && s[end] == '.' && s[end+1] >= '0' && s[end+1] <= '9' {
		end++
		for end < len(s) && s[end] >= '0' && s[end] <= '9' {
			end++
		}
	}
	if !digits {
		return 0
	}
	if end < len(s) && (s[end] == 'e' || s[end] == 'E') {
		e := end + 1
		if e < len(s) && (s[e] == '+' || s[e] == '-') {
			e++
		}
		if e < len(s) && s[e] >= '0' && s[e] <= '9' {
			for e < len(s) && s[e] >= '0' && s[e] <= '9' {
				e++
			}
			end = e
		}
	}
	f, err := strconv.ParseFloat(s[:end], 64)
	if err != nil {
		return 0
	}
	return f
}

// lease is one held lock and its refresher.
type lease struct {
	l   *Locker
	key string
	obj *storage.ObjectHandle

	mu sync.Mutex
	// metageneration is the remembered one, written by the refresher and
	// read by Unlock.
	metageneration int64
	// stopped is the source's refresher generation moving on: a refresh
	// that completes after it does not store its metageneration.
	stopped bool

	stop     chan struct{}
	done     chan struct{}
	lost     chan struct{}
	lostOnce sync.Once
	// cancel ends the refresh in flight when the locker is abandoned by
	// Unlock's context; see Unlock.
	cancel context.CancelFunc
}

var _ lockers.Lease = (*lease)(nil)

func (l *Locker) startLease(key string, metageneration int64) *lease {
	ctx, cancel := context.WithCancel(l.life)
	ls := &lease{
		l: l, key: key, obj: l.bucket.Object(key),
		metageneration: metageneration,
		stop:           make(chan struct{}),
		done:           make(chan struct{}),
		lost:           make(chan struct{}),
		cancel:         cancel,
	}
	l.mu.Lock()
	l.held[key] = ls
	l.mu.Unlock()
	l.watchers.Add(1)
	go func() {
		defer l.watchers.Done()
		ls.refresh(ctx)
	}()
	return ls
}

func (ls *lease) Token() uint64         { return 0 }
func (ls *lease) Lost() <-chan struct{} { return ls.lost }

// refresh is refresher_thread_main with work_regularly: every
// refresh_interval, measured from the start of the previous refresh,
// refresh the lock; stop on the first permanent failure or after
// max_refresh_fails temporary ones in a row, and declare the lock
// unhealthy.
func (ls *lease) refresh(ctx context.Context) {
	defer close(ls.done)
	clock := ls.l.env.Clock
	fails := 0
	next := clock.After(ls.l.opts.RefreshInterval)
	for {
		select {
		case <-ls.stop:
			return
		case <-ctx.Done(): // Close
			return
		case <-next:
		}
		next = clock.After(ls.l.opts.RefreshInterval)
		permanent, err := ls.refreshOnce(ctx)
		switch {
		case err == nil:
			fails = 0
			continue
		case permanent:
			ls.l.env.Logf("%s: lock %q: refresh failed permanently (%v); declaring lock unhealthy", Name, ls.key, err)
		default:
			fails++
			ls.l.env.Logf("%s: lock %q: error refreshing lock: %v", Name, ls.key, err)
			if fails < ls.l.opts.MaxRefreshFails {
				continue
			}
			ls.l.env.Logf("%s: lock %q: refresh failed %d times in succession; declaring lock unhealthy", Name, ls.key, fails)
		}
		if ls.isStopped() {
			// The source's refresh_lock reports success once the
			// refresher was shut down: nobody is told.
			return
		}
		ls.lostOnce.Do(func() { close(ls.lost) })
		return
	}
}

func (ls *lease) isStopped() bool {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	return ls.stopped
}

// refreshOnce is refresh_lock: expires_at = now + ttl with
// ifMetagenerationMatch=<remembered>; 412 and 404 are permanent failures.
func (ls *lease) refreshOnce(ctx context.Context) (permanent bool, err error) {
	ls.mu.Lock()
	if ls.stopped {
		ls.mu.Unlock()
		return false, nil
	}
	remembered := ls.metageneration
	ls.mu.Unlock()
	ctx, done := counted(ctx)
	attrs, err := ls.obj.If(storage.Conditions{MetagenerationMatch: remembered}).Update(ctx, storage.ObjectAttrsToUpdate{
		Metadata: map[string]string{"expires_at": formatExpiry(ls.l.env.Clock.Now().Add(ls.l.opts.TTL))},
	})
	_, err = done(err)
	switch {
	case isStatus(err, http.StatusPreconditionFailed):
		return true, errors.New("lock object has an unexpected metageneration number")
	case errors.Is(err, storage.ErrObjectNotExist):
		return true, errors.New("lock object has been unexpectedly deleted")
	case err != nil:
		return false, err
	}
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if !ls.stopped {
		ls.metageneration = attrs.Metageneration
	}
	return false, nil
}

// Unlock is Lock#unlock: take the remembered metageneration and shut the
// refresher down, wait for it, then delete with
// ifMetagenerationMatch=<that metageneration>.
func (ls *lease) Unlock(ctx context.Context) error {
	l := ls.l
	l.mu.Lock()
	if l.held[ls.key] != ls {
		l.mu.Unlock()
		return fmt.Errorf("%s: unlock %q: %w: %w", Name, ls.key, ErrNotLocked, lockers.ErrNoEffect)
	}
	delete(l.held, ls.key)
	l.mu.Unlock()

	ls.mu.Lock()
	metageneration := ls.metageneration
	ls.stopped = true
	ls.mu.Unlock()
	close(ls.stop)
	select {
	case <-ls.done:
	case <-ctx.Done():
		// The source's thread.join has no bound; the caller's context is
		// ours. The refresh in flight is abandoned.
		ls.cancel()
		return fmt.Errorf("%s: unlock %q: waiting for the refresher: %w: %w", Name, ls.key, ctx.Err(), lockers.ErrNoEffect)
	}
	ls.cancel()
	deleted, sent, err := deleteCounted(ctx, ls.obj, metageneration)
	switch {
	case err != nil:
		return fmt.Errorf("%s: unlock %q: %w", Name, ls.key, err)
	case deleted:
		return nil
	case sent == 1:
		return fmt.Errorf("%s: unlock %q: %w: %w", Name, ls.key, ErrWasNotHeld, lockers.ErrNoEffect)
	default:
		// A 404 after a retry may be our own first delete, committed.
		return fmt.Errorf("%s: unlock %q: %w (indeterminate: the delete was retried)", Name, ls.key, ErrWasNotHeld)
	}
}
