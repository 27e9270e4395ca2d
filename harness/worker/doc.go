// Package worker is the protocol between the harness and a client run as a
// child process (verify -clients-as process): both ends of it. [Serve] is
// the worker's end, run by "verify worker" over its stdin and stdout;
// [Start] runs such a child and returns a [Process], the harness's end,
// which is a lockers.Locker like any in-process locker. The protocol is
// plain enough that a worker for a locker written in another language needs
// nothing but this description.
//
// # Protocol, version 1
//
// The harness writes requests to the worker's stdin; the worker writes
// responses and events to its stdout. Each message is one JSON object on
// one line of UTF-8, ended by "\n". The worker's stderr is free text for
// diagnostics: the harness logs it line by line. The worker exits when its
// stdin ends.
//
// Numbers are integers unless stated (drift and time_scale are
// fractions); tokens, lease ids and the seed are unsigned 64-bit, register
// values signed 64-bit, durations in nanoseconds ("_ns"). A field whose
// value is 0, false, "" or empty may be left out, and a reader takes a
// missing field as that zero value; a reader ignores fields it does not
// know.
//
// Every request has an integer "id", unique among the requests the worker
// has not yet answered, and an "op". The worker answers each request
// exactly once with a response carrying the same id: {"id":n,"ok":true,...}
// on success, or on failure
//
//	{"id":n,"error":"text","no_effect":true,"stale":false}
//
// "no_effect" says the call definitely had no effect (in Go, the error
// wraps lockers.ErrNoEffect: the lock definitely not acquired, definitely
// not released, a register definitely not read or written); "stale" says a
// fenced register store refused the call's token (register.ErrStale, which
// implies no_effect). Any other error is an unknown outcome: the call may or
// may not have taken effect.
//
// The worker runs calls concurrently and may answer them in any order: a
// lock may block while an unlock, read or write of another lease
// proceeds. A request that is not valid JSON, or whose fields have the
// wrong types, is answered with an error (no_effect) if its id can be
// read, and reported on stderr otherwise; the worker carries on.
//
// # Requests
//
// hello, the first request, id 0, describes the locker to open:
//
//	{"id":0,"op":"hello","protocol":1,"locker":"fenced","time_scale":0.1,
//	 "identity":"client-3","seed":123,"backend":"gcs",
//	 "gcs":{"endpoint":"http://127.0.0.1:PORT/storage/v1/","bucket":"b"},
//	 "redis":["127.0.0.1:6379"],
//	 "redirect":{"127.0.0.1:4443":"127.0.0.1:51234"},
//	 "register":"fenced","clock":{"skew_ns":0,"drift":0}}
//
// (shown on several lines here; one line on the wire). "locker" is the
// catalog name of a built-in locker for `verify worker`, and only a name
// for the reports of an external worker (verify run -worker), which runs
// its own lock. "backend" names what the harness started for the worker:
// "gcs", "redis" or "none". "gcs" is present only for GCS-backed lockers
// and "redis" only for Redis-backed ones.
// "redirect" maps an address the locker dials to the address the worker
// must really dial instead: the client's own fault proxy, so that the
// harness can partition this client alone. "register" names the register
// store to open for the register workloads: "plain", "fenced", or "" for
// none. "clock" sets the worker's clock as a clock request does. The answer
// is
//
//	{"id":0,"ok":true,"protocol":1,"pid":4242}
//
// with the worker's operating-system process id, or an error. A worker
// that does not speak the requested protocol version answers with an error
// naming the versions it speaks; after a refused hello, hello may be sent
// again. Requests other than hello and close sent
// before a successful hello are refused (no_effect).
//
// lock acquires a key, giving up after timeout_ns:
//
//	{"id":5,"op":"lock","key":"k0","timeout_ns":5000000000}
//	{"id":5,"ok":true,"lease":7,"token":42,"release_requests":true}
//
// timeout_ns, here and in unlock, read and write, bounds the call on the
// worker's side; 0 or missing means no bound but cancel and shutdown.
// "lease" is the worker's id for this acquisition, used by unlock and by
// events; "token" the fencing token (0 when the locker has none);
// "release_requests" says the lease can tell its holder that another client
// asked for the lock (a release-requested event may follow).
//
// unlock releases a lease:
//
//	{"id":6,"op":"unlock","lease":7,"timeout_ns":5000000000}
//	{"id":6,"ok":true}
//
// Unlocking a lease the worker does not hold (never granted, or already
// unlocked successfully) fails with no_effect. After a failed unlock the
// lease is still the worker's, and unlock may be sent again.
//
// read and write are the register store's calls, with the lease's token
// (which a plain store ignores):
//
//	{"id":8,"op":"read","key":"k0","token":42,"timeout_ns":5000000000}
//	{"id":8,"ok":true,"value":17}
//	{"id":9,"op":"write","key":"k0","value":18,"token":42,"timeout_ns":5000000000}
//	{"id":9,"ok":true}
//
// clock sets the worker's clock, the only clock its locker reads:
//
//	{"id":10,"op":"clock","skew_ns":-2000000000,"drift":0.01}
//	{"id":10,"ok":true}
//
// From then on the clock reads real time + skew_ns + drift × (real time
// elapsed since the request). drift must be greater than -1. A wait of d
// on the clock lasts d / (1 + drift) of real time, as on a fast or slow
// clock. The request sets the whole state, so repeating it is harmless.
//
// cancel ends call m early; its own response still comes, usually an
// error:
//
//	{"id":11,"op":"cancel","call":5}
//	{"id":11,"ok":true}
//
// close closes the locker and the store (their contexts cancelled first),
// answers, and makes the worker exit with status 0:
//
//	{"id":12,"op":"close"}
//	{"id":12,"ok":true}
//
// Calls still open when the worker shuts down (close, end of stdin) have
// their contexts cancelled; the worker waits a bounded time for them,
// answers those that end in that time before it answers close, and answers
// none after.
//
// # Broken protocol
//
// A worker that answers hello with an error, with another protocol
// version, or not within 30 s; that writes a line to stdout that is not a
// protocol message (stdout is the protocol's: diagnostics go to stderr),
// or answers a request that is not pending; or that exits without being
// asked (close, or the harness's SIGKILL of a crash fault) makes the run
// fail: verify exits 3 with the worker's command, the client, the line
// number and the end of its stderr, and keeps the history recorded so
// far, which is not judged.
//
// # Events
//
// Events are objects with an "event" field and no "id".
//
//	{"event":"attempt","call":5,"after_ns":1250000}
//
// The locker began an attempt to take the lock in lock call 5
// (lockers.Env.AttemptStarted), after_ns of real monotonic time after the
// worker read that request's line: measured on the worker's real clock,
// never on the clock that clock requests skew. It comes before the call's
// response. An attempt is attributed to the one lock call open when it
// starts; while more than one lock call is open none is reported, which is
// sound (the harness then relies on an earlier attempt, or on the request's
// own time). The harness's clients send one lock at a time.
//
//	{"event":"lost","lease":7}
//	{"event":"release-requested","lease":7}
//
// The lease's holder learned the lease is gone (lockers.Lease.Lost), or
// was asked to let go (lockers.ReleaseRequester). Each comes at most once
// per lease, after the lock response that granted it, and none comes
// after a successful unlock of it has been answered.
//
// # An exchange
//
// Harness lines are marked ">", worker lines "<":
//
//	> {"id":0,"op":"hello","protocol":1,"locker":"fenced","identity":"client-0","seed":7,"register":"fenced","clock":{"skew_ns":0,"drift":0}}
//	< {"id":0,"ok":true,"protocol":1,"pid":4242}
//	> {"id":1,"op":"lock","key":"k0","timeout_ns":5000000000}
//	< {"event":"attempt","call":1,"after_ns":40000}
//	< {"event":"attempt","call":1,"after_ns":210000000}
//	< {"id":1,"ok":true,"lease":1,"token":3}
//	> {"id":2,"op":"read","key":"k0","token":3,"timeout_ns":5000000000}
//	< {"id":2,"ok":true,"value":17}
//	> {"id":3,"op":"clock","skew_ns":30000000000,"drift":0}
//	< {"id":3,"ok":true}
//	> {"id":4,"op":"write","key":"k0","value":18,"token":3,"timeout_ns":5000000000}
//	< {"id":4,"error":"register: token is lower than one the store has accepted: definitely had no effect","no_effect":true,"stale":true}
//	< {"event":"lost","lease":1}
//	> {"id":5,"op":"unlock","lease":1,"timeout_ns":5000000000}
//	< {"id":5,"error":"lease expired before unlock: definitely had no effect","no_effect":true}
//	> {"id":6,"op":"close"}
//	< {"id":6,"ok":true}
//
// The locker took two attempts to win k0. The harness then stepped the
// worker's clock 30 s ahead; meanwhile another client, whose lock the
// jump let through, read k0 with token 4, so the store refused the stale
// write, the locker found its lease expired, and the unlock had no effect.
//
// # The harness's end
//
// [Process] maps the protocol back onto the Go contracts: Lock, a lease's
// Unlock and the store's Read and Write are requests whose timeout_ns is
// what the caller's context has left (5 minutes without a deadline); when
// the context ends first they send cancel and return its error at once. A
// lease granted after its Lock gave up is unlocked, since no one holds
// it. Errors come back wrapping lockers.ErrNoEffect or register.ErrStale
// as the response says. When the worker exits or its output ends, every
// pending call fails with [ErrExited] (an unknown outcome), at once.
package worker
