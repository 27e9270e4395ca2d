package lockertest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/lockcheck/lockcheck/lockers"
)

// HandOver checks the plainest exchange between two clients on one key, as
// a smoke test over a real network: a holds the key, b's Lock gives up
// after kept, a unlocks, and b then takes the key. bound limits the whole
// exchange. That a timed-out Lock had no effect is the conformance
// suite's to check, in virtual time: here a deadline may cut a request.
func HandOver(t testing.TB, a, b lockers.Locker, kept, bound time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	held, err := a.Lock(ctx, "k")
	if err != nil {
		t.Fatalf("Lock: %v", err)
	}
	short, cancelShort := context.WithTimeout(ctx, kept)
	defer cancelShort()
	// A deadline that ends while a request is in flight (a loaded machine
	// makes kept short) leaves its outcome open, so the error need not say
	// "no effect"; but the Lock must fail: the key was held.
	if _, err := b.Lock(short, "k"); err == nil {
		t.Fatal("second client's Lock on a held key succeeded")
	} else if !errors.Is(err, lockers.ErrNoEffect) && !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("second client's Lock on a held key: %v, want a timeout", err)
	}
	if err := held.Unlock(ctx); err != nil {
		t.Fatalf("Unlock: %v", err)
	}
	lease, err := b.Lock(ctx, "k")
	if err != nil {
		t.Fatalf("Lock after Unlock: %v", err)
	}
	if err := lease.Unlock(ctx); err != nil {
		t.Errorf("Unlock: %v", err)
	}
}
