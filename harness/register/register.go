// Package register is the data a lock protects in the register workloads:
// one integer register per lock key, kept in a store the lock does not
// guard by itself.
//
// A plain store reads and writes without any condition, as most code
// protected by a lock does, so two clients that both believe they hold the
// lock can lose each other's increments. A fenced store refuses any call
// whose token is lower than the highest token it has accepted for the key,
// reads included: a read with token t raises the key's fence to t, so a
// holder whose lease was taken over cannot write back what it read before
// the new holder read (Kleppmann's fencing, applied to reads as well, which
// is what makes read-modify-write safe and not only the last write).
package register

import (
	"context"
	"errors"
	"fmt"

	"github.com/lockcheck/lockcheck/lockers"
)

// ErrStale is a fenced store's refusal of a token lower than the key's
// fence. It wraps lockers.ErrNoEffect: a refused call definitely changed
// nothing.
var ErrStale = fmt.Errorf("register: token is lower than one the store has accepted: %w", lockers.ErrNoEffect)

// Store holds one register per key. Values start at 0.
//
// An error wrapping ErrStale is a fenced store's refusal; one wrapping only
// lockers.ErrNoEffect is another definite no-effect (a fenced GCS store
// that lost every round of its compare-and-swap). Any other error leaves the
// outcome unknown: the call may have taken effect. A store sends each
// request that could take effect once and never resends it.
type Store interface {
	// Read returns key's value. token is the caller's fencing token; a
	// plain store ignores it.
	Read(ctx context.Context, key string, token uint64) (int64, error)
	// Write sets key's value. token as for Read.
	Write(ctx context.Context, key string, value int64, token uint64) error
	// Final reads key's value for the harness's own final tally: no
	// fence is checked or raised.
	Final(ctx context.Context, key string) (int64, error)
}

// IsStale reports whether err is a fenced store's refusal.
func IsStale(err error) bool { return errors.Is(err, ErrStale) }

// StaleError is the refusal of a call whose token is below the key's fence;
// every fenced store answers a stale call with one.
func StaleError(op, key string, token, fence uint64) error {
	return fmt.Errorf("register: %s %q with token %d, fence is %d: %w", op, key, token, fence, ErrStale)
}
