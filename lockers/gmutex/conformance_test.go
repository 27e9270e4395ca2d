package gmutex_test

import (
	"context"
	"testing"
	"time"

	"github.com/lockcheck/lockcheck/backends/gcs"
	"github.com/lockcheck/lockcheck/lockers"
	"github.com/lockcheck/lockcheck/lockers/gmutex"
	"github.com/lockcheck/lockcheck/lockers/lockertest"
)

// TestConformance runs at TimeScale 0.2: a 1 s TTL extended every 200 ms,
// waiters backing off between 10 ms and 6 s.
func TestConformance(t *testing.T) {
	lockertest.Run(t, lockertest.Suite{
		New: func(tb testing.TB) func(lockers.Env) lockers.Locker {
			b, err := gcs.NewInMemory(gcs.Options{})
			if err != nil {
				tb.Fatal(err)
			}
			tb.Cleanup(b.Close)
			return func(env lockers.Env) lockers.Locker {
				env.HTTP = b.HTTPClient(nil)
				l, err := gmutex.New(context.Background(), gmutex.Config{Endpoint: b.Endpoint(), Bucket: b.Bucket()}, env, gmutex.Options{TimeScale: 0.2})
				if err != nil {
					tb.Fatalf("New: %v", err)
				}
				return l
			}
		},
		OwnerCheck: true,
		TTL:        time.Second,
		Seed:       616,
		// In virtual time, so a loaded machine that runs a refresher late
		// cannot end a lease under a holder's feet.
		Bubble: true,
	})
}
