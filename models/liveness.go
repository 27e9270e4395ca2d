package models

import (
	"fmt"
	"slices"
	"time"

	"github.com/lockcheck/lockcheck/history"
)

// LivenessName is the liveness checker's name in reports.
const LivenessName = "liveness"

// LivenessResult holds the liveness figures and verdict. Liveness is
// reported apart from safety: a lock that never grants anything is safe.
//
// The verdict is about the recovery phase, which starts at a recovery event
// (every fault healed) and lasts until the next one or the end of the
// history. Every client slot alive when it starts (its last crash, if any,
// followed by a restart) must get an acquire-ok after it; slots restarted
// later are not counted. The verdict is:
//   - invalid if some live client never acquired in some phase;
//   - valid if every live client of every phase acquired;
//   - unknown if no recovery phase was recorded or no client was alive at
//     its start (nothing was measured, which is not evidence of recovery),
//     or if the history was cut short while a client had not yet
//     acquired (it may have been about to).
type LivenessResult struct {
	Verdict Verdict `json:"verdict"`
	Summary string  `json:"summary"`
	// Acquired counts acquire calls that returned ok, over the whole
	// history; the latencies are theirs, from invocation to ok.
	Acquired   int           `json:"acquired"`
	LatencyP50 time.Duration `json:"latency_p50_ns"`
	LatencyP95 time.Duration `json:"latency_p95_ns"`
	LatencyP99 time.Duration `json:"latency_p99_ns"`
	LatencyMax time.Duration `json:"latency_max_ns"`
	// AcquisitionsPerSecond is Acquired over the span from the first to
	// the last event.
	AcquisitionsPerSecond float64 `json:"acquisitions_per_second"`
	// LongestWait is the longest any acquire call waited, whatever its
	// outcome; one still open when the history ends counts up to the
	// end. LongestWaitEvent is its invocation's index, -1 if none.
	LongestWait      time.Duration   `json:"longest_wait_ns"`
	LongestWaitEvent int64           `json:"longest_wait_event"`
	Recovery         []RecoveryPhase `json:"recovery"`
	// Stuck lists the client slots that were alive at the start of a
	// recovery phase and never acquired in it.
	Stuck []int `json:"stuck"`
	// HandOffs and HolderCrashes time how the lock passes from one client
	// to the next, in the normal way and after its holder died.
	HandOffs      HandOffs      `json:"hand_offs"`
	HolderCrashes HolderCrashes `json:"holder_crashes"`
}

// RecoveryPhase is one recovery phase's outcome.
type RecoveryPhase struct {
	Start int64 `json:"start_ns"`
	End   int64 `json:"end_ns"`
	// Live lists client slots alive at Start.
	Live  []int `json:"live"`
	Stuck []int `json:"stuck"`
	// RecoveredIn is how long after Start the last live client acquired;
	// meaningful only when Stuck is empty and Live is not.
	RecoveredIn time.Duration `json:"recovered_in_ns"`
}

// CheckLiveness runs the liveness checker alone.
func CheckLiveness(h *history.History) (*LivenessResult, error) {
	d, err := newDigest(h)
	if err != nil {
		return nil, err
	}
	r := checkLiveness(d)
	r.HandOffs, r.HolderCrashes = measureRecovery(h)
	return r, nil
}

func checkLiveness(d *digest) *LivenessResult {
	r := &LivenessResult{Acquired: len(d.latencies), LongestWait: time.Duration(d.longestWait),
		LongestWaitEvent: d.waitEvent, Recovery: []RecoveryPhase{}, Stuck: []int{}}
	if n := len(d.latencies); n > 0 {
		lat := slices.Clone(d.latencies)
		slices.Sort(lat)
		r.LatencyP50 = time.Duration(percentile(lat, 50))
		r.LatencyP95 = time.Duration(percentile(lat, 95))
		r.LatencyP99 = time.Duration(percentile(lat, 99))
		r.LatencyMax = time.Duration(lat[n-1])
	}
	if span := d.last - d.first; span > 0 {
		r.AcquisitionsPerSecond = float64(r.Acquired) / (float64(span) / float64(time.Second))
	}
	live := 0
	for i, p := range d.phases {
		ph := RecoveryPhase{Start: p.start, End: d.last, Live: p.live, Stuck: []int{}}
		if i+1 < len(d.phases) {
			ph.End = d.phases[i+1].start
		}
		if ph.Live == nil {
			ph.Live = []int{}
		}
		for _, c := range p.live {
			t, ok := p.acquired[c]
			if !ok || (i+1 < len(d.phases) && t >= ph.End) {
				ph.Stuck = append(ph.Stuck, c)
				if !slices.Contains(r.Stuck, c) {
					r.Stuck = append(r.Stuck, c)
				}
				continue
			}
			ph.RecoveredIn = max(ph.RecoveredIn, time.Duration(t-p.start))
		}
		live += len(p.live)
		r.Recovery = append(r.Recovery, ph)
	}
	slices.Sort(r.Stuck)
	switch {
	case len(d.phases) == 0:
		r.Verdict = Unknown
		r.Summary = "no recovery phase was recorded, so recovery was not measured (was the run interrupted?)."
	case len(r.Stuck) > 0 && d.truncated:
		r.Verdict = Unknown
		r.Summary = fmt.Sprintf("the history was cut short during recovery; clients %v had not acquired yet.", r.Stuck)
	case len(r.Stuck) > 0:
		r.Verdict = Invalid
		first := r.Recovery[0]
		for _, ph := range r.Recovery {
			if len(ph.Stuck) > 0 {
				first = ph
				break
			}
		}
		r.Summary = fmt.Sprintf("clients %v were alive when recovery began at %s and never acquired after it (of %d live).",
			first.Stuck, fmtTime(first.Start), len(first.Live))
	case live == 0:
		r.Verdict = Unknown
		r.Summary = "no client was alive when recovery began; nothing was measured."
	default:
		r.Verdict = Valid
		last := r.Recovery[len(r.Recovery)-1]
		r.Summary = fmt.Sprintf("all %d live clients acquired after recovery began at %s, the last %s later.",
			len(last.Live), fmtTime(last.Start), last.RecoveredIn)
	}
	return r
}

// percentile is the nearest-rank percentile of sorted values.
func percentile(sorted []int64, p int) int64 {
	rank := (p*len(sorted) + 99) / 100
	return sorted[max(rank, 1)-1]
}
