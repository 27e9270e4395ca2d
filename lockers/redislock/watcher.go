package redislock

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/lockcheck/lockcheck/lockers"
)

// watcher is the go-redis client as the library sees it during one Lock:
// it reports each obtain attempt to Env.MarkAttempt and remembers whether
// any attempt may have taken effect. Refresh and Release of the lease go
// through it too, unwatched.
type watcher struct {
	redis.Scripter
	env lockers.Env

	// watching is true while Obtain runs.
	watching atomic.Bool
	// uncertain is set once an attempt got an answer other than "not
	// obtained": it may have taken the lock.
	uncertain atomic.Bool

	mu   sync.Mutex
	sent time.Time // when the latest attempt was sent, on Env.Clock
}

// EvalSha is how go-redis's Script.Run starts every attempt.
func (w *watcher) EvalSha(ctx context.Context, sha1 string, keys []string, args ...any) *redis.Cmd {
	if !w.watching.Load() {
		return w.Scripter.EvalSha(ctx, sha1, keys, args...)
	}
	if !w.uncertain.Load() {
		w.env.MarkAttempt()
	}
	w.stamp()
	cmd := w.Scripter.EvalSha(ctx, sha1, keys, args...)
	w.judge(cmd.Err(), true)
	return cmd
}

// Eval follows an EvalSha answered NOSCRIPT, within the same attempt.
func (w *watcher) Eval(ctx context.Context, script string, keys []string, args ...any) *redis.Cmd {
	if !w.watching.Load() {
		return w.Scripter.Eval(ctx, script, keys, args...)
	}
	w.stamp()
	cmd := w.Scripter.Eval(ctx, script, keys, args...)
	w.judge(cmd.Err(), false)
	return cmd
}

func (w *watcher) stamp() {
	now := w.env.Clock.Now()
	w.mu.Lock()
	w.sent = now
	w.mu.Unlock()
}

func (w *watcher) lastSent() time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.sent
}

// judge records whether an attempt's answer leaves its effect unknown.
// Only a nil reply (refused) and, for EVALSHA, NOSCRIPT (not run) are
// definite; success is not a failure to worry about.
func (w *watcher) judge(err error, sha bool) {
	switch {
	case err == nil, errors.Is(err, redis.Nil):
	case sha && (errors.Is(err, redis.ErrNoScript) || redis.HasErrorPrefix(err, "NOSCRIPT")):
	default:
		w.uncertain.Store(true)
	}
}
