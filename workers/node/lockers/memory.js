// @tus/server's MemoryLocker, as published: a lock in one process's
// memory. lockcheck runs each client as its own worker process, so each
// client gets a MemoryLocker of its own and nothing excludes the others:
// the run must come out invalid. It is the Node worker's known-bad
// fixture, and what a tus user sees who scales a server with the default
// locker to several processes.
'use strict'

const { MemoryLocker } = require('@tus/server')

exports.createLocker = (ctx) =>
  // The published 30 s acquire timeout, scaled as lockcheck scales every
  // locker's durations.
  new MemoryLocker({ acquireLockTimeout: Math.max(1, Math.round(30000 * ctx.timeScale)) })
