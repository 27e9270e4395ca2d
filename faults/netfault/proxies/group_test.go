package proxies_test

import (
	"context"
	"testing"

	"github.com/lockcheck/lockcheck/faults/netfault"
	"github.com/lockcheck/lockcheck/faults/netfault/proxies"
)

// A fault through a narrowed group cuts a client off from the chosen
// backends only; through the whole group, from all of them; other clients
// keep every backend.
func TestGroupPartitionsChosenBackends(t *testing.T) {
	ups := []*upstream{startUpstream(t), startUpstream(t), startUpstream(t)}
	var addrs []string
	for _, u := range ups {
		addrs = append(addrs, u.srv.Listener.Addr().String())
	}
	g, err := proxies.StartGroup(context.Background(), addrs, 2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := g.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	if got := g.Redirect(1, addrs[2]); got != g.Plane(2).Addr(1) {
		t.Fatalf("Redirect(1, backend 2) = %s, want client 1's proxy %s", got, g.Plane(2).Addr(1))
	}
	if got := g.Redirect(0, "127.0.0.1:1"); got != "127.0.0.1:1" {
		t.Fatalf("Redirect of an address outside the group = %s, want it unchanged", got)
	}
	url := func(client, backend int) string { return "http://" + g.Redirect(client, addrs[backend]) + "/" }
	hc0, _ := clientFor(t, g.Plane(0), 0)
	hc1, _ := clientFor(t, g.Plane(0), 1)

	majority, err := g.Backends([]int{0, 1})
	if err != nil {
		t.Fatal(err)
	}
	heal, err := majority.Partition([]int{0}, netfault.Both)
	if err != nil {
		t.Fatal(err)
	}
	mustTimeOut(t, hc0, url(0, 0))
	mustTimeOut(t, hc0, url(0, 1))
	mustGet(t, hc0, url(0, 2))
	for b := range 3 {
		mustGet(t, hc1, url(1, b))
	}
	if err := heal(); err != nil {
		t.Fatal(err)
	}
	mustGet(t, hc0, url(0, 0))

	if _, err := g.Partition([]int{1}, netfault.Both); err != nil {
		t.Fatal(err)
	}
	for b := range 3 {
		mustTimeOut(t, hc1, url(1, b))
	}
	if err := g.HealAll(); err != nil {
		t.Fatal(err)
	}
	for b := range 3 {
		mustGet(t, hc1, url(1, b))
	}
	if _, err := g.Backends([]int{3}); err == nil {
		t.Fatal("Backends([3]) of a group of 3: want an error")
	}
}
