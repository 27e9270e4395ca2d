package tus616

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"cloud.google.com/go/storage"
	"google.golang.org/api/googleapi"

	"github.com/lockcheck/lockcheck/lockers"
	"github.com/lockcheck/lockcheck/lockers/internal/gcsclient"
)

// Name is the locker's name in the harness's list.
const Name = "tus616"

// The source's defaults.
const (
	DefaultAcquireLockTimeout = 30 * time.Second
	DefaultLockTTL            = 12 * time.Second
	DefaultWatchInterval      = 10 * time.Second
)

// ChunkSize is the Writer.ChunkSize of every upload: the smallest chunk the
// client accepts (256 KiB). Any non-zero value keeps the client's default
// retries of conditional uploads, which the source relies on through its own
// client; zero would turn them off, and the default 16 MiB costs 16 MiB per
// open writer. The lock's bodies are empty, so every upload is one request.
const ChunkSize = googleapi.MinUploadChunkSize

var (
	// ErrLockTimeout is the source's ERR_LOCK_TIMEOUT: the lock was not
	// taken before acquireLockTimeout, or before the context ended.
	ErrLockTimeout = errors.New("failed to acquire lock before timeout")
	// ErrBadOptions reports options the source refuses, or a missing Config.
	ErrBadOptions = errors.New("tus616: bad options")
)

// Config names the bucket the lock objects live in and where to reach it.
type Config struct {
	// Endpoint is the JSON API endpoint, e.g.
	// "http://127.0.0.1:4443/storage/v1/"; empty means the client's default
	// (storage.googleapis.com), which is what an in-process fake-gcs-server
	// without a listener answers to through its own HTTP client.
	Endpoint string
	// Bucket holds the lock objects; it must exist.
	Bucket string

	_ struct{}
}

// Options sets the source's three durations. The zero value is the
// source's defaults.
type Options struct {
	// TimeScale multiplies every default duration alike, keeping their
	// ratios: 0.1 gives a 3 s timeout, a 1.2 s TTL and a 1 s watch
	// interval. Zero means 1.
	TimeScale float64
	// AcquireLockTimeout, LockTTL and WatchInterval override one duration
	// each when positive; an override is taken as given, not scaled.
	AcquireLockTimeout time.Duration
	LockTTL            time.Duration
	WatchInterval      time.Duration

	_ struct{}
}

func (o Options) resolve() (Options, error) {
	if err := lockers.ApplyTimeScale(&o.TimeScale,
		lockers.Published{Option: &o.AcquireLockTimeout, Default: DefaultAcquireLockTimeout},
		lockers.Published{Option: &o.LockTTL, Default: DefaultLockTTL},
		lockers.Published{Option: &o.WatchInterval, Default: DefaultWatchInterval}); err != nil {
		return o, fmt.Errorf("%w: %w", ErrBadOptions, err)
	}
	if o.WatchInterval > o.AcquireLockTimeout {
		// The source: "watchInterval must be less than acquireLockTimeout".
		return o, fmt.Errorf("%w: watchInterval %v must be less than acquireLockTimeout %v",
			ErrBadOptions, o.WatchInterval, o.AcquireLockTimeout)
	}
	return o, nil
}

// Locker is one client's GCSLocker.
type Locker struct {
	env    lockers.Env
	opts   Options
	client *storage.Client
	bucket *storage.BucketHandle
	// life ends at Close, which stops every watcher and waits for it, so
	// that no request outlives the locker.
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
		return nil, fmt.Errorf("tus616: storage client: %w", err)
	}
	life, endLife := context.WithCancel(context.Background())
	return &Locker{env: env, opts: opts, client: client, bucket: client.Bucket(cfg.Bucket), life: life, endLife: endLife}, nil
}

// Options returns the durations in force, defaults and scale applied.
func (l *Locker) Options() Options { return l.opts }

// Close stops every lease's watcher, cancelling a tick in flight, waits
// for them, then closes the storage client. Leases already handed out stop
// working.
func (l *Locker) Close() error {
	l.endLife()
	l.watchers.Wait()
	return l.client.Close()
}

// counterKey carries, in a request's context, the counter of HTTP requests
// made on behalf of one storage call: the only way to learn whether the
// client retried it.
type counterKey struct{}

// countingTransport counts requests, then sends them through the
// transport of the client the harness gave, read at each request so that a
// harness that swaps it keeps its faults.
type countingTransport struct{ env *http.Client }

func (t countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if n, ok := r.Context().Value(counterKey{}).(*atomic.Int64); ok {
		n.Add(1)
	}
	base := t.env.Transport
	if base == nil {
		// What env.HTTP itself would use.
		base = http.DefaultTransport
	}
	return base.RoundTrip(r)
}

// countingClient is a copy of c (timeout, redirects, cookies) whose
// transport counts requests before handing them to c's.
func countingClient(c *http.Client) *http.Client {
	cc := *c
	cc.Transport = countingTransport{env: c}
	return &cc
}

// Lock is GCSLockHandler.lock: take the lock, retrying with a linear
// backoff, raced against acquireLockTimeout.
func (l *Locker) Lock(ctx context.Context, key string) (lockers.Lease, error) {
	// The race against the timeout: a timer on the client's clock cancels
	// the attempt in flight (see the package doc).
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	var timedOut atomic.Bool
	finished := make(chan struct{})
	defer close(finished)
	timeout := l.env.Clock.After(l.opts.AcquireLockTimeout)
	go func() {
		select {
		case <-timeout:
			timedOut.Store(true)
			cancel()
		case <-finished:
		}
	}()

	a := &acquisition{l: l, key: key, definite: true}
	for attempt := 0; ; attempt++ {
		if err := a.stopped(actx, &timedOut); err != nil {
			return nil, err
		}
		lease, err := a.take(actx, &timedOut)
		if lease != nil {
			return lease, nil
		}
		if err != nil {
			return nil, err
		}
		// Not taken: attempt 0 is followed at once by attempt 1 (the
		// source's setImmediate), attempt n by a wait of
		// n·watchInterval/3.
		wait := time.Duration(attempt) * l.opts.WatchInterval / 3
		select {
		case <-l.env.Clock.After(wait):
		case <-actx.Done():
		}
	}
}

// acquisition is the state of one Lock call.
type acquisition struct {
	l   *Locker
	key string
	// definite stays true while every create of this call definitely had
	// no effect; then, and only then, Lock reports attempts and its
	// errors wrap lockers.ErrNoEffect.
	definite bool
}

// stopped returns the Lock's error if the timeout fired or ctx ended.
func (a *acquisition) stopped(ctx context.Context, timedOut *atomic.Bool) error {
	if ctx.Err() == nil {
		return nil
	}
	var err error
	if timedOut.Load() {
		err = fmt.Errorf("%s: lock %q: %w after %v", Name, a.key, ErrLockTimeout, a.l.opts.AcquireLockTimeout)
	} else {
		err = fmt.Errorf("%s: lock %q: %w: %w", Name, a.key, ErrLockTimeout, context.Cause(ctx))
	}
	return a.wrap(err)
}

func (a *acquisition) wrap(err error) error {
	if a.definite {
		return fmt.Errorf("%w: %w", err, lockers.ErrNoEffect)
	}
	return fmt.Errorf("%w (indeterminate: an earlier create may have committed)", err)
}

// take is GCSLock.take: create the lock object; on any error, judge the
// lock's health, delete it and start over at once if unhealthy, else ask
// the holder to let go and report not taken (nil, nil).
func (a *acquisition) take(ctx context.Context, timedOut *atomic.Bool) (*lease, error) {
	l := a.l
	lock := l.bucket.Object(a.key + ".lock")
	release := l.bucket.Object(a.key + ".lock.release")
	for {
		if err := a.stopped(ctx, timedOut); err != nil {
			return nil, err
		}
		if a.definite {
			l.env.MarkAttempt()
		}
		exp := l.env.Clock.Now().Add(l.opts.LockTTL).UnixMilli()
		sent, err := create(ctx, lock, map[string]string{"exp": strconv.FormatInt(exp, 10)}, "no-store")
		if err == nil {
			// GCSLockFile.create reads the metadata it just wrote to learn
			// the metageneration; a failed read fails the create.
			var attrs *storage.ObjectAttrs
			attrs, err = lock.Attrs(ctx)
			if err == nil {
				return l.startLease(a.key, lock, release, attrs.Metageneration), nil
			}
			// Our object exists, but the source goes on as after any
			// failed create: it will find it healthy and ask nobody to
			// let go. The lock is held by no one until exp.
			a.definite = false
			l.env.Logf("%s: lock %q: created, then metadata read failed: %v", Name, a.key, err)
		} else if !definiteNoEffect(sent, err) {
			a.definite = false
		}
		if !a.healthy(ctx, lock, release) {
			continue
		}
		// Healthy: ask the holder to let go. Only a 412 is ignored.
		if _, err := create(ctx, release, nil, ""); err != nil && !isStatus(err, http.StatusPreconditionFailed) {
			if serr := a.stopped(ctx, timedOut); serr != nil {
				return nil, serr
			}
			return nil, a.wrap(fmt.Errorf("%s: lock %q: request release: %w", Name, a.key, err))
		}
		return nil, nil
	}
}

// healthy is GCSLock.insureHealth: false if the lock is gone, unreadable or
// expired on this client's clock, deleting it in the last case.
func (a *acquisition) healthy(ctx context.Context, lock, release *storage.ObjectHandle) bool {
	attrs, err := lock.Attrs(ctx)
	if err != nil {
		return false
	}
	if attrs.Metadata == nil {
		// The source reads meta.metadata.exp: with no custom metadata at
		// all that throws, which its catch turns into "not healthy"
		// without deleting anything.
		return false
	}
	exp := parseIntPrefix(attrs.Metadata["exp"])
	if exp != 0 && exp >= a.l.env.Clock.Now().UnixMilli() {
		return true
	}
	// deleteUnhealthy: the release request unconditionally (errors
	// swallowed), then the lock on its metageneration alone. Its error
	// lands in the same catch: not healthy either way.
	_ = release.Delete(ctx)
	if err := ifMetagenerationMatch(lock, attrs.Metageneration).Delete(ctx); err != nil {
		a.l.env.Logf("%s: lock %q: delete stale lock: %v", Name, a.key, err)
	}
	return false
}

// create uploads an empty object with ifGenerationMatch=0 and returns how
// many HTTP requests the client made for it.
func create(ctx context.Context, obj *storage.ObjectHandle, metadata map[string]string, cacheControl string) (int64, error) {
	var sent atomic.Int64
	ctx, cancel := context.WithCancel(context.WithValue(ctx, counterKey{}, &sent))
	defer cancel()
	w := obj.If(storage.Conditions{DoesNotExist: true}).NewWriter(ctx)
	w.ChunkSize = ChunkSize
	w.Metadata = metadata
	w.CacheControl = cacheControl
	err := w.Close()
	return sent.Load(), err
}

// definiteNoEffect says whether a failed create surely wrote nothing: it
// never reached the server, or its one and only request got a reply the
// server gives without writing (a 4xx other than 408 and 429). A 412 after
// a retry may be our own first attempt's object; anything else may have
// committed before the reply was lost.
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

// ifMetagenerationMatch is obj with a precondition on metageneration m. The
// source passes undefined as "no precondition", which is what it sends for a
// metageneration it never learned (a reply that omitted it); zero is Go's
// undefined, and the client refuses empty conditions.
func ifMetagenerationMatch(obj *storage.ObjectHandle, m int64) *storage.ObjectHandle {
	if m == 0 {
		return obj
	}
	return obj.If(storage.Conditions{MetagenerationMatch: m})
}

// parseIntPrefix is JavaScript's Number.parseInt(s, 10) for the values that
// matter here: optional leading space and sign, then the leading digits; 0
// when there are none (the source's NaN, which it treats as expired, as it
// does 0).
func parseIntPrefix(s string) int64 {
	i := 0
	for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r') {
		i++
	}
	neg := false
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		neg = s[i] == '-'
		i++
	}
	var n int64
	for ; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
		if n > (1<<62)/10 {
			break
		}
		n = n*10 + int64(s[i]-'0')
	}
	if neg {
		n = -n
	}
	return n
}

// lease is one held lock and its watcher.
type lease struct {
	l       *Locker
	key     string
	lock    *storage.ObjectHandle
	release *storage.ObjectHandle

	// metageneration is the remembered metageneration, written by the
	// watcher and read by Unlock.
	mu             sync.Mutex
	metageneration int64

	stop     chan struct{}
	stopOnce sync.Once
	asked    chan struct{}
	askOnce  sync.Once
	// lost is never closed: the algorithm cannot tell.
	lost chan struct{}
}

var (
	_ lockers.Lease            = (*lease)(nil)
	_ lockers.ReleaseRequester = (*lease)(nil)
)

func (l *Locker) startLease(key string, lock, release *storage.ObjectHandle, metageneration int64) *lease {
	ls := &lease{
		l: l, key: key, lock: lock, release: release,
		metageneration: metageneration,
		stop:           make(chan struct{}),
		asked:          make(chan struct{}),
		lost:           make(chan struct{}),
	}
	l.watchers.Add(1)
	go func() {
		defer l.watchers.Done()
		ls.watch()
	}()
	return ls
}

func (ls *lease) Token() uint64                     { return 0 }
func (ls *lease) Lost() <-chan struct{}             { return ls.lost }
func (ls *lease) ReleaseRequested() <-chan struct{} { return ls.asked }

func (ls *lease) remembered() int64 {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	return ls.metageneration
}

// watch is GCSLock.startWatcher's setInterval: a tick every watchInterval
// until Unlock or the first error. The next tick is armed when a tick
// starts, as setInterval's are; a tick still running when it comes due
// delays it (see the package doc).
func (ls *lease) watch() {
	clock := ls.l.env.Clock
	next := clock.After(ls.l.opts.WatchInterval)
	for {
		select {
		case <-ls.stop:
			return
		case <-ls.l.life.Done():
			return
		case <-next:
		}
		next = clock.After(ls.l.opts.WatchInterval)
		if err := ls.tick(); err != nil {
			ls.l.env.Logf("%s: lock %q: watcher stops: %v", Name, ls.key, err)
			return
		}
	}
}

// errTaken is checkOwnReleaseRequest's "This lockfile has been already taken
// by another instance."
var errTaken = errors.New("this lockfile has been already taken by another instance")

// tick is one run of the watcher: check the metageneration and the release
// request, then refresh. Every error stops the watcher and tells nobody.
func (ls *lease) tick() error {
	// Bounded by one watch interval on the client's clock: the source's
	// calls have no bound of their own.
	ctx, cancel := clockContext(ls.l.life, ls.l.env.Clock, ls.l.opts.WatchInterval)
	defer cancel()
	remembered := ls.remembered()
	attrs, err := ls.lock.Attrs(ctx)
	if err != nil {
		return err
	}
	if attrs.Metageneration != remembered {
		return fmt.Errorf("%w (metageneration %d, remembered %d)", errTaken, attrs.Metageneration, remembered)
	}
	_, err = ls.release.Attrs(ctx)
	switch {
	case err == nil:
		ls.askOnce.Do(func() { close(ls.asked) })
	case errors.Is(err, storage.ErrObjectNotExist):
	default:
		return err
	}
	// refreshOwn: the source writes exp as a top-level resource field,
	// which is not the custom metadata take reads; the update bumps the
	// metageneration and leaves the custom exp as it was. An empty patch
	// does exactly that.
	updated, err := ifMetagenerationMatch(ls.lock, remembered).Update(ctx, storage.ObjectAttrsToUpdate{})
	if err != nil {
		return err
	}
	ls.mu.Lock()
	ls.metageneration = updated.Metageneration
	ls.mu.Unlock()
	return nil
}

// clockContext returns a context of parent cancelled once d has passed on
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

// Unlock is GCSLock.release: stop the watcher, delete the release request
// unconditionally, delete the lock with ifGenerationMatch set to the
// remembered metageneration (sic), and swallow every error.
func (ls *lease) Unlock(ctx context.Context) error {
	ls.stopOnce.Do(func() { close(ls.stop) })
	if err := ls.release.Delete(ctx); err != nil && !errors.Is(err, storage.ErrObjectNotExist) {
		ls.l.env.Logf("%s: unlock %q: delete release request: %v", Name, ls.key, err)
	}
	obj := ls.lock
	if m := ls.remembered(); m != 0 {
		obj = obj.If(storage.Conditions{GenerationMatch: m})
	}
	if err := obj.Delete(ctx); err != nil {
		ls.l.env.Logf("%s: unlock %q: delete lock: %v", Name, ls.key, err)
	}
	return nil
}
