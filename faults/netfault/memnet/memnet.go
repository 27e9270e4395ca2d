// Package memnet is the simulation's network fault plane: each client's
// path to a backend that lives in the same process, with no socket, so a
// whole run can go inside a testing/synctest bubble in virtual time.
package memnet

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/lockcheck/lockcheck/faults/netfault"
	"github.com/lockcheck/lockcheck/harness"
	"github.com/lockcheck/lockcheck/internal/bubble"
)

// Network is the simulation's network: each client's in-memory path to
// the backend (an HTTP transport that calls the handler, a net.Pipe to the
// Redis server), with a seeded latency on every request and the faults the
// schedule injects, decided per request or per byte stream. It is the
// simulated twin of the toxiproxy plane (faults/netfault/proxies):
//
//   - Latency: each request, and each reply, waits d ± jitter more.
//   - Partition: bytes in the cut direction vanish; callers wait for their
//     own deadlines. Upstream, nothing reaches the server; downstream, the
//     server commits and the reply is lost. At the heal the connections it
//     held are closed, as toxiproxy's are; each client learns of it a
//     seeded network delay later (see heal).
//   - LoseReplies: a downstream partition.
//   - Reset: a request (upstream) or its reply (downstream) ends in a
//     connection reset; downstream, the server has committed.
//   - DeliverLate: each request, and each write on a byte stream, reaches
//     the server late later (at the heal at the latest), even when its
//     sender has given up on it; a stream's later writes queue behind it,
//     and a stream closed meanwhile closes once they are delivered, as
//     toxiproxy's latency toxic does.
//   - Refuse: the client's byte streams close at once and every request
//     and dial fails at once with ECONNREFUSED, as a stopped proxy does.
//
// Reshaping bytes (bandwidth, slicer, limit_data) has no meaning without
// sockets, so Network is no netfault.Shaper and those faults are refused.
type Network struct {
	clients int
	// base bounds every request's own latency, each way, before faults:
	// a seeded draw per request keeps events apart in virtual time.
	baseMin, baseMax time.Duration

	mu     sync.Mutex
	faults map[int]*netFault
	nextID int
	// healed is closed, and replaced, at every heal: calls held by a
	// partition wake up and look again.
	healed *healing
	conns  map[int][]*faultConn
	rngs   []*rand.Rand
	// healRng draws how long each heal's closes take to reach each
	// client. Only heals draw from it, one after another, so the draws do
	// not depend on which client's traffic ran first.
	healRng *rand.Rand
	// lib hands math/rand's global source to this run whenever a request
	// or a connection fails, since the client library may draw its retry
	// jitter from it next.
	lib *bubble.LibraryRand
}

// healing is one heal as the calls held by a partition see it: done is
// closed at the heal, after says, per client, how long after it the
// closed connection reaches the client.
type healing struct {
	done  chan struct{}
	after []time.Duration
}

// delay is how long after the heal client's held calls end.
func (h *healing) delay(client int) time.Duration {
	if client >= 0 && client < len(h.after) {
		return h.after[client]
	}
	return h.after[len(h.after)-1]
}

type netFault struct {
	kind    string // latency, partition, reset, late, refuse
	clients []int
	dir     netfault.Direction
	d, jit  time.Duration
}

var (
	_ netfault.Faults = (*Network)(nil)
	_ harness.Plane   = (*Network)(nil)
)

// NewNetwork is the network of a run with clients clients; seed draws the
// requests' own latencies, one stream per client.
func NewNetwork(clients int, seed uint64, baseMin, baseMax time.Duration) *Network {
	n := &Network{clients: clients, baseMin: baseMin, baseMax: baseMax, faults: map[int]*netFault{}, conns: map[int][]*faultConn{}}
	for i := range clients + 1 {
		n.rngs = append(n.rngs, rand.New(rand.NewPCG(seed, uint64(i)+0x5e1a7)))
	}
	n.healRng = rand.New(rand.NewPCG(seed, 0x4ea1))
	n.lib = bubble.NewLibraryRand(seed)
	n.healed = n.newHealing()
	return n
}

// newHealing is the next heal, its delays drawn now; n.mu is held, or n
// is not shared yet.
func (n *Network) newHealing() *healing {
	h := &healing{done: make(chan struct{}), after: make([]time.Duration, n.clients+1)}
	for i := range h.after {
		h.after[i] = n.baseDelay(n.healRng)
	}
	return h
}

// baseDelay is the network's own delay, before faults, drawn from rng.
func (n *Network) baseDelay(rng *rand.Rand) time.Duration {
	if n.baseMax <= 0 {
		return 0
	}
	return n.baseMin + time.Duration(rng.Int64N(int64(n.baseMax-n.baseMin)+1))
}

func (n *Network) add(f *netFault) netfault.Heal {
	n.mu.Lock()
	id := n.nextID
	n.nextID++
	n.faults[id] = f
	n.mu.Unlock()
	return func() error { n.heal(id); return nil }
}

// heal ends fault id. A partition's heal closes the connections it held
// and ends the calls it held, each reaching its client a network delay
// after the heal, drawn per connection and per client: the nemesis
// records the heal at its own instant, and the failures it causes follow
// at distinct instants in the seed's order, instead of racing the record
// and each other at one instant in the Go scheduler's order.
func (n *Network) heal(id int) {
	n.mu.Lock()
	f, ok := n.faults[id]
	delete(n.faults, id)
	type closing struct {
		c     *faultConn
		after time.Duration
	}
	var closes []closing
	if ok && f.kind == "partition" {
		for _, c := range f.clients {
			for _, fc := range n.conns[c] {
				closes = append(closes, closing{fc, n.baseDelay(n.healRng)})
			}
			n.conns[c] = nil
		}
	}
	h := n.healed
	n.healed = n.newHealing()
	close(h.done)
	n.mu.Unlock()
	for _, c := range closes {
		if c.after <= 0 {
			c.c.Conn.Close()
			continue
		}
		time.AfterFunc(c.after, func() { c.c.Conn.Close() })
	}
}

func (n *Network) Latency(clients []int, d, jitter time.Duration, dir netfault.Direction) (netfault.Heal, error) {
	return n.add(&netFault{kind: "latency", clients: slices.Clone(clients), dir: dir, d: d, jit: jitter}), nil
}

func (n *Network) Partition(clients []int, dir netfault.Direction) (netfault.Heal, error) {
	return n.add(&netFault{kind: "partition", clients: slices.Clone(clients), dir: dir}), nil
}

func (n *Network) LoseReplies(clients []int) (netfault.Heal, error) {
	return n.Partition(clients, netfault.Downstream)
}

func (n *Network) Reset(clients []int, dir netfault.Direction) (netfault.Heal, error) {
	return n.add(&netFault{kind: "reset", clients: slices.Clone(clients), dir: dir}), nil
}

func (n *Network) DeliverLate(clients []int, late time.Duration) (netfault.Heal, error) {
	if late <= 0 {
		return nil, fmt.Errorf("memnet: deliver late by %v: want > 0", late)
	}
	return n.add(&netFault{kind: "late", clients: slices.Clone(clients), dir: netfault.Upstream, d: late}), nil
}

// Refuse refuses the clients' requests and dials until the heal, and
// closes their byte streams, each seeing ECONNREFUSED a network delay
// later, drawn per stream as a heal's closes are: streams closed at one
// instant would wake their readers in the Go scheduler's order.
func (n *Network) Refuse(clients []int) (netfault.Heal, error) {
	heal := n.add(&netFault{kind: "refuse", clients: slices.Clone(clients), dir: netfault.Both})
	type closing struct {
		c     *faultConn
		after time.Duration
	}
	var closes []closing
	n.mu.Lock()
	for _, c := range clients {
		for _, fc := range n.conns[c] {
			closes = append(closes, closing{fc, n.baseDelay(n.healRng)})
		}
		n.conns[c] = nil
	}
	n.mu.Unlock()
	for _, c := range closes {
		if c.after <= 0 {
			c.c.closeWith(errRefused)
			continue
		}
		time.AfterFunc(c.after, func() { c.c.closeWith(errRefused) })
	}
	return heal, nil
}

func (n *Network) HealAll() error {
	n.mu.Lock()
	var ids []int
	for id := range n.faults {
		ids = append(ids, id)
	}
	n.mu.Unlock()
	slices.Sort(ids)
	for _, id := range ids {
		n.heal(id)
	}
	return nil
}

// Redirect is addr: in-memory paths need no proxy address.
func (n *Network) Redirect(_ int, addr string) string { return addr }

func (n *Network) Close() error { return n.HealAll() }

// state is what the faults do to client's traffic in one direction now.
type state struct {
	cut, reset, refused bool
	delay               time.Duration
	// late is how long a deliver-late fault holds a request, on top of
	// delay.
	late   time.Duration
	healed *healing
}

func (n *Network) state(client int, upstream bool) state {
	return n.stateFrom(client, upstream, nil)
}

// stateFrom is state with its draws from rng, or from client's own
// stream when rng is nil.
func (n *Network) stateFrom(client int, upstream bool, rng *rand.Rand) state {
	n.mu.Lock()
	defer n.mu.Unlock()
	s := state{healed: n.healed}
	if rng == nil {
		rng = n.clientRand(client)
	}
	s.delay = n.baseDelay(rng)
	ids := make([]int, 0, len(n.faults))
	for id := range n.faults {
		ids = append(ids, id)
	}
	slices.Sort(ids) // the jitter draws in a fixed order
	for _, id := range ids {
		f := n.faults[id]
		if !slices.Contains(f.clients, client) || !applies(f.dir, upstream) {
			continue
		}
		switch f.kind {
		case "partition":
			s.cut = true
		case "reset":
			s.reset = true
		case "refuse":
			s.refused = true
		case "late":
			s.late = max(s.late, f.d)
		case "latency":
			s.delay += f.d
			if f.jit > 0 {
				s.delay += time.Duration(rng.Int64N(int64(2*f.jit)+1)) - f.jit
			}
		}
	}
	s.delay = max(s.delay, 0)
	return s
}

// clientRand is client's latency stream; n.mu is held.
func (n *Network) clientRand(client int) *rand.Rand {
	if client >= 0 && client < n.clients {
		return n.rngs[client]
	}
	return n.rngs[n.clients]
}

// heldRand is a stream of draws of one held request or write of client's
// own, seeded from the client's stream as it is held, in the client's
// order: what it draws later, when it is let go, cannot depend on the
// order in which the Go scheduler resumes several held at one instant.
func (n *Network) heldRand(client int) *rand.Rand {
	n.mu.Lock()
	defer n.mu.Unlock()
	rng := n.clientRand(client)
	return rand.New(rand.NewPCG(rng.Uint64(), rng.Uint64()))
}

func applies(dir netfault.Direction, upstream bool) bool {
	return dir == netfault.Both || (dir == netfault.Upstream) == upstream
}

var (
	errReset   = fmt.Errorf("memnet: connection reset by peer: %w", syscall.ECONNRESET)
	errHealed  = fmt.Errorf("memnet: connection closed as its partition healed: %w", syscall.ECONNRESET)
	errRefused = fmt.Errorf("memnet: connection refused: %w", syscall.ECONNREFUSED)
)

// hold waits out a partition: until the caller gives up, or the
// partition heals, which closes the connection it held; the close reaches
// client a network delay after the heal.
func hold(ctx context.Context, s state, client int) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-s.healed.done:
	}
	if d := s.healed.delay(client); d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return errHealed
}

// pass is one direction of one request: nil to go on, or the error the
// caller sees.
func (n *Network) pass(ctx context.Context, client int, upstream bool) error {
	return n.passIn(ctx, n.state(client, upstream), client, upstream)
}

// passIn is pass under s, the state already drawn for this direction of
// the request (each draw moves the client's latency stream on).
func (n *Network) passIn(ctx context.Context, s state, client int, upstream bool) error {
	switch {
	case s.refused && upstream:
		return errRefused
	case s.refused:
		// The server committed; the connection closed under its reply.
		return errReset
	case s.cut:
		return hold(ctx, s, client)
	case s.reset:
		return errReset
	}
	if s.delay > 0 {
		t := time.NewTimer(s.delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// Transport is client's HTTP path through the network to base.
func (n *Network) Transport(client int, base http.RoundTripper) http.RoundTripper {
	return &faultTransport{n: n, client: client, base: base}
}

type faultTransport struct {
	n      *Network
	client int
	base   http.RoundTripper
}

func (t *faultTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := t.roundTrip(r)
	if err != nil || mayBeRetried(resp.StatusCode) {
		t.n.lib.Reseed()
	}
	return resp, err
}

// mayBeRetried says whether a client library may retry a request answered
// status: the storage client retries 408, 429 and every 5xx.
func mayBeRetried(status int) bool {
	return status == http.StatusRequestTimeout || status == http.StatusTooManyRequests || status >= 500
}

func (t *faultTransport) roundTrip(r *http.Request) (*http.Response, error) {
	ctx := r.Context()
	if t.n.refused(t.client) {
		if r.Body != nil {
			r.Body.Close()
		}
		return nil, errRefused
	}
	s := t.n.state(t.client, true)
	if s.late > 0 && !s.cut && !s.reset && !s.refused {
		return t.late(r, s)
	}
	if err := t.n.passIn(ctx, s, t.client, true); err != nil {
		if r.Body != nil {
			r.Body.Close()
		}
		return nil, err
	}
	resp, err := t.base.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	if err := t.n.pass(ctx, t.client, false); err != nil {
		// The server committed; its reply is lost.
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return nil, err
	}
	return resp, nil
}

// late sends r on its way to the server s.delay+s.late from now, sooner
// if the deliver-late fault heals first: what the client does meanwhile
// (give up, retry, release) does not recall it, as a request already on
// the wire is not recalled.
func (t *faultTransport) late(r *http.Request, s state) (*http.Response, error) {
	ctx := r.Context()
	var body []byte
	if r.Body != nil {
		b, err := io.ReadAll(r.Body)
		r.Body.Close()
		if err != nil {
			return nil, err
		}
		body = b
	}
	sent := r.Clone(context.WithoutCancel(ctx))
	sent.Body = io.NopCloser(bytes.NewReader(body))
	sent.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	type reply struct {
		resp *http.Response
		err  error
	}
	replies := make(chan reply, 1)
	abandoned := make(chan struct{})
	rng := t.n.heldRand(t.client)
	afterHeal := t.n.baseDelay(rng)
	go func() {
		t.n.waitLate(t.client, time.Now().Add(s.delay+s.late), s.healed, afterHeal)
		resp, err := t.base.RoundTrip(sent)
		if err == nil {
			if err = t.n.passIn(ctx, t.n.stateFrom(t.client, false, rng), t.client, false); err != nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				resp = nil
			}
		}
		select {
		case replies <- reply{resp, err}:
		case <-abandoned:
			if resp != nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}
	}()
	select {
	case rep := <-replies:
		return rep.resp, rep.err
	case <-ctx.Done():
		close(abandoned)
		return nil, ctx.Err()
	}
}

// waitLate waits until due, or until a heal leaves no deliver-late fault
// on client (healed is the heal the wait started under), and then
// afterHeal more: what one heal lets go arrives at distinct instants, in
// an order drawn from the seed.
func (n *Network) waitLate(client int, due time.Time, healed *healing, afterHeal time.Duration) {
	for {
		wait := time.Until(due)
		if wait <= 0 {
			return
		}
		timer := time.NewTimer(wait)
		select {
		case <-timer.C:
			return
		case <-healed.done:
			timer.Stop()
		}
		n.mu.Lock()
		late, now := n.lateOn(client), n.healed
		n.mu.Unlock()
		if !late {
			due = time.Now().Add(afterHeal)
			healed = &healing{done: make(chan struct{})} // no heal can cut this short
			continue
		}
		healed = now
	}
}

// lateOn says a deliver-late fault holds client's requests; n.mu is held.
// It draws nothing, so asking does not move the client's stream.
func (n *Network) lateOn(client int) bool { return n.faultOn("late", client) }

func (n *Network) faultOn(kind string, client int) bool {
	for _, f := range n.faults {
		if f.kind == kind && slices.Contains(f.clients, client) {
			return true
		}
	}
	return false
}

// refused says a refuse fault cuts client off. It draws nothing: a
// refused call fails at once, so the calls of one client's goroutines
// fail and retry at shared instants, and draws made there would be
// ordered by the Go scheduler.
func (n *Network) refused(client int) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.faultOn("refuse", client)
}

// Dialer is client's path to dial through the network with dial.
//
// A byte stream gets no latency of its own, only the faults': a Redis
// client library (go-redis's PubSub) writes while holding a sync.Mutex
// that another of its goroutines waits for, and synctest does not count a
// goroutine waiting on a mutex as durably blocked, so a write that waited
// for virtual time to pass would stall the bubble for good.
func (n *Network) Dialer(client int, dial func(ctx context.Context, network, addr string) (net.Conn, error)) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := n.dial(ctx, client, dial, network, addr)
		if err != nil {
			n.lib.Reseed()
			return nil, err
		}
		fc := &faultConn{Conn: c, n: n, client: client}
		n.mu.Lock()
		n.conns[client] = append(n.conns[client], fc)
		n.mu.Unlock()
		return fc, nil
	}
}

// dial is Dialer's dial through the faults.
func (n *Network) dial(ctx context.Context, client int, dial func(ctx context.Context, network, addr string) (net.Conn, error), network, addr string) (net.Conn, error) {
	if n.refused(client) {
		return nil, errRefused
	}
	if s := n.state(client, true); s.cut || s.reset || s.refused {
		switch {
		case s.refused:
			return nil, errRefused
		case s.reset:
			return nil, errReset
		}
		return nil, hold(ctx, s, client)
	}
	return dial(ctx, network, addr)
}

// faultConn is a byte stream through the network: a partition swallows
// what crosses it, a reset ends the connection, deliver-late holds each
// write.
type faultConn struct {
	net.Conn
	n      *Network
	client int

	mu sync.Mutex
	// held are writes a deliver-late fault holds, oldest first; while
	// any is held, later writes queue behind it, as bytes on one TCP
	// connection keep their order. draining says a goroutine delivers
	// them; closing says the client closed the stream meanwhile, so it
	// closes once they are delivered.
	held     []heldWrite
	draining bool
	closing  bool
	// closedBy is the error the client sees once the network closed the
	// stream (a refused outage).
	closedBy error
}

type heldWrite struct {
	due       time.Time
	healed    *healing
	afterHeal time.Duration
	b         []byte
}

// closeWith closes the stream under the client, which then sees err.
func (c *faultConn) closeWith(err error) {
	c.mu.Lock()
	c.closedBy = err
	c.held = nil
	c.mu.Unlock()
	c.Conn.Close()
}

// closedErr is what a failed read or write on the closed stream says.
func (c *faultConn) closedErr(err error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closedBy != nil {
		return c.closedBy
	}
	return err
}

// Close closes the stream, after the writes a deliver-late fault still
// holds have reached the server.
func (c *faultConn) Close() error {
	c.mu.Lock()
	if c.draining {
		c.closing = true
		c.mu.Unlock()
		return nil
	}
	c.mu.Unlock()
	return c.Conn.Close()
}

// hold queues b behind the writes already held; the first one starts
// the goroutine that delivers them.
func (c *faultConn) hold(s state, b []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	// s.delay, the seeded draw a request would wait, keeps two held
	// writes from falling due at one instant.
	afterHeal := c.n.baseDelay(c.n.heldRand(c.client))
	c.held = append(c.held, heldWrite{due: time.Now().Add(s.delay + s.late), healed: s.healed, afterHeal: afterHeal, b: append([]byte(nil), b...)})
	if !c.draining {
		c.draining = true
		go c.drain()
	}
}

// drain delivers the held writes in order, each when it is due; the
// write stays at the head of the queue while it is being written, so no
// later write overtakes it.
func (c *faultConn) drain() {
	for {
		c.mu.Lock()
		if len(c.held) == 0 {
			c.draining = false
			closing := c.closing
			c.mu.Unlock()
			if closing {
				c.Conn.Close()
			}
			return
		}
		w := c.held[0]
		c.mu.Unlock()
		c.n.waitLate(c.client, w.due, w.healed, w.afterHeal)
		_, err := c.Conn.Write(w.b)
		c.mu.Lock()
		if err != nil {
			c.held = nil // the stream is gone; so is what it held
		} else if len(c.held) > 0 {
			c.held = c.held[1:]
		}
		c.mu.Unlock()
	}
}

func (c *faultConn) Write(b []byte) (int, error) {
	n, err := c.write(b)
	if err != nil {
		c.n.lib.Reseed()
	}
	return n, err
}

func (c *faultConn) Read(b []byte) (int, error) {
	n, err := c.read(b)
	if err != nil {
		c.n.lib.Reseed()
	}
	return n, err
}

func (c *faultConn) write(b []byte) (int, error) {
	if c.n.refused(c.client) {
		c.Conn.Close()
		return 0, errRefused
	}
	s := c.n.state(c.client, true)
	c.mu.Lock()
	queued := c.draining
	c.mu.Unlock()
	switch {
	case s.refused:
		c.Conn.Close()
		return 0, errRefused
	case s.late > 0 && !s.cut && !s.reset, queued:
		c.hold(s, b)
		return len(b), nil
	case s.cut:
		return len(b), nil // into the void
	case s.reset:
		c.Conn.Close()
		return 0, errReset
	}
	n, err := c.Conn.Write(b)
	if err != nil {
		err = c.closedErr(err)
	}
	return n, err
}

func (c *faultConn) read(b []byte) (int, error) {
	for {
		n, err := c.Conn.Read(b)
		if n == 0 || err != nil {
			if errors.Is(err, io.ErrClosedPipe) {
				err = errHealed
			}
			if err != nil {
				err = c.closedErr(err)
			}
			return n, err
		}
		s := c.n.state(c.client, false)
		switch {
		case s.cut:
			continue // lost on the way back
		case s.reset:
			c.Conn.Close()
			return 0, errReset
		}
		return n, nil
	}
}
