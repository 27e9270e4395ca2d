// Package memnet is the simulation's network fault plane: each client's
// path to a backend that lives in the same process, with no socket, so a
// whole run can go inside a testing/synctest bubble in virtual time.
package memnet

import (
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
	kind    string // latency, partition, reset
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
	cut, reset bool
	delay      time.Duration
	healed     *healing
}

func (n *Network) state(client int, upstream bool) state {
	n.mu.Lock()
	defer n.mu.Unlock()
	s := state{healed: n.healed}
	var rng *rand.Rand
	if client >= 0 && client < n.clients {
		rng = n.rngs[client]
	} else {
		rng = n.rngs[n.clients]
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

func applies(dir netfault.Direction, upstream bool) bool {
	return dir == netfault.Both || (dir == netfault.Upstream) == upstream
}

var (
	errReset  = fmt.Errorf("memnet: connection reset by peer: %w", syscall.ECONNRESET)
	errHealed = fmt.Errorf("memnet: connection closed as its partition healed: %w", syscall.ECONNRESET)
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
	s := n.state(client, upstream)
	switch {
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
	if err := t.n.pass(ctx, t.client, true); err != nil {
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
	if s := n.state(client, true); s.cut || s.reset {
		if s.reset {
			return nil, errReset
		}
		return nil, hold(ctx, s, client)
	}
	return dial(ctx, network, addr)
}

// faultConn is a byte stream through the network: a partition swallows
// what crosses it, a reset ends the connection, latency delays each
// write and each read.
type faultConn struct {
	net.Conn
	n      *Network
	client int
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
	s := c.n.state(c.client, true)
	switch {
	case s.cut:
		return len(b), nil // into the void
	case s.reset:
		c.Conn.Close()
		return 0, errReset
	}
	return c.Conn.Write(b)
}

func (c *faultConn) read(b []byte) (int, error) {
	for {
		n, err := c.Conn.Read(b)
		if n == 0 || err != nil {
			if errors.Is(err, io.ErrClosedPipe) {
				err = errHealed
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
