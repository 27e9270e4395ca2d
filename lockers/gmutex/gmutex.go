package gmutex

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/lockcheck/lockcheck/lockers"
)

// Name is the locker's name in the harness's list.
const Name = "gmutex"

// The durations the port publishes. The library has no default TTL (New
// takes one); these are the ones its own extension test uses: a 5 s TTL,
// extended every second. The backoff bounds are the library's constants.
const (
	DefaultTTL            = 5 * time.Second
	DefaultExtendInterval = time.Second
	DefaultBackoffMin     = 50 * time.Millisecond
	DefaultBackoffMax     = 30 * time.Second
)

// DefaultEndpoint is where the library sends its XML API requests when
// STORAGE_EMULATOR_HOST is unset.
const DefaultEndpoint = "https://storage.googleapis.com"

var (
	// ErrBadOptions reports options or a Config the port cannot use.
	ErrBadOptions = errors.New("gmutex: bad options")
	// ErrStale is the library's "stale lock": the lock object is at another
	// generation or gone. Unlock's wraps lockers.ErrNoEffect as well when
	// no earlier delete of the call may have committed.
	ErrStale = errors.New("stale lock")
)

// Config names the bucket the lock objects live in and where to reach it.
type Config struct {
	// Endpoint is the storage endpoint; only its scheme and host are used,
	// as the library uses only those of STORAGE_EMULATOR_HOST, so the
	// embedded backend's "http://127.0.0.1:PORT/storage/v1/" works as it is.
	// Empty means DefaultEndpoint.
	Endpoint string
	// Bucket holds the lock objects; it must exist.
	Bucket string

	_ struct{}
}

// Options sets the port's durations. The zero value is the published ones.
type Options struct {
	// TimeScale multiplies every default duration alike (TTL, extend
	// interval, both backoff bounds); zero means 1. The TTL is then rounded
	// up to whole seconds, as the library's SetTTL does.
	TimeScale float64
	// TTL and ExtendInterval override one duration each when positive, as
	// given, not scaled (the TTL is still rounded up to whole seconds).
	TTL            time.Duration
	ExtendInterval time.Duration

	_ struct{}
}

type durations struct {
	ttlSeconds int64 // what goes into x-goog-meta-ttl
	extend     time.Duration
	backoffMin time.Duration
	backoffMax time.Duration
}

func (o Options) resolve() (Options, durations, error) {
	var d durations
	if err := lockers.ApplyTimeScale(&o.TimeScale,
		lockers.Published{Option: &o.TTL, Default: DefaultTTL},
		lockers.Published{Option: &o.ExtendInterval, Default: DefaultExtendInterval},
		lockers.Published{Option: &d.backoffMin, Default: DefaultBackoffMin},
		lockers.Published{Option: &d.backoffMax, Default: DefaultBackoffMax}); err != nil {
		return o, d, fmt.Errorf("%w: %w", ErrBadOptions, err)
	}
	d.ttlSeconds, d.extend = ttlSeconds(o.TTL), o.ExtendInterval
	return o, d, nil
}

// ttlSeconds is the library's SetTTL: rounded up to whole seconds, and
// zero (never expires) for zero or less.
func ttlSeconds(ttl time.Duration) int64 {
	ttl += time.Second - time.Nanosecond
	if ttl > 0 {
		return int64(ttl / time.Second)
	}
	return 0
}

// Locker is one client's gmutex Mutexes, one per key.
type Locker struct {
	env    lockers.Env
	opts   Options
	d      durations
	base   url.URL
	bucket string

	rngMu sync.Mutex
	rng   *rand.Rand

	leasesMu sync.Mutex
	leases   map[*lease]struct{} // whose extenders may still run
}

var _ lockers.Locker = (*Locker)(nil)

// New returns a client's locker on cfg's bucket. Every request goes through
// env.HTTP with no credentials, every wait is on env.Clock and every jitter
// comes from env.Seed. ctx is unused: New makes no request.
func New(_ context.Context, cfg Config, env lockers.Env, opts Options) (*Locker, error) {
	opts, d, err := opts.resolve()
	if err != nil {
		return nil, err
	}
	if cfg.Bucket == "" {
		return nil, fmt.Errorf("%w: Config.Bucket is empty", ErrBadOptions)
	}
	if env.HTTP == nil || env.Clock == nil {
		return nil, fmt.Errorf("%w: Env.HTTP and Env.Clock are required", ErrBadOptions)
	}
	endpoint := cfg.Endpoint
	if endpoint == "" {
		endpoint = DefaultEndpoint
	}
	u, err := url.Parse(endpoint)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return nil, fmt.Errorf("%w: Config.Endpoint %q is not an absolute URL", ErrBadOptions, endpoint)
	}
	return &Locker{
		env:    env,
		opts:   opts,
		d:      d,
		base:   url.URL{Scheme: u.Scheme, Host: u.Host},
		bucket: cfg.Bucket,
		rng:    rand.New(rand.NewPCG(env.Seed, 0x676d75746578)), // "gmutex"
		leases: map[*lease]struct{}{},
	}, nil
}

// Options returns the options in force, defaults and scale applied.
func (l *Locker) Options() Options { return l.opts }

// TTL is the time-to-live the lock objects carry, whole seconds.
func (l *Locker) TTL() time.Duration { return time.Duration(l.d.ttlSeconds) * time.Second }

// Close stops the extenders of every lease not yet unlocked, as the end of
// the process would, and waits for them. It deletes nothing: the locks stay
// until they expire. Use no lease of l after Close.
func (l *Locker) Close() error {
	l.leasesMu.Lock()
	live := make([]*lease, 0, len(l.leases))
	for s := range l.leases {
		live = append(live, s)
	}
	l.leasesMu.Unlock()
	for _, s := range live {
		s.halt()
		<-s.extender
	}
	return nil
}

// Lock is the library's LockData with no data, on a Mutex whose object is
// key; once it holds the lock it starts the extender.
func (l *Locker) Lock(ctx context.Context, key string) (lockers.Lease, error) {
	m := mutex{l: l, object: key}
	generation := "" // initially the lock is expected not to exist
	b := backoff{l: l, exp: true}
	definite := true // no create of this call may have committed
	for {
		if definite {
			l.env.MarkAttempt()
		}
		status, gen, err := m.create(ctx, generation)
		if status == http.StatusOK {
			return l.hold(m, gen), nil
		}
		definite = definite && err == nil && refused(status)
		if status == http.StatusNotFound {
			return nil, noEffectIf(definite, errors.New("lock mutex: bucket does not exist"))
		}
		if status == http.StatusPreconditionFailed {
			status, gen, err = m.inspect(ctx)
		}
		// While the lock object exists, and on transient errors, wait.
		for status == http.StatusOK || retriable(status, err) {
			if err := b.wait(ctx); err != nil {
				return nil, noEffectIf(definite, err)
			}
			// Each poll is a fresh look at the key, the start of the
			// attempt whose create (if any) follows it.
			if definite {
				l.env.MarkAttempt()
			}
			status, gen, err = m.inspect(ctx)
		}
		if status == http.StatusNotFound {
			// Gone or expired: take it at the generation seen, if any.
			generation = gen
			continue
		}
		if err != nil {
			return nil, noEffectIf(definite, fmt.Errorf("lock mutex: %w", err))
		}
		return nil, noEffectIf(definite, fmt.Errorf("lock mutex: http status %d: %s", status, http.StatusText(status)))
	}
}

// mutex is the library's Mutex: a bucket, an object, and while held the
// generation of the lock object.
type mutex struct {
	l          *Locker
	object     string
	generation string
}

func (m *mutex) url() string {
	u := url.URL{Scheme: m.l.base.Scheme, Host: m.l.base.Host, Path: m.l.bucket + "/" + m.object}
	return u.String()
}

// create writes the lock object if its generation matches (0: absent).
func (m *mutex) create(ctx context.Context, generation string) (int, string, error) {
	if generation == "" {
		generation = "0"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, m.url(), nil)
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Cache-Control", "no-store")
	req.Header.Set("x-goog-if-generation-match", generation)
	req.Header.Set("x-goog-meta-ttl", strconv.FormatInt(m.l.d.ttlSeconds, 10))
	return m.l.write(req)
}

// extend composes the object onto itself, which gives it a new generation
// (a copy would only bump the metageneration), if the generation matches.
func (m *mutex) extend(ctx context.Context, generation string) (int, string, error) {
	var buf bytes.Buffer
	buf.WriteString("<ComposeRequest><Component><Name>")
	xml.EscapeText(&buf, []byte(m.object))
	buf.WriteString("</Name></Component></ComposeRequest>")
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, m.url()+"?compose", &buf)
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Cache-Control", "no-store")
	req.Header.Set("x-goog-if-generation-match", generation)
	req.Header.Set("x-goog-meta-ttl", strconv.FormatInt(m.l.d.ttlSeconds, 10))
	return m.l.write(req)
}

func (m *mutex) delete(ctx context.Context, generation string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, m.url(), nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("x-goog-if-generation-match", generation)
	status, _, err := m.l.write(req)
	return status, err
}

// inspect reads the lock object's headers; one that exists but has expired
// by the server's clock answers 404, with its generation.
func (m *mutex) inspect(ctx context.Context) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, m.url(), nil)
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Cache-Control", "no-cache")
	res, err := m.l.env.HTTP.Do(req)
	if err != nil {
		m.l.env.Logf("gmutex: HEAD %s: %v", req.URL.Path, err)
		return 0, "", err
	}
	res.Body.Close()
	status := res.StatusCode
	if status == http.StatusOK && expired(res.Header) {
		status = http.StatusNotFound
	}
	return status, res.Header.Get("x-goog-generation"), nil
}

// write sends a request whose reply matters only by its status and
// x-goog-generation.
func (l *Locker) write(req *http.Request) (int, string, error) {
	res, err := l.env.HTTP.Do(req)
	if err != nil {
		l.env.Logf("gmutex: %s %s: %v", req.Method, req.URL.Path, err)
		return 0, "", err
	}
	res.Body.Close()
	return res.StatusCode, res.Header.Get("x-goog-generation"), nil
}

// expired is the library's check, on the server's clock only: the reply's
// Date against Last-Modified plus the object's ttl, or a lifecycle
// expiration already past. A header that does not parse means "not
// expired".
func expired(h http.Header) bool {
	now, err := http.ParseTime(h.Get("Date"))
	if err != nil {
		return false
	}
	modified, err := http.ParseTime(h.Get("Last-Modified"))
	if err != nil {
		return false
	}
	if lifecycle, err := http.ParseTime(h.Get("x-goog-expiration")); err == nil && lifecycle.Before(now) {
		return true
	}
	ttl, err := strconv.ParseInt(h.Get("x-goog-meta-ttl"), 10, 64)
	if err != nil || ttl <= 0 {
		return false
	}
	return modified.Add(time.Duration(ttl) * time.Second).Before(now)
}

// retriable is the library's: temporary or timed-out transport errors, and
// 408, 429, 500, 502, 503, 504.
func retriable(status int, err error) bool {
	if err != nil {
		uerr := url.Error{Err: err}
		return uerr.Temporary() || uerr.Timeout()
	}
	switch status {
	case http.StatusTooManyRequests, http.StatusRequestTimeout, http.StatusInternalServerError,
		http.StatusServiceUnavailable, http.StatusBadGateway, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// refused reports whether a reply proves the write changed nothing: a 4xx
// other than 408 and 429. A 5xx, 408 or 429 may follow a commit, and no
// reply proves nothing.
func refused(status int) bool {
	return status >= 400 && status < 500 &&
		status != http.StatusRequestTimeout && status != http.StatusTooManyRequests
}

func noEffectIf(definite bool, err error) error {
	if definite {
		return fmt.Errorf("gmutex: %w: %w", lockers.ErrNoEffect, err)
	}
	return fmt.Errorf("gmutex: %w", err)
}

// backoff is the library's full-jitter backoff: exponential (×1.5) while
// waiting for a lock, linear (+min) while holding one, between min and max,
// each wait uniform in [0, current).
type backoff struct {
	l    *Locker
	exp  bool
	time time.Duration
}

func (b *backoff) wait(ctx context.Context) error {
	lo, hi := b.l.d.backoffMin, b.l.d.backoffMax
	if b.exp {
		b.time += b.time / 2
	} else {
		b.time += lo
	}
	b.time = min(max(b.time, lo), hi)
	b.l.rngMu.Lock()
	d := time.Duration(b.l.rng.Int64N(int64(b.time)))
	b.l.rngMu.Unlock()
	return lockers.Sleep(ctx, b.l.env.Clock, d)
}
