package harness

// Lockers lists every locker a run can use, in the order `verify list`
// prints them.
func Lockers() []LockerSpec {
	return []LockerSpec{}
}
