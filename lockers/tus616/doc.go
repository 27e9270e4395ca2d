// Package tus616 is a port of the GCS locker of tus-node-server pull request
// #616 ("@tus/server: add GCS locker", never merged), the founding case of
// this project: a lock made of a `<id>.lock` object in a GCS bucket, kept
// alive by a watcher, with release requests carried by a second object,
// `<id>.lock.release`.
//
// Source: github.com/tus/tus-node-server, packages/gcs-store/src/locker/
// {GCSLocker,GCSLock,GCSLockFile}.ts. The PR head is commit e627065 (Jan
// 2025); the copies the port was made from carry no PR-head commit id, so
// the port follows the latest revision of each file that matches the PR's
// final description: GCSLockFile.ts with custom metadata
// `{metadata: {exp}}`, a metadata read after the create, and a requestRelease that ignores only 412; GCSLock.ts with the
// `debug` logger and `Number.parseInt(meta.metadata.exp, 10)`; GCSLocker.ts
// at 05772bd26d0ad5103a3299f5af45d9bffdf4c135. Older stored revisions set
// the remembered metageneration to 0 after the create, wrote exp as a
// top-level field on create too, and swallowed every requestRelease error.
// One difference between §1 and that stored GCSLock.ts: §1 (and the older
// revisions) retry take at once after deleting an unhealthy lock, the
// stored one returns "not taken" and goes through the backoff; the port
// follows §1.
//
// # The algorithm
//
// Lock races the acquisition against acquireLockTimeout (30 s) and fails
// with ERR_LOCK_TIMEOUT ([ErrLockTimeout]) when the timeout wins. An
// acquisition is a series of takes: after a take that reports "not taken",
// attempt 0 is followed at once (setImmediate) and attempt n (n ≥ 1) by a
// wait of n·watchInterval/3, linear, no jitter: with the defaults the
// attempts run at 0, 0, 3.3, 10 and 20 s.
//
// take: create `<id>.lock`, empty, with custom metadata exp = client clock +
// lockTTL (12 s) in ms, Cache-Control no-store, ifGenerationMatch=0; then
// read its metadata and remember its metageneration, start the watcher:
// taken. On any error of the create or of that read, read the lock's
// metadata: if exp is missing, not a number, zero, or earlier than the
// reader's clock, delete `.release` unconditionally, delete the lock with
// ifMetagenerationMatch=<the metageneration just read> and no generation
// condition, and take again at once; an error of the read (a 404 too)
// counts as unhealthy and takes again at once without deleting. A healthy
// lock: create `.release` with ifGenerationMatch=0, 412 ignored, any other
// error ends Lock with that error; report "not taken".
//
// The watcher, every watchInterval (10 s): read the lock; a metageneration
// other than the remembered one stops it. If `.release` exists, ask the
// holder to let go (close [lockers.ReleaseRequester]'s channel). Update the
// lock with ifMetagenerationMatch=<remembered> and remember the
// metageneration of the reply. Any error stops the watcher, and nobody is
// told: Lost is never closed.
//
// Unlock: stop the watcher, delete `.release` unconditionally, delete the
// lock with ifGenerationMatch=<remembered metageneration>, swallow every
// error, return nil.
//
// # Defects of the source reproduced on purpose
//
//   - exp is never extended. The watcher's update sends `{exp}` as a
//     top-level resource field, which is not the custom metadata take reads:
//     it bumps the metageneration and nothing else. Every lock therefore
//     looks stale lockTTL after its creation, however alive its holder, and
//     the next client deletes and takes it; the holder is not told. The
//     port sends an empty patch: same effect on the object.
//   - Unlock deletes with ifGenerationMatch=<metageneration>. On GCS a
//     generation is a timestamp in microseconds, never a small
//     metageneration, so the delete fails with 412 (swallowed) and the lock
//     stays until it looks stale. (The raw fake-gcs-server ignores the
//     precondition and deletes.)
//   - The watcher stops silently on any error, including a transient one,
//     and the holder keeps believing it holds the lock.
//   - Any create error, not only 412, is taken as "maybe held" and leads to
//     the health check; a create whose reply was lost but which committed
//     is then found healthy, the client asks itself to let go and reports
//     "not taken": a ghost lock held by nobody until exp (see below).
//   - Expiry is judged on the reader's clock against the writer's clock.
//   - A remembered metageneration the source never learned (a reply without
//     one, as the raw fake's update replies are) is JavaScript's undefined,
//     which the client sends as no precondition at all: the port sends an
//     unconditional update/delete for 0 likewise.
//
// Together they break mutual exclusion with no fault at all on a backend
// that judges preconditions as GCS does (backends/gcs): Unlock never frees,
// every lock is left to go stale, several waiters read the same stale
// incarnation, and each deletes "it" with ifMetagenerationMatch=1 and no
// generation condition, so a later one deletes the fresh incarnation
// (metageneration 1 too) that an earlier one has just created and holds.
// Measured in this package's fidelity conformance run: 8 overlaps in 77
// holds on one key, 4 in 512 on eight keys.
//
// Observed but not ported: the source's refresh passes the precondition as
// `ifMetaGenerationMatch` (capital G), which is not one of the Node
// client's precondition names; if the client or GCS ignores it, the
// source's refresh is unconditional. §1 specifies ifMetagenerationMatch and
// the port sends that. Worth a check against the Node client.
//
// # Where Go forced a difference
//
//   - Storage client: cloud.google.com/go/storage built on env.HTTP with
//     option.WithoutAuthentication and, when [Config.Endpoint] is set,
//     option.WithEndpoint. Its default retry policy is kept, as the source
//     kept its client's: conditional uploads, updates with a metageneration
//     condition and deletes with a generation condition are retried, so a
//     committed create whose reply was lost comes back as 412. Writer's
//     ChunkSize is [ChunkSize] (256 KiB), non-zero because zero would turn
//     those retries off; the bodies are empty, so each upload is one
//     request.
//   - Time: every Now and every wait is on env.Clock. The timeout is a
//     timer started with the call; when it fires (or the caller's context
//     ends) the call in flight is cancelled through its context. The source
//     lets the in-flight take finish and, if it wins after the timeout, the
//     lock stays held by an orphaned watcher; the port cancels it instead,
//     and a take that completes anyway is returned as a lease.
//   - The caller's context ends Lock like the timeout, with ErrLockTimeout
//     wrapping the context's cause.
//   - setInterval becomes one goroutine per lease. The next tick is armed
//     when a tick starts, as setInterval does, but ticks never overlap: a
//     tick still running when the next comes due delays it. Each tick's
//     requests are bounded by one watchInterval on the client's clock (the
//     source's have no bound); Unlock stops future ticks and does not wait
//     for one in flight, which, as in the source, may still update the lock
//     after Unlock's deletes. The source has no close; [Locker.Close]
//     stops every watcher, cancels a tick in flight and waits for it, so
//     that no request outlives the locker.
//   - requestRelease is the lease's ReleaseRequested channel, closed at the
//     first request; later requests are no-ops.
//   - Number.parseInt is reproduced for exp (leading digits; none is NaN,
//     which the source treats as expired, as it does 0). A lock with no
//     custom metadata at all makes the source throw inside its health
//     check, which its catch turns into "unhealthy" without deleting: the
//     port does the same.
//   - Options: [Options.TimeScale] scales the three defaults alike;
//     explicit durations override, unscaled. New refuses watchInterval >
//     acquireLockTimeout, as the constructor does.
//   - Token is 0: no fencing.
//
// # What Lock's errors claim, and attempt reports
//
// A Lock error wraps [lockers.ErrNoEffect] only if every create of the call
// surely wrote nothing: it never reached the server, or its only HTTP
// request got a 4xx other than 408 and 429 (in practice a 412: the name was
// taken). The port learns how many HTTP requests the client made for a
// create by counting them in a wrapper around env.HTTP's transport, keyed
// by the call's context. A 412 after a retry may be our own committed
// first attempt (a ghost), a 5xx or network error may have committed too,
// and a create that succeeded but whose read failed certainly committed;
// after any of those the rest of the call, and its error, is indeterminate,
// and env.MarkAttempt is no longer called. Until then it is called before
// every create, including the immediate retake after deleting a stale lock.
// The deletes and the release-request create never make a call
// indeterminate: none of them can give the caller the lock.
package tus616
