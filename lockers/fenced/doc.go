// Package fenced is lockcheck's own GCS lock: a
// lease on a `<key>.lock` object, built to survive everything a lease lock
// can survive, and to say exactly what it cannot.
//
// It is not a port: there is no source to follow. Its design answers each
// defect the ported lockers show: takeover is one atomic conditional write,
// not delete-then-create; expiry is judged on the server's clock, never by
// comparing two clients' clocks; the holder gets a fencing token; the holder
// is told (Lost) before its lease can have expired; waiters back off with
// jitter; no write is ever retried by the client library; and an ambiguous
// reply is settled by reading the object back.
//
// # The algorithm
//
// A lock object carries custom metadata {owner: Env.Identity, nonce: a
// fresh value per attempt from a PCG seeded with Env.Seed, ttl_ms: this
// client's TTL in ms}, so whoever reads it judges it by its writer's TTL.
//
// Lock, until ctx ends:
//
//  1. Note the local send instant t0 and create the object with
//     ifGenerationMatch=0. Success: the object generation g is the fencing
//     token; the lease's local deadline is t0 + TTL − margin.
//  2. 412: read the object's attributes and the reply's Date header (server
//     time). The lease has surely expired when Date − 1 s > updated +
//     ttl_ms, both server instants; the second of slack covers the header's
//     one-second resolution however the server rounds it.
//  3. Expired: write the next generation over exactly that incarnation,
//     with ifGenerationMatch=<its generation> and
//     ifMetagenerationMatch=<its metageneration>. Nothing is deleted, so no
//     window exists in which a third client can create the object. Success
//     is handled as in 1.
//  4. Not expired, or the read failed: sleep a full jitter (uniform in
//     [0, w)) where w = min(MinBackoff·2ⁿ capped at MaxBackoff, the
//     lease's server-judged remaining life), w at least MinBackoff, the
//     sleep at least MinBackoff/4; then go to 1. After a 412 on a takeover
//     (the holder refreshed, or someone else took it first) and after a
//     lock found gone, w is MinBackoff.
//
// An ambiguous reply to a create or a takeover (network error, timeout,
// 5xx, 408, 429) is settled by the check-own-token read: if the object
// carries this attempt's nonce, the write committed and this client holds
// generation g, with the deadline counted from that attempt's t0. If not,
// the write may still be in flight and Lock returns an indeterminate error
// (not [lockers.ErrNoEffect]) — except after a 429 or 408, which the server
// sends for a request it turned away unread, and after a connection
// refused (ECONNREFUSED), which no byte of the request got past: then the
// attempt is as definite as a 412, and Lock backs off and tries again. A write that commits later only makes a
// lock nobody believes it holds, which expires unrefreshed after its TTL: a
// liveness cost, never a safety one. If the caller's context ended while
// the write was in flight and the read finds it won, the lease is given
// back at once (delete with ifGenerationMatch=g) and Lock still returns an
// indeterminate error, because the lock was held for a moment.
//
// env.MarkAttempt is called before every create and takeover. Every
// earlier attempt of the call was then definitely without effect: 412s
// and "not expired" are definite, and an ambiguous attempt ends the call.
// A write whose context ended before its request was handed to env.HTTP's
// transport is definite too (a wrapper around that transport counts the
// requests of each call and sends none once the context has ended): that
// is how a Lock cancelled while it waits normally ends. A write that fails
// with no request sent and its context alive (a local failure) ends Lock
// with a definite error rather than be retried in a loop. Lock's errors
// wrap ErrNoEffect except after an ambiguous attempt.
//
// The lease: a refresher, every Refresh on the client's clock, notes t0
// and updates the metadata with ifGenerationMatch=g and
// ifMetagenerationMatch=<the last metageneration known to be ours>. Success
// remembers the new metageneration and moves the deadline to t0 + TTL −
// margin. 412 or 404: Lost at once. Ambiguous: read the object; another
// generation or none means Lost; a higher metageneration on g is our update
// (only the holder updates its generation), so it is adopted and the
// deadline moved from that update's t0; the same metageneration changes
// nothing. A watchdog on the client's clock closes Lost when the deadline
// passes without a confirmed refresh, whatever the refresher is doing
// (each refresh request is also cut off at the deadline).
//
// Unlock stops the refresher and the watchdog and deletes with
// ifGenerationMatch=g. 412 or 404: the lock is not ours any more, an error
// wrapping ErrNoEffect. Ambiguous: read; if generation g is still there,
// delete again (at most three deletes in all); otherwise, or if the read
// fails, an indeterminate error. Unlock does not close Lost.
//
// Every request goes out once: each object handle has
// Retryer(WithPolicy(RetryNever)) and each upload is one multipart request
// (ChunkSize 0). The library's retries would turn a committed create whose
// reply was lost into a 412 (the ghost lock backends/gcs reproduces): a won lock
// taken for a lost one. Each request is bounded by CallTimeout on the
// client's clock. Lock does not ask the holder to let go (no
// [lockers.ReleaseRequester]): a waiter has nothing to gain from it that
// the TTL does not give.
//
// # The guarantee
//
// Two holders that respect Lost (stop acting on the protected resource when
// it closes) are never both inside their critical sections if, for every
// lease,
//
//	(a) the rate difference between the holder's clock and the server's:
//	    how much less elapsed time the holder's clock measures than the
//	    server's over one TTL, plus
//	(b) the longest the holder stalls between checking Lost and acting
//	    on the protected resource
//
// stay below the margin together. Clock offsets play no part.
//
// Why: the lease's server-side expiry is at least updated + TTL, where
// updated is the commit instant of the holder's last confirmed write, and
// that write was sent at t0 on the holder's clock, before it committed. The
// holder's deadline t0 + TTL − margin therefore comes a margin, less the
// rate difference (a), before the server can judge the lease expired, in
// real time; what is left covers the stall (b). A waiter's takeover is
// conditional on the generation and metageneration it judged, so a refresh
// that lands after that judgement defeats the takeover, and a takeover that
// lands first defeats the refresh (TestLateRefreshBeatsTakeover). The waiter's
// judgement uses the server's updated and the server's Date only, so clock
// offsets of any size, between clients or with the server, are harmless:
// a client an hour ahead or behind neither steals a live lease nor keeps
// its own past the server's expiry (TestClockOffset).
//
// Fencing: the token is the object generation. Generations of one object
// name strictly increase on GCS, and every acquisition writes a new
// generation, so a store that refuses a token lower than the highest it has
// accepted keeps the protected data safe even when (b) is broken.
//
// # The limits
//
//   - A holder paused longer than the margin (GC, VM migration, SIGSTOP)
//     breaks mutual exclusion: its watchdog cannot run while it is paused,
//     the server judges the lease expired, another client takes over, and
//     the paused holder resumes inside its critical section, learning of the
//     loss only afterwards. Its writes carry the older token: a fenced store
//     refuses them (TestPauseLongerThanTTL, the predicted counterexample).
//   - A local clock that jumps backward, or runs slow against the server
//     by more than the margin over a TTL, delays Lost past the server's
//     expiry: (a) is broken. A forward jump only brings Lost early.
//   - Liveness costs, each bounded by one TTL: an ambiguous create or
//     takeover that commits after its read leaves a lock held by nobody; an
//     ambiguous refresh that lands after its read makes the next refresh
//     answer 412 and the holder reports Lost though it held the lock; a
//     client that cannot reach the server reports Lost at its deadline.
//   - A lock object without a Date on the read reply, without a readable
//     ttl_ms, or without an updated time never looks expired: this client
//     waits for it to go away rather than guess.
//   - Real GCS allows about one write per second per object: the defaults
//     (a refresh every 4 s) respect it; a TimeScale below ~0.25 does not,
//     and 429s then count as ambiguous replies.
//
// # Refinements of the first design, and why
//
//   - Takeover conditions on the metageneration as well as the generation.
//     With ifGenerationMatch alone, a refresh sent before the holder's
//     deadline but delayed past the waiter's expiry judgement would land
//     (it does not change the generation), the takeover would land too,
//     and the holder would extend a lease another client now holds.
//   - A waiter's sleep has a floor (MinBackoff/4): a lease judged to
//     expire at this very instant would otherwise give a zero wait, a spin
//     that never lets a simulated clock move.
//   - An ambiguous write whose caller has gone, found won, is given back
//     rather than left to expire: it still makes Lock's error indeterminate.
//   - The check-own-token read matches owner as well as nonce.
//
// # Planted defects
//
// Options.Defect turns the lock into one of lockcheck's planted mutants
// (package mutants), each a one-place change of the design above, of a
// class the checkers must catch: an unconditional delete the client
// library retries (Unlock), the metageneration as the fencing token
// (Token), an Unlock that keeps the lease (Unlock). The default is none.
//
// # Durations
//
// Published defaults, all multiplied alike by [Options.TimeScale]: TTL
// 12 s (as tus616's, so the two compare); Refresh TTL/3 = 4 s, so two
// refreshes fall inside the TTL − margin = 9 s a lease lives without one
// and a single lost refresh costs nothing; Margin TTL/4 = 3 s, far above the
// rate difference of any working clock over 12 s (even 1% drift is 0.12 s),
// leaving the rest for (b); CallTimeout TTL/6 = 2 s, so a hung request ends
// before the next refresh is due; MinBackoff 100 ms and MaxBackoff TTL/6 =
// 2 s. TimeScale 0.1 gives TTL 1.2 s, refresh 400 ms, margin 300 ms, calls
// 200 ms, backoff 10–200 ms. Explicit overrides are taken unscaled; New
// refuses a margin not below the TTL and a refresh not below TTL − margin.
// The Date header's one-second resolution is not scaled: a waiter takes
// over an abandoned lease between TTL + 1 s and TTL + 2 s after its last
// write (plus its backoff), which at TimeScale 0.1 is two to three TTLs.
//
// # In this harness
//
// Tokens are only as monotonic as the backend's generations. The embedded
// backend's are the emulator's wall-clock microseconds; inside a synctest
// bubble that clock stands still between timer firings, so a lock, unlock
// and lock at one virtual instant need the backend itself to keep a name's
// generations strictly increasing. TestTokensIncrease runs in real time so
// that it tests the locker, not that.
package fenced
