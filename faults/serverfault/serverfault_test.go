package serverfault_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lockcheck/lockcheck/faults/serverfault"
)

// store is a tiny backend: uploads with ?name= store the body, object GETs
// read it. It counts what reached it, so a test can tell "never arrived"
// from "applied".
type store struct {
	mu      sync.Mutex
	objects map[string]string
	writes  int
}

func (s *store) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.objects == nil {
		s.objects = make(map[string]string)
	}
	if r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, "/upload/") {
		b, _ := io.ReadAll(r.Body)
		s.objects[r.URL.Query().Get("name")] = string(b)
		s.writes++
		io.WriteString(w, `{"generation":"1"}`)
		return
	}
	name, _ := strings.CutPrefix(r.URL.Path, "/storage/v1/b/bk/o/")
	if v, ok := s.objects[name]; ok {
		io.WriteString(w, v)
		return
	}
	http.NotFound(w, r)
}

func (s *store) get(name string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.objects[name]
	return v, ok
}

func (s *store) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.writes
}

// events collects what OnEvent reports.
type events struct {
	mu sync.Mutex
	l  []serverfault.Event
}

func (e *events) add(ev serverfault.Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.l = append(e.l, ev)
}

func (e *events) list() []serverfault.Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.l)
}

// clock is a manual clock: rate-limit windows in tests must not depend on
// how fast the machine runs.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type fixture struct {
	m     *serverfault.Middleware
	store *store
	ev    *events
	clock *clock
	h     http.Handler
}

func newFixture(seed uint64) *fixture {
	f := &fixture{store: &store{}, ev: &events{}, clock: &clock{t: time.Unix(1_000_000, 0)}}
	f.m = serverfault.New(serverfault.Options{Seed: seed, OnEvent: f.ev.add, Now: f.clock.Now})
	f.h = f.m.Wrap(f.store)
	return f
}

func (f *fixture) write(name, data string) *httptest.ResponseRecorder {
	r := httptest.NewRequest("POST", "/upload/storage/v1/b/bk/o?uploadType=media&name="+url.QueryEscape(name), strings.NewReader(data))
	rec := httptest.NewRecorder()
	f.h.ServeHTTP(rec, r)
	return rec
}

func (f *fixture) read(name string) *httptest.ResponseRecorder {
	r := httptest.NewRequest("GET", "/storage/v1/b/bk/o/"+url.PathEscape(name), nil)
	rec := httptest.NewRecorder()
	f.h.ServeHTTP(rec, r)
	return rec
}

func mustInject(t *testing.T, m *serverfault.Middleware, r serverfault.Rule) serverfault.Heal {
	t.Helper()
	heal, err := m.Inject(r)
	if err != nil {
		t.Fatal(err)
	}
	return heal
}

func gcsReason(t *testing.T, rec *httptest.ResponseRecorder) string {
	t.Helper()
	var b struct {
		Error struct {
			Code   int `json:"code"`
			Errors []struct {
				Reason string `json:"reason"`
			} `json:"errors"`
		} `json:"error"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &b); err != nil || len(b.Error.Errors) == 0 {
		t.Fatalf("error body %q is not GCS-shaped: %v", rec.Body.String(), err)
	}
	if b.Error.Code != rec.Code {
		t.Fatalf("error body code %d, status %d", b.Error.Code, rec.Code)
	}
	return b.Error.Errors[0].Reason
}

func TestNoRulePassesThrough(t *testing.T) {
	f := newFixture(1)
	if rec := f.write("a", "1"); rec.Code != http.StatusOK {
		t.Fatalf("write: %d", rec.Code)
	}
	if rec := f.read("a"); rec.Code != http.StatusOK || rec.Body.String() != "1" {
		t.Fatalf("read: %d %q", rec.Code, rec.Body.String())
	}
	if got := f.ev.list(); len(got) != 0 {
		t.Fatalf("events without faults: %+v", got)
	}
}

func TestUnavailableNeverReachesBackend(t *testing.T) {
	f := newFixture(1)
	heal := mustInject(t, f.m, serverfault.Rule{Kind: serverfault.Unavailable})
	rec := f.write("a", "1")
	if rec.Code != http.StatusServiceUnavailable || gcsReason(t, rec) != "backendError" {
		t.Fatalf("write under Unavailable: %d %s", rec.Code, rec.Body.String())
	}
	if _, ok := f.store.get("a"); ok || f.store.count() != 0 {
		t.Fatal("a write answered 503 before commit reached the backend")
	}
	// Ops defaults to writes: reads pass.
	if rec := f.read("a"); rec.Code != http.StatusNotFound {
		t.Fatalf("read under a write fault: %d", rec.Code)
	}
	evs := f.ev.list()
	if len(evs) != 1 || evs[0].Kind != serverfault.Unavailable || evs[0].Object != "a" ||
		evs[0].Method != "POST" || evs[0].Op != serverfault.Write || evs[0].Status != 503 || evs[0].Backend != 0 ||
		!evs[0].Time.Equal(f.clock.Now()) {
		t.Fatalf("events = %+v", evs)
	}
	heal()
	if rec := f.write("a", "1"); rec.Code != http.StatusOK {
		t.Fatalf("write after heal: %d", rec.Code)
	}
}

func TestLostReplyCommitsThenAnswers503(t *testing.T) {
	f := newFixture(1)
	mustInject(t, f.m, serverfault.Rule{Kind: serverfault.LostReply, Count: 1})
	rec := f.write("a", "mine")
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("write under LostReply: %d", rec.Code)
	}
	if v, ok := f.store.get("a"); !ok || v != "mine" {
		t.Fatalf("the write whose reply was lost was not applied: %q %v", v, ok)
	}
	evs := f.ev.list()
	if len(evs) != 1 || evs[0].Kind != serverfault.LostReply || evs[0].Backend != http.StatusOK || evs[0].Status != 503 {
		t.Fatalf("events = %+v", evs)
	}
	// Count 1: the rule retired itself.
	if got := f.m.Active(); len(got) != 0 {
		t.Fatalf("active after Count ran out: %v", got)
	}
	if rec := f.write("b", "x"); rec.Code != http.StatusOK {
		t.Fatalf("second write: %d", rec.Code)
	}
}

func TestDroppedReplyClosesConnectionAfterCommit(t *testing.T) {
	f := newFixture(1)
	srv := httptest.NewServer(f.h)
	t.Cleanup(srv.Close)
	mustInject(t, f.m, serverfault.Rule{Kind: serverfault.DroppedReply})

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", srv.URL+"/upload/storage/v1/b/bk/o?name=a", strings.NewReader("mine"))
	resp, err := srv.Client().Do(req)
	if err == nil {
		resp.Body.Close()
		t.Fatalf("dropped reply: got status %d, want a connection error", resp.StatusCode)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("dropped reply: %v, want a prompt connection error", err)
	}
	if v, ok := f.store.get("a"); !ok || v != "mine" {
		t.Fatal("the write whose connection was dropped was not applied")
	}
	evs := f.ev.list()
	if len(evs) != 1 || evs[0].Kind != serverfault.DroppedReply || evs[0].Backend != http.StatusOK || evs[0].Status != 0 {
		t.Fatalf("events = %+v", evs)
	}
}

func TestCountAndObjectTargetTheNextNWrites(t *testing.T) {
	f := newFixture(1)
	mustInject(t, f.m, serverfault.Rule{Kind: serverfault.Unavailable, Object: "x", Count: 2})
	if rec := f.write("y", "1"); rec.Code != http.StatusOK {
		t.Fatalf("write to another object: %d", rec.Code)
	}
	for i := range 2 {
		if rec := f.write("x", "1"); rec.Code != http.StatusServiceUnavailable {
			t.Fatalf("write %d to x: %d, want 503", i, rec.Code)
		}
	}
	if rec := f.write("x", "1"); rec.Code != http.StatusOK {
		t.Fatalf("third write to x: %d, want 200", rec.Code)
	}
}

// pattern runs n writes through a fresh middleware with a 50% rule and
// returns which were faulted.
func pattern(t *testing.T, seed uint64, n int) []bool {
	f := newFixture(seed)
	mustInject(t, f.m, serverfault.Rule{Kind: serverfault.Unavailable, Probability: 0.5})
	mustInject(t, f.m, serverfault.Rule{Kind: serverfault.Latency, Jitter: time.Microsecond, Probability: 0.5})
	out := make([]bool, n)
	for i := range out {
		out[i] = f.write("a", "1").Code == http.StatusServiceUnavailable
	}
	return out
}

func TestDecisionsAreSeeded(t *testing.T) {
	a, b := pattern(t, 7, 200), pattern(t, 7, 200)
	if !slices.Equal(a, b) {
		t.Fatal("same seed, same requests, different faults")
	}
	faulted := 0
	for _, x := range a {
		if x {
			faulted++
		}
	}
	if faulted == 0 || faulted == len(a) {
		t.Fatalf("probability 0.5 faulted %d of %d", faulted, len(a))
	}
	if slices.Equal(a, pattern(t, 8, 200)) {
		t.Fatal("different seeds gave the same 200 decisions")
	}
}

func TestRateLimitSlidingWindowPerObject(t *testing.T) {
	f := newFixture(1)
	mustInject(t, f.m, serverfault.Rule{Kind: serverfault.RateLimit})

	if rec := f.write("x", "1"); rec.Code != http.StatusOK {
		t.Fatalf("first write: %d", rec.Code)
	}
	f.clock.Advance(500 * time.Millisecond)
	rec := f.write("x", "2")
	if rec.Code != http.StatusTooManyRequests || gcsReason(t, rec) != "rateLimitExceeded" {
		t.Fatalf("second write within a second: %d %s", rec.Code, rec.Body.String())
	}
	if v, _ := f.store.get("x"); v != "1" {
		t.Fatalf("a rate-limited write reached the backend: x = %q", v)
	}
	if rec := f.write("y", "1"); rec.Code != http.StatusOK {
		t.Fatalf("write to another object: %d", rec.Code)
	}
	if rec := f.read("x"); rec.Code != http.StatusOK {
		t.Fatalf("reads do not count: %d", rec.Code)
	}
	// The window slides from the last admitted write (t=0), not from the
	// rejected one.
	f.clock.Advance(501 * time.Millisecond)
	if rec := f.write("x", "3"); rec.Code != http.StatusOK {
		t.Fatalf("write 1.001 s after the last admitted one: %d", rec.Code)
	}
	f.clock.Advance(999 * time.Millisecond)
	if rec := f.write("x", "4"); rec.Code != http.StatusTooManyRequests {
		t.Fatalf("write 0.999 s after the last admitted one: %d", rec.Code)
	}
	evs := f.ev.list()
	if len(evs) != 2 || evs[0].Kind != serverfault.RateLimit || evs[0].Object != "x" || evs[0].Status != 429 {
		t.Fatalf("events = %+v", evs)
	}
}

func TestRateLimitCustomLimit(t *testing.T) {
	f := newFixture(1)
	mustInject(t, f.m, serverfault.Rule{Kind: serverfault.RateLimit, Limit: 2, Window: time.Minute})
	for i, want := range []int{200, 200, 429} {
		if rec := f.write("x", "1"); rec.Code != want {
			t.Fatalf("write %d: %d, want %d", i, rec.Code, want)
		}
	}
}

func TestLatencyWaitsAtLeastTheDelay(t *testing.T) {
	f := newFixture(1)
	const d = 30 * time.Millisecond
	mustInject(t, f.m, serverfault.Rule{Kind: serverfault.Latency, Ops: serverfault.AllOps, Latency: d, Jitter: 10 * time.Millisecond})
	start := time.Now()
	if rec := f.read("a"); rec.Code != http.StatusNotFound {
		t.Fatalf("read: %d", rec.Code)
	}
	evs := f.ev.list()
	if len(evs) != 1 || evs[0].Delay < d-10*time.Millisecond || evs[0].Delay > d+10*time.Millisecond {
		t.Fatalf("events = %+v", evs)
	}
	// A lower bound only: a slow machine may add any amount.
	if el := time.Since(start); el < evs[0].Delay {
		t.Fatalf("request took %v, want ≥ %v", el, evs[0].Delay)
	}
}

func TestLatencyEndsWithTheCaller(t *testing.T) {
	f := newFixture(1)
	mustInject(t, f.m, serverfault.Rule{Kind: serverfault.Latency, Latency: time.Minute})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r := httptest.NewRequestWithContext(ctx, "POST", "/upload/storage/v1/b/bk/o?name=a", strings.NewReader("1"))
	f.h.ServeHTTP(httptest.NewRecorder(), r) // returns at once: the caller is gone
	if f.store.count() != 0 {
		t.Fatal("a request whose caller gave up while held reached the backend")
	}
}

func TestLatencyAfterCommit(t *testing.T) {
	f := newFixture(1)
	mustInject(t, f.m, serverfault.Rule{Kind: serverfault.Latency, Latency: time.Minute, AfterCommit: true})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan *httptest.ResponseRecorder)
	go func() {
		r := httptest.NewRequestWithContext(ctx, "POST", "/upload/storage/v1/b/bk/o?name=a", strings.NewReader("1"))
		rec := httptest.NewRecorder()
		f.h.ServeHTTP(rec, r)
		done <- rec
	}()
	// The write is applied while its reply is still held.
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	deadline := time.After(20 * time.Second)
	for f.store.count() == 0 {
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatal("write never reached the backend")
		}
	}
	cancel()
	if rec := <-done; rec.Body.Len() != 0 {
		t.Fatalf("a caller that gave up got a reply: %q", rec.Body.String())
	}
}

func TestHealAllStopsEveryFault(t *testing.T) {
	f := newFixture(1)
	for _, r := range []serverfault.Rule{
		{Kind: serverfault.Latency, Ops: serverfault.AllOps, Latency: time.Millisecond},
		{Kind: serverfault.RateLimit},
		{Kind: serverfault.Unavailable, Object: "u"},
		{Kind: serverfault.LostReply, Ops: serverfault.AllOps},
		{Kind: serverfault.DroppedReply, Object: "d"},
	} {
		mustInject(t, f.m, r)
	}
	if rec := f.write("u", "1"); rec.Code != 503 {
		t.Fatalf("before heal: %d", rec.Code)
	}
	if len(f.m.Active()) != 5 {
		t.Fatalf("active = %v", f.m.Active())
	}
	f.m.HealAll()
	before := len(f.ev.list())
	for _, name := range []string{"u", "d", "x", "x"} {
		if rec := f.write(name, "1"); rec.Code != http.StatusOK {
			t.Fatalf("write %s after HealAll: %d", name, rec.Code)
		}
	}
	if rec := f.read("x"); rec.Code != http.StatusOK {
		t.Fatalf("read after HealAll: %d", rec.Code)
	}
	if got := f.ev.list(); len(got) != before {
		t.Fatalf("events after HealAll: %+v", got[before:])
	}
	if len(f.m.Active()) != 0 {
		t.Fatalf("active after HealAll = %v", f.m.Active())
	}
}

func TestHealByID(t *testing.T) {
	f := newFixture(1)
	mustInject(t, f.m, serverfault.Rule{Kind: serverfault.Unavailable, Object: "a"})
	heal := mustInject(t, f.m, serverfault.Rule{Kind: serverfault.Unavailable, Object: "b"})
	ids := f.m.Active()
	f.m.Heal(ids[0])
	if rec := f.write("a", "1"); rec.Code != http.StatusOK {
		t.Fatalf("a after Heal(id): %d", rec.Code)
	}
	if rec := f.write("b", "1"); rec.Code != 503 {
		t.Fatalf("b still faulted: %d", rec.Code)
	}
	if err := errors.Join(heal(), heal()); err != nil {
		t.Fatal(err)
	}
	if rec := f.write("b", "1"); rec.Code != http.StatusOK {
		t.Fatalf("b after heal: %d", rec.Code)
	}
}

func TestInjectRejectsBadRules(t *testing.T) {
	m := serverfault.New(serverfault.Options{})
	for name, r := range map[string]serverfault.Rule{
		"no kind":          {},
		"probability > 1":  {Kind: serverfault.Unavailable, Probability: 1.5},
		"negative count":   {Kind: serverfault.Unavailable, Count: -1},
		"huge latency":     {Kind: serverfault.Latency, Latency: time.Hour},
		"negative jitter":  {Kind: serverfault.Latency, Jitter: -1},
		"negative window":  {Kind: serverfault.RateLimit, Window: -time.Second},
		"unknown ops bits": {Kind: serverfault.Unavailable, Ops: 0x80},
	} {
		if _, err := m.Inject(r); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if len(m.Active()) != 0 {
		t.Fatalf("rejected rules are active: %v", m.Active())
	}
}
