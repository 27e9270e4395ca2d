package harness

import (
	"testing"

	"github.com/lockcheck/lockcheck/history"
)

// Test helpers shared with the external tests of package harness_test,
// which run built-in lockers from package catalog (that package imports
// this one, so only an external test may import it).
var (
	TestConfig         = testConfig
	RunAndRead         = runAndRead
	MustUnmarshal      = mustUnmarshal
	SeedWithEveryFault = seedWithEveryFault
)

// RegisterTally is registerTally for the external tests.
type RegisterTally struct {
	Acked, Refused map[string]int
	Finals         map[string]int64
}

func TallyRegister(t *testing.T, h *history.History) RegisterTally {
	t.Helper()
	r := tallyRegister(t, h)
	return RegisterTally{Acked: r.acked, Refused: r.refused, Finals: r.finals}
}
