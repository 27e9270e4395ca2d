package lockertest

import (
	"context"
	"testing"
	"time"
)

// WaitBound is how long a test waits for another goroutine before it fails:
// generous, so a loaded machine never reaches it, and short enough that a
// wait that can never end fails its test instead of hanging the suite until
// go test's own timeout.
const WaitBound = 20 * time.Second

// Bounded is a context for a wait that must end within WaitBound.
func Bounded(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), WaitBound)
	t.Cleanup(cancel)
	return ctx
}

// Recv receives from ch, failing the test if nothing arrives within
// WaitBound.
func Recv[T any](t testing.TB, ch <-chan T, what string) T {
	t.Helper()
	timer := time.NewTimer(WaitBound)
	defer timer.Stop()
	select {
	case v := <-ch:
		return v
	case <-timer.C:
		t.Fatalf("no %s within %v", what, WaitBound)
		var zero T
		return zero
	}
}
