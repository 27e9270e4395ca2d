// A tus Locker over node-redlock (the npm package redlock, v4) on the
// Redis servers the harness started: Lock takes "tus-lock:<id>" with
// Redlock, retrying until the tus abort signal fires, and a watchdog
// extends the lease every half TTL while it is held, as a tus upload
// that outlives one TTL needs. Waiters do not ask the holder to let go
// (no release requests): Redlock has no channel for it.
//
// Args: --ttl-ms N (default 8000, scaled by the run's time scale),
// --retry-ms N (default 50).
'use strict'

const Redis = require('ioredis')
const Redlock = require('redlock')

function arg(args, name, def) {
  const i = args.indexOf(name)
  return i >= 0 && i + 1 < args.length ? Number(args[i + 1]) : def
}

exports.createLocker = async (ctx) => {
  if (ctx.redis.length === 0) throw new Error('the redlock locker needs a Redis backend (-backend redis)')
  const ttl = Math.max(10, Math.round(arg(ctx.args, '--ttl-ms', 8000) * ctx.timeScale))
  const retryDelay = arg(ctx.args, '--retry-ms', 50)
  const clients = ctx.redis.map((r) => {
    const c = new Redis({ host: r.host, port: r.port, maxRetriesPerRequest: 1, enableOfflineQueue: true })
    c.on('error', () => {}) // the calls report their own errors
    return c
  })
  // retryCount 0: this locker retries itself, between abort checks.
  const redlock = new Redlock(clients, { retryCount: 0, driftFactor: 0.01 })
  let clientErrors = 0
  redlock.on('clientError', () => clientErrors++)
  return {
    newLock: (id) => new RedlockLock(redlock, `tus-lock:${id}`, ttl, retryDelay, () => clientErrors),
    close: async () => {
      await Promise.all(clients.map((c) => c.quit().catch(() => c.disconnect())))
    },
  }
}

class RedlockLock {
  constructor(redlock, resource, ttl, retryDelay, errors) {
    this.redlock = redlock
    this.resource = resource
    this.ttl = ttl
    this.retryDelay = retryDelay
    this.errors = errors
    this.held = null
    this.watchdog = null
  }

  async lock(signal) {
    const errorsBefore = this.errors()
    while (!signal.aborted) {
      try {
        this.held = await this.redlock.lock(this.resource, this.ttl)
        this.watch()
        return
      } catch (err) {
        if (!(err instanceof Redlock.LockError)) throw err
      }
      await sleep(this.retryDelay, signal)
    }
    const err = new Error(`ERR_LOCK_TIMEOUT: ${this.resource} not acquired before the signal: ${signal.reason}`)
    // Every attempt was refused by the servers themselves: none can
    // still land. A Redis error may hide a SET that did.
    err.noEffect = this.errors() === errorsBefore
    throw err
  }

  watch() {
    const extend = () => {
      if (!this.held) return
      this.held
        .extend(this.ttl)
        .then((l) => {
          if (this.held) {
            this.held = l
            this.watchdog = setTimeout(extend, this.ttl / 2)
          }
        })
        .catch(() => {}) // the lease lapses; tus locks have no way to say so
    }
    this.watchdog = setTimeout(extend, this.ttl / 2)
  }

  async unlock() {
    clearTimeout(this.watchdog)
    const held = this.held
    this.held = null
    if (!held) throw Object.assign(new Error(`${this.resource} is not held`), { noEffect: true })
    await held.unlock()
  }
}

function sleep(ms, signal) {
  return new Promise((resolve) => {
    const t = setTimeout(done, ms)
    signal.addEventListener('abort', done, { once: true })
    function done() {
      clearTimeout(t)
      signal.removeEventListener('abort', done)
      resolve()
    }
  })
}
