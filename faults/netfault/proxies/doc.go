// Package proxies is lockcheck's network fault plane on sockets: one toxiproxy proxy
// per client, embedded in this process, between that client's locker and
// the backend. A client dials Addr(client) instead of the backend, so a
// fault can hit one client, several, or all, in one direction or both.
//
// # Faults, what they stand for, and how they heal
//
// Every operation adds toxiproxy toxics to the chosen clients' proxies and
// returns a Heal that removes them; Heal(id) and HealAll do the same by id
// or for everything, and Close heals everything and stops the proxies.
// Toxics act at once on connections already open, keep-alive ones
// included, so a fault does not wait for a client to reconnect.
//
//   - Latency(d ± jitter): a slow or congested path. Each chunk of data is
//     held d ± jitter before it is forwarded. Heal: the toxic is removed;
//     data already held is delivered.
//   - Partition (silent): a cut cable, a dropping firewall, a node that
//     vanished. The "timeout" toxic with timeout 0 swallows every byte and
//     keeps the connection open, so clients learn of it only from their own
//     deadlines — unlike a stopped proxy, which refuses connections (a loud
//     failure that clients detect at once). Both, Upstream only (requests
//     lost, nothing committed) or Downstream only. Heal: removing the toxic
//     closes the connections it held, so clients reconnect rather than
//     wait on connections whose bytes are gone.
//   - LoseReplies: a downstream-only partition. Requests reach the server,
//     which commits them; replies never arrive. This is the fault that makes
//     a call indeterminate: the client's acquire timed out while the lock is
//     in fact its own. Heal as for Partition.
//   - Reset: a crashed middlebox or server process; each connection is reset
//     (RST) as soon as data flows in the chosen direction ("reset_peer",
//     timeout 0). Downstream, the server may already have committed. Heal:
//     the toxic is removed; new connections pass.
//   - Bandwidth, Slice, LimitData: a thin link; fragmented segments; a
//     connection cut after n bytes (downstream: usually after the server
//     committed — a loud lost reply). Heal: the toxic is removed.
//
// # Determinism
//
// Toxicity is always 1.0. toxiproxy decides toxicity per connection, not
// per request (with keep-alive a fractional toxicity faults whole
// connections or none), so a fraction is neither reproducible nor what a
// scenario means; per-request faults are serverfault's job. Which faults
// run, on whom and when, comes from the run's seed (package faults); the
// jitter of Latency is drawn by toxiproxy itself and is the one part that is
// not reproducible byte for byte.
//
// # Logging
//
// Some toxics log through zerolog's global logger whatever logger the
// server has; Start raises zerolog's global level to Error once per
// process (never lowers it) so a long run's output is not drowned.
//
// # The interface
//
// The harness should hold a Faults, not a *Plane: a simulation mode that
// runs inside a testing/synctest bubble cannot use sockets, and will
// implement the same faults at the HTTP transport. Reshaping bytes on the
// wire (Bandwidth, Slice, LimitData) only makes sense with sockets, so it is
// the optional Shaper interface, found by type assertion. Plane also has
// Inject for any other toxiproxy toxic, and Heal(id)/Active for a harness
// that tracks faults by id.
package proxies
