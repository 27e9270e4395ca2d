// The Redis locker of tus-node-server pull request #846 ("feat(server):
// implement RedisLocker and IoRedisLocker"), in its ioredis flavour, ported
// from TypeScript to CommonJS for the Node worker. @tus/server has not
// published it, so it cannot be required from npm.
//
// Source: github.com/tus/tus-node-server (MIT licence), refs/pull/846/head,
// commit 86dc326c4491d9fad2fe57f4a134f8ed78c052f7 (21 Jul 2026, "fix:
// minor potential memory leak on IoRedisLock client subscriber"), files
// packages/server/src/lockers/RedisLockEngine.ts (RedisLockEngine,
// RedisEngineLock, RELEASE_SCRIPT, EXTEND_SCRIPT) and
// packages/server/src/lockers/IoRedisLocker.ts (IoRedisClient,
// IoRedisLocker). The two Lua scripts, the key and channel prefixes, the
// release message and the lock state machine are the source's. lockcheck's
// Go locker lockers/redis ports the same files.
//
// As in the source, each locker (here: each worker, one per lockcheck
// client) has one ioredis connection for commands and ONE shared ioredis
// subscriber connection: a lock that wins its key SUBSCRIBEs to
// "lock:release:<id>" on it and its unlock UNSUBSCRIBEs, so the subscriber
// connection enters and leaves subscriber mode as locks come and go, and
// messages are dispatched to one handler per channel. Waiters PUBLISH a
// release request after every lost SET NX PX; the holder's handler calls
// requestRelease. A watchdog extends the key every floor(ttl/2) ms while
// the lock is held.
//
// Where the port differs, and why:
//   - Clients: the source takes two ioredis clients built by its caller;
//     the port builds them on the first Redis address the harness gave
//     (its fault proxy for this client), with ioredis's default options
//     (reconnect, offline queue, resend and resubscribe), as
//     `new Redis(host, port)` in a tus server would, and closes them in
//     close(), which the source leaves to its caller. close() also stops
//     the watchdogs of locks still held, so that none ticks on a closed
//     connection.
//   - Durations: the source's defaults (acquireLockTimeout 30 s,
//     acquireLockRetry 100 ms, redisLockTimeout 30 s) are multiplied by the
//     run's time scale, as lockcheck scales every locker's durations
//     (memory.js, and the Go port's Options.TimeScale), keeping their
//     ratios. --acquire-timeout-ms, --retry-ms and --ttl-ms override one
//     each, unscaled, as the Go port's explicit options do.
//   - ERR_LOCK_TIMEOUT: the source throws @tus/utils' ERRORS.ERR_LOCK_TIMEOUT,
//     a plain {status_code, body} object, which the worker could only report
//     as "[object Object]"; the port throws an Error whose message is that
//     body and which carries the same status_code and body.
//   - noEffect: the worker takes a failed lock() as an unknown outcome
//     unless the error says `noEffect`. The port says it where nothing of
//     the call can still hold the key: the timeout and a failed PUBLISH,
//     after SET NX PX answers that were all "taken" (nil), and a key won
//     too late and given back by a compare-and-delete that answered. Not
//     when the command connection closed during the call: ioredis resends
//     a SET whose reply was lost, and the resent SET NX finds our own key
//     and answers nil, which looks like a lost race. A failed SET, a
//     failed subscribe and a failed give-back stay unknown, as does an
//     unlock whose compare-and-delete failed. "Releasing an unlocked lock!"
//     touches nothing and says so.
//   - Nothing else: unlock still resolves when the compare-and-delete finds
//     the key no longer ours (the source discards its answer), the
//     watchdog's errors are still swallowed, and tokens are still
//     randomUUID() (so, unlike the Go port's seeded tokens, they differ
//     from one run of a seed to the next).
'use strict'

const { randomUUID } = require('node:crypto')
const Redis = require('ioredis')

// RELEASE_SCRIPT and EXTEND_SCRIPT of RedisLockEngine.ts: compare the key's
// value with our token, then DEL or PEXPIRE, atomically on the server.
const RELEASE_SCRIPT = `
if redis.call("get", KEYS[1]) == ARGV[1] then
  return redis.call("del", KEYS[1])
else
  return 0
end`

const EXTEND_SCRIPT = `
if redis.call("get", KEYS[1]) == ARGV[1] then
  return redis.call("pexpire", KEYS[1], ARGV[2])
else
  return 0
end`

const RELEASE_MESSAGE = 'if you aint gonna play pass the controller'

// ERRORS.ERR_LOCK_TIMEOUT of @tus/utils.
const ERR_LOCK_TIMEOUT = { status_code: 500, body: 'failed to acquire lock before timeout' }

function arg(args, name) {
  const i = args.indexOf(name)
  return i >= 0 && i + 1 < args.length ? Number(args[i + 1]) : undefined
}

// duration is an explicit option in ms if given, else the source's default
// on the run's time scale; never under min ms.
function duration(args, name, def, scale, min) {
  const explicit = arg(args, name)
  const ms = explicit !== undefined && explicit > 0 ? explicit : Math.round(def * scale)
  return Math.max(min, ms)
}

exports.createLocker = async (ctx) => {
  if (ctx.redis.length === 0) throw new Error('the tus846-redis locker needs a Redis backend (-backend redis)')
  const scale = ctx.timeScale > 0 ? ctx.timeScale : 1
  // The watchdog runs every floor(ttl/2) ms, and setInterval needs at
  // least 1 ms: a TTL under 2 ms would leave no interval.
  const options = {
    acquireLockTimeout: duration(ctx.args, '--acquire-timeout-ms', 30000, scale, 1),
    acquireLockRetry: duration(ctx.args, '--retry-ms', 100, scale, 1),
    redisLockTimeout: duration(ctx.args, '--ttl-ms', 30000, scale, 2),
  }
  const { host, port } = ctx.redis[0]
  const ioredis = new Redis({ host, port })
  const subscriber = new Redis({ host, port })
  // ioredis reports connection errors, and replies it cannot match to a
  // command ("Command queue state error"), only as 'error' events: each
  // becomes a line on stderr, which the harness logs.
  for (const [name, c] of [['commands', ioredis], ['subscriber', subscriber]]) {
    c.on('error', (err) => ctx.log(`tus846-redis: ${name} connection: ${err.message}`))
  }
  const client = new IoRedisClient(ioredis, subscriber)
  const engine = new RedisLockEngine({ client, ...options })
  return {
    newLock: (id) => engine.newLock(id),
    close: async () => {
      engine.stopWatchdogs()
      await Promise.all([ioredis, subscriber].map((c) => c.quit().catch(() => c.disconnect())))
    },
  }
}

// IoRedisClient of IoRedisLocker.ts: ioredis emits every message of the
// subscriber connection as one 'message' event, so handlers are kept by
// channel and looked up by the channel name.
class IoRedisClient {
  constructor(ioredis, subscriber) {
    this.ioredis = ioredis
    this.subscriber = subscriber
    this.releaseHandlers = new Map()
    // Counts the command connection's closes: a close may have made
    // ioredis resend a command whose reply was lost.
    this.closes = 0
    this.ioredis.on('close', () => this.closes++)
    this.subscriber.on('message', (channel) => {
      const handler = this.releaseHandlers.get(channel)
      if (handler) handler()
    })
  }

  async tryAcquire(key, token, ttlMs) {
    const res = await this.ioredis.set(key, token, 'PX', ttlMs, 'NX')
    return !!res
  }

  async extend(key, token, ttlMs) {
    const extended = await this.ioredis.eval(EXTEND_SCRIPT, 1, key, token, ttlMs.toString())
    return extended === 1
  }

  // The source resolves to nothing; the port returns the script's answer
  // for the noEffect claim of a key given back, and the engine otherwise
  // ignores it, as the source does.
  async release(key, token) {
    return this.ioredis.eval(RELEASE_SCRIPT, 1, key, token)
  }

  async publish(channel, message) {
    await this.ioredis.publish(channel, message)
  }

  async subscribe(channel, onMessage) {
    try {
      await this.subscriber.subscribe(channel)
    } catch (err) {
      this.releaseHandlers.delete(channel)
      throw err
    }
    this.releaseHandlers.set(channel, onMessage)
    return async () => {
      this.releaseHandlers.delete(channel)
      await this.subscriber.unsubscribe(channel)
    }
  }
}

// RedisLockEngine of RedisLockEngine.ts, keeping track of the locks that
// hold a watchdog so close() can stop them.
class RedisLockEngine {
  constructor(options) {
    this.client = options.client
    this.timeout = options.acquireLockTimeout
    this.retryDelay = options.acquireLockRetry
    this.lockTimeout = options.redisLockTimeout
    this.prefix = 'lock'
    this.subPrefix = 'lock:release'
    this.watched = new Set()
  }

  newLock(id) {
    return new RedisEngineLock({
      key: `${this.prefix}:${id}`,
      channel: `${this.subPrefix}:${id}`,
      client: this.client,
      timeout: this.timeout,
      retryDelay: this.retryDelay,
      lockTimeout: this.lockTimeout,
      watched: this.watched,
    })
  }

  stopWatchdogs() {
    for (const lock of this.watched) lock.stopWatchdog()
  }
}

class RedisEngineLock {
  constructor(config) {
    this.config = config
    this.token = randomUUID()
    this.watchdog = undefined
    this.cleanup = undefined
    this.acquired = false
  }

  async lock(stopSignal, requestRelease) {
    const { client, key, channel, lockTimeout, retryDelay } = this.config
    const deadline = Date.now() + this.config.timeout
    const closesBefore = client.closes
    const noResend = () => client.closes === closesBefore

    while (!stopSignal.aborted && Date.now() < deadline) {
      if (await client.tryAcquire(key, this.token, lockTimeout)) {
        const onMessage = () => {
          void Promise.resolve(requestRelease()).catch(() => {})
        }

        try {
          this.cleanup = await client.subscribe(channel, onMessage)
        } catch (err) {
          // As the source: the key is given back, errors ignored, and the
          // subscribe error goes to the caller.
          await client.release(key, this.token).catch(() => {})
          throw err
        }

        // Stopped or out of time while tryAcquire and subscribe were in
        // flight: the source gives the key back rather than leave it held.
        if (stopSignal.aborted || Date.now() >= deadline) {
          await this.releaseOwnership()
          // The compare-and-delete answered: the key is not ours any more.
          throw lockTimeoutError(noResend())
        }

        this.acquired = true
        this.startWatchdog(requestRelease)
        return
      }

      try {
        await client.publish(channel, RELEASE_MESSAGE)
      } catch (err) {
        if (noResend()) err.noEffect = true
        throw err
      }
      await sleep(retryDelay, stopSignal)
    }

    throw lockTimeoutError(noResend())
  }

  async unlock() {
    if (!this.acquired) {
      throw Object.assign(new Error('Releasing an unlocked lock!'), { noEffect: true })
    }
    this.acquired = false
    this.stopWatchdog()
    await this.releaseOwnership()
  }

  // releaseOwnership is the source's: unsubscribe, and compare-and-delete
  // in a finally, so a failed unsubscribe still gives the key up.
  async releaseOwnership() {
    const cleanup = this.cleanup
    this.cleanup = undefined
    try {
      if (cleanup) await cleanup()
    } finally {
      await this.config.client.release(this.config.key, this.token)
    }
  }

  startWatchdog(requestRelease) {
    const { client, key, lockTimeout } = this.config
    const interval = Math.floor(lockTimeout / 2)

    this.watchdog = setInterval(async () => {
      try {
        const extended = await client.extend(key, this.token, lockTimeout)
        if (!extended) {
          // The key expired and is gone or someone else's: stop renewing
          // and ask the holder to let go, as the source does.
          this.stopWatchdog()
          void Promise.resolve(requestRelease()).catch(() => {})
        }
      } catch {
        // As the source: the key may still have plenty of TTL, the next
        // tick tries again.
      }
    }, interval)
    this.watchdog.unref()
    this.config.watched.add(this)
  }

  stopWatchdog() {
    if (this.watchdog) {
      clearInterval(this.watchdog)
      this.watchdog = undefined
    }
    this.config.watched.delete(this)
  }
}

function lockTimeoutError(noEffect) {
  return Object.assign(new Error(ERR_LOCK_TIMEOUT.body), { ...ERR_LOCK_TIMEOUT, noEffect })
}

// The source's sleep: ms, or less if the signal aborts.
function sleep(ms, signal) {
  return new Promise((resolve) => {
    const onAbort = () => {
      clearTimeout(timer)
      resolve()
    }
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort)
      resolve()
    }, ms)
    signal.addEventListener('abort', onAbort, { once: true })
  })
}
