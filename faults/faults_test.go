package faults

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestPlanIsReproducibleAndInsideTheWindow(t *testing.T) {
	kinds, err := Lookup([]string{"pause", "crash"})
	if err != nil {
		t.Fatal(err)
	}
	o := PlanOptions{Clients: 5, Window: 20 * time.Second, Interval: time.Second}
	a, b := Plan(7, kinds, o), Plan(7, kinds, o)
	if len(a) < 5 {
		t.Fatalf("only %d faults in a 20 s window at 1 s intervals", len(a))
	}
	if !reflect.DeepEqual(names(a), names(b)) || a[3].At != b[3].At || a[3].Clients[0] != b[3].Clients[0] {
		t.Fatal("same seed gave different plans")
	}
	if c := Plan(8, kinds, o); reflect.DeepEqual(starts(a), starts(c)) {
		t.Fatal("different seeds gave the same plan")
	}
	seen := map[string]bool{}
	var prevEnd time.Duration
	for _, p := range a {
		seen[p.Kind.Name] = true
		if p.At < prevEnd {
			t.Errorf("fault %d starts at %v before the previous one healed at %v", p.ID, p.At, prevEnd)
		}
		prevEnd = p.At + p.Duration
		if prevEnd > o.Window {
			t.Errorf("fault %d heals at %v, after the window %v", p.ID, prevEnd, o.Window)
		}
		if c := p.Clients[0]; c < 0 || c >= o.Clients {
			t.Errorf("fault %d targets client %d of %d", p.ID, c, o.Clients)
		}
	}
	if !seen["pause"] || !seen["crash"] {
		t.Errorf("kinds drawn: %v, want both", seen)
	}
}

func TestLookupNamesTheKnownFaults(t *testing.T) {
	_, err := Lookup([]string{"pause", "meteor"})
	if err == nil || !strings.Contains(err.Error(), `"meteor"`) || !strings.Contains(err.Error(), "pause, crash") {
		t.Fatalf("error = %v", err)
	}
}

type fakeClients struct{ log []string }

func (f *fakeClients) rec(s string) error  { f.log = append(f.log, s); return nil }
func (f *fakeClients) Pause(c int) error   { return f.rec("pause") }
func (f *fakeClients) Resume(c int) error  { return f.rec("resume") }
func (f *fakeClients) Crash(c int) error   { return f.rec("crash") }
func (f *fakeClients) Restart(c int) error { return f.rec("restart") }

func TestEveryKindHeals(t *testing.T) {
	for _, k := range Kinds() {
		f := &fakeClients{}
		heal, err := k.Inject(f, []int{0})
		if err != nil {
			t.Fatal(err)
		}
		if err := heal(); err != nil {
			t.Fatal(err)
		}
		if len(f.log) != 2 {
			t.Errorf("%s: calls %v, want a start and a heal", k.Name, f.log)
		}
	}
}

func names(p []Planned) (out []string) {
	for _, x := range p {
		out = append(out, x.Kind.Name)
	}
	return out
}

func starts(p []Planned) (out []time.Duration) {
	for _, x := range p {
		out = append(out, x.At)
	}
	return out
}
