// Package lai is a port of Hongli Lai's distributed lock on Google Cloud
// Storage: one object per lock, created with ifGenerationMatch=0, carrying
// the holder's identity and an expiry, kept alive by a refresher, taken over
// when stale by the waiter's clock, and taken back at once by a restarted
// holder that finds its own identity on it ("instant recovery").
//
// Source, the reference: github.com/FooBarWidget/distributed-lock-google-
// cloud-storage-ruby at 5e7ef233d5ed922c176ceab63c20ba20c042a1f1 (May 2023;
// the library is version 1.1.0), lib/distributed-lock-google-cloud-storage/
// {lock,utils,constants}.rb. Consulted: its unfinished Go port,
// github.com/FooBarWidget/distributed-lock-google-cloud-storage-go at
// f1e66861a1a429d78e8a7aa0c1d9db06ab5dda57 ("Work in progress", Oct 2021),
// gdlock/lock.go. Where the two differ the Ruby code is followed: the Go
// port bounds Lock with a context that also cancels the call in flight and
// re-reads the object after a successful create; the Ruby code checks its
// deadline only between attempts and takes the metageneration from the
// create's reply.
//
// # The algorithm
//
// Parameters (constants.rb, lock.rb): ttl 300 s; max_refresh_fails 3;
// refresh_interval = ttl/(3·max_refresh_fails) = 33.3 s (constants.rb also
// defines DEFAULT_TTL_REFRESH_INTERVAL_DIVIDER = 8, which no code uses);
// backoff 1 s … 30 s, multiplier 2; lock timeout 2·ttl = 600 s.
//
// Lock: create the object (the key is its name): empty body, Cache-Control
// no-store, custom metadata expires_at = client clock + ttl (Ruby's
// Float#to_s of Time#to_f, e.g. "1732478400.25") and identity,
// ifGenerationMatch=0. Success: remember the metageneration of the reply,
// start the refresher. A 412: read the object. Gone → retry at once. Its
// identity is ours → it was abandoned by us: delete it with
// ifMetagenerationMatch=<the one read> and retry at once. Its expires_at
// (String#to_f; absent or garbage is 0.0) is earlier than our clock → delete
// it likewise, then back off. Otherwise back off. The first backoff is
// backoff_min, each next one decorrelated jitter
// min(rand(backoff_min … last·multiplier), backoff_max), drawn from a
// generator seeded with env.Seed. After each failed attempt, if the lock
// timeout has passed, Lock fails with [ErrTimeout] (TimeoutError); the
// deadline does not cut short an attempt or a sleep, so Lock may return up
// to one backoff_max after it. Every other error (the create's other than
// 412, the read's, the delete's other than 404/412) ends Lock at once: the
// source lets it propagate.
//
// Refresher, every refresh_interval counted from the start of the previous
// refresh: patch expires_at = now + ttl with ifMetagenerationMatch=
// <remembered>, remember the reply's metageneration. 412 or 404 is a
// permanent failure; any other error counts, a success resets the count;
// a permanent failure or max_refresh_fails in a row stops the refresher and
// declares the lock unhealthy. The source's healthy?/check_health! read that
// flag; here Lost() is closed at that moment. The holder is expected to
// poll it and abort its work: nothing stops it.
//
// Unlock: take the remembered metageneration, shut the refresher down and
// wait for it (thread.join), then delete with ifMetagenerationMatch=<that
// metageneration>. 404 or 412 is the source's `false` ("was already
// deleted"): [ErrWasNotHeld]. Lock of a key this client holds (by its own
// state) is AlreadyLockedError ([ErrAlreadyLocked]); a second Unlock is
// NotLockedError ([ErrNotLocked]); both wrap [lockers.ErrNoEffect].
//
// # Identity
//
// The source's identity is instance_identity_prefix (default: 12 random
// bytes in hex and the pid, new in every process) plus, with thread_safe
// (the default), "/thr-<thread object id>". Its README makes instant
// recovery depend on the identity surviving a restart, which the default
// never does; a user who wants it passes a stable prefix. The port takes
// the reading the README asks for: identity = env.Identity, which the
// harness keeps across a client's restarts, and one client is one thread,
// so no per-thread suffix ([Options.Identity] overrides; with neither, a
// random-looking prefix is drawn from env.Seed, the source's default). The
// consequence: a restarted client that finds its crashed incarnation's
// lock deletes and takes it at once, instead of waiting up to ttl; and two
// Lockers given the same identity would delete each other's live locks
// (the source's own warning about identities). With the source's default
// identity, instant recovery only ever fires for a ghost of the same Lock
// call (below).
//
// # Defects of the source reproduced on purpose
//
//   - Expiry is judged on the reader's clock against the writer's: a
//     client whose clock runs ahead by more than the remaining TTL deletes a
//     live lock and takes it; the holder learns at its next refresh (412 →
//     Lost), up to refresh_interval later, if at all: see the next item.
//   - Refresh and Unlock, too, carry ifMetagenerationMatch alone. A holder
//     whose lock was deleted as stale and re-created by another client,
//     and whose remembered metageneration equals the new incarnation's
//     (both 1 when neither has refreshed yet), refreshes the other's lock
//     successfully and never learns it lost; its Unlock then deletes the
//     other's lock, and the other's next refresh gets 412.
//   - The stale and the abandoned-lock deletes carry ifMetagenerationMatch
//     alone, no generation: a waiter that read a stale incarnation can
//     delete a fresh incarnation with the same metageneration (1, never yet
//     refreshed) that another waiter has just created.
//   - A refresh whose reply is lost is retried by the client with the old
//     ifMetagenerationMatch: 412, which the source takes as permanent. The
//     lease is declared lost though nobody touched the lock, and Unlock
//     then deletes with the old metageneration: 412, the lock stays until
//     it goes stale.
//   - Unlock racing a refresh: Unlock takes the metageneration before the
//     refresh in flight completes, and the refresh, seeing the shutdown,
//     does not store its new one; the delete gets 412 and the lock stays
//     until it goes stale.
//   - A create whose reply is lost is retried and gets 412 (a ghost); the
//     read finds our own identity and instant recovery deletes our own
//     fresh object and creates again: our own first attempt released, so
//     the call is indeterminate from then on. Not harmless: when that
//     delete's reply is lost too, the client library sends it again, and
//     if another client has created the lock meanwhile (metageneration 1,
//     as ours was), the resent delete removes it; Unlock's delete is
//     resent the same way. Traced request by request under
//     server-lost-reply; regression/lai-server-lost-reply-resent-delete
//     pins it.
//   - The refresher's requests have no time bound of their own (the
//     source's client sets none): a request that hangs stalls the
//     refresher, and Lost is not closed until it returns, unless env.HTTP
//     carries a timeout.
//
// # Where Go forced a difference
//
//   - Storage client: cloud.google.com/go/storage on env.HTTP, with
//     option.WithoutAuthentication and, when [Config.Endpoint] is set,
//     option.WithEndpoint. The source's client, google-cloud-storage 1.34.1
//     on google-apis-core 0.4.1 (its Gemfile.lock), retried every call,
//     conditional or not, up to 3 times on 5xx, 429 and transmission
//     errors, exponentially from 1 s (retries 3 by default; recalled from
//     those gems, not re-read for this port). The faithful mapping is
//     storage.RetryAlways with 4 attempts and a 1 s … 60 s, ×2 backoff,
//     scaled by TimeScale. It differs from the Go client's default in
//     retrying the deletes (they carry only a metageneration condition), so
//     a delete whose reply was lost comes back as 404. The Go client's
//     upload retries ignore WithMaxAttempts (measured: a create answered 502
//     forever was retried without end), so every call's requests are
//     counted in a wrapper around env.HTTP's transport and the fifth is
//     refused, ending the call with an error that names the last reply.
//     The client's own retry sleeps use Go's timers with the client
//     library's jitter, not env.Clock: a paused or skewed client clock does
//     not affect them (inside a synctest bubble they are virtual).
//   - Writer.ChunkSize is [ChunkSize], non-zero so uploads keep their
//     retries; the body is empty, one request per create.
//   - Time: every Now and wait is on env.Clock; the lock timeout is a timer
//     on it. The caller's context ends a backoff sleep and cancels the call
//     in flight; Lock then fails with the context's error.
//   - Unlock waits for the refresher only as long as its context allows;
//     when that ends first, the refresh in flight is cancelled, Unlock
//     returns an error wrapping ErrNoEffect without deleting, and the key
//     is no longer held by this client's state: the object stays until it
//     goes stale.
//   - A refresh that completes after Unlock shut the refresher down is
//     reported to nobody (the source's refresh_lock returns true then), so
//     Lost is not closed by it.
//   - [Locker.Close] stops every refresher, cancelling a refresh in
//     flight, and waits for them before it closes the storage client, so
//     that no request outlives the locker; the leases it leaves are not
//     released.
//   - Options: [Options.TimeScale] scales every default duration alike;
//     explicit durations override, unscaled. New refuses what the source's
//     constructor refuses: an explicit refresh_interval ≥
//     ttl/max_refresh_fails, backoff_max < backoff_min.
//   - Token is 0: no fencing.
//
// # What Lock's and Unlock's errors claim, and attempt reports
//
// A Lock error wraps [lockers.ErrNoEffect] only if every create of the call
// surely wrote nothing: it never reached the server, or its one and only
// HTTP request got a 4xx other than 408 and 429 (in practice 412: the name
// was taken by a lock whose read followed). A 412 after a retry may be our
// own committed first attempt, a 5xx or network error may have committed;
// after either the rest of the call and its error are indeterminate and
// env.MarkAttempt is no longer called. Until then it is called before every
// create. The deletes never make a call indeterminate: none gives the
// caller the lock. So a timeout after nothing but 412s is definite.
// Unlock's ErrWasNotHeld wraps ErrNoEffect only when its delete was one
// request; after a retry a 404 may be our own delete, committed.
package lai
