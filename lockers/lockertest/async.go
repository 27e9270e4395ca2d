package lockertest

import (
	"context"

	"github.com/lockcheck/lockcheck/lockers"
)

// LockResult is the outcome of one Lock call.
type LockResult struct {
	Lease lockers.Lease
	Err   error
}

// LockAsync calls l.Lock in its own goroutine and delivers the outcome, so a
// test can act (advance a fake clock, release a holder) while Lock waits.
func LockAsync(ctx context.Context, l lockers.Locker, key string) <-chan LockResult {
	res := make(chan LockResult, 1)
	go func() {
		lease, err := l.Lock(ctx, key)
		res <- LockResult{lease, err}
	}()
	return res
}
