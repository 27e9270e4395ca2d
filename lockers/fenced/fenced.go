package fenced

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"syscall"
	"time"

	"cloud.google.com/go/storage"
	"google.golang.org/api/googleapi"

	"github.com/lockcheck/lockcheck/lockers"
	"github.com/lockcheck/lockcheck/lockers/internal/gcsclient"
)

// Name is the locker's name in the harness's list.
const Name = "fenced"

// The published durations, before TimeScale.
const (
	// DefaultTTL is how long the server keeps a lease without a refresh:
	// the same as tus616's, so the two compare.
	DefaultTTL = 12 * time.Second
	// DefaultRefresh is TTL/3: two refreshes fit in the TTL minus the
	// margin, so one lost refresh never costs the lease.
	DefaultRefresh = DefaultTTL / 3
	// DefaultMargin is TTL/4: the holder gives the lease up this long
	// before the earliest instant the server can judge it expired.
	DefaultMargin = DefaultTTL / 4
	// DefaultCallTimeout bounds every request: TTL/6.
	DefaultCallTimeout = DefaultTTL / 6
	// DefaultMinBackoff and DefaultMaxBackoff bound a waiter's full-jitter
	// backoff: the ceiling doubles from the first to the second.
	DefaultMinBackoff = 100 * time.Millisecond
	DefaultMaxBackoff = DefaultTTL / 6
)

// Custom metadata keys of a lock object.
const (
	metaOwner = "owner"
	metaNonce = "nonce"
	metaTTL   = "ttl_ms"
)

// dateResolution is the granularity of an HTTP Date header: a reply stamped
// D was sent at a server time in [D, D+1s), or, if the server rounds,
// within a second of D either way.
const dateResolution = time.Second

// unlockTries bounds the deletes of one Unlock after ambiguous replies.
const unlockTries = 3

// ErrBadOptions reports options or a Config the locker cannot use.
var ErrBadOptions = errors.New("fenced: bad options")

// Config names the bucket the lock objects live in and where to reach it.
type Config struct {
	// Endpoint is the JSON API endpoint, e.g.
	// "http://127.0.0.1:4443/storage/v1/"; empty means the client's
	// default (storage.googleapis.com).
	Endpoint string
	// Bucket holds the lock objects; it must exist.
	Bucket string

	_ struct{}
}

// Options sets the durations. The zero value is the published defaults.
type Options struct {
	// TimeScale multiplies every default duration alike: 0.1 gives a
	// 1.2 s TTL, 400 ms refresh, 300 ms margin, 200 ms call timeout and a
	// 10–200 ms backoff. Zero means 1.
	TimeScale float64
	// Each override replaces one duration when positive, unscaled.
	TTL         time.Duration
	Refresh     time.Duration
	Margin      time.Duration
	CallTimeout time.Duration
	MinBackoff  time.Duration
	MaxBackoff  time.Duration

	// Defect plants one deliberate bug, for the planted mutants of
	// package mutants that show lockcheck's checkers catch its class;
	// zero, the only value a user has reason to give, is the lock as
	// designed.
	Defect Defect

	_ struct{}
}

// Defect is one deliberate bug of a planted mutant; see Options.Defect.
type Defect int

const (
	// NoDefect is the lock as designed.
	NoDefect Defect = iota
	// DefectBlindDelete: Unlock deletes the lock object with no
	// generation precondition and lets the client library retry the
	// delete, so a delete applied but answered 503 is sent again and
	// removes the next holder's object.
	DefectBlindDelete
	// DefectMetagenerationToken: the fencing token is the lock object's
	// metageneration when acquired, 1 for every new generation, so every
	// holder gets the same token.
	DefectMetagenerationToken
	// DefectUnlockKeeps: Unlock returns at once without deleting the
	// object or stopping the refresher, so the lease is kept for good.
	DefectUnlockKeeps
	// DefectFailedExtendCounts: a refresh that fails at once, with a
	// connection error rather than a timeout, counts as confirmed ("the
	// server is down for a moment; the lock is surely still ours"), so a
	// holder whose every request is refused believes in its lease until
	// the outage ends, long after the lease ran out on the server.
	DefectFailedExtendCounts
	// DefectDeadlineOnSend: the local deadline moves forward when a
	// refresh is sent, not when it is confirmed, so a holder cut off from
	// the backend keeps believing as long as its refresher keeps sending.
	DefectDeadlineOnSend
	// DefectBlindExtend: a refresh updates the lock object with no
	// generation or metageneration precondition, so one that lands late
	// (after its holder was told it lost the lock, and another client
	// took it) extends, and rewrites, the next holder's lock.
	DefectBlindExtend
	lastDefect = DefectBlindExtend
)

func (o Options) resolve() (Options, error) {
	if err := lockers.ApplyTimeScale(&o.TimeScale,
		lockers.Published{Option: &o.TTL, Default: DefaultTTL},
		lockers.Published{Option: &o.Refresh, Default: DefaultRefresh},
		lockers.Published{Option: &o.Margin, Default: DefaultMargin},
		lockers.Published{Option: &o.CallTimeout, Default: DefaultCallTimeout},
		lockers.Published{Option: &o.MinBackoff, Default: DefaultMinBackoff},
		lockers.Published{Option: &o.MaxBackoff, Default: DefaultMaxBackoff}); err != nil {
		return o, fmt.Errorf("%w: %w", ErrBadOptions, err)
	}
	if o.Defect < NoDefect || o.Defect > lastDefect {
		return o, fmt.Errorf("%w: unknown defect %d", ErrBadOptions, o.Defect)
	}
	if o.TTL.Milliseconds() < 1 {
		return o, fmt.Errorf("%w: TTL %v is under a millisecond", ErrBadOptions, o.TTL)
	}
	if o.Margin >= o.TTL {
		return o, fmt.Errorf("%w: margin %v leaves nothing of TTL %v", ErrBadOptions, o.Margin, o.TTL)
	}
	if o.Refresh >= o.TTL-o.Margin {
		// The first refresh would come after the holder had given up.
		return o, fmt.Errorf("%w: refresh %v must be shorter than TTL−margin %v", ErrBadOptions, o.Refresh, o.TTL-o.Margin)
	}
	if o.MinBackoff > o.MaxBackoff {
		return o, fmt.Errorf("%w: MinBackoff %v above MaxBackoff %v", ErrBadOptions, o.MinBackoff, o.MaxBackoff)
	}
	return o, nil
}

// Locker is one client's fenced locker.
type Locker struct {
	env    lockers.Env
	opts   Options
	client *storage.Client
	bucket *storage.BucketHandle

	mu  sync.Mutex // guards rng
	rng *rand.Rand

	// life ends at Close, which stops every lease's goroutines and waits
	// for them, so that no request outlives the locker.
	life     context.Context
	endLife  context.CancelFunc
	watchers sync.WaitGroup
}

var _ lockers.Locker = (*Locker)(nil)

// New returns a client's locker on cfg's bucket. Every request goes through
// env.HTTP, every instant and wait through env.Clock; env.Identity names
// the owner in each lock object and env.Seed seeds nonces and jitter.
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
	client, err := gcsclient.New(ctx, cfg.Endpoint, traceClient(env.HTTP))
	if err != nil {
		return nil, fmt.Errorf("%s: storage client: %w", Name, err)
	}
	life, endLife := context.WithCancel(context.Background())
	return &Locker{
		env:     env,
		opts:    opts,
		client:  client,
		bucket:  client.Bucket(cfg.Bucket),
		rng:     rand.New(rand.NewPCG(env.Seed, 0x6665_6e63_6564)), // "fenced"
		life:    life,
		endLife: endLife,
	}, nil
}

// Options returns the durations in force, defaults and scale applied.
func (l *Locker) Options() Options { return l.opts }

// Close stops every lease's refresher and watchdog, cancelling a refresh in
// flight, waits for them, then closes the storage client. Leases already
// handed out stop working: they are no longer refreshed or watched.
func (l *Locker) Close() error {
	l.endLife()
	l.watchers.Wait()
	return l.client.Close()
}

// object is the lock object of key. Every handle refuses the client's
// retries: a retried conditional write whose first attempt committed
// answers 412, turning a win into an apparent loss (a ghost lock).
func (l *Locker) object(key string) *storage.ObjectHandle {
	return l.bucket.Object(key + ".lock").Retryer(storage.WithPolicy(storage.RetryNever))
}

func (l *Locker) nonce() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strconv.FormatUint(l.rng.Uint64(), 16)
}

// jitter is uniform in [0, d).
func (l *Locker) jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return time.Duration(l.rng.Int64N(int64(d)))
}

// backoff is the ceiling of the n-th wait (n from 0): MinBackoff doubled n
// times, at most MaxBackoff.
func (l *Locker) backoff(n int) time.Duration {
	d := l.opts.MinBackoff
	for range n {
		if d >= l.opts.MaxBackoff {
			break
		}
		d *= 2
	}
	return min(d, l.opts.MaxBackoff)
}

func (l *Locker) metadata(nonce string) map[string]string {
	return map[string]string{
		metaOwner: l.env.Identity,
		metaNonce: nonce,
		metaTTL:   strconv.FormatInt(l.opts.TTL.Milliseconds(), 10),
	}
}

// outcome sorts a storage error by what it says about the request's effect.
type outcome int

const (
	ambiguous outcome = iota // may have committed: network error, timeout, 5xx, 408, 429
	unsent                   // never handed to the network
	refused                  // 412: a precondition failed, nothing written
	missing                  // 404: nothing there, nothing written
	rejected                 // another 4xx: nothing written
)

func classify(err error) outcome {
	if errors.Is(err, storage.ErrObjectNotExist) {
		return missing
	}
	var gerr *googleapi.Error
	if !errors.As(err, &gerr) {
		return ambiguous
	}
	switch {
	case gerr.Code == http.StatusPreconditionFailed:
		return refused
	case gerr.Code == http.StatusNotFound:
		return missing
	case gerr.Code == http.StatusRequestTimeout || gerr.Code == http.StatusTooManyRequests:
		return ambiguous
	case gerr.Code >= 400 && gerr.Code < 500:
		return rejected
	}
	return ambiguous
}

// Lock takes key, waiting with a jittered backoff while a live lease holds
// it, until ctx ends. An error wraps lockers.ErrNoEffect only if every
// write of the call surely wrote nothing.
func (l *Locker) Lock(ctx context.Context, key string) (lockers.Lease, error) {
	obj := l.object(key)
	for n := 0; ; n++ {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("%s: lock %q: %w: %w", Name, key, context.Cause(ctx), lockers.ErrNoEffect)
		}
		ls, o, err := l.attempt(ctx, key, obj, storage.Conditions{DoesNotExist: true})
		if ls != nil || err != nil {
			return ls, err
		}
		if o == unsent {
			continue // the context ended
		}
		// Held (412): judge the lease on the server's clock.
		wait := l.backoff(n)
		attrs, date, err := l.read(ctx, obj)
		switch {
		case classify(err) == missing:
			// Released since our create: again, after a short wait so
			// that clients missing each other cannot spin.
			wait = l.opts.MinBackoff
		case err != nil:
			l.env.Logf("%s: lock %q: read the holder's lease: %v", Name, key, err)
		default:
			left := l.remaining(attrs, date)
			if left >= 0 {
				wait = min(wait, left)
				break
			}
			// Expired: write the next generation over exactly the
			// incarnation judged expired. The metageneration condition
			// makes a refresh that lands after the read win over the
			// takeover, or lose to it, never both.
			cond := storage.Conditions{GenerationMatch: attrs.Generation, MetagenerationMatch: attrs.Metageneration}
			ls, _, err := l.attempt(ctx, key, obj, cond)
			if ls != nil || err != nil {
				return ls, err
			}
			// Refreshed, taken over or released first.
			wait = l.opts.MinBackoff
		}
		// Full jitter, with a floor: a lease judged to expire right now
		// must not turn the wait into a spin that never lets time pass.
		sleep := max(l.jitter(max(wait, l.opts.MinBackoff)), l.opts.MinBackoff/4)
		if err := lockers.Sleep(ctx, l.env.Clock, sleep); err != nil {
			return nil, fmt.Errorf("%s: lock %q: %w: %w", Name, key, context.Cause(ctx), lockers.ErrNoEffect)
		}
	}
}

// attempt writes a new generation of the lock object under cond. It returns
// a lease on a win; nothing (and how the write failed) on a definite loss
// the caller may retry; or an error ending Lock: an indeterminate one after
// an ambiguous reply the check-own-token read could not settle, an
// ErrNoEffect one after a reply that rules the write out for good.
func (l *Locker) attempt(ctx context.Context, key string, obj *storage.ObjectHandle, cond storage.Conditions) (*lease, outcome, error) {
	// Every earlier attempt of this call definitely had no effect: an
	// ambiguous one ends the call.
	l.env.MarkAttempt()
	nonce := l.nonce()
	t0 := l.env.Clock.Now()
	tr := &trace{}
	cctx, cancel := l.callContext(context.WithValue(ctx, traceKey{}, tr))
	w := obj.If(cond).NewWriter(cctx)
	// One multipart request; a zero ChunkSize also turns off the writer's
	// own retries.
	w.ChunkSize = 0
	w.Metadata = l.metadata(nonce)
	w.CacheControl = "no-store"
	err := w.Close()
	cancel()
	if err == nil {
		a := w.Attrs()
		return l.startLease(key, obj, a.Generation, a.Metageneration, nonce, t0), 0, nil
	}
	if tr.requests() == 0 {
		// No request left: surely no effect. Cancelled, the caller's
		// loop ends; otherwise the failure is local and ends it too,
		// rather than spin on it.
		if ctx.Err() != nil {
			return nil, unsent, nil
		}
		return nil, unsent, fmt.Errorf("%s: lock %q: write never sent: %w: %w", Name, key, err, lockers.ErrNoEffect)
	}
	switch o := classify(err); o {
	case refused, missing:
		return nil, o, nil
	case rejected:
		return nil, o, fmt.Errorf("%s: lock %q: %w: %w", Name, key, err, lockers.ErrNoEffect)
	}
	if neverConnected(err) && ctx.Err() == nil {
		// The request never left this machine: as definite as a 412,
		// and no read could reach the server now anyway.
		return nil, refused, nil
	}
	ls, rerr := l.checkOwn(ctx, key, obj, nonce, t0)
	if ls != nil {
		return ls, ambiguous, nil
	}
	if refusedUnread(err) && (errors.Is(rerr, errNotOurs) || classify(rerr) == missing) && ctx.Err() == nil {
		// The server turned the write away before reading it (rate
		// limit, request timeout) and the object is not ours: nothing is
		// in flight, so this attempt is as definite as a 412.
		return nil, refused, nil
	}
	return nil, ambiguous, fmt.Errorf("%s: lock %q: write %v (indeterminate: it may still commit): %w", Name, key, err, rerr)
}

// errNotOurs: the check-own-token read found another write's lock.
var errNotOurs = errors.New("the lock carries another nonce")

// neverConnected says the request failed to connect (ECONNREFUSED): no
// byte of it reached the server, so it had no effect.
func neverConnected(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED)
}

// refusedUnread says the server answered 429 or 408: it refused the request
// without acting on it. Other 5xx replies stay ambiguous even when the
// read-back shows another lock, since a front end may answer for a write
// its back end has yet to commit.
func refusedUnread(err error) bool {
	var gerr *googleapi.Error
	return errors.As(err, &gerr) && (gerr.Code == http.StatusTooManyRequests || gerr.Code == http.StatusRequestTimeout)
}

// checkOwn settles an ambiguous write by reading the object: if it carries
// this write's nonce, the write committed and the lease counts from t0,
// when it was sent. If the caller has gone, a won lease is given back.
func (l *Locker) checkOwn(ctx context.Context, key string, obj *storage.ObjectHandle, nonce string, t0 time.Time) (*lease, error) {
	// Detached: the caller may have cancelled, and the answer decides
	// whether a lock of ours is left behind.
	rctx := context.WithoutCancel(ctx)
	attrs, _, err := l.read(rctx, obj)
	if err != nil {
		return nil, fmt.Errorf("check-own-token read: %w", err)
	}
	if attrs.Metadata[metaNonce] != nonce || attrs.Metadata[metaOwner] != l.env.Identity {
		return nil, errNotOurs
	}
	if ctx.Err() != nil {
		dctx, cancel := l.callContext(rctx)
		defer cancel()
		derr := obj.If(storage.Conditions{GenerationMatch: attrs.Generation}).Delete(dctx)
		return nil, fmt.Errorf("won generation %d after the call was cancelled; gave it back: %v", attrs.Generation, derr)
	}
	return l.startLease(key, obj, attrs.Generation, attrs.Metageneration, nonce, t0), nil
}

// traceKey carries, in a request's context, the trace of one storage call.
type traceKey struct{}

// trace is what the transport saw of one storage call: how many requests
// went to the network, and the last reply's Date.
type trace struct {
	mu   sync.Mutex
	sent int
	date time.Time
}

func (t *trace) requests() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.sent
}

// read reads the object's attributes and the server's Date header of the
// reply (zero when the reply had none).
func (l *Locker) read(ctx context.Context, obj *storage.ObjectHandle) (*storage.ObjectAttrs, time.Time, error) {
	tr := &trace{}
	cctx, cancel := l.callContext(context.WithValue(ctx, traceKey{}, tr))
	defer cancel()
	attrs, err := obj.Attrs(cctx)
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return attrs, tr.date, err
}

// remaining is how long the lease in attrs may still live by the server's
// clock, judged at the reply's Date: negative only when the lease has
// surely expired. A Date is taken a whole resolution early, so a rounded
// header never makes a live lease look expired; a reply with no Date, or a
// lock with no readable TTL, never looks expired.
func (l *Locker) remaining(attrs *storage.ObjectAttrs, date time.Time) time.Duration {
	ttlMS, err := strconv.ParseInt(attrs.Metadata[metaTTL], 10, 64)
	if date.IsZero() || err != nil || ttlMS <= 0 || attrs.Updated.IsZero() {
		return l.opts.MaxBackoff
	}
	expiry := attrs.Updated.Add(time.Duration(ttlMS) * time.Millisecond)
	return expiry.Sub(date.Add(-dateResolution))
}

// callContext bounds one request by CallTimeout on the client's clock, so a
// paused client's requests wait with it.
func (l *Locker) callContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return clockContext(ctx, l.env.Clock, l.opts.CallTimeout)
}

// clockContext is ctx, also cancelled once d has passed on clock.
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

// traceTransport fills in the trace its request's context carries, then
// hands the request to the transport of the client the harness gave, read
// at each request so a harness that swaps it keeps its faults. A request
// whose context has already ended is not sent: the trace can then tell a
// write that surely never left from one that may have.
type traceTransport struct{ env *http.Client }

func (t traceTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	tr, _ := r.Context().Value(traceKey{}).(*trace)
	if err := r.Context().Err(); err != nil {
		if r.Body != nil {
			r.Body.Close()
		}
		return nil, err
	}
	if tr != nil {
		tr.mu.Lock()
		tr.sent++
		tr.mu.Unlock()
	}
	base := t.env.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	resp, err := base.RoundTrip(r)
	if err != nil || tr == nil {
		return resp, err
	}
	if d, perr := http.ParseTime(resp.Header.Get("Date")); perr == nil {
		tr.mu.Lock()
		tr.date = d
		tr.mu.Unlock()
	}
	return resp, nil
}

// traceClient is a copy of c (timeout, redirects, cookies) whose transport
// traces storage calls.
func traceClient(c *http.Client) *http.Client {
	cc := *c
	cc.Transport = traceTransport{env: c}
	return &cc
}

// lease is one held generation of a lock object, its refresher and its
// deadline watchdog.
type lease struct {
	l     *Locker
	key   string
	obj   *storage.ObjectHandle
	gen   int64
	nonce string

	mu sync.Mutex
	// meta is the last metageneration known to be ours; firstMeta the
	// one it was acquired at.
	meta, firstMeta int64
	// deadline is when the holder stops believing it holds: the send
	// instant of the last write known to have landed, plus TTL − margin.
	deadline time.Time

	stop     chan struct{}
	stopOnce sync.Once
	lost     chan struct{}
	lostOnce sync.Once
}

var _ lockers.Lease = (*lease)(nil)

func (l *Locker) startLease(key string, obj *storage.ObjectHandle, gen, meta int64, nonce string, t0 time.Time) *lease {
	ls := &lease{
		l: l, key: key, obj: obj, gen: gen, meta: meta, firstMeta: meta, nonce: nonce,
		deadline: t0.Add(l.opts.TTL - l.opts.Margin),
		stop:     make(chan struct{}),
		lost:     make(chan struct{}),
	}
	l.watchers.Add(2)
	go func() {
		defer l.watchers.Done()
		ls.watchdog()
	}()
	go func() {
		defer l.watchers.Done()
		ls.refresher()
	}()
	return ls
}

// Token is the object generation: generations of one object name strictly
// increase, so later acquisitions carry larger tokens.
func (ls *lease) Token() uint64 {
	if ls.l.opts.Defect == DefectMetagenerationToken {
		return uint64(ls.firstMeta)
	}
	return uint64(ls.gen)
}
func (ls *lease) Lost() <-chan struct{} { return ls.lost }

func (ls *lease) lose(why string) {
	ls.lostOnce.Do(func() {
		ls.l.env.Logf("%s: lock %q generation %d lost: %s", Name, ls.key, ls.gen, why)
		close(ls.lost)
	})
}

func (ls *lease) state() (int64, time.Time) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	return ls.meta, ls.deadline
}

// confirm records that the update sent at t0 landed as metageneration m.
func (ls *lease) confirm(m int64, t0 time.Time) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	ls.meta = m
	if d := t0.Add(ls.l.opts.TTL - ls.l.opts.Margin); d.After(ls.deadline) {
		ls.deadline = d
	}
}

// watchdog closes Lost when the deadline passes without a confirmed
// refresh, whatever the refresher is doing.
func (ls *lease) watchdog() {
	clock := ls.l.env.Clock
	for {
		_, deadline := ls.state()
		left := deadline.Sub(clock.Now())
		if left <= 0 {
			ls.lose("no confirmed refresh before the local deadline")
			return
		}
		select {
		case <-ls.stop:
			return
		case <-ls.l.life.Done():
			return
		case <-clock.After(left):
		}
	}
}

func (ls *lease) refresher() {
	clock := ls.l.env.Clock
	for {
		select {
		case <-ls.stop:
			return
		case <-ls.lost:
			return
		case <-ls.l.life.Done():
			return
		case <-clock.After(ls.l.opts.Refresh):
		}
		ls.refresh()
	}
}

// refresh extends the lease with a metadata update on this generation and
// metageneration, sent with no retries.
func (ls *lease) refresh() {
	l := ls.l
	meta, deadline := ls.state()
	t0 := l.env.Clock.Now()
	if !t0.Before(deadline) {
		return // the watchdog's call
	}
	if l.opts.Defect == DefectDeadlineOnSend {
		ls.confirm(meta, t0)
	}
	// An answer after the deadline is worth nothing.
	ctx, cancel := clockContext(l.life, l.env.Clock, min(l.opts.CallTimeout, deadline.Sub(t0)))
	defer cancel()
	obj := ls.obj.If(storage.Conditions{GenerationMatch: ls.gen, MetagenerationMatch: meta})
	if l.opts.Defect == DefectBlindExtend {
		obj = ls.obj
	}
	attrs, err := obj.Update(ctx, storage.ObjectAttrsToUpdate{Metadata: l.metadata(ls.nonce)})
	if err == nil {
		ls.confirm(attrs.Metageneration, t0)
		return
	}
	if l.opts.Defect == DefectFailedExtendCounts && (classify(err) == ambiguous || neverConnected(err)) && ctx.Err() == nil {
		ls.confirm(meta, t0)
		return
	}
	switch classify(err) {
	case refused, missing:
		ls.lose(fmt.Sprintf("refresh: %v", err))
		return
	case rejected:
		l.env.Logf("%s: lock %q: refresh rejected: %v", Name, ls.key, err)
		return
	}
	// Ambiguous: only this holder updates this generation, so a higher
	// metageneration is our update, landed after t0.
	rctx, rcancel := clockContext(context.Background(), l.env.Clock, l.opts.CallTimeout)
	defer rcancel()
	got, rerr := ls.obj.Attrs(rctx)
	switch {
	case rerr != nil && classify(rerr) == missing:
		ls.lose("refresh ambiguous, then the lock is gone")
	case rerr != nil:
		l.env.Logf("%s: lock %q: refresh %v, then read %v", Name, ls.key, err, rerr)
	case got.Generation != ls.gen:
		ls.lose(fmt.Sprintf("refresh ambiguous, then generation %d holds the lock", got.Generation))
	case got.Metageneration > meta:
		ls.confirm(got.Metageneration, t0)
	default:
		l.env.Logf("%s: lock %q: refresh %v did not land (yet)", Name, ls.key, err)
	}
}

// Unlock stops the refresher and deletes this generation of the lock
// object. An error wraps lockers.ErrNoEffect when the lock was no longer
// this lease's (412 or 404).
func (ls *lease) Unlock(ctx context.Context) error {
	l := ls.l
	if l.opts.Defect == DefectUnlockKeeps {
		return nil
	}
	ls.stopOnce.Do(func() { close(ls.stop) })
	obj := ls.obj.If(storage.Conditions{GenerationMatch: ls.gen})
	if l.opts.Defect == DefectBlindDelete {
		obj = ls.obj.Retryer(storage.WithPolicy(storage.RetryAlways))
	}
	var last error
	for range unlockTries {
		cctx, cancel := l.callContext(ctx)
		err := obj.Delete(cctx)
		cancel()
		if err == nil {
			return nil
		}
		switch classify(err) {
		case refused, missing:
			return fmt.Errorf("%s: unlock %q generation %d: not ours any more: %w: %w", Name, ls.key, ls.gen, err, lockers.ErrNoEffect)
		case rejected:
			return fmt.Errorf("%s: unlock %q generation %d: %w: %w", Name, ls.key, ls.gen, err, lockers.ErrNoEffect)
		}
		last = err
		if ctx.Err() != nil {
			break
		}
		// Ambiguous: delete again only if our generation is surely still
		// there.
		attrs, _, rerr := l.read(ctx, ls.obj)
		if rerr != nil || attrs.Generation != ls.gen {
			break
		}
	}
	return fmt.Errorf("%s: unlock %q generation %d: %w (indeterminate: the delete may have landed)", Name, ls.key, ls.gen, last)
}
