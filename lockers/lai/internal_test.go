package lai

import (
	"math/rand/v2"
	"testing"
	"time"
)

func jitterLocker(seed uint64) *Locker {
	o, _ := Options{}.resolve()
	return &Locker{opts: o, rng: rand.New(rand.NewPCG(seed, 0x6c6169))}
}

// sleeps is the backoff sequence of one Lock call that never gets the lock.
func sleeps(l *Locker, n int) []time.Duration {
	out := []time.Duration{l.opts.BackoffMin}
	for len(out) < n {
		out = append(out, l.nextSleep(out[len(out)-1]))
	}
	return out
}

// TestBackoffJitter: decorrelated jitter, min(rand(min, last·2), max):
// the same seed gives the same sequence, another seed another; every sleep
// lies in [min, max] and at most doubles the previous one.
func TestBackoffJitter(t *testing.T) {
	a, again, other := sleeps(jitterLocker(42), 50), sleeps(jitterLocker(42), 50), sleeps(jitterLocker(43), 50)
	same, differ := true, false
	for i := range a {
		same = same && a[i] == again[i]
		differ = differ || a[i] != other[i]
		if a[i] < DefaultBackoffMin || a[i] > DefaultBackoffMax {
			t.Errorf("sleep %d = %v, outside [%v, %v]", i, a[i], DefaultBackoffMin, DefaultBackoffMax)
		}
		if i > 0 && a[i] > 2*a[i-1] {
			t.Errorf("sleep %d = %v, more than twice %v", i, a[i], a[i-1])
		}
	}
	if !same {
		t.Errorf("seed 42 gave %v then %v", a, again)
	}
	if !differ {
		t.Errorf("seeds 42 and 43 gave the same sequence %v", a)
	}
	if a[0] != DefaultBackoffMin || a[1] == a[0] {
		t.Errorf("sequence starts %v: want backoff_min, then a jittered value", a[:2])
	}
	capped := false
	for _, d := range a {
		capped = capped || d == DefaultBackoffMax
	}
	if !capped {
		t.Errorf("50 sleeps never reached backoff_max: %v", a)
	}
}

// TestExpiryFormat: expires_at is Ruby's Float#to_s of Time#to_f, read back
// with String#to_f (garbage and absence read as 0.0: always stale).
func TestExpiryFormat(t *testing.T) {
	at := time.Unix(1732478400, 250_000_000)
	if got := formatExpiry(at); got != "1732478400.25" {
		t.Errorf("formatExpiry = %q", got)
	}
	if got := formatExpiry(time.Unix(1732478400, 0)); got != "1732478400.0" {
		t.Errorf("formatExpiry whole = %q", got)
	}
	for in, want := range map[string]float64{
		"1732478400.25": 1732478400.25, "1732478400.0": 1732478400, " 12abc": 12, "1e3": 1000,
		"": 0, "abc": 0, "-5.5": -5.5, "7.": 7,
	} {
		if got := rubyToF(in); got != want {
			t.Errorf("rubyToF(%q) = %v, want %v", in, got, want)
		}
	}
}
