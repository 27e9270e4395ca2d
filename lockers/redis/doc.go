// Package redis is a port of the Redis locker of tus-node-server pull
// request #846: RedisLockEngine, the lock state machine shared by its
// IoRedisLocker and NodeRedisLocker. A lock is a Redis key claimed with
// SET NX PX and a random token, kept alive by a watchdog, with release
// requests carried over pub/sub.
//
// Source: github.com/tus/tus-node-server, refs/pull/846/head, commit
// 86dc326c4491d9fad2fe57f4a134f8ed78c052f7 (21 Jul 2026, "fix: minor
// potential memory leak on IoRedisLock client subscriber"), files
// packages/server/src/lockers/{RedisLockEngine,IoRedisLocker,
// NodeRedisLocker}.ts. The port follows RedisLockEngine.ts and, for the
// client adapter, IoRedisLocker.ts (one subscriber connection, handlers
// looked up by channel name); NodeRedisLocker.ts differs only in how it
// registers listeners.
//
// # The algorithm
//
// The lock on id is the key "lock:<id>"; release requests for it travel on
// the channel "lock:release:<id>". Defaults: acquireLockTimeout 30 s,
// acquireLockRetry 100 ms, redisLockTimeout (the key's TTL) 30 s.
//
// Lock: a fresh token (the source's randomUUID). Until the caller stops it
// or acquireLockTimeout has passed (checked before each attempt, on the
// client's clock): SET key token NX PX ttl. Won: SUBSCRIBE to the channel;
// if that fails, compare-and-delete the key (errors ignored) and fail with
// the subscribe error; if the caller was stopped or the deadline passed
// meanwhile, unsubscribe and compare-and-delete (releaseOwnership) and fail
// with ERR_LOCK_TIMEOUT; else start the watchdog and return. Lost: PUBLISH
// "if you aint gonna play pass the controller" on the channel, wait
// acquireLockRetry (cut short if the caller stops), try again. After the
// loop: ERR_LOCK_TIMEOUT ([ErrLockTimeout]). An error of SET or PUBLISH
// ends Lock at once with that error; there is no retry.
//
// Holder: a message on the channel calls requestRelease (the lease's
// ReleaseRequested channel closes). The watchdog, every floor(ttl/2) ms,
// runs compare-then-PEXPIRE ttl; "not ours" (0) stops the watchdog and
// calls requestRelease; an error is ignored ("the key may still hold
// plenty of TTL") and the next tick tries again. Nothing tracks how long
// the key has gone unextended: a holder whose extends keep failing goes on
// believing it holds the lock after the key expired.
//
// Unlock: a lease already unlocked fails ("Releasing an unlocked lock!",
// [ErrNotLocked]) without touching Redis; otherwise stop the watchdog,
// UNSUBSCRIBE, then compare-and-delete even if the unsubscribe failed.
//
// # Defects and limits of the source, reproduced on purpose
//
//   - A SET whose reply is lost ends Lock with an error, yet may have
//     taken the key: nobody holds it, nobody extends it, and every client
//     waits out its TTL (30 s).
//   - A watchdog whose extends fail (partition, server overload) keeps the
//     holder believing; the key expires after the TTL and another client
//     takes it. The source says so: "the small window ... is prevented by
//     PatchHandler's upload-offset validation". Single instance, no
//     fencing.
//   - Release requests are fire-and-forget: one published while the
//     holder is not yet subscribed (between its SET and its SUBSCRIBE) is
//     lost, and the next retry publishes again.
//   - One handler per channel per client: two Lock calls of one client on
//     the same id share it, and the first Unlock removes it.
//
// # What the port adds, and where Go forced a difference
//
//   - Lost: the source has no such signal. When the watchdog's extend
//     answers "not ours", the key is certainly gone or someone else's:
//     the port closes Lost and then ReleaseRequested (requestRelease, as
//     the source does). An extend error closes neither.
//   - Unlock's result: the source discards the compare-and-delete's answer.
//     The port reports it: 0 deleted is an error wrapping [ErrNotOwner]
//     and [lockers.ErrNoEffect]; nothing else changes. A failed
//     unsubscribe followed by a successful delete is an error without
//     ErrNoEffect (the key was released).
//   - Client: github.com/redis/go-redis/v9 in place of ioredis, built with
//     Dialer env.Dial for every connection (commands and the subscriber),
//     RESP2 and no CLIENT SETINFO (as ioredis; go-redis still sends
//     HELLO 2 on each new connection), DialTimeout 10 s (ioredis's
//     connectTimeout), no read/write timeout (ioredis has no command
//     timeout), the caller's context bounding each call. ioredis queues
//     commands while reconnecting and resends unanswered ones, up to 20
//     times per request (DEFAULT_REDIS_OPTIONS in redis/ioredis
//     lib/redis/RedisOptions.ts: connectTimeout 10000, no commandTimeout,
//     retryStrategy min(times·50, 2000), maxRetriesPerRequest 20,
//     autoResendUnfulfilledCommands and autoResubscribe true); go-redis's retries are turned off (MaxRetries -1),
//     because a resent SET NX that finds our own first write answers nil,
//     which cannot be told from a lost race and would make the port's
//     ErrNoEffect claims false. A command whose connection breaks fails at
//     once with the error the source would surface after its retries. The
//     go-redis pool holds several command connections where ioredis
//     pipelines one; go-redis's own dial retries and backoffs run on the
//     real clock, out of env.Clock's reach.
//   - Subscriber: one go-redis PubSub per Locker, one connection kept
//     open as ioredis keeps its subscriber's, read by one goroutine that
//     runs while the connection has channels (it ends when the server
//     confirms an UNSUBSCRIBE that leaves none, so an idle client has no
//     goroutine, and at Close). The SUBSCRIBE of Lock and the UNSUBSCRIBE
//     of Unlock return once the server confirms them, as ioredis's do
//     (go-redis's own calls return once the command is written). The
//     handler is installed before the SUBSCRIBE is sent, where
//     IoRedisClient installs it after the confirmation: in Node the
//     continuation that installs it runs before the next chunk is read,
//     so only a message in the very chunk of the confirmation misses it;
//     in Go the reader goroutine could dispatch a message that follows
//     the confirmation before the Lock goroutine installed the handler,
//     or after, as the scheduler chose, and a simulated run would not
//     replay. No message can precede the confirmation, so installing the
//     handler first only delivers every message after it.
//     After a read error go-redis reconnects and resubscribes; the reader
//     waits min(n·50 ms, 2 s) between attempts, ioredis's default
//     retryStrategy.
//   - Caller stop: the source's stopSignal only cuts the retry sleep short;
//     the port's ctx also cancels a SET, PUBLISH or SUBSCRIBE in flight
//     (a Lock must be cancellable). Giving back a key won too late runs on
//     a context that ignores the caller's cancellation, bounded by one TTL
//     on env.Clock (after which the key is gone anyway).
//   - Timers: setInterval becomes one goroutine per lease on env.Clock;
//     each tick's extend is bounded by one interval (the source's has no
//     bound, and its later ticks would queue behind it on the same
//     connection). Unlock and Close stop the watchdog and wait for a tick
//     in flight, whose extend they cancel.
//   - Token: randomUUID becomes a version 4 UUID drawn from math/rand/v2's
//     PCG seeded with env.Seed, so a run replays. A client rebuilt with the
//     same Seed draws the same tokens again and could extend or delete a
//     key its former self still holds: the harness should give a restarted
//     client a new Seed. Token() is 0: the UUID is no fencing token.
//   - Options: [Options.TimeScale] scales the three defaults alike; an
//     explicit duration overrides, unscaled. Prefixes are the source's
//     defaults, fixed.
//
// # Planted defect
//
// Options.Defect turns the locker into lockcheck's planted Redis mutant
// (package mutants): the watchdog's extend a bare PEXPIRE, no owner check.
// The default is the source's locker.
//
// # What Lock's errors claim, and attempt reports
//
// env.MarkAttempt is called before every SET: Lock only retries after a
// SET answered nil, which definitely had no effect. An error wraps
// [lockers.ErrNoEffect] when nothing of the call can hold the key: the
// timeout or the caller's stop after SETs that all answered nil, a failed
// PUBLISH, and a won key given back whose compare-and-delete answered.
// A failed SET, or a give-back whose compare-and-delete failed, is
// indeterminate.
package redis
