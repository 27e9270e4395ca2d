// As in verify: a simulation may seed math/rand's global source.
//
//go:debug randseednop=0
package runner

import (
	"testing"
	"time"

	"github.com/googleapis/gax-go/v2"
)

// The storage client's retry jitter is drawn from math/rand's global
// source; seeded per run, the same seed gives the same pauses and another
// seed others.
func TestTheSeedDecidesTheStorageClientsRetryJitter(t *testing.T) {
	pauses := func(seed uint64) []time.Duration {
		seedLibraryRand(seed)
		bo := gax.Backoff{Initial: time.Second, Max: time.Minute}
		var out []time.Duration
		for range 5 {
			out = append(out, bo.Pause())
		}
		return out
	}
	a, b, c := pauses(7), pauses(7), pauses(8)
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("seed 7 twice: pauses %v and %v", a, b)
		}
	}
	same := true
	for i := range a {
		same = same && a[i] == c[i]
	}
	if same {
		t.Errorf("seeds 7 and 8 gave the same pauses %v: the seed does not reach the jitter", a)
	}
}
