package models

import (
	"fmt"

	"github.com/lockcheck/lockcheck/history"
)

// VacuityName is the vacuity check's name in reports.
const VacuityName = "vacuity"

// checkVacuity says why a history proves nothing, or "" when it may: a
// run in which no lock was ever granted passes every safety checker
// trivially, which makes the verdict unknown, never valid. Faults that
// never ran are the fault check's (checkFaults).
func checkVacuity(h *history.History, c Counts) string {
	if c.Acquired == 0 {
		return fmt.Sprintf("no lock was ever granted (%s, none successful): every checker passed on nothing, which shows nothing about the lock", nOf(c.Acquires, "acquire call"))
	}
	return ""
}
