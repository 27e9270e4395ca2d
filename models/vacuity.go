package models

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/lockcheck/lockcheck/history"
)

// VacuityName is the vacuity check's name in reports.
const VacuityName = "vacuity"

// checkVacuity says why a history proves nothing, or "" when it may: a
// run in which no lock was ever granted passes every safety checker
// trivially, and a run that asked for faults aimed at holders, none of
// which found one, never tested what it was meant to. Either makes the
// verdict unknown, never valid.
func checkVacuity(h *history.History, c Counts) string {
	if c.Acquired == 0 {
		return fmt.Sprintf("no lock was ever granted (%s, none successful): every checker passed on nothing, which shows nothing about the lock", nOf(c.Acquires, "acquire call"))
	}
	aimed, hit := 0, 0
	for _, e := range h.Events {
		if e.F != history.FaultStart {
			continue
		}
		var f history.Fault
		if json.Unmarshal(e.Value, &f) != nil || !strings.HasSuffix(f.Kind, "-holder") {
			continue
		}
		aimed++
		if f.AtHolder {
			hit++
		}
	}
	if aimed > 0 && hit == 0 {
		return fmt.Sprintf("%s aimed at a lock holder found none holding a lock, so the run never tested what its faults were for", nOf(aimed, "fault"))
	}
	return ""
}
