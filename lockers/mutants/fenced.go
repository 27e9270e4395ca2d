package mutants

import (
	"context"

	"github.com/lockcheck/lockcheck/lockers"
	"github.com/lockcheck/lockcheck/lockers/fenced"
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
const (
	BlindDelete         = "mutant-blind-delete"
	MetagenerationToken = "mutant-metageneration-token"
	UnlockKeeps         = "mutant-unlock-keeps"
)

// FencedDefects are the GCS mutants by name, with their defects.
var FencedDefects = map[string]fenced.Defect{
	BlindDelete:         fenced.DefectBlindDelete,
	MetagenerationToken: fenced.DefectMetagenerationToken,
	UnlockKeeps:         fenced.DefectUnlockKeeps,
}

// NewFenced is fenced.New with the named mutant's defect planted.
func NewFenced(ctx context.Context, name string, cfg fenced.Config, env lockers.Env, opts fenced.Options) (*fenced.Locker, error) {
	opts.Defect = FencedDefects[name]
	return fenced.New(ctx, cfg, env, opts)
}
