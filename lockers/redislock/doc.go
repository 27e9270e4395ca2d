// Package redislock adapts github.com/bsm/redislock v0.9.4 to the lockers
// contract. It is not a port: the library runs as it is, from the module
// cache (source: github.com/bsm/redislock, redislock.go, tag v0.9.4), used
// the way its README shows, with a go-redis v9 client whose Dialer is
// Env.Dial.
//
// # What the library does
//
// Obtain runs one Lua script per attempt: SET key token NX PX ttl, or, when
// the key's value starts with this Obtain's own token, SET it again. It
// retries a refused attempt after RetryStrategy.NextBackoff and gives up
// when that returns zero, when ctx ends, or at the first Redis or network
// error. Refresh and Release are compare-then-PEXPIRE and compare-then-DEL
// scripts on the token. The library never refreshes by itself and has no
// fencing token and no release request.
//
// # What the adapter adds
//
//   - TTL: [DefaultTTL] (30 s, the tus Redis locker's, so the two compare
//     side by side), multiplied by Options.TimeScale.
//   - Retry strategy: redislock.ExponentialBackoff(16 ms, 512 ms), both
//     bounds multiplied by TimeScale. 16 ms is the minimum the library's
//     doc recommends; the strategy has no jitter and no randomness. A fresh
//     strategy per Lock, since it counts its calls.
//   - Token: Options.Token, 16 bytes from a generator seeded by Env.Seed
//     and Env.Identity, base64 like the library's own. The library's default
//     reads crypto/rand, which cannot be replayed; the token only has to be
//     unique, which both are.
//   - Refresh: the README's pattern, run by the adapter: Refresh with the
//     full TTL every TTL/2 of Env.Clock, counted from the sending of the last
//     successful refresh (or of the attempt that took the lock). A refresh
//     answered ErrNotObtained closes Lost at once. A refresh that fails
//     otherwise (network) is retried every TTL/10; once a full TTL has passed
//     on Env.Clock since the last success was sent, the lease is presumed
//     expired and Lost closes, even if a refresh is still in flight. The
//     lease is then judged on the client's clock: a clock running slow
//     against the server's closes Lost late.
//   - Attempts: the adapter hands Obtain a wrapper of the go-redis client
//     that sees each EVALSHA of the obtain script; it calls
//     Env.MarkAttempt right before each one, as long as every earlier one
//     in this Lock was answered "not obtained" (a nil reply). The EVAL that
//     go-redis sends after a NOSCRIPT answer belongs to the same attempt.
//   - Errors: a Lock that ends with ErrNotObtained, or with its context's
//     error while every attempt it sent was answered "not obtained", wraps
//     lockers.ErrNoEffect; any other error (the library returns the first
//     network error as it is) is indeterminate. Unlock answered
//     ErrLockNotHeld wraps lockers.ErrNoEffect; a network error is
//     indeterminate. Token is always 0.
//
// # Differences forced, and behaviour kept on purpose
//
//   - Obtain waits between attempts on a real time.Ticker, and, when ctx
//     has no deadline, gives up after one TTL of real time (time.Now): the
//     library's "make sure we don't retry forever". Neither follows
//     Env.Clock: a paused or skewed client clock does not change when it
//     retries. The harness's contexts carry deadlines.
//   - A Lock that fails on a network error after the server took the lock
//     leaves the key set, unrefreshed, until its TTL runs out, exactly as a
//     user of the library would.
//   - go-redis keeps its default timeouts (3 s reads and writes, real
//     time); a command is not interrupted by a cancelled context. Its
//     maintenance notifications (a Redis Enterprise feature) are off: they
//     resolve the server's host name when the client is built, outside
//     Env.Dial, and the library uses none of it.
//   - The owner check on Release is the library's: it deletes the key only
//     while it still holds this lease's token.
//
// # Guarantee and limits
//
// Mutual exclusion holds on one Redis as long as no holder outlives its
// lease without knowing: the lease is judged on the client's clock and the
// key expires on the server's, no fencing token protects the resource from
// a holder that paused past its TTL, and a Redis that loses writes (failover,
// restart without persistence) forgets the lock.
package redislock
