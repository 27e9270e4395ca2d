// Package synth simulates a lock in virtual time and records the history
// the harness's recorder would have written: clients that pick a key,
// block on it (waiting in FIFO order), hold it, release it and think;
// acquires that time out; indeterminate calls; lost leases; crashes with
// restarts; and a recovery phase. The simulated lock is correct unless a
// bug is planted on purpose. Everything comes from one seed, so a history
// can be regenerated exactly.
//
// It exists to test the checkers on large, realistic histories without
// running a backend: benchmarks, and property tests that a correct history
// passes and a planted bug is caught.
package synth

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/lockcheck/lockcheck/history"
)

// Bug is a defect the simulated lock can be told to have, once.
type Bug uint8

const (
	NoBug Bug = iota
	// DoubleGrant: when the lock is granted to the head of a queue, it
	// is granted to the next waiter too.
	DoubleGrant
	// NonOwnerRelease: a client that holds nothing releases a key held
	// by another, and the lock answers ok.
	NonOwnerRelease
)

func (b Bug) String() string {
	switch b {
	case NoBug:
		return "none"
	case DoubleGrant:
		return "double-grant"
	case NonOwnerRelease:
		return "non-owner-release"
	}
	return fmt.Sprintf("bug(%d)", uint8(b))
}

// Config shapes a simulated run. Rates are fractions in [0, 1].
type Config struct {
	Seed    uint64
	Clients int
	Keys    int
	// Ops is how many acquire and release calls the workload phase
	// starts; cycles under way when it is reached still finish.
	Ops int
	// IndeterminateAcquire is the share of acquires that end in info
	// without taking effect (a timeout whose outcome the client cannot
	// know).
	IndeterminateAcquire float64
	// IndeterminateRelease is the share of releases that took effect but
	// end in info (the reply was lost).
	IndeterminateRelease float64
	// Lost is the share of holds that end with the holder told its lease
	// is gone; the lock is freed just after the notice, and the holder's
	// release then fails.
	Lost float64
	// Crashes is how many crash faults the workload phase sees: a client
	// dies (a lock it held expires later) and restarts after a while.
	Crashes int
	// Pauses is how many pause faults are recorded. They do nothing to
	// the simulation; they are there to be drawn.
	Pauses int
	// Recovery adds a recovery phase: every fault healed, then each live
	// client acquires once and releases.
	Recovery bool
	// OmitAttempt leaves Attempt out of acquire-ok events, as a locker
	// that does not report its attempts would.
	OmitAttempt bool
	Bug         Bug
	// BugAt is the share of Ops started before the bug is planted, at
	// the first chance after that.
	BugAt float64

	_ struct{}
}

// Realistic is the shape the benchmarks use: 1% indeterminate acquires,
// 0.5% indeterminate releases, a few lost leases, crashes and pauses, and a
// recovery phase.
func Realistic(seed uint64, clients, keys, ops int) Config {
	faults := min(max(ops/20000, 1), 50)
	return Config{
		Seed: seed, Clients: clients, Keys: keys, Ops: ops,
		IndeterminateAcquire: 0.01, IndeterminateRelease: 0.005, Lost: 0.002,
		Crashes: faults, Pauses: faults, Recovery: true,
	}
}

// Plant records where a bug was planted.
type Plant struct {
	Bug Bug
	Key string
	// Time is when the lock misbehaved; Processes are the clients'
	// processes involved (for a double grant, both grantees; for a
	// non-owner release, the releaser then the holder).
	Time      int64
	Processes []history.Process
}

// Result is a generated history and what was planted in it.
type Result struct {
	History *history.History
	Planted []Plant
}

// Generate runs the simulation. It fails if the configuration is not
// usable, or if a requested bug found no chance to be planted (one client
// can never be double-granted).
func Generate(cfg Config) (*Result, error) {
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("synth: %w", err)
	}
	s := newSim(cfg)
	s.run()
	if cfg.Bug != NoBug && len(s.planted) == 0 {
		return nil, fmt.Errorf("synth: no chance to plant %s in %d operations with %d clients on %d keys", cfg.Bug, cfg.Ops, cfg.Clients, cfg.Keys)
	}
	faults := []string{}
	if cfg.Crashes > 0 {
		faults = append(faults, "crash")
	}
	if cfg.Pauses > 0 {
		faults = append(faults, "pause")
	}
	locker := "synth"
	if cfg.Bug != NoBug {
		locker += "-" + cfg.Bug.String()
	}
	h := &history.History{
		Header: history.Header{
			Schema: history.Schema, Version: history.Version,
			Start: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
			Run: history.RunInfo{
				ID:     fmt.Sprintf("synth-c%d-k%d-n%d-s%d", cfg.Clients, cfg.Keys, cfg.Ops, cfg.Seed),
				Locker: locker, Workload: "mutex", Seed: cfg.Seed,
				Clients: cfg.Clients, Keys: cfg.Keys, Duration: history.Duration(s.now),
				Faults: faults, Fencing: true,
			},
		},
		Events: s.events,
	}
	return &Result{History: h, Planted: s.planted}, nil
}

func (c Config) validate() error {
	var errs []error
	if c.Clients < 1 {
		errs = append(errs, fmt.Errorf("clients must be at least 1, got %d", c.Clients))
	}
	if c.Keys < 1 {
		errs = append(errs, fmt.Errorf("keys must be at least 1, got %d", c.Keys))
	}
	if c.Ops < 0 {
		errs = append(errs, fmt.Errorf("ops must not be negative, got %d", c.Ops))
	}
	for _, r := range []struct {
		name string
		v    float64
	}{{"indeterminate acquire rate", c.IndeterminateAcquire}, {"indeterminate release rate", c.IndeterminateRelease},
		{"lost rate", c.Lost}, {"bug position", c.BugAt}} {
		if r.v < 0 || r.v > 1 {
			errs = append(errs, fmt.Errorf("%s must be in [0, 1], got %v", r.name, r.v))
		}
	}
	if c.Crashes < 0 || c.Pauses < 0 {
		errs = append(errs, errors.New("fault counts must not be negative"))
	}
	return errors.Join(errs...)
}

// Virtual durations, in ns. Their ratios, not their values, shape the
// history: holds are long next to network latency, as in real runs, so a
// lock's operations are mostly sequential with short overlaps at hand-offs.
const (
	minLatency  = 20_000
	meanLatency = 80_000
	maxLatency  = 1_000_000
	minHold     = 100_000
	meanHold    = 1_000_000
	meanThink   = 300_000
	leaseTTL    = 5_000_000
	// plantedHold keeps a double grant's two holders inside together
	// whatever their latencies (capped at maxLatency).
	plantedHold = 2 * maxLatency
)

type phase uint8

const (
	workload phase = iota
	draining
	recovering
)

type state uint8

const (
	idle state = iota
	waiting
	granted // the lock is granted, the ok is on its way
	holding
	releasing // a release call is open
	afterLost // told the lease is gone, about to release anyway
	infoAcquire
	done
	dead
)

type action struct {
	t   int64
	seq uint64
	fn  func()
}

type client struct {
	slot      int
	proc      history.Process
	epoch     uint64
	st        state
	key       *lock
	grantAt   int64
	token     uint64
	protected bool // planted: neither crashed nor told its lease is lost
	recovered bool
	// held lists the locks the current process has held: a release of
	// one of them by this process is read as the tail of that hold.
	held []*lock
}

type holder struct {
	c    *client
	proc history.Process
}

type waiter struct {
	c     *client
	epoch uint64
}

type lock struct {
	name    string
	holders []holder
	queue   []waiter
	token   uint64
}

type sim struct {
	cfg      Config
	rng      *rand.Rand
	now      int64
	seq      uint64
	actions  []action // a binary min-heap on (t, seq)
	events   []history.Event
	clients  []*client
	locks    []*lock
	nextProc history.Process
	started  int
	phase    phase
	heals    map[int]func()
	faults   []string // kinds still to inject, in order
	nextID   int
	bugDone  bool
	planted  []Plant
}

func newSim(cfg Config) *sim {
	s := &sim{
		cfg:    cfg,
		rng:    rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x5eed1e55)),
		events: make([]history.Event, 0, cfg.Ops*11/5+16*cfg.Clients),
		heals:  map[int]func(){},
	}
	for i := range cfg.Keys {
		s.locks = append(s.locks, &lock{name: fmt.Sprintf("k%d", i)})
	}
	for i := range cfg.Crashes + cfg.Pauses {
		kind := "pause"
		if i < cfg.Crashes {
			kind = "crash"
		}
		s.faults = append(s.faults, kind)
	}
	s.rng.Shuffle(len(s.faults), func(i, j int) { s.faults[i], s.faults[j] = s.faults[j], s.faults[i] })
	for slot := range cfg.Clients {
		c := &client{slot: slot, proc: s.newProc()}
		s.clients = append(s.clients, c)
		s.after(c, s.exp(meanThink), s.startCycle)
	}
	return s
}

func (s *sim) run() {
	for len(s.actions) > 0 {
		a := s.pop()
		s.now = a.t
		a.fn()
	}
	// The end of the run heals whatever is still broken, as the harness
	// does, when there is no recovery phase to do it.
	s.healAll()
}

// at schedules fn at time t.
func (s *sim) at(t int64, fn func()) {
	s.seq++
	s.actions = append(s.actions, action{t: t, seq: s.seq, fn: fn})
	i := len(s.actions) - 1
	for i > 0 {
		p := (i - 1) / 2
		if !s.less(i, p) {
			break
		}
		s.actions[i], s.actions[p] = s.actions[p], s.actions[i]
		i = p
	}
}

func (s *sim) less(i, j int) bool {
	a, b := &s.actions[i], &s.actions[j]
	return a.t < b.t || a.t == b.t && a.seq < b.seq
}

func (s *sim) pop() action {
	top := s.actions[0]
	n := len(s.actions) - 1
	s.actions[0] = s.actions[n]
	s.actions = s.actions[:n]
	for i := 0; ; {
		l, r, m := 2*i+1, 2*i+2, i
		if l < n && s.less(l, m) {
			m = l
		}
		if r < n && s.less(r, m) {
			m = r
		}
		if m == i {
			break
		}
		s.actions[i], s.actions[m] = s.actions[m], s.actions[i]
		i = m
	}
	return top
}

// after schedules fn for c, d from now, unless c has moved on by then
// (granted, timed out, crashed): each of those bumps c.epoch.
func (s *sim) after(c *client, d int64, fn func(*client)) {
	epoch := c.epoch
	s.at(s.now+d, func() {
		if c.epoch == epoch {
			fn(c)
		}
	})
}

func (s *sim) exp(mean float64) int64 { return int64(s.rng.ExpFloat64() * mean) }

func (s *sim) latency() int64 { return min(minLatency+s.exp(meanLatency), maxLatency) }

func (s *sim) hold() int64 { return minHold + s.exp(meanHold) }

// timeout gives acquires a deadline around the wait a full queue implies,
// so that under contention a share of them give up.
func (s *sim) timeout() int64 {
	perKey := float64(s.cfg.Clients) / float64(s.cfg.Keys)
	cycle := float64(minHold + meanHold + 3*meanLatency)
	return 2_000_000 + int64((0.3+2.7*s.rng.Float64())*perKey*cycle)
}

func (s *sim) newProc() history.Process {
	p := s.nextProc
	s.nextProc++
	return p
}

func (s *sim) emit(e history.Event) {
	e.Index = int64(len(s.events))
	e.Time = s.now
	s.events = append(s.events, e)
}

func (s *sim) call(c *client, typ history.Type, f, key string) history.Event {
	return history.Event{Process: c.proc, Client: c.slot, Type: typ, F: f, Key: key}
}

func (s *sim) nemesis(f string, value any) {
	raw, err := json.Marshal(value)
	if err != nil {
		panic(fmt.Sprintf("synth: encode %s: %v", f, err)) // only fixed struct types reach here
	}
	if value == nil {
		raw = nil
	}
	s.emit(history.Event{Process: history.Nemesis, Client: -1, Type: history.Info, F: f, Value: raw})
}

func (s *sim) startCycle(c *client) {
	if s.phase == workload && s.started >= s.cfg.Ops {
		s.phase = draining
	}
	if s.phase == draining || s.phase == recovering && c.recovered {
		c.st = done
		s.checkQuiet()
		return
	}
	if s.phase == workload {
		s.maybeFault()
		if c.st == dead {
			return
		}
		if s.cfg.Bug == NonOwnerRelease && !s.bugDone && s.started >= s.bugAt() && s.releaseNotOwned(c) {
			return
		}
	}
	l := s.locks[s.rng.IntN(len(s.locks))]
	if s.phase == recovering {
		l = s.locks[c.slot%len(s.locks)]
	}
	s.emit(s.call(c, history.Invoke, history.Acquire, l.name))
	s.started++
	c.key = l
	if s.phase == workload && s.rng.Float64() < s.cfg.IndeterminateAcquire {
		c.st = infoAcquire
		s.after(c, s.latency()+s.timeout()/4, func(c *client) {
			e := s.call(c, history.Info, history.Acquire, l.name)
			e.Error = "deadline exceeded; outcome unknown"
			s.emit(e)
			c.proc, c.held = s.newProc(), nil
			s.endCycle(c)
		})
		return
	}
	c.st = waiting
	s.after(c, s.latency(), func(c *client) {
		l.queue = append(l.queue, waiter{c: c, epoch: c.epoch})
		s.tryGrant(l)
	})
	if s.phase == workload {
		s.after(c, s.timeout(), func(c *client) {
			if c.st != waiting {
				return
			}
			c.epoch++ // drops its place in the queue
			e := s.call(c, history.Fail, history.Acquire, l.name)
			e.Error = "timed out waiting; definitely not acquired"
			s.emit(e)
			s.endCycle(c)
		})
	}
}

func (s *sim) bugAt() int { return int(s.cfg.BugAt * float64(s.cfg.Ops)) }

func (s *sim) tryGrant(l *lock) {
	for len(l.holders) == 0 {
		w, ok := s.nextWaiter(l)
		if !ok {
			return
		}
		s.grant(l, w.c)
		if s.cfg.Bug == DoubleGrant && !s.bugDone && s.phase == workload && s.started >= s.bugAt() {
			if w2, ok := s.nextWaiter(l); ok {
				s.bugDone = true
				w.c.protected, w2.c.protected = true, true
				s.grant(l, w2.c)
				s.planted = append(s.planted, Plant{Bug: DoubleGrant, Key: l.name, Time: s.now,
					Processes: []history.Process{w.c.proc, w2.c.proc}})
			}
		}
	}
}

func (s *sim) nextWaiter(l *lock) (waiter, bool) {
	for len(l.queue) > 0 {
		w := l.queue[0]
		l.queue = l.queue[1:]
		if w.c.epoch == w.epoch && w.c.st == waiting && w.c.key == l {
			return w, true
		}
	}
	return waiter{}, false
}

func (s *sim) grant(l *lock, c *client) {
	if !slices.Contains(c.held, l) {
		c.held = append(c.held, l)
	}
	l.token++
	l.holders = append(l.holders, holder{c: c, proc: c.proc})
	c.token, c.grantAt, c.st = l.token, s.now, granted
	c.epoch++ // cancels the timeout
	s.after(c, s.latency(), s.acquired)
}

func (s *sim) acquired(c *client) {
	e := s.call(c, history.OK, history.Acquire, c.key.name)
	e.Token = c.token
	if !s.cfg.OmitAttempt {
		e.Attempt = c.grantAt
	}
	s.emit(e)
	c.st = holding
	if s.phase == recovering {
		c.recovered = true
	}
	hold := s.hold()
	if c.protected {
		hold += plantedHold
	}
	s.after(c, hold, s.endHold)
}

func (s *sim) endHold(c *client) {
	l, proc := c.key, c.proc
	if !c.protected && s.phase == workload && s.rng.Float64() < s.cfg.Lost {
		s.emit(s.call(c, history.Info, history.Lost, l.name))
		s.at(s.now+1_000, func() { s.free(l, proc) })
		c.st = afterLost
		s.after(c, 2_000, func(c *client) {
			s.emit(s.call(c, history.Invoke, history.Release, l.name))
			s.started++
			c.st = releasing
			s.after(c, s.latency(), func(c *client) {
				e := s.call(c, history.Fail, history.Release, l.name)
				e.Error = "lease not held; definitely not released"
				s.emit(e)
				s.endCycle(c)
			})
		})
		return
	}
	s.emit(s.call(c, history.Invoke, history.Release, l.name))
	s.started++
	c.st = releasing
	effect := s.latency()
	// The server frees the lock whatever becomes of the client.
	s.at(s.now+effect, func() { s.free(l, proc) })
	s.after(c, effect+s.latency(), func(c *client) {
		if !c.protected && s.rng.Float64() < s.cfg.IndeterminateRelease {
			e := s.call(c, history.Info, history.Release, l.name)
			e.Error = "reply lost; outcome unknown"
			s.emit(e)
			c.proc, c.held = s.newProc(), nil
		} else {
			s.emit(s.call(c, history.OK, history.Release, l.name))
		}
		s.endCycle(c)
	})
}

// free removes one holding of l, if it is still there (a crashed holder's
// lease may expire after its last release took effect), and hands l on.
func (s *sim) free(l *lock, proc history.Process) {
	i := slices.IndexFunc(l.holders, func(h holder) bool { return h.proc == proc })
	if i < 0 {
		return
	}
	l.holders = slices.Delete(l.holders, i, i+1)
	s.tryGrant(l)
}

func (s *sim) endCycle(c *client) {
	c.st, c.protected = idle, false
	s.after(c, s.exp(meanThink), s.startCycle)
}

// releaseNotOwned plants a non-owner release: c, holding nothing, releases
// a key someone else holds, and the lock says ok without freeing it.
func (s *sim) releaseNotOwned(c *client) bool {
	for _, l := range s.locks {
		if len(l.holders) == 0 || l.holders[0].c == c || slices.Contains(c.held, l) {
			continue
		}
		s.bugDone = true
		s.emit(s.call(c, history.Invoke, history.Release, l.name))
		s.started++
		c.st, c.protected = releasing, true
		s.planted = append(s.planted, Plant{Bug: NonOwnerRelease, Key: l.name, Time: s.now,
			Processes: []history.Process{c.proc, l.holders[0].proc}})
		s.after(c, s.latency(), func(c *client) {
			s.emit(s.call(c, history.OK, history.Release, l.name))
			s.endCycle(c)
		})
		return true
	}
	return false
}

// maybeFault injects the next fault once its share of the workload has
// started, spreading the faults evenly over it.
func (s *sim) maybeFault() {
	if len(s.faults) == 0 {
		return
	}
	n := s.cfg.Crashes + s.cfg.Pauses
	k := n - len(s.faults) // faults injected so far
	if s.started < s.cfg.Ops*(k+1)/(n+1) {
		return
	}
	kind := s.faults[0]
	s.faults = s.faults[1:]
	id := s.nextID
	s.nextID++
	d := 2_000_000 + s.rng.Int64N(18_000_000)
	var target *client
	if kind == "crash" {
		var candidates []*client
		for _, c := range s.clients {
			if c.st != dead && !c.protected {
				candidates = append(candidates, c)
			}
		}
		if len(candidates) == 0 {
			return
		}
		target = candidates[s.rng.IntN(len(candidates))]
	} else {
		target = s.clients[s.rng.IntN(len(s.clients))]
	}
	f := history.Fault{ID: id, Kind: kind, Clients: []int{target.slot}, Duration: history.Duration(d)}
	s.nemesis(history.FaultStart, f)
	if kind == "crash" {
		s.crash(target)
	}
	s.heals[id] = func() {
		if kind == "crash" {
			s.restart(target)
		}
		f.Duration = 0
		s.nemesis(history.FaultStop, f)
	}
	s.at(s.now+d, func() { s.heal(id) })
}

func (s *sim) heal(id int) {
	if h, ok := s.heals[id]; ok {
		delete(s.heals, id)
		h()
	}
}

func (s *sim) healAll() {
	ids := make([]int, 0, len(s.heals))
	for id := range s.heals {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		s.heal(id)
	}
}

// crash kills c as the harness does: its open call is completed with info,
// then the crash is recorded; a lock it held expires after the lease TTL.
func (s *sim) crash(c *client) {
	l := c.key
	switch c.st {
	case waiting, infoAcquire, granted:
		e := s.call(c, history.Info, history.Acquire, l.name)
		e.Error = "client crashed during the call"
		s.emit(e)
	case releasing:
		e := s.call(c, history.Info, history.Release, l.name)
		e.Error = "client crashed during the call"
		s.emit(e)
	}
	if c.st == granted || c.st == holding {
		proc := c.proc
		s.at(s.now+leaseTTL, func() { s.free(l, proc) })
	}
	s.nemesis(history.Crash, history.ClientRef{Client: c.slot, Process: c.proc})
	c.st = dead
	c.epoch++
}

func (s *sim) restart(c *client) {
	c.proc, c.held = s.newProc(), nil
	c.st = idle
	c.epoch++
	s.nemesis(history.Restart, history.ClientRef{Client: c.slot, Process: c.proc})
	s.after(c, s.exp(meanThink), s.startCycle)
}

// checkQuiet starts the recovery phase once the workload has drained:
// every client finished its last cycle or is dead.
func (s *sim) checkQuiet() {
	if s.phase != draining {
		return
	}
	for _, c := range s.clients {
		if c.st != done && c.st != dead {
			return
		}
	}
	s.healAll()
	for _, c := range s.clients {
		if c.st == idle { // restarted by a heal just now
			c.st = done
			c.epoch++
		}
	}
	if !s.cfg.Recovery {
		return
	}
	s.phase = recovering
	s.nemesis(history.Recovery, nil)
	for _, c := range s.clients {
		if c.st == done {
			c.st = idle
			s.after(c, s.exp(meanThink), s.startCycle)
		}
	}
}
