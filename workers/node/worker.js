#!/usr/bin/env node
// A lockcheck worker (protocol v1, documented in lockcheck's
// harness/worker/doc.go) for tus-node-server lockers: it runs one client's
// Locker, as @tus/server defines it,
//
//   interface Locker { newLock(id: string): Lock }
//   interface Lock {
//     lock(signal: AbortSignal, requestRelease: () => Promise<void> | void): Promise<void>
//     unlock(): Promise<void>
//   }
//
// and answers the harness's lock and unlock requests with it, on the
// backend the harness started (the embedded Redis or GCS, reached through
// this client's own fault proxy).
//
// Usage: node worker.js LOCKER_MODULE [ARGS...]
//
// LOCKER_MODULE is a path to a CommonJS or ES module (or a package name)
// whose export `createLocker(ctx)` returns the Locker (or a promise of
// one), and may give it a `close()` that the worker awaits when it shuts
// down. ctx holds what the harness said in its hello:
//
//   ctx.identity, ctx.seed, ctx.timeScale  this client, its seed, the time scale
//   ctx.backend                            "redis", "gcs" or "none"
//   ctx.redis                              [{host, port}] to connect to (proxies included)
//   ctx.gcs                                {apiEndpoint, bucket} for @google-cloud/storage
//   ctx.args                               the ARGS after LOCKER_MODULE
//   ctx.log(...)                           a line on stderr, which the harness logs
//
// Differences from a Go locker, and how they are reported:
//   - tus locks have no fencing token: every lease's token is 0.
//   - tus locks cannot tell their holder the lock was lost: no lost event.
//   - a failed lock() or unlock() is an unknown outcome (a take in flight
//     may still land after lock() threw), unless the error carries
//     `noEffect = true`: the locker module's way to say it definitely
//     changed nothing.
//   - Node lockers read Date.now() and Node timers, which this worker
//     cannot skew: a hello or clock request that moves the clock is
//     refused, so clock faults fail loudly rather than silently not apply.
//   - the register workloads' plain store is a Redis string
//     "register:<key>", as lockcheck's own; the fenced store is not
//     implemented here and is refused at hello.
'use strict'

const path = require('node:path')
const readline = require('node:readline')
const { pathToFileURL } = require('node:url')

const PROTOCOL = 1

function main() {
  const [modulePath, ...args] = process.argv.slice(2)
  if (!modulePath) {
    process.stderr.write('usage: node worker.js LOCKER_MODULE [ARGS...]: the module exports createLocker(ctx), which returns a tus Locker\n')
    process.exit(2)
  }
  const worker = new Worker(modulePath, args)
  const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity })
  rl.on('line', (line) => worker.request(line))
  rl.on('close', () => worker.shutdown(0))
}

class Worker {
  constructor(modulePath, args) {
    this.modulePath = modulePath
    this.args = args
    this.locker = null
    this.redisClient = null
    this.calls = new Map() // id -> AbortController of an open call
    this.leases = new Map() // lease id -> tus Lock
    this.nextLease = 1
    this.closing = false
  }

  send(msg) {
    process.stdout.write(JSON.stringify(msg) + '\n')
  }

  log(...parts) {
    process.stderr.write(parts.join(' ') + '\n')
  }

  fail(id, err, noEffect) {
    const text = err instanceof Error ? err.message : String(err)
    this.send({ id, error: text || 'error', no_effect: Boolean(noEffect || (err && err.noEffect === true)) })
  }

  request(line) {
    if (line.trim() === '') return
    let req
    try {
      req = JSON.parse(line)
    } catch (err) {
      this.log(`protocol: not JSON: ${err.message}: ${line.slice(0, 200)}`)
      return
    }
    if (typeof req !== 'object' || req === null || !Number.isInteger(req.id)) {
      this.log(`protocol: a request without an integer id: ${line.slice(0, 200)}`)
      return
    }
    const { id, op } = req
    if (op !== 'hello' && op !== 'close' && !this.locker) {
      this.fail(id, new Error(`${op} before a successful hello`), true)
      return
    }
    const handlers = {
      hello: () => this.hello(req),
      lock: () => this.lock(req),
      unlock: () => this.unlock(req),
      read: () => this.read(req),
      write: () => this.write(req),
      clock: () => this.clock(req),
      cancel: () => this.cancel(req),
      close: () => this.close(req),
    }
    const handle = handlers[op]
    if (!handle) {
      this.fail(id, new Error(`unknown op ${JSON.stringify(op)}`), true)
      return
    }
    Promise.resolve()
      .then(handle)
      .catch((err) => this.fail(id, err, false))
  }

  async hello(h) {
    if (h.protocol !== PROTOCOL) {
      this.fail(h.id, new Error(`this worker speaks protocol ${PROTOCOL}, not ${h.protocol}`), true)
      return
    }
    if (this.locker) {
      this.fail(h.id, new Error('hello again after a successful hello'), true)
      return
    }
    if (!clockIsReal(h.clock)) {
      this.fail(h.id, new Error('this worker cannot move its locker\'s clock (Node lockers read Date.now() and Node timers); run it without clock faults and clock spread'), true)
      return
    }
    if (h.register === 'fenced') {
      this.fail(h.id, new Error('the fenced register store is not implemented by the Node worker; use the mutex, register or request-release workload'), true)
      return
    }
    const redirect = h.redirect || {}
    const redis = (h.redis || []).map((addr) => hostPort(redirect[addr] || addr))
    let gcs = null
    if (h.gcs) {
      const u = new URL(h.gcs.endpoint)
      const target = redirect[u.host] || u.host
      gcs = { apiEndpoint: `${u.protocol}//${target}`, bucket: h.gcs.bucket }
    }
    if (h.register === 'plain' && redis.length === 0) {
      this.fail(h.id, new Error('the register workload needs a Redis backend in the Node worker (-backend redis)'), true)
      return
    }
    const ctx = {
      identity: h.identity,
      seed: h.seed,
      timeScale: h.time_scale || 1,
      backend: h.backend || 'none',
      redis,
      gcs,
      args: this.args,
      log: (...parts) => this.log(...parts),
    }
    const mod = await loadModule(this.modulePath)
    const create = mod.createLocker || (mod.default && mod.default.createLocker)
    if (typeof create !== 'function') {
      this.fail(h.id, new Error(`${this.modulePath} exports no createLocker(ctx) function`), true)
      return
    }
    const locker = await create(ctx)
    if (!locker || typeof locker.newLock !== 'function') {
      this.fail(h.id, new Error(`createLocker of ${this.modulePath} returned no Locker (an object with newLock(id))`), true)
      return
    }
    if (h.register === 'plain') {
      const Redis = require('ioredis')
      // No retries: a resent SET after a lost reply would make one
      // increment look like two calls' worth of effect.
      this.redisClient = new Redis({ ...redis[0], maxRetriesPerRequest: 0, enableOfflineQueue: false, lazyConnect: true })
      this.redisClient.on('error', () => {}) // each call reports its own error
      await this.redisClient.connect()
    }
    this.locker = locker
    this.send({ id: h.id, ok: true, protocol: PROTOCOL, pid: process.pid })
  }

  // open starts call id with a deadline of timeout_ns, returning its signal.
  open(req) {
    const ac = new AbortController()
    this.calls.set(req.id, ac)
    if (req.timeout_ns > 0) {
      const t = setTimeout(() => ac.abort(new Error(`timed out after ${req.timeout_ns / 1e6} ms`)), req.timeout_ns / 1e6)
      ac.signal.addEventListener('abort', () => clearTimeout(t), { once: true })
    }
    return ac.signal
  }

  done(id) {
    const ac = this.calls.get(id)
    this.calls.delete(id)
    if (ac && !ac.signal.aborted) ac.abort(new Error('call over'))
  }

  async lock(req) {
    const signal = this.open(req)
    const lease = this.nextLease++
    const lock = this.locker.newLock(req.key)
    let granted = false
    const requestRelease = () => {
      if (granted && this.leases.get(lease) === lock) {
        this.send({ event: 'release-requested', lease })
      }
    }
    try {
      await lock.lock(signal, requestRelease)
    } catch (err) {
      this.done(req.id)
      this.fail(req.id, err, false)
      return
    }
    this.done(req.id)
    granted = true
    this.leases.set(lease, lock)
    this.send({ id: req.id, ok: true, lease, token: 0, release_requests: true })
  }

  async unlock(req) {
    const lock = this.leases.get(req.lease)
    if (!lock) {
      this.fail(req.id, new Error(`lease ${req.lease} is not held`), true)
      return
    }
    this.open(req)
    try {
      await lock.unlock()
    } catch (err) {
      this.done(req.id)
      this.fail(req.id, err, false)
      return
    }
    this.done(req.id)
    this.leases.delete(req.lease)
    this.send({ id: req.id, ok: true })
  }

  async read(req) {
    if (!this.redisClient) {
      this.fail(req.id, new Error('no register store: the hello asked for none'), true)
      return
    }
    const v = await withDeadline(this.redisClient.get(`register:${req.key}`), req.timeout_ns)
    this.send({ id: req.id, ok: true, value: v === null ? 0 : Number.parseInt(v, 10) })
  }

  async write(req) {
    if (!this.redisClient) {
      this.fail(req.id, new Error('no register store: the hello asked for none'), true)
      return
    }
    await withDeadline(this.redisClient.set(`register:${req.key}`, String(req.value || 0)), req.timeout_ns)
    this.send({ id: req.id, ok: true })
  }

  clock(req) {
    if (!clockIsReal(req)) {
      this.fail(req.id, new Error('this worker cannot move its locker\'s clock (Node lockers read Date.now() and Node timers)'), true)
      return
    }
    this.send({ id: req.id, ok: true })
  }

  cancel(req) {
    const ac = this.calls.get(req.call)
    if (ac) ac.abort(new Error('cancelled by the harness'))
    this.send({ id: req.id, ok: true })
  }

  async close(req) {
    await this.shutdown(null, req.id)
  }

  // shutdown cancels open calls, closes the locker and the store, answers
  // the close request (if any), and exits.
  async shutdown(code, closeID) {
    if (this.closing) return
    this.closing = true
    for (const ac of this.calls.values()) ac.abort(new Error('the worker is shutting down'))
    const bounded = (p) => Promise.race([Promise.resolve(p).catch(() => {}), new Promise((r) => setTimeout(r, 2000).unref())])
    if (this.locker && typeof this.locker.close === 'function') await bounded(this.locker.close())
    if (this.redisClient) await bounded(this.redisClient.quit())
    if (closeID !== undefined) this.send({ id: closeID, ok: true })
    process.stdout.write('', () => process.exit(code || 0))
  }
}

function clockIsReal(c) {
  return !c || (!c.skew_ns && !c.drift)
}

function hostPort(addr) {
  const i = addr.lastIndexOf(':')
  return { host: addr.slice(0, i).replace(/^\[|\]$/g, ''), port: Number(addr.slice(i + 1)) }
}

function withDeadline(promise, timeoutNS) {
  if (!(timeoutNS > 0)) return promise
  let t
  const deadline = new Promise((_, reject) => {
    t = setTimeout(() => reject(new Error(`timed out after ${timeoutNS / 1e6} ms`)), timeoutNS / 1e6)
  })
  return Promise.race([promise, deadline]).finally(() => clearTimeout(t))
}

async function loadModule(spec) {
  const isPath = spec.startsWith('.') || spec.startsWith('/') || spec.endsWith('.js') || spec.endsWith('.mjs') || spec.endsWith('.cjs')
  const target = isPath ? pathToFileURL(path.resolve(spec)).href : spec
  return import(target)
}

main()
