package netfault

import (
	"fmt"
	"time"
)

// Direction says which way across a client's proxy a fault applies.
type Direction int

const (
	// Both is client→server and server→client.
	Both Direction = iota
	// Upstream is client→server: requests.
	Upstream
	// Downstream is server→client: replies.
	Downstream
)

func (d Direction) String() string {
	switch d {
	case Both:
		return "both"
	case Upstream:
		return "upstream"
	case Downstream:
		return "downstream"
	}
	return fmt.Sprintf("Direction(%d)", int(d))
}

// Heal undoes one fault. Calling it again, or after HealAll, is a no-op.
type Heal func() error

// Faults is the network fault plane as the harness sees it: per-client
// faults on the path between a client's locker and the backend. The
// toxiproxy implementation is Plane; a simulation mode can implement the
// same methods at the HTTP transport, where no socket exists.
type Faults interface {
	// Latency delays every byte by d ± jitter in dir.
	Latency(clients []int, d, jitter time.Duration, dir Direction) (Heal, error)
	// Partition silently drops every byte in dir: nothing arrives, nothing
	// is refused, callers wait for their deadlines.
	Partition(clients []int, dir Direction) (Heal, error)
	// LoseReplies lets requests reach the server, which commits them, and
	// drops every reply.
	LoseReplies(clients []int) (Heal, error)
	// Reset resets each connection of the clients as soon as data flows in dir.
	Reset(clients []int, dir Direction) (Heal, error)
	// DeliverLate holds every request the clients send and hands it to the
	// server late later, even when its sender has given up on it by then:
	// its bytes are in the network. Replies are not delayed. The heal
	// delivers whatever is still held at once.
	DeliverLate(clients []int, late time.Duration) (Heal, error)
	// Refuse makes the backend unreachable for the clients, loudly: their
	// open connections are closed and every new one is refused, at once,
	// until the heal.
	Refuse(clients []int) (Heal, error)
	// HealAll undoes every fault still active.
	HealAll() error
}

// Shaper is the optional ability to reshape bytes on the wire, which only
// a socket-level plane has (an HTTP-transport plane sees whole requests);
// find it by type assertion on a Faults.
type Shaper interface {
	// Bandwidth limits throughput to kbPerSec kilobytes per second.
	Bandwidth(clients []int, kbPerSec int64, dir Direction) (Heal, error)
	// Slice cuts data into pieces of avg ± variation bytes, delay apart.
	Slice(clients []int, avg, variation int, delay time.Duration, dir Direction) (Heal, error)
	// LimitData closes each connection once n bytes have passed in dir.
	LimitData(clients []int, n int64, dir Direction) (Heal, error)
}

// BackendGroup is the network plane of a run with several independent
// backends (Redlock's three servers): a fault through Backends cuts
// clients off from the chosen backends only.
type BackendGroup interface {
	Faults
	Size() int
	Backends(which []int) (Faults, error)
}
