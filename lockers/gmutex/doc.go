// Package gmutex is a port of gmutex, the global mutex of
// github.com/ncruces/go-gcp: a lock is an object whose generation its holder
// knows, kept alive by rewriting it, and judged expired on the server's
// clock.
//
// Source: github.com/ncruces/go-gcp, gmutex/{gmutex.go,backoff.go,init.go}
// at commit dca29097ea5c57de7010f9d9aa3297bcf7a213f8 (Jul 2026; gmutex/
// last changed in 3d3fb92df093bf0e371b589cabaa5e20be856ede, Oct 2024).
//
// # The algorithm
//
// The library speaks the XML API with its own HTTP requests, to
// <scheme://host>/<bucket>/<object>, preconditions in x-goog-if-* headers.
//
// Lock (LockData with no data): PUT the object, empty, with
// x-goog-if-generation-match=0, x-goog-meta-ttl=<TTL in whole seconds> and
// Cache-Control: no-store. 200: held, remember the reply's
// x-goog-generation. 404: "bucket does not exist", give up. 412: HEAD the
// object (Cache-Control: no-cache). While the HEAD says 200 (a live lock) or
// the error is transient (a temporary or timed-out transport error, or 408,
// 429, 500, 502, 503, 504), wait and HEAD again. A 404 (gone, or expired)
// sends Lock back to the PUT, this time with
// x-goog-if-generation-match=<the generation the HEAD saw> ("" becomes 0):
// an atomic takeover with no delete step. Any other status or error ends
// Lock. A transient error of the PUT itself also leads to the HEAD loop.
//
// Expiry is the library's expired(): from the HEAD reply alone, Date
// (server time) after Last-Modified + x-goog-meta-ttl seconds, or after a
// lifecycle x-goog-expiration. The client's clock is never read. A missing
// or unparsable header, or ttl ≤ 0, means "not expired". Both times have
// whole seconds, so a lock looks expired once Date ≥ Last-Modified + ttl +
// 1 s: between ttl and ttl + 2 s after its last write.
//
// Waits are full jitter: uniform in [0, b), where b grows ×1.5 per wait
// (exponential, while waiting for a lock) or +50 ms (linear, while holding
// one), from 50 ms, capped at 30 s; one backoff per call.
//
// Extend: PUT <object>?compose with a ComposeRequest naming the object
// itself, x-goog-if-generation-match=<held generation> and the ttl header.
// GCS writes a new generation (a copy would bump only the metageneration),
// which becomes the held one. 404 is reported as "bucket does not exist"
// (the library tests 404 before its stale case, which lists 404 too), 412 as
// "stale lock, abort", transient errors are retried with the linear backoff.
//
// Unlock: DELETE with x-goog-if-generation-match=<held generation>; 200 or
// 204 frees it; 412 or 404 is "stale lock"; transient errors retried with
// the linear backoff; anything else ends Unlock with that error.
//
// # Who calls Extend
//
// The library never extends on its own: Extend is the caller's to call.
// The port runs it as the library's own extension test does, in a
// goroutine per lease: Extend every [DefaultExtendInterval] (1 s) on a
// [DefaultTTL] (5 s) lock. The library's Extend documents that an error
// means the lock "has already expired, and mutual exclusion can not be
// ensured", so at the first error of any kind the goroutine stops and
// closes Lost. Nothing else closes Lost. Unlock stops the goroutine,
// lets an Extend in flight finish (bounded by Unlock's context) so the
// delete names the generation that Extend made, then deletes. [Locker.Close]
// stops every extender still running and deletes nothing, as a process
// exit would: the locks stay until they expire.
//
// # Defects of the source reproduced on purpose
//
//   - A create whose reply is lost after it committed, as a 503, sends Lock
//     to the HEAD loop, where its own lock looks alive: it waits a full TTL
//     for its own lock to expire and then takes it over. The key is held by
//     nobody meanwhile. A lost reply seen as a transport error that is
//     neither temporary nor a timeout (an EOF, a refused connection, most
//     injected errors) is not retried at all: Lock ends with that error, and
//     the lock it may have created stays until its TTL passes.
//   - Extend retries transient errors (503, 429, timeouts) with no bound
//     but its context, which the port, like the library's test, ties to
//     the lease: through an outage longer than the TTL the holder keeps
//     retrying and is never told, while its lock expires and another client
//     takes it over. Only the first answer after the outage (412) closes
//     Lost.
//   - A delete whose reply is lost after it committed, then retried, gets
//     404 and reports "stale lock" for a release that happened. The port
//     does not claim "no effect" then (see below).
//   - TTL granularity is a second and expiry can come up to 2 s late, both
//     from the library's whole-second ttl and HTTP dates.
//   - Expiry trusts the server's Date of each reply, which a cache or a
//     proxy may rewrite; Cache-Control: no-cache on the HEAD is the only
//     guard.
//
// # Where Go forced a difference
//
//   - HTTP: the library's package-level HTTPClient (google.DefaultClient
//     by default) becomes env.HTTP with no credentials; its
//     STORAGE_EMULATOR_HOST becomes [Config.Endpoint], of which, as in the
//     library, only the scheme and host are used. The object of each Mutex
//     is the Lock's key.
//   - Time: waits are on env.Clock through its After; the library's timers
//     and math/rand become env.Clock and a PCG seeded from env.Seed, shared
//     by the locker's calls under a mutex.
//   - Durations: the library has no default TTL (New takes one). The port
//     publishes its extension test's: TTL 5 s, Extend every 1 s.
//     [Options.TimeScale] multiplies the TTL, the extend interval and both
//     backoff bounds; the TTL is then rounded up to whole seconds as SetTTL
//     does. TimeScale 0.1 gives a 1 s TTL (0.5 s rounded up), an extend
//     every 100 ms and waits between 5 ms and 3 s; 0.2 gives exactly 1 s,
//     200 ms, 10 ms and 6 s.
//   - The library panics on Unlock of an unlocked Mutex; the port's second
//     Unlock of a lease sends nothing and returns an error wrapping
//     [lockers.ErrNoEffect].
//   - Errors keep the library's texts; stale-lock errors wrap [ErrStale].
//   - Token is 0. The library keeps the held generation private (Abandon
//     hands it out only by giving the lock up, and Extend changes it), so it
//     offers no fencing token, though GCS generations of one object only
//     grow and would have made one.
//
// # What Lock's errors claim, and attempt reports
//
// env.MarkAttempt is called before each PUT and before each HEAD that
// follows a wait (each poll is a fresh look at the key, and a create can
// only follow it), as long as every PUT of the call was answered with a
// 4xx other than 408 and 429 (in practice 412), which proves it wrote
// nothing. After a PUT that got a 5xx, 408, 429 or no reply, nothing more
// is reported and Lock's error no longer wraps [lockers.ErrNoEffect].
// Unlock's error wraps it when every DELETE of the call was answered with
// such a 4xx: a 412 or 404 on the first try proves the lock was not this
// client's to free, and nothing was freed.
//
// # The embedded backend
//
// backends/gcs serves the XML PUT, HEAD, DELETE and PUT ?compose gmutex
// needs, with x-goog-if-generation-match judged as GCS does, Date on every
// reply, and a composed object stamped (Last-Modified) at its new
// generation. TestEmbeddedGCSComposesXML pins the compose.
//
// Inside a testing/synctest bubble, where time stands still between
// events, the backend still gives every write a new generation (it waits
// for the clock to pass the name's newest one);
// TestEmbeddedGCSGenerationsInBubble pins that, since gmutex trusts the
// generation alone and a repeated one would let a stale holder's delete
// hit a newer incarnation of its lock.
package gmutex
