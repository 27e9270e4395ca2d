package harness

import (
	"time"

	"github.com/lockcheck/lockcheck/harness/internal/skewclock"
)

// machineClock is the clock of a client's machine. It outlives the
// client's incarnations, as a machine's clock outlives its processes, and
// clock faults change it.
type machineClock = skewclock.Clock

func newMachineClock() *machineClock { return skewclock.New(time.Now) }
