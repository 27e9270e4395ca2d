package lockers

import (
	"fmt"
	"time"
)

// Scale is a time scale: every port's Options has a TimeScale that
// multiplies all of its published durations alike, so that a 30 s lease
// can be tested as a 1 s one with the algorithm's ratios kept.
type Scale float64

// Of is the published duration d at this scale.
func (s Scale) Of(d time.Duration) time.Duration {
	return time.Duration(float64(d) * float64(s))
}

// Published pairs an option with the published default it falls back on.
type Published struct {
	Option  *time.Duration
	Default time.Duration
}

// ApplyTimeScale resolves an Options.TimeScale in place (zero means 1; a
// negative scale is refused) and gives every option that is not positive
// its published default at that scale; an option that is set is taken as
// given, not scaled. It fails when a scale so small rounds a default to
// zero. The error is for the port to wrap with its own ErrBadOptions.
func ApplyTimeScale(timeScale *float64, options ...Published) error {
	if *timeScale < 0 {
		return fmt.Errorf("TimeScale %v is negative", *timeScale)
	}
	if *timeScale == 0 {
		*timeScale = 1
	}
	for _, p := range options {
		if *p.Option <= 0 {
			*p.Option = Scale(*timeScale).Of(p.Default)
		}
		if *p.Option <= 0 {
			return fmt.Errorf("TimeScale %v rounds a duration to zero", *timeScale)
		}
	}
	return nil
}
