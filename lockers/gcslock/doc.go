// Package gcslock is a port of mco-gh/gcslock, the first published GCS
// mutex: a lock is an object that exists, created with
// ifGenerationMatch=0 and deleted by whoever unlocks.
//
// Source: github.com/mco-gh/gcslock, mutex.go at commit
// 5782a95db7e207c634ebf85ca8fcd970b7a27ac5 (Feb 2018, the repository's
// last; mutex.go last changed in 7a80ee9a52bbf195e663c260239e386002883d51,
// Nov 2016).
//
// # The algorithm
//
// Lock (the source's ContextLock): POST a media upload of the body "1",
// Content-Type text/plain, to
// <upload endpoint>/b/<bucket>/o?ifGenerationMatch=0&name=<key>&uploadType=media.
// A 200 is the lock. Anything else, a 412 (held), a 429, a 5xx or a network
// error alike, waits and tries again: the first wait is 10 ms, every next
// one twice the last, no cap, no jitter, until the context ends. Lock then
// returns the context's error.
//
// Unlock (ContextUnlock): DELETE <endpoint>/b/<bucket>/o/<key>? with no
// precondition, retried with the same doubling waits until the reply is
// exactly 204 or the context ends.
//
// There is no TTL, no owner and no refresh: the object is the lock until
// someone deletes it.
//
// # Defects of the source reproduced on purpose
//
//   - Unlock is unconditional. A lease unlocked twice, or unlocked by a
//     client that was wrongly told it held the lock, deletes whoever's lock
//     is there: there is no owner check.
//   - A create whose reply is lost (or a 5xx after the commit) leaves a lock
//     nobody owns. The client that made it sees 412 from then on, waits
//     with doubling backoff like everyone else, and so does every other
//     client: the key is wedged until its context ends, forever for the
//     source's Lock(), which uses context.Background. Nothing expires it.
//   - A delete whose reply is lost has removed the lock, but the retries
//     get 404, which is not 204, so Unlock goes on retrying until its
//     context ends and then reports failure for a release that happened.
//   - The backoff never resets and never caps: after a long wait a client
//     polls every few minutes, so a freed lock can stay unused that long.
//     Under the conformance suite's 32 clients on one key some waiter's
//     sleep outgrows the suite's 30 s bound: the port lists mutex-1key as
//     lacking for that starvation (exclusion itself holds there and in
//     mutex-8keys).
//   - The object name is formatted into the delete's path unescaped, while
//     the upload carries it as a query parameter: a key with '/', '?', '#'
//     or '%' names a different object on unlock than on lock. The port
//     formats both URLs as the source does.
//
// # Where Go forced a difference
//
//   - HTTP: the source builds an authenticated client with
//     google.DefaultClient; the port sends the same requests through
//     env.HTTP with no credentials. The source's two base URLs,
//     https://www.googleapis.com/upload/storage/v1 and
//     https://www.googleapis.com/storage/v1, become [Config.Endpoint] (the
//     unlock base, trailing slash dropped) and that endpoint with /upload
//     put in front of its path (the lock base), which is how the embedded
//     backend's http://127.0.0.1:PORT/storage/v1/ maps too.
//   - Time: the source's time.After becomes env.Clock through
//     lockers.Sleep. [Options.TimeScale] scales the first wait, the only
//     duration the source has; there is no TTL to scale.
//   - The source builds each request before attaching the context; the port
//     builds it with the context. A request that cannot be built ends the
//     call at once in both.
//   - The source's object is given to New; the port's is the key of each
//     Lock call, used as the object name unchanged.
//   - Token is 0 (no fencing) and Lost is never closed: the holder cannot
//     learn anything after Lock returns.
//
// # What Lock's errors claim, and attempt reports
//
// env.MarkAttempt is called before each upload while every earlier upload
// of the call was answered with a 4xx other than 408 and 429 (in practice
// 412), which proves it created nothing; once one got a 5xx, 408, 429 or no
// reply, it may have committed (the wedge above), and MarkAttempt is no
// longer called. Lock's error wraps [lockers.ErrNoEffect] under the same
// rule, and so does Unlock's: every delete refused with a 4xx (a 404: there
// was nothing to delete) proves this Unlock deleted nothing.
package gcslock
