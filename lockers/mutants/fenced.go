package mutants

import (
	"context"

	"github.com/lockcheck/lockcheck/lockers"
	"github.com/lockcheck/lockcheck/lockers/fenced"
	"github.com/lockcheck/lockcheck/lockers/redis"
)

// The GCS mutants are lockcheck's own GCS lock (package fenced) with one
// planted defect each (fenced.Defect), one of a class of bug that real
// GCS locks have and that a standard comparison must catch on every seed:
//
//   - mutant-blind-delete: Unlock deletes the lock object with no
//     generation precondition, and the client library retries the delete.
//     Triggered by a lost reply on the server side (server-lost-reply: the
//     delete is applied, the reply is a 503): the retry deletes the lock
//     the next holder has created meanwhile, and a third client takes it.
//   - mutant-metageneration-token: the fencing token is the lock object's
//     metageneration, which starts at 1 for every new object, so every
//     holder gets token 1. Triggered by any two acquisitions of a key; the
//     fencing-token checker flags the repeat, and a fenced store that
//     refuses only lower tokens would take a stale holder's writes.
//   - mutant-unlock-keeps: Unlock returns without deleting the object or
//     stopping the refresher, so the first holder of a key keeps it for
//     good. Triggered by any release; the other clients never acquire it
//     again, which only the liveness verdict shows.
//   - mutant-failed-extend-counts: a refresh that fails at once (a
//     connection refused or reset, not a timeout) counts as confirmed.
//     Triggered by a holder whose every request fails at once for longer
//     than the lease while it still works (the long-fail-fast column): it
//     goes on believing, the lease runs out on the server, and a waiter
//     takes the lock. A silent partition does not show it: the refresh
//     then times out, which the mutant treats as the original does.
//   - mutant-deadline-on-send: the holder's deadline moves forward when a
//     refresh is sent, not when it is confirmed. Triggered by a holder cut
//     off from the backend for longer than the lease while it still works
//     (long-partition, long-fail-fast): its refresher keeps sending, so
//     it never learns it lost the lock.
//   - mutant-blind-extend: a refresh updates the lock object with no
//     precondition. Triggered by a refresh that lands late, after its
//     holder was told it lost the lock and another client took it (the
//     deliver-late column): it rewrites the next holder's lock. The
//     clients see nothing wrong (the next holder is told it lost the lock
//     when its own refresh then fails); the backend audit sees the write.
const (
	BlindDelete         = "mutant-blind-delete"
	MetagenerationToken = "mutant-metageneration-token"
	UnlockKeeps         = "mutant-unlock-keeps"
	FailedExtendCounts  = "mutant-failed-extend-counts"
	DeadlineOnSend      = "mutant-deadline-on-send"
	BlindExtend         = "mutant-blind-extend"
)

// FencedDefects are the GCS mutants by name, with their defects.
var FencedDefects = map[string]fenced.Defect{
	BlindDelete:         fenced.DefectBlindDelete,
	MetagenerationToken: fenced.DefectMetagenerationToken,
	UnlockKeeps:         fenced.DefectUnlockKeeps,
	FailedExtendCounts:  fenced.DefectFailedExtendCounts,
	DeadlineOnSend:      fenced.DefectDeadlineOnSend,
	BlindExtend:         fenced.DefectBlindExtend,
}

// RedisBlindExtend is the Redis mutant: the Redis locker (package
// redis, tus-node-server PR #846's) whose watchdog extends the key with
// a bare PEXPIRE, no owner check (redis.DefectBlindExtend). Triggered by
// an extend that lands late, after the key expired and another client
// took it (the deliver-late column): it extends the next holder's key,
// which the backend audit of the embedded Redis sees, and tells the late
// holder the key is still its own.
const RedisBlindExtend = "mutant-redis-blind-extend"

// NewRedis is redis.New with the Redis mutant's defect planted.
func NewRedis(cfg redis.Config, env lockers.Env, opts redis.Options) (*redis.Locker, error) {
	opts.Defect = redis.DefectBlindExtend
	return redis.New(cfg, env, opts)
}

// NewFenced is fenced.New with the named mutant's defect planted.
func NewFenced(ctx context.Context, name string, cfg fenced.Config, env lockers.Env, opts fenced.Options) (*fenced.Locker, error) {
	opts.Defect = FencedDefects[name]
	return fenced.New(ctx, cfg, env, opts)
}
