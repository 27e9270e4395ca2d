package harness

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/lockcheck/lockcheck/faults"
	"github.com/lockcheck/lockcheck/history"
)

// nemesis plays a fault plan against the run's clients and records every
// start and heal. It implements faults.Clients.
type nemesis struct {
	run      *run
	stopWork <-chan struct{}
	// rng picks among holders for faults aimed at one; the plan itself
	// is drawn before the run, but who holds a lock depends on timing.
	rng *rand.Rand

	mu      sync.Mutex
	pending []func() error // heals of faults still active
}

var _ faults.Clients = (*nemesis)(nil)

func (n *nemesis) play(ctx context.Context, plan []faults.Planned) {
	start := time.Now()
	for _, p := range plan {
		planned := history.Fault{ID: p.ID, Kind: p.Kind.Name, Clients: p.Clients, At: history.Duration(p.At), Duration: history.Duration(p.Duration), Aimed: p.Kind.AtHolder}
		n.run.rec.record(nemesisEvent(history.FaultPlan, planned))
	}
	for _, p := range plan {
		if !waitUntil(ctx, start.Add(p.At)) {
			return
		}
		targets := p.Clients
		atHolder := false
		release := func() {}
		if p.Kind.AtHolder {
			holder, unaim, ok := n.awaitHolder(ctx, p.Kind.MinLeases > 0)
			if ctx.Err() != nil {
				if ok {
					unaim()
				}
				return
			}
			if ok {
				targets, atHolder, release = []int{holder}, true, unaim
			}
		}
		// A fault aimed at a holder may start a little after its planned
		// time; it still lasts its planned duration.
		began := time.Now()
		fault := history.Fault{ID: p.ID, Kind: p.Kind.Name, Clients: targets, Duration: history.Duration(p.Duration), Aimed: p.Kind.AtHolder, AtHolder: atHolder}
		n.run.rec.record(nemesisEvent(history.FaultStart, fault))
		target := n.run.target
		target.Clients = n
		heal, err := p.Kind.Inject(target, targets)
		if heal == nil {
			heal = func() error { return nil }
		}
		release() // the holder may end its section now: the fault is in place
		if err != nil {
			n.run.log.Logf("fault %d (%s): %v", p.ID, p.Kind.Name, err)
			failed := fault
			failed.Error = err.Error()
			n.run.rec.record(nemesisEvent(history.FaultFailed, failed))
		}
		n.mu.Lock()
		n.pending = append(n.pending, func() error {
			fault.Duration = 0
			if n.run.cfg.InMemory {
				// In virtual time a heal takes no time, and what it
				// sets going (a paused client resumed, a held call
				// released) would share its instant with the record;
				// recorded first, the stop precedes its effects in
				// every run of the seed.
				n.run.rec.record(nemesisEvent(history.FaultStop, fault))
				return heal()
			}
			err := heal()
			n.run.rec.record(nemesisEvent(history.FaultStop, fault))
			return err
		})
		n.mu.Unlock()
		waitUntil(ctx, began.Add(p.Duration))
		n.healAll()
	}
}

// Bounds on waiting for a holder to aim a fault at: a lock held only
// briefly between long waits (tus616's) is rarely held at the planned
// instant, and a fault that misses every holder tests nothing.
const (
	holderWait = time.Second
	holderPoll = 2 * time.Millisecond
)

// awaitHolder picks a client that holds a lock, waiting up to holderWait
// for one; false if none held one in time.
//
// fresh, for an outage a holder must outlive (faults.Kind.MinLeases),
// waits for the next client to take a lock, so that the outage meets a
// holder with its whole hold still ahead of it: a holder about to let go
// would release before its lease could run out, and test nothing. It
// waits up to the longest hold (every holder has let go by then, and a
// waiter taken over), and then aims at the latest to have taken a lock.
func (n *nemesis) awaitHolder(ctx context.Context, fresh bool) (slot int, unaim func(), ok bool) {
	since := time.Now()
	wait := holderWait
	if fresh {
		wait = max(wait, n.run.cfg.Workload.HoldMax)
	}
	deadline := since.Add(wait)
	for {
		late := time.Now().After(deadline)
		if holders := n.Holders(); len(holders) > 0 {
			slot, pick := 0, true
			if fresh {
				slot, pick = n.latestHolder(holders, since, late)
			} else {
				slot = holders[n.rng.IntN(len(holders))]
			}
			if pick {
				if unaim, ok := n.aimAt(slot); ok {
					return slot, unaim, true
				}
			}
		}
		if late {
			return 0, nil, false
		}
		select {
		case <-time.After(holderPoll):
		case <-ctx.Done():
			return 0, nil, false
		}
	}
}

// latestHolder is the holder of holders that took its lock last, if it
// took it after since or anyway is set.
func (n *nemesis) latestHolder(holders []int, since time.Time, anyway bool) (int, bool) {
	best, bestAt := -1, int64(0)
	for _, slot := range holders {
		inc := n.run.clients[slot].current()
		if inc == nil {
			continue
		}
		if at := inc.heldSince.Load(); best < 0 || at > bestAt {
			best, bestAt = slot, at
		}
	}
	if best < 0 || (!anyway && bestAt < since.UnixNano()) {
		return 0, false
	}
	return best, true
}

// aimAt holds slot's critical section open (its incarnation's aim) if it
// is still inside one, and returns the function that lets it go.
func (n *nemesis) aimAt(slot int) (func(), bool) {
	c, err := n.client(slot)
	if err != nil {
		return nil, false
	}
	inc := c.current()
	if inc == nil {
		return nil, false
	}
	inc.aim.Lock()
	if inc.holding.Load() && !inc.gate.isDead() && c.current() == inc {
		return inc.aim.Unlock, true
	}
	inc.aim.Unlock()
	return nil, false
}

// healAll undoes every active fault; safe to call at any time.
func (n *nemesis) healAll() {
	n.mu.Lock()
	pending := n.pending
	n.pending = nil
	n.mu.Unlock()
	for _, heal := range pending {
		if err := heal(); err != nil {
			n.run.log.Logf("heal: %v", err)
		}
	}
}

func waitUntil(ctx context.Context, t time.Time) bool {
	timer := time.NewTimer(time.Until(t))
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// Holders lists the live clients inside a critical section now.
func (n *nemesis) Holders() []int {
	var out []int
	for _, c := range n.run.clients {
		if inc := c.current(); inc != nil && !inc.gate.isDead() && inc.holding.Load() {
			out = append(out, c.slot)
		}
	}
	return out
}

func (n *nemesis) client(slot int) (*client, error) {
	if slot < 0 || slot >= len(n.run.clients) {
		return nil, fmt.Errorf("no client %d", slot)
	}
	return n.run.clients[slot], nil
}

func (n *nemesis) Pause(slot int) error {
	c, err := n.client(slot)
	if err != nil {
		return err
	}
	if inc := c.current(); inc != nil {
		inc.gate.pause()
		if inc.proc != nil {
			return inc.proc.Stop()
		}
	}
	return nil
}

func (n *nemesis) Resume(slot int) error {
	c, err := n.client(slot)
	if err != nil {
		return err
	}
	if inc := c.current(); inc != nil {
		var err error
		if inc.proc != nil {
			err = inc.proc.Continue()
		}
		inc.gate.resume()
		return err
	}
	return nil
}

func (n *nemesis) ShiftClock(slot int, delta time.Duration) (time.Duration, error) {
	c, err := n.client(slot)
	if err != nil {
		return 0, err
	}
	skew := c.machine.Shift(delta)
	n.run.recordClock(c)
	return skew, c.tellWorkerClock()
}

func (n *nemesis) DriftClock(slot int, rate float64) (time.Duration, error) {
	c, err := n.client(slot)
	if err != nil {
		return 0, err
	}
	skew := c.machine.Drift(rate)
	n.run.recordClock(c)
	return skew, c.tellWorkerClock()
}

func (n *nemesis) Crash(slot int) error {
	c, err := n.client(slot)
	if err != nil {
		return err
	}
	return c.crash()
}

// Restart starts a new incarnation of a crashed client and, while the
// workload is still running, puts it back to work.
func (n *nemesis) Restart(slot int) error {
	c, err := n.client(slot)
	if err != nil {
		return err
	}
	if inc := c.current(); inc != nil && !inc.dead {
		return nil
	}
	if err := c.start(); err != nil {
		return err
	}
	inc := c.current()
	n.run.rec.record(nemesisEvent(history.Restart, inc.ref(slot)))
	select {
	case <-n.stopWork:
		close(inc.exited)
	default:
		go c.work(inc, n.stopWork)
	}
	return nil
}

// tellWorkerClock sets a process client's clock where its machine clock
// now stands; goroutine clients read the machine clock directly.
func (c *client) tellWorkerClock() error {
	inc := c.current()
	if inc == nil || inc.proc == nil {
		return nil
	}
	skew, rate := c.machine.State()
	return inc.proc.SetClock(skew, rate)
}
