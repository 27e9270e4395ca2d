// Package redsync adapts github.com/go-redsync/redsync/v4 v4.18.1 to the
// lockers contract, as two lockers: [Name] on one Redis and [NameRedlock],
// Redlock over three independent Redis servers. It is not a port: the
// library runs as it is, from the module cache (source:
// github.com/go-redsync/redsync, mutex.go and redsync.go, tag v4.18.1), used
// the way its README shows: one go-redis v9 client per server, each wrapped
// by the library's goredis/v9 pool, redsync.New(pools...), NewMutex per
// Lock.
//
// # What the library does
//
// LockContext draws one random value per call, then runs rounds: SET key
// value NX PX expiry on every node at once, each node bounded by a context
// timeout of 5 % of the expiry (timeoutFactor). The round wins if at least
// a quorum (n/2+1) said yes and the time it took, read on time.Now, leaves
// some validity: expiry − elapsed − 1 % of expiry (driftFactor). Otherwise it
// runs a compare-and-delete on every node, waits the retry delay, and tries
// again, up to its tries; a context that ends during the wait ends it with
// ErrFailed. ExtendContext is a compare-then-PEXPIRE on every node, with the
// same quorum and validity check; UnlockContext a compare-and-delete, which
// answers -1 for a key already gone (ErrLockAlreadyExpired) and 0 for
// someone else's.
//
// # What the adapter adds
//
//   - Expiry: [DefaultTTL], the library's 8 s, multiplied by
//     Options.TimeScale (0.1 gives 800 ms).
//   - Retries: WithTries(MaxInt32), so only the context ends LockContext;
//     the delay is the library's default, uniform in [50 ms, 250 ms)
//     multiplied by TimeScale, drawn from a generator seeded by Env.Seed and
//     Env.Identity (the library's default reads the global math/rand).
//   - Value: WithGenValueFunc with 16 bytes from the same seeded generator,
//     base64 like the library's (which reads crypto/rand).
//   - go-redis clients: Dialer is Env.Dial; ContextTimeoutEnabled is on,
//     because without it go-redis ignores context deadlines on its sockets
//     and redsync's per-node timeout would not bound a node that stopped
//     answering: every round would then wait go-redis's 3 s read timeout and
//     fail its validity check, and Redlock would stop working with one node
//     cut off. Maintenance notifications (a Redis Enterprise feature) are
//     off: they resolve each server's host name when the client is built,
//     outside Env.Dial, and the library uses none of it.
//   - Refresh: ExtendContext every TTL/2 of Env.Clock, counted from the
//     sending of the last successful extension (or of the winning round).
//     An extension that fails, for any reason (below a quorum, or redsync's
//     validity check), closes Lost. So does a full TTL on Env.Clock without
//     a successful one, even if one is still in flight.
//   - Attempts: the adapter wraps each pool, which lets it see every
//     command of one LockContext. It calls Env.MarkAttempt right before each
//     round's first SET NX, as long as no earlier round may have taken the
//     lock: a round may have only if a quorum of its SET NX succeeded or got
//     no answer, or one of its compare-and-deletes got no answer.
//   - Errors: a failed Lock wraps lockers.ErrNoEffect when no round may
//     have taken the lock, and is indeterminate otherwise. Unlock below a
//     quorum wraps lockers.ErrNoEffect when every node answered (the key
//     was gone, or someone else's) and is indeterminate when a node did not
//     answer. Token is always 0.
//
// # Differences forced
//
//   - redsync judges validity, its retry timer and its per-node timeouts on
//     the process's real clock (time.Now, time.NewTimer,
//     context.WithTimeout), not on Env.Clock: a client whose harness clock
//     is skewed, jumps or pauses keeps the library's timing unchanged. Only
//     the adapter's refresh schedule and its Lost deadline follow Env.Clock.
//   - WithFailFast stays off, the library's default: every round and every
//     extension waits for all nodes. A round is bounded by the per-node
//     timeout, but ExtendContext has none but its context, and the
//     adapter's carries no deadline (a deadline is real time, and go-redis
//     honours nothing else on a socket). A node that stops answering
//     without refusing (a partition that drops packets) therefore holds an
//     extension up to go-redis's own limits (5 dial attempts of up to 5 s,
//     3 s reads), longer than a scaled TTL, and the lease is reported Lost
//     by the adapter's TTL deadline although a majority answered. A node
//     that refuses connections costs go-redis's dial retries, 4 × 100 ms,
//     until its pool starts failing fast.
//   - A round that fails after taking some nodes leaves their keys if the
//     compare-and-delete does not arrive; they expire unrefreshed, as for
//     any user of the library.
//
// # Guarantee and limits
//
// On one Redis, mutual exclusion holds as long as no holder outlives its
// lease without knowing. Redlock over three claims the same as long as a
// majority of the servers keep the key for the whole TTL and every
// participant's time runs at about the same rate: a client that cannot
// reach two servers cannot lock, one that can reach two still can. It is
// known to be weak (Kleppmann, "How to do distributed locking", 2016)
// where that assumption breaks: a process pause (GC, SIGSTOP) or a
// delayed network packet longer than the remaining validity lets a holder
// act after its lease expired, and no fencing token lets the resource
// refuse it; a server's clock jumping forward, or a server restarting
// without persistence, drops a key early, so that two clients can each hold
// a majority. The harness's pause, skew and crash faults exercise exactly
// these.
package redsync
