package lockers

import (
	"strings"
	"testing"
	"time"
)

func TestApplyTimeScale(t *testing.T) {
	scale, set, unset := 0.1, 7*time.Second, time.Duration(0)
	if err := ApplyTimeScale(&scale, Published{&set, time.Minute}, Published{&unset, 30 * time.Second}); err != nil {
		t.Fatal(err)
	}
	if set != 7*time.Second || unset != 3*time.Second {
		t.Errorf("set %v, unset %v: want an option given kept as it is (7s) and a default scaled (3s)", set, unset)
	}

	zero, d := 0.0, time.Duration(0)
	if err := ApplyTimeScale(&zero, Published{&d, time.Second}); err != nil || zero != 1 || d != time.Second {
		t.Errorf("scale 0: got scale %v, %v, %v; want scale 1 and the published default", zero, d, err)
	}

	for _, c := range []struct {
		scale float64
		says  string
	}{{-1, "TimeScale -1 is negative"}, {1e-12, "rounds a duration to zero"}} {
		d := time.Duration(0)
		err := ApplyTimeScale(&c.scale, Published{&d, time.Millisecond})
		if err == nil || !strings.Contains(err.Error(), c.says) {
			t.Errorf("scale %v: error %v, want %q", c.scale, err, c.says)
		}
	}
}
