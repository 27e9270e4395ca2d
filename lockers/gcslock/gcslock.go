package gcslock

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/lockcheck/lockcheck/lockers"
)

// Name is the locker's name in the harness's list.
const Name = "gcslock"

// DefaultBackoff is the source's first wait after a failed request; every
// later wait of the same call is twice the one before, with no cap.
const DefaultBackoff = 10 * time.Millisecond

// DefaultEndpoint is the JSON API endpoint the source's unlock URL is built
// on; its lock URL is the same with /upload in front of the path.
const DefaultEndpoint = "https://www.googleapis.com/storage/v1/"

// ErrBadOptions reports options or a Config the port cannot use.
var ErrBadOptions = errors.New("gcslock: bad options")

// Config names the bucket the lock objects live in and where to reach it.
type Config struct {
	// Endpoint is the JSON API endpoint, e.g.
	// "http://127.0.0.1:4443/storage/v1/"; the upload URL is derived from
	// it by putting /upload in front of its path. Empty means
	// DefaultEndpoint.
	Endpoint string
	// Bucket holds the lock objects; it must exist.
	Bucket string

	_ struct{}
}

// Options sets the source's one duration. The zero value is the source's.
type Options struct {
	// TimeScale multiplies DefaultBackoff; zero means 1.
	TimeScale float64
	// Backoff overrides the first wait when positive, unscaled.
	Backoff time.Duration

	_ struct{}
}

func (o Options) resolve() (Options, error) {
	if err := lockers.ApplyTimeScale(&o.TimeScale, lockers.Published{Option: &o.Backoff, Default: DefaultBackoff}); err != nil {
		return o, fmt.Errorf("%w: %w", ErrBadOptions, err)
	}
	return o, nil
}

// Locker is one client's gcslock mutexes, one per key.
type Locker struct {
	env       lockers.Env
	opts      Options
	bucket    string
	lockURL   string // the source's storageLockURL
	unlockURL string // the source's storageUnlockURL
}

var _ lockers.Locker = (*Locker)(nil)

// New returns a client's locker on cfg's bucket. Every request goes through
// env.HTTP with no credentials; every wait is on env.Clock. ctx is unused:
// New makes no request, as the source's New makes none beyond building its
// authenticated client.
func New(_ context.Context, cfg Config, env lockers.Env, opts Options) (*Locker, error) {
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
	endpoint := cfg.Endpoint
	if endpoint == "" {
		endpoint = DefaultEndpoint
	}
	u, err := url.Parse(endpoint)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return nil, fmt.Errorf("%w: Config.Endpoint %q is not an absolute URL", ErrBadOptions, endpoint)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	u.RawPath = ""
	unlockURL := u.String()
	u.Path = "/upload" + u.Path
	return &Locker{env: env, opts: opts, bucket: cfg.Bucket, lockURL: u.String(), unlockURL: unlockURL}, nil
}

// Options returns the options in force, defaults and scale applied.
func (l *Locker) Options() Options { return l.opts }

// Close releases nothing: the locker holds no resources of its own.
func (l *Locker) Close() error { return nil }

// Lock is the source's ContextLock with key as the object name.
func (l *Locker) Lock(ctx context.Context, key string) (lockers.Lease, error) {
	q := url.Values{
		"name":              {key},
		"uploadType":        {"media"},
		"ifGenerationMatch": {"0"},
	}
	target := fmt.Sprintf("%s/b/%s/o?%s", l.lockURL, l.bucket, q.Encode())
	backoff := l.opts.Backoff
	definite := true // every upload so far surely created nothing
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader([]byte("1")))
		if err != nil {
			return nil, fmt.Errorf("gcslock: lock %q: %w", key, noEffectIf(definite, err))
		}
		req.Header.Set("content-type", "text/plain")
		if definite {
			l.env.MarkAttempt()
		}
		status, err := l.do(req)
		if err == nil && status == http.StatusOK {
			return &lease{l: l, key: key, lost: make(chan struct{})}, nil
		}
		definite = definite && err == nil && refused(status)
		if err := lockers.Sleep(ctx, l.env.Clock, backoff); err != nil {
			return nil, fmt.Errorf("gcslock: lock %q: %w", key, noEffectIf(definite, err))
		}
		backoff *= 2
	}
}

// unlock is the source's ContextUnlock: an unconditional delete, retried
// with the same backoff as Lock until GCS answers 204 or ctx ends.
func (l *Locker) unlock(ctx context.Context, key string) error {
	// The source formats the object name into the path unescaped.
	target := fmt.Sprintf("%s/b/%s/o/%s?", l.unlockURL, l.bucket, key)
	backoff := l.opts.Backoff
	definite := true // every delete so far surely deleted nothing
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodDelete, target, nil)
		if err != nil {
			return fmt.Errorf("gcslock: unlock %q: %w", key, noEffectIf(definite, err))
		}
		status, err := l.do(req)
		if err == nil && status == http.StatusNoContent {
			return nil
		}
		definite = definite && err == nil && refused(status)
		if err := lockers.Sleep(ctx, l.env.Clock, backoff); err != nil {
			return fmt.Errorf("gcslock: unlock %q: %w", key, noEffectIf(definite, err))
		}
		backoff *= 2
	}
}

// do sends req and returns the reply's status. The source looks at nothing
// else, not even the body, which it closes unread.
func (l *Locker) do(req *http.Request) (int, error) {
	res, err := l.env.HTTP.Do(req)
	if err != nil {
		l.env.Logf("gcslock: %s %s: %v", req.Method, req.URL.Path, err)
		return 0, err
	}
	res.Body.Close()
	return res.StatusCode, nil
}

// refused reports whether a reply proves the request changed nothing: a 4xx
// other than 408 and 429 (in practice 412 on lock, 404 on unlock). A 5xx,
// 408 or 429 may come after a commit, and no reply at all proves nothing.
func refused(status int) bool {
	return status >= 400 && status < 500 &&
		status != http.StatusRequestTimeout && status != http.StatusTooManyRequests
}

func noEffectIf(definite bool, err error) error {
	if definite {
		return fmt.Errorf("%w: %w", lockers.ErrNoEffect, err)
	}
	return err
}

// lease is one acquisition: the source keeps nothing about it but the
// object's name.
type lease struct {
	l    *Locker
	key  string
	lost chan struct{}
}

func (s *lease) Token() uint64                    { return 0 }
func (s *lease) Lost() <-chan struct{}            { return s.lost }
func (s *lease) Unlock(ctx context.Context) error { return s.l.unlock(ctx, s.key) }
