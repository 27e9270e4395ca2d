package proxies_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"cloud.google.com/go/storage"
	"github.com/lockcheck/lockcheck/backends/gcs"
	"github.com/lockcheck/lockcheck/faults/netfault"
	"github.com/lockcheck/lockcheck/faults/netfault/proxies"
)

// generous bounds calls that must succeed: long enough for a loaded CI
// machine, short enough that a hang fails the test instead of the job.
const generous = 20 * time.Second

// short is the deadline of calls that must time out: they wait for it
// whatever the machine's speed, so it needs no slack.
const short = 300 * time.Millisecond

type upstream struct {
	srv  *httptest.Server
	hits atomic.Int64
}

// startUpstream is a loopback HTTP server that counts requests and answers
// with a fixed body.
func startUpstream(t *testing.T) *upstream {
	t.Helper()
	u := &upstream{}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		u.hits.Add(1)
		io.WriteString(w, "pong "+strings.Repeat("x", 100))
	}))
	t.Cleanup(u.srv.Close)
	return u
}

func startPlane(t *testing.T, up string, clients int) *proxies.Plane {
	t.Helper()
	p, err := proxies.Start(context.Background(), up, clients)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return p
}

// clientFor returns an HTTP client with its own transport (own keep-alive
// pool) and the base URL of the client's proxy.
func clientFor(t *testing.T, p *proxies.Plane, i int) (*http.Client, string) {
	t.Helper()
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}, "http://" + p.Addr(i) + "/"
}

func get(hc *http.Client, url string, d time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func mustGet(t *testing.T, hc *http.Client, url string) {
	t.Helper()
	body, err := get(hc, url, generous)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	if !strings.HasPrefix(body, "pong ") {
		t.Fatalf("GET %s: body %q", url, body)
	}
}

func mustTimeOut(t *testing.T, hc *http.Client, url string) {
	t.Helper()
	_, err := get(hc, url, short)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("GET %s under partition: err = %v, want deadline exceeded", url, err)
	}
}

func TestPartitionTimesOutAndHealRestores(t *testing.T) {
	up := startUpstream(t)
	p := startPlane(t, up.srv.Listener.Addr().String(), 2)
	hc0, url0 := clientFor(t, p, 0)
	hc1, url1 := clientFor(t, p, 1)
	// Open keep-alive connections first: the partition must hit them too.
	mustGet(t, hc0, url0)
	mustGet(t, hc1, url1)

	heal, err := p.Partition([]int{0}, netfault.Both)
	if err != nil {
		t.Fatal(err)
	}
	mustTimeOut(t, hc0, url0)
	mustGet(t, hc1, url1) // only the chosen client is cut off

	if err := heal(); err != nil {
		t.Fatal(err)
	}
	mustGet(t, hc0, url0)
	if err := heal(); err != nil {
		t.Fatalf("second heal: %v", err)
	}
}

func TestUpstreamPartitionLosesRequests(t *testing.T) {
	up := startUpstream(t)
	p := startPlane(t, up.srv.Listener.Addr().String(), 1)
	hc, url := clientFor(t, p, 0)
	mustGet(t, hc, url)
	before := up.hits.Load()

	heal, err := p.Partition([]int{0}, netfault.Upstream)
	if err != nil {
		t.Fatal(err)
	}
	mustTimeOut(t, hc, url)
	if err := heal(); err != nil {
		t.Fatal(err)
	}
	// The swallowed request is gone, not delayed: healing closed its
	// connection, so it can never reach the server afterwards.
	if got := up.hits.Load(); got != before {
		t.Fatalf("server saw %d requests during an upstream partition, want 0", got-before)
	}
	mustGet(t, hc, url)
}

func TestDownstreamPartitionLosesReplies(t *testing.T) {
	up := startUpstream(t)
	p := startPlane(t, up.srv.Listener.Addr().String(), 1)
	hc, url := clientFor(t, p, 0)
	mustGet(t, hc, url)
	before := up.hits.Load()

	heal, err := p.LoseReplies([]int{0})
	if err != nil {
		t.Fatal(err)
	}
	mustTimeOut(t, hc, url)
	if err := heal(); err != nil {
		t.Fatal(err)
	}
	// The server answered the request whose reply was lost. It was read
	// before the client's deadline passed (the upstream path is clear), but
	// the handler may finish a moment later: wait for it, bounded.
	waitFor(t, func() bool { return up.hits.Load() > before })
	mustGet(t, hc, url)
}

// waitFor polls cond on a ticker, bounded by generous: the condition is
// caused by an event already in flight, so this is not a sleep standing in
// for synchronisation.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(generous)
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatal("condition not met in time")
		}
	}
}

// TestLostReplyWithStorageClient is the ghost-lock setting: the embedded
// GCS backend commits a create-if-absent whose reply never arrives.
func TestLostReplyWithStorageClient(t *testing.T) {
	ctx := context.Background()
	committed := make(chan struct{}, 1)
	srv, err := gcs.Start(ctx, gcs.Options{Wrap: func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			next.ServeHTTP(w, r)
			if r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, "/upload/") {
				select {
				case committed <- struct{}{}:
				default:
				}
			}
		})
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	backend := strings.TrimSuffix(strings.TrimPrefix(srv.Endpoint(), "http://"), "/storage/v1/")

	p := startPlane(t, backend, 1)
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	viaProxy, err := gcs.NewClient(ctx, "http://"+p.Addr(0)+"/storage/v1/", &http.Client{Transport: tr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { viaProxy.Close() })
	direct, err := gcs.NewClient(ctx, srv.Endpoint(), &http.Client{Transport: &http.Transport{}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { direct.Close() })

	heal, err := p.LoseReplies([]int{0})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { heal() })

	// The deadline must outlast the request's trip to the backend (a
	// clear upstream path, microseconds), so this one is not "short".
	wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	obj := viaProxy.Bucket(srv.Bucket()).Object("lock")
	w := obj.If(storage.Conditions{DoesNotExist: true}).NewWriter(wctx)
	w.ChunkSize = 256 << 10
	io.WriteString(w, "token-1")
	err = w.Close()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("create through a lost reply: err = %v, want deadline exceeded", err)
	}
	select {
	case <-committed:
	case <-time.After(generous):
		t.Fatal("backend never committed the write")
	}
	rctx, rcancel := context.WithTimeout(ctx, generous)
	defer rcancel()
	r, err := direct.Bucket(srv.Bucket()).Object("lock").NewReader(rctx)
	if err != nil {
		t.Fatalf("the write whose reply was lost is not there: %v", err)
	}
	defer r.Close()
	b, _ := io.ReadAll(r)
	if string(b) != "token-1" {
		t.Fatalf("object holds %q, want token-1", b)
	}
}

func TestResetGivesError(t *testing.T) {
	up := startUpstream(t)
	p := startPlane(t, up.srv.Listener.Addr().String(), 1)
	hc, url := clientFor(t, p, 0)
	mustGet(t, hc, url)

	heal, err := p.Reset([]int{0}, netfault.Upstream)
	if err != nil {
		t.Fatal(err)
	}
	_, err = get(hc, url, generous)
	if err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("GET through reset: err = %v, want a connection error", err)
	}
	if err := heal(); err != nil {
		t.Fatal(err)
	}
	mustGet(t, hc, url)
}

func TestLatencyAddsAtLeastTheDelay(t *testing.T) {
	up := startUpstream(t)
	p := startPlane(t, up.srv.Listener.Addr().String(), 1)
	hc, url := clientFor(t, p, 0)
	mustGet(t, hc, url)

	const d = 50 * time.Millisecond
	heal, err := p.Latency([]int{0}, d, 0, netfault.Both)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	mustGet(t, hc, url)
	// The request waits d on the way up and the reply d on the way down.
	// Only a lower bound: a slow machine may add any amount.
	if el := time.Since(start); el < 2*d {
		t.Fatalf("round trip took %v under %v latency each way, want ≥ %v", el, d, 2*d)
	}
	if err := heal(); err != nil {
		t.Fatal(err)
	}
}

func TestLimitDataCutsReply(t *testing.T) {
	up := startUpstream(t)
	p := startPlane(t, up.srv.Listener.Addr().String(), 1)
	hc, url := clientFor(t, p, 0)
	heal, err := p.LimitData([]int{0}, 20, netfault.Downstream)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := get(hc, url, generous); err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("GET through limit_data: err = %v, want a connection error", err)
	}
	if err := heal(); err != nil {
		t.Fatal(err)
	}
	mustGet(t, hc, url)
}

func TestSliceAndBandwidthKeepData(t *testing.T) {
	up := startUpstream(t)
	p := startPlane(t, up.srv.Listener.Addr().String(), 1)
	hc, url := clientFor(t, p, 0)
	h1, err := p.Slice([]int{0}, 8, 4, time.Millisecond, netfault.Both)
	if err != nil {
		t.Fatal(err)
	}
	h2, err := p.Bandwidth([]int{0}, 100, netfault.Downstream)
	if err != nil {
		t.Fatal(err)
	}
	mustGet(t, hc, url)
	if err := errors.Join(h1(), h2()); err != nil {
		t.Fatal(err)
	}
}

func TestHealAllHealsEverything(t *testing.T) {
	up := startUpstream(t)
	p := startPlane(t, up.srv.Listener.Addr().String(), 3)
	var hcs []*http.Client
	var urls []string
	for i := range 3 {
		hc, url := clientFor(t, p, i)
		mustGet(t, hc, url)
		hcs, urls = append(hcs, hc), append(urls, url)
	}
	if _, err := p.Partition([]int{0}, netfault.Both); err != nil {
		t.Fatal(err)
	}
	if _, err := p.LoseReplies([]int{1}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Reset([]int{2}, netfault.Both); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Latency([]int{0, 1, 2}, time.Millisecond, time.Millisecond, netfault.Both); err != nil {
		t.Fatal(err)
	}
	ids := p.Active()
	if len(ids) != 4 {
		t.Fatalf("active faults = %v, want 4", ids)
	}
	if err := p.Heal(ids[3]); err != nil { // the latency
		t.Fatal(err)
	}
	if got := p.Active(); !slices.Equal(got, ids[:3]) {
		t.Fatalf("active after Heal(%d) = %v, want %v", ids[3], got, ids[:3])
	}
	mustTimeOut(t, hcs[0], urls[0])
	mustTimeOut(t, hcs[1], urls[1])

	if err := p.HealAll(); err != nil {
		t.Fatal(err)
	}
	if got := p.Active(); len(got) != 0 {
		t.Fatalf("active after HealAll: %v", got)
	}
	for i := range 3 {
		mustGet(t, hcs[i], urls[i])
	}
}

func TestInjectRejectsBadInput(t *testing.T) {
	up := startUpstream(t)
	p := startPlane(t, up.srv.Listener.Addr().String(), 2)
	for name, inject := range map[string]func() (netfault.Heal, error){
		"client out of range": func() (netfault.Heal, error) { return p.Partition([]int{2}, netfault.Both) },
		"negative client":     func() (netfault.Heal, error) { return p.Partition([]int{-1}, netfault.Both) },
		"no clients":          func() (netfault.Heal, error) { return p.Partition(nil, netfault.Both) },
		"bad direction":       func() (netfault.Heal, error) { return p.Partition([]int{0}, netfault.Direction(9)) },
		"negative latency":    func() (netfault.Heal, error) { return p.Latency([]int{0}, -time.Second, 0, netfault.Both) },
		"unknown toxic": func() (netfault.Heal, error) {
			return p.Inject([]int{0, 1}, proxies.Toxic{Type: "no-such-toxic"}, netfault.Both)
		},
	} {
		if _, err := inject(); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if got := p.Active(); len(got) != 0 {
		t.Fatalf("failed injections left faults behind: %v", got)
	}
	if _, err := proxies.Start(context.Background(), up.srv.Listener.Addr().String(), 0); err == nil {
		t.Error("Start with 0 clients: no error")
	}
	if _, err := proxies.Start(context.Background(), "no-port", 1); err == nil {
		t.Error("Start with a bad upstream: no error")
	}
}

func TestCloseStopsProxies(t *testing.T) {
	up := startUpstream(t)
	p, err := proxies.Start(context.Background(), up.srv.Listener.Addr().String(), 1)
	if err != nil {
		t.Fatal(err)
	}
	addr := p.Addr(0)
	if _, err := p.Partition([]int{0}, netfault.Both); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	if _, err := p.Partition([]int{0}, netfault.Both); err == nil {
		t.Fatal("inject after close: no error")
	}
	c, err := net.DialTimeout("tcp", addr, generous)
	if err == nil {
		// A listener closed this instant may still complete a handshake in
		// the kernel's backlog; the connection must then be closed at once.
		c.SetReadDeadline(time.Now().Add(generous))
		_, rerr := c.Read(make([]byte, 1))
		c.Close()
		if rerr == nil {
			t.Fatal("proxy still serving after Close")
		}
	}
}

// A request deliver-late holds reaches the server although its client
// gave up on it and closed the connection, and no sooner than late after
// it was sent: a lower bound, which holds on any machine. (That the other
// client's requests are not held is shown in simulation, where time is
// exact: memnet's TestDeliverLateLandsAfterTheSenderGaveUp.)
func TestDeliverLateLandsAfterTheClientGaveUp(t *testing.T) {
	held := make(chan time.Time, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if r.URL.Path == "/held" {
			held <- time.Now()
		}
		io.WriteString(w, "pong ")
	}))
	t.Cleanup(srv.Close)
	p := startPlane(t, srv.Listener.Addr().String(), 2)
	hc0, url0 := clientFor(t, p, 0)
	hc1, url1 := clientFor(t, p, 1)
	// The client gives up a second after it sent, long enough for its
	// dial and write to reach the proxy on a busy machine (at 50 ms they
	// might not have, and nothing would be held), and well before the
	// delivery.
	const late, giveUp = 3 * time.Second, time.Second
	heal, err := p.DeliverLate([]int{0}, late)
	if err != nil {
		t.Fatal(err)
	}
	defer heal()
	sent := time.Now()
	if _, err := get(hc0, url0+"held", giveUp); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a held request: %v, want its deadline", err)
	}
	hc0.CloseIdleConnections()
	mustGet(t, hc1, url1)
	select {
	case at := <-held:
		if at.Sub(sent) < late {
			t.Errorf("the held request arrived %v after it was sent, want at least %v", at.Sub(sent), late)
		}
	case <-time.After(generous):
		t.Fatal("the held request never reached the server after its client gave up")
	}
	if _, err := p.DeliverLate([]int{0}, 0); err == nil {
		t.Error("deliver late by 0: no error")
	}
}

// Refuse closes a client's connections and refuses new ones at once;
// the heal listens on the same port again, and the other client is never
// touched.
func TestRefuseRefusesUntilTheHeal(t *testing.T) {
	up := startUpstream(t)
	p := startPlane(t, up.srv.Listener.Addr().String(), 2)
	hc0, url0 := clientFor(t, p, 0)
	hc1, url1 := clientFor(t, p, 1)
	mustGet(t, hc0, url0) // a keep-alive connection the outage must close
	heal, err := p.Refuse([]int{0})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := get(hc0, url0, generous); err == nil {
		t.Fatal("a request under refuse succeeded")
	}
	if c, err := net.DialTimeout("tcp", p.Addr(0), generous); err == nil {
		c.Close()
		t.Fatal("a dial under refuse connected")
	} else if !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("a dial under refuse: %v, want connection refused", err)
	}
	mustGet(t, hc1, url1)
	if err := heal(); err != nil {
		t.Fatal(err)
	}
	mustGet(t, hc0, url0)
	if err := heal(); err != nil {
		t.Errorf("second heal: %v", err)
	}
}
