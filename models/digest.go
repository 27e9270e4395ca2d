package models

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/lockcheck/lockcheck/history"
)

// ErrMalformed marks a history the checkers cannot read as a run: a
// completion without its call, a process that acts after it was declared
// gone, time running backwards. Every error from [Check] that is about the
// input wraps it.
var ErrMalformed = errors.New("malformed history")

// Counts describe what a history held and what the checkers made of it.
type Counts struct {
	Events int `json:"events"`
	// Calls counts acquire and release calls, complete or not.
	Calls    int `json:"calls"`
	Acquires int `json:"acquires"`
	Releases int `json:"releases"`
	// Acquired counts acquire calls that returned ok.
	Acquired int `json:"acquired"`
	// Failed counts calls that definitely had no effect.
	Failed int `json:"failed"`
	// Indeterminate counts calls completed with info: they may or may
	// not have taken effect.
	Indeterminate int `json:"indeterminate"`
	// OpenAtEnd counts calls with no completion when the history ends.
	OpenAtEnd   int `json:"open_at_end"`
	LostNotices int `json:"lost_notices"`
	Crashes     int `json:"crashes"`
	Faults      int `json:"faults"`
	// Dropped counts calls left out of the linearizability search
	// because they add nothing to it: definite failures, indeterminate
	// acquires, releases after their hold had already ended (see
	// CheckLinearizable).
	Dropped int `json:"dropped"`
	// Derived counts releases the linearizability checker added for
	// crashes, lost notices and holds given up after a failed release.
	Derived int `json:"derived"`
}

// endReason is why a critical section ended.
type endReason uint8

const (
	endOpen endReason = iota // still held when the history ends
	endRelease
	endLost
	endCrash
)

func (r endReason) String() string {
	switch r {
	case endRelease:
		return "release invoked"
	case endLost:
		return "lost notice"
	case endCrash:
		return "crash"
	}
	return "end of history"
}

// section is one critical section as its holder saw it.
type section struct {
	proc   history.Process
	client int
	start  int64 // acquire ok
	end    int64
	token  uint64
	reason endReason
	event  int64 // index of the acquire-ok event
}

type keyHist struct {
	name     string
	sections []section
	ops      []LockOp
	// holds counts the acquisitions of the key that returned ok; each
	// one's id ties its acquire to the release that ends it.
	holds int32
}

type nemesisKind uint8

const (
	nemCrash nemesisKind = iota + 1
	nemRestart
	nemFaultStart
	nemFaultStop
	nemRecovery
)

type nemesisRecord struct {
	kind   nemesisKind
	time   int64
	index  int64
	client int
	proc   history.Process
	fault  history.Fault
}

// phase is one recovery phase as the digest saw it.
type phase struct {
	start    int64
	index    int64
	live     []int
	acquired map[int]int64 // client → first acquire-ok time in the phase
}

// digest is a history read once, in index order, into what every checker
// needs. Reading it validates it.
type digest struct {
	header    history.Header
	truncated bool
	first     int64
	last      int64
	keys      []*keyHist
	keyIndex  map[string]*keyHist
	presized  map[string]*keyHist
	procs     map[history.Process]*procState
	counts    Counts
	nemesis   []nemesisRecord

	// liveness
	latencies   []int64 // invoke → ok of successful acquires
	longestWait int64
	waitEvent   int64
	phases      []*phase
	dead        map[int]bool
	seenClients map[int]bool
}

const (
	goneInfo  = "indeterminate call"
	goneCrash = "crash"
)

type procState struct {
	client int
	last   int64
	open   *openCall
	call   openCall // what open points to
	// gone says why the process may not act again; empty while it may.
	gone  string
	holds []*hold
	// gaveUp lists keys whose hold ended without a release that took
	// effect (a lost notice, a release that definitely failed), until the
	// process acquires the key again: a release in between can only be
	// about that hold, and carries no information.
	gaveUp []*keyHist
}

type openCall struct {
	f      string
	key    *keyHist
	keyArg string
	invoke int64
	index  int64
	// hold is what a release call releases; nil for a release by a
	// process that does not hold the key.
	hold *hold
	// afterLost: a release after the hold already ended by a lost notice
	// or a failed release.
	afterLost bool
	// superseded: the lease was reported lost while this release was
	// open, and the lost notice already accounts for the lock's freeing.
	superseded bool
}

type hold struct {
	key      *keyHist
	id       int32
	sec      int // index into key.sections
	acqStart int64
}

func malformed(e history.Event, format string, args ...any) error {
	return fmt.Errorf("models: event %d (process %s, %s %s): %s: %w",
		e.Index, e.Process, e.Type, e.F, fmt.Sprintf(format, args...), ErrMalformed)
}

func newDigest(h *history.History) (*digest, error) {
	if h == nil {
		return nil, fmt.Errorf("models: no history: %w", ErrMalformed)
	}
	d := &digest{
		header:      h.Header,
		truncated:   h.Truncated,
		keyIndex:    map[string]*keyHist{},
		procs:       map[history.Process]*procState{},
		dead:        map[int]bool{},
		seenClients: map[int]bool{},
		waitEvent:   -1,
	}
	d.counts.Events = len(h.Events)
	d.presize(h.Events)
	if len(h.Events) > 0 {
		d.first = h.Events[0].Time
	}
	for i := range h.Events {
		e := &h.Events[i]
		d.first = min(d.first, e.Time)
		d.last = max(d.last, e.Time)
		var err error
		if e.Process == history.Nemesis {
			err = d.nemesisEvent(e)
		} else {
			err = d.clientEvent(e)
		}
		if err != nil {
			return nil, err
		}
	}
	d.finish()
	return d, nil
}

// presize counts, per key, the events that become model operations and
// critical sections, so that the slices holding them are allocated once:
// growing them by appending copies each several times, which on a history
// of millions of events costs more than reading it.
func (d *digest) presize(events []history.Event) {
	type sizes struct{ ops, sections int }
	per := map[string]*sizes{}
	acquired := 0
	for i := range events {
		e := &events[i]
		if e.Process == history.Nemesis || e.Type == history.Invoke || e.Key == "" {
			continue
		}
		var acq bool
		switch {
		case e.F == history.Acquire && e.Type == history.OK:
			acq = true
			acquired++
		case e.F == history.Release || e.F == history.Lost:
		default:
			continue
		}
		sz := per[e.Key]
		if sz == nil {
			sz = &sizes{}
			per[e.Key] = sz
		}
		sz.ops++
		if acq {
			sz.sections++
		}
	}
	d.presized = make(map[string]*keyHist, len(per))
	for name, sz := range per {
		d.presized[name] = &keyHist{name: name, ops: make([]LockOp, 0, sz.ops+8), sections: make([]section, 0, sz.sections)}
	}
	d.latencies = make([]int64, 0, acquired)
}

func (d *digest) key(name string) *keyHist {
	k, ok := d.keyIndex[name]
	if !ok {
		if k = d.presized[name]; k == nil {
			k = &keyHist{name: name}
		}
		d.keyIndex[name] = k
		d.keys = append(d.keys, k)
	}
	return k
}

func (d *digest) nemesisEvent(e *history.Event) error {
	rec := nemesisRecord{time: e.Time, index: e.Index, client: -1, proc: history.Nemesis}
	switch e.F {
	case history.Crash, history.Restart:
		var ref history.ClientRef
		if err := json.Unmarshal(e.Value, &ref); err != nil {
			return malformed(*e, "value is not a client reference (%v)", err)
		}
		rec.client, rec.proc = ref.Client, ref.Process
		if e.F == history.Crash {
			rec.kind = nemCrash
			d.counts.Crashes++
			d.dead[ref.Client] = true
			d.crash(ref.Process, e)
		} else {
			rec.kind = nemRestart
			d.dead[ref.Client] = false
			d.seenClients[ref.Client] = true
		}
	case history.FaultStart, history.FaultStop:
		if err := json.Unmarshal(e.Value, &rec.fault); err != nil {
			return malformed(*e, "value is not a fault (%v)", err)
		}
		rec.kind = nemFaultStop
		if e.F == history.FaultStart {
			rec.kind = nemFaultStart
			d.counts.Faults++
		}
	case history.Recovery:
		rec.kind = nemRecovery
		d.startPhase(e)
	default:
		// Nemesis functions this package does not know carry no claim
		// about the lock; they are not a reason to refuse the history.
		return nil
	}
	d.nemesis = append(d.nemesis, rec)
	return nil
}

func (d *digest) startPhase(e *history.Event) {
	p := &phase{start: e.Time, index: e.Index, acquired: map[int]int64{}}
	slots := map[int]bool{}
	for c := range d.header.Run.Clients {
		slots[c] = true
	}
	for c := range d.seenClients {
		slots[c] = true
	}
	for c := range slots {
		if !d.dead[c] {
			p.live = append(p.live, c)
		}
	}
	slices.Sort(p.live)
	d.phases = append(d.phases, p)
}

func (d *digest) clientEvent(e *history.Event) error {
	p, ok := d.procs[e.Process]
	if !ok {
		p = &procState{client: e.Client, last: e.Time}
		d.procs[e.Process] = p
		d.seenClients[e.Client] = true
	}
	if p.gone != "" {
		return malformed(*e, "process acts after its %s; a new process should have taken over", p.gone)
	}
	if e.Client != p.client {
		return malformed(*e, "process ran in client %d before, now in client %d", p.client, e.Client)
	}
	if e.Time < p.last {
		return malformed(*e, "time %d is before the process's previous event at %d", e.Time, p.last)
	}
	p.last = e.Time
	if e.F == history.Lost {
		if e.Type != history.Info {
			return malformed(*e, "a lost notice must be an info event")
		}
		if e.Key == "" {
			return malformed(*e, "a lost notice needs a key")
		}
		d.lost(e, p)
		return nil
	}
	if e.F == history.ReleaseRequested {
		// A notice, not a call: it changes nothing about the lock, and
		// is measured by measureReleaseRequests.
		if e.Type != history.Info {
			return malformed(*e, "a release request must be an info event")
		}
		if e.Key == "" {
			return malformed(*e, "a release request needs a key")
		}
		return nil
	}
	if e.Type == history.Invoke {
		return d.invoke(e, p)
	}
	return d.complete(e, p)
}

func (d *digest) invoke(e *history.Event, p *procState) error {
	if p.open != nil {
		return malformed(*e, "invoked while its call at event %d is still open", p.open.index)
	}
	// One per process, reused: a process has at most one call open, and
	// a history has millions of calls.
	p.call = openCall{f: e.F, keyArg: e.Key, invoke: e.Time, index: e.Index}
	c := &p.call
	p.open = c
	if e.F != history.Acquire && e.F != history.Release {
		return nil
	}
	if e.Key == "" {
		return malformed(*e, "%s needs a key", e.F)
	}
	c.key = d.key(e.Key)
	d.counts.Calls++
	if e.F == history.Acquire {
		d.counts.Acquires++
		return nil
	}
	d.counts.Releases++
	if h := p.holding(c.key); h != nil {
		c.hold = h
		d.endSection(h, e.Time, endRelease)
	} else if slices.Contains(p.gaveUp, c.key) {
		c.afterLost = true
	}
	return nil
}

func (d *digest) complete(e *history.Event, p *procState) error {
	c := p.open
	if c == nil {
		return malformed(*e, "completion without an open call")
	}
	if c.f != e.F || c.keyArg != e.Key {
		return malformed(*e, "completes %s %q but the open call is %s %q", e.F, e.Key, c.f, c.keyArg)
	}
	p.open = nil
	switch e.Type {
	case history.OK, history.Fail, history.Info:
	default:
		return malformed(*e, "unknown completion type")
	}
	// An unknown outcome of a lock call puts the process's lock state in
	// doubt, so the client goes on under a new process. One of a read or
	// write leaves only the data in doubt: the holder still holds its lock
	// in this process and releases it from there.
	if e.Type == history.Info && c.f != history.ReadOp && c.f != history.WriteOp {
		p.gone = goneInfo
	}
	if c.key == nil {
		return nil
	}
	switch e.Type {
	case history.Fail:
		d.counts.Failed++
	case history.Info:
		d.counts.Indeterminate++
	}
	if c.f == history.Acquire {
		return d.acquired(e, p, c)
	}
	d.released(e, p, c)
	return nil
}

func (d *digest) acquired(e *history.Event, p *procState, c *openCall) error {
	wait := e.Time - c.invoke
	if wait > d.longestWait || d.waitEvent < 0 {
		d.longestWait, d.waitEvent = wait, c.index
	}
	if e.Type != history.OK {
		// A definite failure had no effect. An indeterminate acquire is
		// dropped too: see CheckLinearizable for why that is exact.
		d.counts.Dropped++
		return nil
	}
	if e.Attempt > e.Time {
		return malformed(*e, "attempt %d is after the acquisition returned at %d", e.Attempt, e.Time)
	}
	d.counts.Acquired++
	d.latencies = append(d.latencies, wait)
	if n := len(d.phases); n > 0 && e.Time >= d.phases[n-1].start {
		ph := d.phases[n-1]
		if _, ok := ph.acquired[p.client]; !ok {
			ph.acquired[p.client] = e.Time
		}
	}
	k := c.key
	p.gaveUp = slices.DeleteFunc(p.gaveUp, func(l *keyHist) bool { return l == k })
	start := c.invoke
	if e.Attempt > 0 {
		// The acquisition took effect during its winning attempt: the
		// narrower interval is as sound and far cheaper to search.
		start = max(start, e.Attempt)
	}
	k.sections = append(k.sections, section{
		proc: e.Process, client: p.client, start: e.Time, end: e.Time,
		token: e.Token, reason: endOpen, event: e.Index,
	})
	p.holds = append(p.holds, &hold{key: k, id: k.holds, sec: len(k.sections) - 1, acqStart: start})
	k.ops = append(k.ops, LockOp{
		Kind: OpAcquire, Origin: FromCall, hold: k.holds, Key: k.name, Process: e.Process, Client: p.client,
		Token: e.Token, Event: e.Index, Call: start, Return: e.Time,
	})
	k.holds++
	return nil
}

func (d *digest) released(e *history.Event, p *procState, c *openCall) {
	k := c.key
	switch {
	case c.superseded || c.afterLost:
		// The hold already ended in the model; this call can add
		// nothing (see CheckLinearizable).
		d.counts.Dropped++
	case c.hold == nil:
		// A release by a process that holds nothing. If it returned
		// ok the lock claims to have released someone else's lock,
		// which the model rejects; otherwise it may have had no effect.
		if e.Type != history.OK {
			d.counts.Dropped++
			return
		}
		k.ops = append(k.ops, LockOp{
			Kind: OpRelease, Origin: FromCall, hold: -1, Key: k.name, Process: e.Process, Client: p.client,
			Event: e.Index, Call: c.invoke, Return: e.Time,
		})
	case e.Type == history.OK:
		p.drop(c.hold)
		k.ops = append(k.ops, LockOp{
			Kind: OpRelease, Origin: FromCall, hold: c.hold.id, Key: k.name, Process: e.Process, Client: p.client,
			Event: e.Index, Call: c.invoke, Return: e.Time,
		})
	case e.Type == history.Info:
		p.drop(c.hold)
		k.ops = append(k.ops, LockOp{
			Kind: OpRelease, Origin: FromIndeterminate, hold: c.hold.id, Key: k.name, Process: e.Process, Client: p.client,
			Event: e.Index, Call: c.invoke, Return: Forever,
		})
	default:
		// Definitely not released, yet the holder is done with the
		// lock: see CheckLinearizable.
		d.counts.Dropped++
		d.counts.Derived++
		p.drop(c.hold)
		p.gaveUp = append(p.gaveUp, k)
		k.ops = append(k.ops, LockOp{
			Kind: OpRelease, Origin: FromAbandon, hold: c.hold.id, Key: k.name, Process: e.Process, Client: p.client,
			Event: e.Index, Call: c.invoke, Return: Forever,
		})
	}
}

func (d *digest) lost(e *history.Event, p *procState) {
	d.counts.LostNotices++
	k := d.key(e.Key)
	if !slices.Contains(p.gaveUp, k) {
		p.gaveUp = append(p.gaveUp, k)
	}
	for i := 0; i < len(p.holds); {
		h := p.holds[i]
		if h.key != k {
			i++
			continue
		}
		d.endSection(h, e.Time, endLost)
		if p.open != nil && p.open.hold == h {
			p.open.superseded = true
		}
		p.holds = slices.Delete(p.holds, i, i+1)
		d.counts.Derived++
		k.ops = append(k.ops, LockOp{
			Kind: OpRelease, Origin: FromLost, hold: h.id, Key: k.name, Process: e.Process, Client: p.client,
			Event: e.Index, Call: h.acqStart, Return: e.Time,
		})
	}
}

// crash ends a process. The recorder completes an open call with info
// before the crash event; a history that did not is read as if it had.
// That info makes the process gone already, but whatever else it held is
// abandoned only now.
func (d *digest) crash(proc history.Process, e *history.Event) {
	p, ok := d.procs[proc]
	if !ok || p.gone == goneCrash {
		return
	}
	if c := p.open; c != nil {
		p.open = nil
		if c.key != nil {
			d.counts.Indeterminate++
			if c.f == history.Acquire {
				d.counts.Dropped++
				if wait := e.Time - c.invoke; wait > d.longestWait {
					d.longestWait, d.waitEvent = wait, c.index
				}
			} else {
				d.released(&history.Event{Index: e.Index, Time: e.Time, Process: proc, Type: history.Info}, p, c)
			}
		}
	}
	for _, h := range slices.Clone(p.holds) {
		d.endSection(h, e.Time, endCrash)
		p.drop(h)
		d.counts.Derived++
		h.key.ops = append(h.key.ops, LockOp{
			Kind: OpRelease, Origin: FromCrash, hold: h.id, Key: h.key.name, Process: proc, Client: p.client,
			Event: e.Index, Call: e.Time, Return: Forever,
		})
	}
	p.gone = goneCrash
}

func (d *digest) endSection(h *hold, t int64, why endReason) {
	s := &h.key.sections[h.sec]
	if s.reason == endOpen {
		s.end, s.reason = t, why
	}
}

// finish settles what the end of the history leaves open.
func (d *digest) finish() {
	procs := make([]history.Process, 0, len(d.procs))
	for proc := range d.procs {
		procs = append(procs, proc)
	}
	// Map order would make the model history, and so counterexamples,
	// differ between runs of the same check.
	slices.Sort(procs)
	for _, proc := range procs {
		p := d.procs[proc]
		if c := p.open; c != nil && c.key != nil {
			d.counts.OpenAtEnd++
			switch {
			case c.f == history.Acquire:
				// Its process never acts again, so it is dropped like
				// an indeterminate acquire; its wait so far counts.
				d.counts.Dropped++
				if wait := d.last - c.invoke; wait > d.longestWait {
					d.longestWait, d.waitEvent = wait, c.index
				}
			case c.hold != nil && !c.superseded:
				p.drop(c.hold)
				c.key.ops = append(c.key.ops, LockOp{
					Kind: OpRelease, Origin: FromIndeterminate, hold: c.hold.id, Key: c.key.name, Process: proc, Client: p.client,
					Event: c.index, Call: c.invoke, Return: Forever,
				})
			default:
				d.counts.Dropped++
			}
		}
	}
	for _, k := range d.keys {
		for i := range k.sections {
			if s := &k.sections[i]; s.reason == endOpen {
				s.end = d.last
			}
		}
	}
}

// dropSections lets the critical sections and latencies go once the
// checkers that read them are done: on a large history they are tens of
// megabytes the linearizability search does not need.
func (d *digest) dropSections() {
	for _, k := range d.keys {
		k.sections = nil
	}
	d.latencies = nil
}

func (p *procState) holding(k *keyHist) *hold {
	for i := len(p.holds) - 1; i >= 0; i-- {
		if p.holds[i].key == k {
			return p.holds[i]
		}
	}
	return nil
}

func (p *procState) drop(h *hold) {
	p.holds = slices.DeleteFunc(p.holds, func(x *hold) bool { return x == h })
}
