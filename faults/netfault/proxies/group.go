package proxies

import (
	"github.com/lockcheck/lockcheck/faults/netfault"

	"context"
	"errors"
	"fmt"
	"time"
)

// Group is one Plane per backend, for lockers that talk to several
// independent servers at once (Redlock's three Redis instances). Each
// client has its own proxy in front of each backend, so a fault can cut a
// client off from some backends and not others. As a Faults it applies
// every fault to all backends; Backends narrows it.
type Group struct {
	planes []*Plane
}

var (
	_ netfault.Faults = (*Group)(nil)
	_ netfault.Shaper = (*Group)(nil)
)

// StartGroup opens a Plane per upstream, each with one proxy per client.
func StartGroup(ctx context.Context, upstreams []string, clients int) (*Group, error) {
	if len(upstreams) == 0 {
		return nil, errors.New("netfault: start group: no upstreams")
	}
	g := &Group{}
	for i, u := range upstreams {
		p, err := Start(ctx, u, clients)
		if err != nil {
			g.Close()
			return nil, fmt.Errorf("netfault: backend %d: %w", i, err)
		}
		g.planes = append(g.planes, p)
	}
	return g, nil
}

// Size is the number of backends.
func (g *Group) Size() int { return len(g.planes) }

// Plane is the plane in front of backend i.
func (g *Group) Plane(i int) *Plane { return g.planes[i] }

// Redirect is the address client must dial instead of addr, or addr itself
// when no backend of the group listens there.
func (g *Group) Redirect(client int, addr string) string {
	for _, p := range g.planes {
		if p.Upstream() == addr {
			return p.Addr(client)
		}
	}
	return addr
}

// Backends is the group narrowed to the given backends: a fault injected
// through it cuts the clients off from those backends only.
func (g *Group) Backends(backends []int) (netfault.Faults, error) {
	sub := &Group{}
	for _, b := range backends {
		if b < 0 || b >= len(g.planes) {
			return nil, fmt.Errorf("netfault: backend %d out of range 0..%d", b, len(g.planes)-1)
		}
		sub.planes = append(sub.planes, g.planes[b])
	}
	if len(sub.planes) == 0 {
		return nil, errors.New("netfault: no backends chosen")
	}
	return sub, nil
}

// each injects one fault on every plane of g; if one fails, the ones
// already injected are healed.
func (g *Group) each(inject func(*Plane) (netfault.Heal, error)) (netfault.Heal, error) {
	var heals []netfault.Heal
	healAll := func() error {
		var errs []error
		for _, h := range heals {
			errs = append(errs, h())
		}
		return errors.Join(errs...)
	}
	for _, p := range g.planes {
		h, err := inject(p)
		if err != nil {
			return nil, errors.Join(err, healAll())
		}
		heals = append(heals, h)
	}
	return healAll, nil
}

func (g *Group) Latency(clients []int, d, jitter time.Duration, dir netfault.Direction) (netfault.Heal, error) {
	return g.each(func(p *Plane) (netfault.Heal, error) { return p.Latency(clients, d, jitter, dir) })
}

func (g *Group) Partition(clients []int, dir netfault.Direction) (netfault.Heal, error) {
	return g.each(func(p *Plane) (netfault.Heal, error) { return p.Partition(clients, dir) })
}

func (g *Group) LoseReplies(clients []int) (netfault.Heal, error) {
	return g.each(func(p *Plane) (netfault.Heal, error) { return p.LoseReplies(clients) })
}

func (g *Group) Reset(clients []int, dir netfault.Direction) (netfault.Heal, error) {
	return g.each(func(p *Plane) (netfault.Heal, error) { return p.Reset(clients, dir) })
}

func (g *Group) DeliverLate(clients []int, late time.Duration) (netfault.Heal, error) {
	return g.each(func(p *Plane) (netfault.Heal, error) { return p.DeliverLate(clients, late) })
}

func (g *Group) Refuse(clients []int) (netfault.Heal, error) {
	return g.each(func(p *Plane) (netfault.Heal, error) { return p.Refuse(clients) })
}

func (g *Group) Bandwidth(clients []int, kbPerSec int64, dir netfault.Direction) (netfault.Heal, error) {
	return g.each(func(p *Plane) (netfault.Heal, error) { return p.Bandwidth(clients, kbPerSec, dir) })
}

func (g *Group) Slice(clients []int, avg, variation int, delay time.Duration, dir netfault.Direction) (netfault.Heal, error) {
	return g.each(func(p *Plane) (netfault.Heal, error) { return p.Slice(clients, avg, variation, delay, dir) })
}

func (g *Group) LimitData(clients []int, n int64, dir netfault.Direction) (netfault.Heal, error) {
	return g.each(func(p *Plane) (netfault.Heal, error) { return p.LimitData(clients, n, dir) })
}

// HealAll undoes every active fault on every backend.
func (g *Group) HealAll() error {
	var errs []error
	for _, p := range g.planes {
		errs = append(errs, p.HealAll())
	}
	return errors.Join(errs...)
}

// Close closes every plane.
func (g *Group) Close() error {
	var errs []error
	for _, p := range g.planes {
		errs = append(errs, p.Close())
	}
	return errors.Join(errs...)
}
