package harness

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/lockcheck/lockcheck/lockers"
)

// LockerSpec is one locker the harness can run, as a named value in the
// explicit list [Lockers].
type LockerSpec struct {
	Name    string
	Summary string
	// Fencing says the locker claims tokens that increase per key.
	Fencing bool
	// Setup prepares what all clients of one run share (a store, a
	// server, a bucket) and returns the constructor of each client's
	// locker and the teardown of what it prepared.
	Setup func(ctx context.Context, p Params) (newLocker func(lockers.Env) (lockers.Locker, error), teardown func(), err error)
}

// Params are the run settings a locker's setup may need.
type Params struct {
	// TimeScale multiplies every duration of an algorithm alike (its
	// TTLs, timeouts, intervals), keeping their ratios, so a scenario can
	// run a 12 s TTL as 1.2 s. 1 is the published algorithm. Lockers
	// without published durations ignore it.
	TimeScale float64
}

// LookupLocker finds a locker by name, failing with the list of known ones.
func LookupLocker(name string) (LockerSpec, error) {
	all := Lockers()
	i := slices.IndexFunc(all, func(s LockerSpec) bool { return s.Name == name })
	if i < 0 {
		var names []string
		for _, s := range all {
			names = append(names, s.Name)
		}
		return LockerSpec{}, fmt.Errorf("unknown locker %q; known lockers: %s", name, strings.Join(names, ", "))
	}
	return all[i], nil
}
