// Package models holds the checkers that judge a run's history.
//
// Safety is judged twice, from two views of one promise:
//
//   - [CheckMutex]: mutual exclusion as the clients saw it. Linear in the
//     history (n log n for the sort), certain, and the first place a double
//     grant shows.
//   - [CheckLinearizable]: linearizability against an owner-aware lock
//     model ([LockModel]) with porcupine, where indeterminate calls, crashes
//     and lost leases are given exactly the freedom they had. The history is
//     split by key and cut into independent segments before the search, so
//     it stays near linear on realistic histories; the doc comment of
//     CheckLinearizable derives why every step keeps the verdict exact.
//
// The register workloads add data-level views, which show what a broken
// lock costs: lost updates (the final value against the acknowledged
// increments), register linearizability (porcupine: a serial order of the
// read-then-write sections in which each finds the value it read), and, on
// a fenced store, fencing (no write accepted after a higher token was).
// The request-release workload adds a measure of release requests: how
// fast a holder that was asked lets go, and holds that never did. A
// checker that does not apply to a run's workload is left out of the
// report, never listed as passing.
//
// [CheckLiveness] measures acquire latency and throughput and whether every
// live client acquired again once the faults were healed. It has its own
// verdict, kept apart from safety: a lock that grants nothing is safe.
//
// [Check] runs all that apply and returns a [Report] (JSON-tagged for
// result.json, with [Report.Summary] and [Report.WriteTable] for people and
// [Report.WriteVisualization] for porcupine's HTML view). Verdicts are
// three-valued; unknown is never a pass.
package models
