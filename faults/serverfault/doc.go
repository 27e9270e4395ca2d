// Package serverfault injects faults into single requests on the server
// side: HTTP middleware in front of the storage backend (for the embedded
// GCS backend, gcs.Options.Wrap, which puts it in front of the fidelity
// layer).
//
// The network fault plane (netfault) works per connection, and toxiproxy
// decides toxicity per connection, so it cannot fault "the next write to
// this object" or "one request in ten". This middleware can: every request
// is classified (write, read, other; bucket and object name), matched
// against the rules in force, and faulted or not by a decision drawn from a
// generator seeded with Options.Seed under a mutex. The same seed and the
// same sequence of requests give the same faults; concurrent requests
// still arrive in an order the scheduler picks, so a run reproduces its
// fault schedule, not every interleaving.
//
// # Faults, what they stand for, and how they heal
//
// A fault is a Rule switched on with Inject, which returns its Heal; Heal
// by id and HealAll switch rules off, HealAll everything in one call. A
// rule with Count retires itself after Count faults ("the next N writes to
// X"). Healing affects decisions from then on: a request already being
// held by a delay finishes as decided.
//
//   - Unavailable: 503 backendError before commit. The request never
//     reaches the backend. Stands for an overloaded or restarting front
//     end. A client that retries is right to: nothing happened.
//   - LostReply: the backend applies the request, then the client gets a
//     503 instead of the reply. Stands for a front end that fails after the
//     storage layer committed. This is the fault that makes a lock call
//     indeterminate, and the one that fools retrying clients: the storage
//     client retries a conditional write on 503, and its create-if-absent
//     (ifGenerationMatch=0) then meets its own object and answers 412 —
//     the "ghost lock": the caller is told it lost while the lock is its
//     own, and nobody will release it until it expires.
//   - DroppedReply: as LostReply but the connection is closed without any
//     reply (hijacked and reset; where the connection cannot be hijacked,
//     the handler aborts with http.ErrAbortHandler). Stands for a crashed
//     front end or a middlebox reset after commit. Note that Go's
//     http.Transport itself replays a request on a reused connection that
//     dies before any reply if the request is idempotent by method (GET,
//     HEAD, DELETE...) or carries an Idempotency-Key header.
//   - RateLimit: 429 rateLimitExceeded, GCS's documented limit of about
//     one write per second per object, as a sliding window per object
//     name. Only writes count: uploads, the final chunk of a resumable
//     upload, patch and update, delete, and the destination of copy,
//     rewrite and compose. A write is counted when it is admitted to the
//     backend, whether or not its preconditions then hold; a rejected
//     (429) write is not counted. The window holds only writes seen while
//     the rule is in force, so switching it on never rejects on the
//     strength of writes from before. Lock algorithms that rewrite one
//     object to renew a lease meet this limit on real GCS.
//   - Latency: the request waits Latency ± a seeded Jitter before the
//     backend (a slow front end), or with AfterCommit the reply waits
//     after the backend applied it (a slow reply: the write took effect
//     long before its caller knows). The wait ends early if the client
//     gives up; a request that gave up before the backend is dropped
//     unanswered and uncommitted.
//
// Faults before commit are decided first: if one fires, the request is
// answered without the backend and no after-commit rule is consulted.
// Latency rules add up.
//
// # In-memory transports
//
// Wrap works the same when a simulation mode serves the handler chain
// through an in-memory http.RoundTripper instead of a socket, with one
// caveat: DroppedReply cannot hijack a connection there and panics with
// http.ErrAbortHandler, as net/http's server expects; such a transport must
// recover that value and turn it into a connection error.
//
// # Events
//
// Options.OnEvent reports every fault injected on a request (kind, rule,
// op, method, bucket, object, the status the client was told, the
// backend's own status for faults after commit, the delay, the time), so
// the harness can record nemesis events next to the operations they hit.
//
// # Object names
//
// Names are read from the JSON API's paths — /storage/v1/b/B/o/N
// (URL-escaped), /download/storage/v1/b/B/o/N, the copyTo/rewriteTo
// destination, /compose — from the name query parameter or the metadata
// of /upload/storage/v1/b/B/o (the first 64 KiB of the body are read for
// it and put back), from the session a resumable upload's final chunk
// belongs to, and from the XML API's /B/N.
package serverfault
