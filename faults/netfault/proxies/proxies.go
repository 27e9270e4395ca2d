package proxies

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"

	"github.com/lockcheck/lockcheck/faults/netfault"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// streams names toxiproxy's streams for d.
func streams(d netfault.Direction) ([]string, error) {
	switch d {
	case netfault.Both:
		return []string{"upstream", "downstream"}, nil
	case netfault.Upstream:
		return []string{"upstream"}, nil
	case netfault.Downstream:
		return []string{"downstream"}, nil
	}
	return nil, fmt.Errorf("unknown direction %d", int(d))
}

var (
	_ netfault.Faults = (*Plane)(nil)
	_ netfault.Shaper = (*Plane)(nil)
)

// maxClients bounds Start so a mistaken count cannot open thousands of
// listeners.
const maxClients = 1024

// Plane is one toxiproxy proxy per client, all in this process, each
// listening on 127.0.0.1 with a kernel-chosen port and forwarding to one
// upstream.
type Plane struct {
	server   *toxiproxy.ApiServer
	proxies  []*toxiproxy.Proxy
	addrs    []string
	upstream string

	// mu serialises whole injections and heals (so a HealAll racing an
	// Inject cannot miss a toxic) and guards the fields below.
	mu     sync.Mutex
	nextID int
	active map[int]*fault // by id
	closed bool
	// refused counts, per client, the Refuse faults that keep its proxy
	// stopped: the last heal starts it again.
	refused map[int]int
}

// fault is one injected fault: the toxics it added, by proxy index, or
// the proxies it stopped.
type fault struct {
	id      int
	toxics  []placed
	stopped []int
}

type placed struct {
	client int
	name   string
}

var quietOnce sync.Once

// quietLogs raises zerolog's global level: some toxics (bandwidth) log
// through the global logger on every connection, whatever logger the server
// was given, and a long run would drown its own output.
func quietLogs() {
	quietOnce.Do(func() {
		if zerolog.GlobalLevel() < zerolog.ErrorLevel {
			zerolog.SetGlobalLevel(zerolog.ErrorLevel)
		}
	})
}

// Start opens one proxy per client in front of upstream (host:port). ctx
// bounds only the start-up; the proxies run until Close.
func Start(ctx context.Context, upstream string, clients int) (*Plane, error) {
	if clients <= 0 || clients > maxClients {
		return nil, fmt.Errorf("netfault: start: clients = %d, want 1..%d", clients, maxClients)
	}
	if _, _, err := net.SplitHostPort(upstream); err != nil {
		return nil, fmt.Errorf("netfault: start: upstream %q: %w", upstream, err)
	}
	quietLogs()
	// A private registry: toxiproxy registers its metrics, and a shared
	// registry would refuse a second plane in the same process.
	server := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), zerolog.Nop())
	p := &Plane{server: server, upstream: upstream, active: make(map[int]*fault), refused: make(map[int]int)}
	for i := range clients {
		if err := ctx.Err(); err != nil {
			p.Close()
			return nil, fmt.Errorf("netfault: start: %w", err)
		}
		proxy := toxiproxy.NewProxy(server, fmt.Sprintf("client-%d", i), "127.0.0.1:0", upstream)
		if err := server.Collection.Add(proxy, true); err != nil {
			p.Close()
			return nil, fmt.Errorf("netfault: start proxy for client %d: %w", i, err)
		}
		// Listen holds the kernel-chosen address once the proxy started;
		// read it under the proxy's lock, as toxiproxy writes it under it.
		proxy.Lock()
		addr := proxy.Listen
		proxy.Unlock()
		p.proxies = append(p.proxies, proxy)
		p.addrs = append(p.addrs, addr)
	}
	return p, nil
}

// Clients is the number of proxies.
func (p *Plane) Clients() int { return len(p.proxies) }

// Addr is the host:port client must dial instead of the upstream. It
// panics on an index out of range, like a slice, since that is a
// programming error.
func (p *Plane) Addr(client int) string { return p.addrs[client] }

// Upstream is the address every proxy forwards to.
func (p *Plane) Upstream() string { return p.upstream }

// Toxic describes one toxiproxy toxic for Inject: a type registered by
// toxiproxy ("latency", "timeout", "reset_peer", "bandwidth", "slicer",
// "limit_data", "slow_close") and its attributes as toxiproxy's JSON
// names them. Toxicity is always 1.0: toxiproxy decides toxicity per
// connection, not per request, so a fraction would fault whole keep-alive
// connections at random; per-request faults belong to serverfault.
type Toxic struct {
	Type       string
	Attributes map[string]any
	_          struct{}
}

// Inject adds t in dir to each of clients' proxies. Toxics act on
// connections already open (keep-alive ones included) at once. On error
// the toxics already added are removed.
func (p *Plane) Inject(clients []int, t Toxic, dir netfault.Direction) (netfault.Heal, error) {
	streams, err := streams(dir)
	if err != nil {
		return nil, fmt.Errorf("netfault: inject %s: %w", t.Type, err)
	}
	op := "inject " + t.Type
	if err := p.checkClients(op, clients); err != nil {
		return nil, err
	}
	attrs := t.Attributes
	if attrs == nil {
		attrs = map[string]any{}
	}

	// One lock across the whole operation: a HealAll racing an Inject must
	// not miss toxics added after it looked.
	p.mu.Lock()
	defer p.mu.Unlock()
	f, err := p.newFault(op)
	if err != nil {
		return nil, err
	}
	for _, c := range slices.Compact(slices.Sorted(slices.Values(clients))) {
		for _, s := range streams {
			name := fmt.Sprintf("f%d-%s-%s", f.id, t.Type, s)
			body, err := json.Marshal(map[string]any{
				"name":       name,
				"type":       t.Type,
				"stream":     s,
				"toxicity":   1.0,
				"attributes": attrs,
			})
			if err == nil {
				_, err = p.proxies[c].Toxics.AddToxicJson(bytes.NewReader(body))
			}
			if err != nil {
				healErr := p.healLocked(f.id)
				return nil, errors.Join(fmt.Errorf("netfault: inject %s on client %d %s: %w", t.Type, c, s, err), healErr)
			}
			f.toxics = append(f.toxics, placed{client: c, name: name})
		}
	}
	id := f.id
	return func() error { return p.heal(id) }, nil
}

// checkClients refuses an empty or out-of-range client list for op.
func (p *Plane) checkClients(op string, clients []int) error {
	if len(clients) == 0 {
		return fmt.Errorf("netfault: %s: no clients", op)
	}
	for _, c := range clients {
		if c < 0 || c >= len(p.proxies) {
			return fmt.Errorf("netfault: %s: client %d out of range 0..%d", op, c, len(p.proxies)-1)
		}
	}
	return nil
}

// newFault registers a fault about to be injected; p.mu is held.
func (p *Plane) newFault(op string) (*fault, error) {
	if p.closed {
		return nil, fmt.Errorf("netfault: %s: plane closed", op)
	}
	p.nextID++
	f := &fault{id: p.nextID}
	p.active[f.id] = f
	return f, nil
}

func (p *Plane) heal(id int) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.healLocked(id)
}

// healLocked removes the toxics of one fault. Removing a timeout toxic
// closes the connections it held, so a healed partition does not leave
// half-dead keep-alive connections behind.
func (p *Plane) healLocked(id int) error {
	f, ok := p.active[id]
	delete(p.active, id)
	if !ok {
		return nil
	}
	var errs []error
	for _, t := range f.toxics {
		if err := p.proxies[t.client].Toxics.RemoveToxic(context.Background(), t.name); err != nil {
			errs = append(errs, fmt.Errorf("netfault: heal %s on client %d: %w", t.name, t.client, err))
		}
	}
	for _, c := range f.stopped {
		if p.refused[c]--; p.refused[c] > 0 {
			continue
		}
		delete(p.refused, c)
		// The proxy listens again on the port it had: toxiproxy keeps the
		// kernel-chosen address, and the client dials that one.
		if err := p.proxies[c].Start(); err != nil {
			errs = append(errs, fmt.Errorf("netfault: heal refuse on client %d: listen on %s again: %w", c, p.addrs[c], err))
		}
	}
	return errors.Join(errs...)
}

// Heal undoes the fault with the given id (see Active); unknown ids are a
// no-op.
func (p *Plane) Heal(id int) error { return p.heal(id) }

// Active lists the ids of faults not yet healed, in injection order.
func (p *Plane) Active() []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	ids := make([]int, 0, len(p.active))
	for id := range p.active {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// HealAll undoes every active fault, newest first, and reports every
// failure.
func (p *Plane) HealAll() error {
	ids := p.Active()
	var errs []error
	for _, id := range slices.Backward(ids) {
		if err := p.heal(id); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Close heals every fault and stops every proxy, closing their
// connections. The plane cannot be used afterwards.
func (p *Plane) Close() error {
	err := p.HealAll()
	p.mu.Lock()
	already := p.closed
	p.closed = true
	p.mu.Unlock()
	if already {
		return nil
	}
	if cerr := p.server.Collection.Clear(); cerr != nil {
		err = errors.Join(err, fmt.Errorf("netfault: close: %w", cerr))
	}
	return err
}

// maxDelay bounds every delay a fault may add, so a typo cannot stall a
// run for hours.
const maxDelay = 10 * time.Minute

func ms(d time.Duration) int64 { return d.Milliseconds() }

// Latency delays data by d ± jitter (toxiproxy's "latency" toxic, per
// chunk of data; toxiproxy draws the jitter itself, so jitter is the one
// part of a fault not reproducible from the run's seed). Stands for a slow
// or congested network path.
func (p *Plane) Latency(clients []int, d, jitter time.Duration, dir netfault.Direction) (netfault.Heal, error) {
	if d < 0 || jitter < 0 || d+jitter > maxDelay {
		return nil, fmt.Errorf("netfault: latency %v ± %v: want 0 ≤ latency+jitter ≤ %v", d, jitter, maxDelay)
	}
	return p.Inject(clients, Toxic{Type: "latency", Attributes: map[string]any{"latency": ms(d), "jitter": ms(jitter)}}, dir)
}

// Partition blackholes the clients' traffic in dir with toxiproxy's
// "timeout" toxic at timeout 0: bytes are swallowed, connections stay open,
// nothing is refused — a silent partition, as a cut cable or a dropping
// firewall looks to a client. (Stopping a proxy would refuse connections:
// a loud failure a client detects at once.) Upstream alone: requests never
// arrive, nothing is committed. Downstream alone: see LoseReplies. Healing
// closes the connections the toxic held, so clients reconnect afresh.
func (p *Plane) Partition(clients []int, dir netfault.Direction) (netfault.Heal, error) {
	return p.Inject(clients, Toxic{Type: "timeout", Attributes: map[string]any{"timeout": 0}}, dir)
}

// LoseReplies is a downstream-only partition: requests reach the server,
// which commits them, and the replies never arrive. The client sees its
// deadline pass while its write took effect — the case a locker must treat
// as indeterminate (a lock it may hold without knowing).
func (p *Plane) LoseReplies(clients []int) (netfault.Heal, error) {
	return p.Partition(clients, netfault.Downstream)
}

// Reset resets (TCP RST, linger 0) each connection of the clients as soon
// as data flows in dir (toxiproxy's "reset_peer" at timeout 0). Stands for a
// crashed middlebox or server process. Upstream: the request is lost before
// the server sees it in full; Downstream: the server may have committed.
func (p *Plane) Reset(clients []int, dir netfault.Direction) (netfault.Heal, error) {
	return p.Inject(clients, Toxic{Type: "reset_peer", Attributes: map[string]any{"timeout": 0}}, dir)
}

// DeliverLate delays the clients' requests by late with toxiproxy's
// "latency" toxic upstream, jitter 0. The toxic holds each chunk it has
// read and passes it on when its time comes even if the client has closed
// its end meanwhile, so a request its sender gave up on still reaches the
// server; removing the toxic passes on what it holds at once.
func (p *Plane) DeliverLate(clients []int, late time.Duration) (netfault.Heal, error) {
	if late <= 0 || late > maxDelay {
		return nil, fmt.Errorf("netfault: deliver late by %v: want 0 < late ≤ %v", late, maxDelay)
	}
	return p.Latency(clients, late, 0, netfault.Upstream)
}

// Refuse stops the clients' proxies: toxiproxy closes every connection
// through them and the port refuses new ones (ECONNREFUSED), a loud outage
// a client learns of at once, unlike Partition's silence. The heal listens
// on the same port again.
func (p *Plane) Refuse(clients []int) (netfault.Heal, error) {
	if err := p.checkClients("refuse", clients); err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	f, err := p.newFault("refuse")
	if err != nil {
		return nil, err
	}
	for _, c := range slices.Compact(slices.Sorted(slices.Values(clients))) {
		if p.refused[c]++; p.refused[c] == 1 {
			p.proxies[c].Stop()
		}
		f.stopped = append(f.stopped, c)
	}
	id := f.id
	return func() error { return p.heal(id) }, nil
}

// Bandwidth limits throughput to kbPerSec kilobytes per second: a thin or
// saturated link, which slows large replies more than small ones.
func (p *Plane) Bandwidth(clients []int, kbPerSec int64, dir netfault.Direction) (netfault.Heal, error) {
	if kbPerSec <= 0 {
		return nil, fmt.Errorf("netfault: bandwidth %d KB/s: want > 0", kbPerSec)
	}
	return p.Inject(clients, Toxic{Type: "bandwidth", Attributes: map[string]any{"rate": kbPerSec}}, dir)
}

// Slice cuts data into pieces of about avg ± variation bytes sent delay
// apart: fragmented TCP segments, which break readers that assume one read
// returns one message.
func (p *Plane) Slice(clients []int, avg, variation int, delay time.Duration, dir netfault.Direction) (netfault.Heal, error) {
	if avg <= 0 || variation < 0 || variation >= avg || delay < 0 || delay > maxDelay {
		return nil, fmt.Errorf("netfault: slicer avg=%d variation=%d delay=%v: want avg > variation ≥ 0, 0 ≤ delay ≤ %v", avg, variation, delay, maxDelay)
	}
	return p.Inject(clients, Toxic{Type: "slicer", Attributes: map[string]any{
		"average_size": avg, "size_variation": variation, "delay": delay.Microseconds(),
	}}, dir)
}

// LimitData closes each connection once n bytes have passed in dir: a
// connection cut mid-transfer. Downstream, the server has usually committed
// before the reply is cut (a loud lost reply).
func (p *Plane) LimitData(clients []int, n int64, dir netfault.Direction) (netfault.Heal, error) {
	if n < 0 {
		return nil, fmt.Errorf("netfault: limit_data %d bytes: want ≥ 0", n)
	}
	return p.Inject(clients, Toxic{Type: "limit_data", Attributes: map[string]any{"bytes": n}}, dir)
}
