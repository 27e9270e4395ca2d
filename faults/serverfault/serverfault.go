package serverfault

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/lockcheck/lockcheck/internal/gcsapi"
)

// Kind is one sort of server-side fault.
type Kind int

const (
	// Unavailable answers 503 before the request reaches the backend:
	// nothing is committed.
	Unavailable Kind = iota + 1
	// LostReply lets the backend apply the request, then answers 503 in
	// place of its reply.
	LostReply
	// DroppedReply lets the backend apply the request, then drops the
	// connection without a reply.
	DroppedReply
	// RateLimit answers 429 rateLimitExceeded to a write of an object that
	// already had Limit writes in the last Window, before it reaches the
	// backend.
	RateLimit
	// Latency holds the request (or its reply) for Latency ± Jitter.
	Latency
)

var kindNames = map[Kind]string{
	Unavailable:  "unavailable",
	LostReply:    "lost-reply",
	DroppedReply: "dropped-reply",
	RateLimit:    "rate-limit",
	Latency:      "latency",
}

func (k Kind) String() string {
	if n, ok := kindNames[k]; ok {
		return n
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// maxDelay bounds one Latency fault so a mistaken value cannot stall a run
// for hours.
const maxDelay = 10 * time.Minute

// Rule switches one fault on for the requests it matches until it is
// healed, or until it has fired Count times.
type Rule struct {
	Kind Kind
	// Ops are the requests the rule applies to; zero means Write, since the
	// faults that matter to a lock hit its mutations. RateLimit applies to
	// writes whatever Ops says.
	Ops Op
	// Bucket and Object restrict the rule to one bucket and one object
	// name; empty matches any.
	Bucket, Object string
	// Probability is the chance that a matching request is faulted, drawn
	// from the middleware's seeded generator; 0 means 1 (every matching
	// request). RateLimit ignores it: the window alone decides.
	Probability float64
	// Count retires the rule after it has fired Count times ("the next N
	// writes to X"); 0 means no limit.
	Count int
	// Latency and Jitter (Latency only): each faulted request waits Latency
	// plus a seeded draw uniform in [-Jitter, +Jitter], at least zero.
	Latency, Jitter time.Duration
	// AfterCommit (Latency only) delays the reply after the backend has
	// applied the request, instead of the request before it: the write
	// takes effect well before its caller learns of it.
	AfterCommit bool
	// Limit and Window (RateLimit only): at most Limit admitted writes per
	// object in any Window. Zero values give GCS's documented limit of one
	// write per second per object.
	Limit  int
	Window time.Duration

	_ struct{}
}

// Event reports one injected fault on one request.
type Event struct {
	// Rule is the id of the rule that fired, as returned by Active.
	Rule int
	Kind Kind
	Op   Op
	// Method, Bucket and Object identify the request; Object is empty when
	// the request names none the middleware can read.
	Method, Bucket, Object string
	// Status is what the client was told (503, 429), or 0 for a dropped
	// connection or a delay.
	Status int
	// Backend is the backend's own status for faults after commit
	// (LostReply, DroppedReply, Latency with AfterCommit): 2xx means the
	// request took effect although its caller did not learn it. 0 when the
	// request never reached the backend.
	Backend int
	// Delay is the wait a Latency fault added.
	Delay time.Duration
	// Time is when the fault was decided, from Options.Now.
	Time time.Time

	_ struct{}
}

// Options configure New. The zero value is valid: seed 0, no events, the
// wall clock.
type Options struct {
	// Seed drives every probabilistic decision and every jitter: the same
	// seed and the same sequence of requests give the same faults.
	Seed uint64
	// OnEvent, if set, is called for every injected fault, outside any
	// lock, from the request's goroutine. It must be safe for concurrent
	// use.
	OnEvent func(Event)
	// Now is the clock of rate-limit windows and event times; nil means
	// time.Now. Tests give a manual clock so a window does not depend on
	// how fast the machine runs.
	Now func() time.Time

	_ struct{}
}

// Heal switches one fault off. It is safe to call more than once, and
// after HealAll.
type Heal func() error

// Middleware injects server-side faults into single requests. Build one
// with New, put Wrap in front of the backend, and switch faults on with
// Inject. With no rule active it passes every request through untouched
// (it still remembers resumable sessions, so a rule switched on later can
// name their final chunk's object).
type Middleware struct {
	onEvent func(Event)
	now     func() time.Time

	mu       sync.Mutex
	rng      *rand.Rand
	nextID   int
	rules    []*rule // in injection order: evaluated in this order
	sessions sessionMap
}

type rule struct {
	id        int
	Rule      // copied at Inject: a caller's later change has no effect
	remaining int
	// writes holds, for RateLimit, the admission times of each object's
	// writes within the window, oldest first.
	writes map[string][]time.Time
}

// New returns a middleware with no fault active.
func New(o Options) *Middleware {
	now := o.Now
	if now == nil {
		now = time.Now
	}
	return &Middleware{
		onEvent: o.OnEvent,
		now:     now,
		// The second PCG word keeps this stream apart from other users of
		// the run's seed.
		rng: rand.New(rand.NewPCG(o.Seed, 0x5e4fa17)),
	}
}

// Inject switches a fault on and returns its heal.
func (m *Middleware) Inject(r Rule) (Heal, error) {
	if err := validate(&r); err != nil {
		return nil, fmt.Errorf("serverfault: inject %v: %w", r.Kind, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.nextID++
	ru := &rule{id: m.nextID, Rule: r, remaining: r.Count}
	if r.Kind == RateLimit {
		ru.writes = make(map[string][]time.Time)
	}
	m.rules = append(m.rules, ru)
	id := ru.id
	return func() error { m.Heal(id); return nil }, nil
}

func validate(r *Rule) error {
	if _, ok := kindNames[r.Kind]; !ok {
		return errors.New("unknown kind")
	}
	if r.Ops == 0 {
		r.Ops = Write
	}
	if r.Ops&^AllOps != 0 {
		return fmt.Errorf("unknown ops %#x", uint8(r.Ops))
	}
	if r.Probability < 0 || r.Probability > 1 {
		return fmt.Errorf("probability %v outside [0, 1]", r.Probability)
	}
	if r.Probability == 0 {
		r.Probability = 1
	}
	if r.Count < 0 {
		return fmt.Errorf("count %d < 0", r.Count)
	}
	if r.Kind == Latency && (r.Latency < 0 || r.Jitter < 0 || r.Latency+r.Jitter > maxDelay) {
		return fmt.Errorf("latency %v ± %v: want 0 ≤ latency+jitter ≤ %v", r.Latency, r.Jitter, maxDelay)
	}
	if r.Kind == RateLimit {
		if r.Limit < 0 || r.Window < 0 {
			return fmt.Errorf("limit %d per %v: want ≥ 0", r.Limit, r.Window)
		}
		if r.Limit == 0 {
			r.Limit = 1
		}
		if r.Window == 0 {
			r.Window = time.Second
		}
	}
	return nil
}

// Heal switches off the rule with this id; an unknown id is a no-op.
func (m *Middleware) Heal(id int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.rules = slices.DeleteFunc(m.rules, func(r *rule) bool { return r.id == id })
}

// HealAll switches every fault off. Requests already past their decision
// finish as decided (a delay in progress runs out or its caller gives up).
func (m *Middleware) HealAll() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.rules = nil
}

// Active lists the ids of the rules in force, in injection order; a rule
// whose Count ran out is gone.
func (m *Middleware) Active() []int {
	m.mu.Lock()
	defer m.mu.Unlock()
	ids := make([]int, 0, len(m.rules))
	for _, r := range m.rules {
		ids = append(ids, r.id)
	}
	return ids
}

// Wrap returns the faulting handler in front of next.
func (m *Middleware) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m.serve(next, w, r)
	})
}

// decision is what the rules decided for one request.
type decision struct {
	before, after time.Duration
	pre           *Event // Unavailable or RateLimit: answered without the backend
	post          *Event // LostReply or DroppedReply: answered after it
	events        []Event
}

func (m *Middleware) serve(next http.Handler, w http.ResponseWriter, r *http.Request) {
	req := classify(r)
	if req.uploadID != "" {
		req.bucket, req.object = m.sessionObject(req.uploadID, req.bucket)
	}
	if req.resumableStart {
		// Remember the session so its final chunk, which names no object,
		// can be matched; only the reply's Location names the session.
		w = &sessionRecorder{ResponseWriter: w, m: m, bucket: req.bucket, object: req.object}
	}
	d := m.decide(r, req)
	for _, e := range d.events {
		m.emit(e)
	}

	if d.before > 0 && !wait(r.Context(), d.before) {
		// The caller gave up while held: nothing reaches the backend, as
		// when a client times out on a slow server before its request is
		// read.
		return
	}
	if d.pre != nil {
		m.emit(*d.pre)
		writeError(w, r.Method, req, d.pre.Status)
		return
	}
	if d.post == nil && d.after == 0 {
		next.ServeHTTP(w, r)
		return
	}

	rec := gcsapi.NewReply()
	next.ServeHTTP(rec, r)
	if d.after > 0 && !wait(r.Context(), d.after) {
		return
	}
	if d.post == nil {
		rec.Flush(w, r)
		return
	}
	d.post.Backend = rec.Code
	m.emit(*d.post)
	if d.post.Kind == LostReply {
		writeError(w, r.Method, req, http.StatusServiceUnavailable)
		return
	}
	drop(w)
}

// decide runs every rule against one request, under the lock, so the
// generator is drawn in one order per sequence of requests. Rules are
// evaluated in injection order: latency rules add up; the first
// Unavailable or RateLimit that fires answers the request without the
// backend, and then no after-commit rule is consulted (nor its draw
// consumed); otherwise the first LostReply or DroppedReply that fires
// withholds the reply.
func (m *Middleware) decide(r *http.Request, req request) decision {
	m.mu.Lock()
	defer m.mu.Unlock()
	var d decision
	if len(m.rules) == 0 {
		return d
	}
	now := m.now()
	ev := func(ru *rule, status int) Event {
		return Event{Rule: ru.id, Kind: ru.Kind, Op: req.op, Method: r.Method,
			Bucket: req.bucket, Object: req.object, Status: status, Time: now}
	}
	key := req.bucket + "\x00" + req.object

	for _, ru := range m.rules {
		if !ru.matches(req) {
			continue
		}
		switch ru.Kind {
		case Latency:
			if !m.fire(ru) {
				continue
			}
			delay := ru.Latency
			if ru.Jitter > 0 {
				delay += time.Duration(m.rng.Int64N(int64(2*ru.Jitter)+1)) - ru.Jitter
			}
			delay = max(delay, 0)
			if ru.AfterCommit {
				d.after += delay
			} else {
				d.before += delay
			}
			e := ev(ru, 0)
			e.Delay = delay
			d.events = append(d.events, e)
		case Unavailable:
			if d.pre == nil && m.fire(ru) {
				e := ev(ru, http.StatusServiceUnavailable)
				d.pre = &e
			}
		case RateLimit:
			if d.pre == nil && ru.limited(key, now) && m.count(ru) {
				e := ev(ru, http.StatusTooManyRequests)
				d.pre = &e
			}
		}
	}
	if d.pre == nil {
		for _, ru := range m.rules {
			if d.post != nil {
				break
			}
			if (ru.Kind == LostReply || ru.Kind == DroppedReply) && ru.matches(req) && m.fire(ru) {
				status := http.StatusServiceUnavailable
				if ru.Kind == DroppedReply {
					status = 0
				}
				e := ev(ru, status)
				d.post = &e
			}
		}
		if req.op == Write {
			// The write is admitted: it counts against every window it
			// falls in, whether or not the backend then accepts it (a
			// rejected precondition is still a mutation attempt).
			for _, ru := range m.rules {
				if ru.Kind == RateLimit && ru.matches(req) {
					ru.admit(key, now)
				}
			}
		}
	}
	m.rules = slices.DeleteFunc(m.rules, func(ru *rule) bool { return ru.Count > 0 && ru.remaining == 0 })
	return d
}

func (ru *rule) matches(req request) bool {
	ops := ru.Ops
	if ru.Kind == RateLimit {
		ops = Write
	}
	if req.op&ops == 0 {
		return false
	}
	if ru.Bucket != "" && ru.Bucket != req.bucket {
		return false
	}
	if ru.Object != "" && ru.Object != req.object {
		return false
	}
	if ru.Kind == RateLimit && req.object == "" {
		// No name, no per-object window.
		return false
	}
	return true
}

// fire decides whether a matching rule faults this request: its count not
// exhausted and, below probability 1, a draw from the seeded generator.
func (m *Middleware) fire(ru *rule) bool {
	if ru.Count > 0 && ru.remaining == 0 {
		return false
	}
	if ru.Probability < 1 && m.rng.Float64() >= ru.Probability {
		return false
	}
	return m.count(ru)
}

// count spends one of a rule's Count, reporting whether any was left.
func (m *Middleware) count(ru *rule) bool {
	if ru.Count == 0 {
		return true
	}
	if ru.remaining == 0 {
		return false
	}
	ru.remaining--
	return true
}

// maxTracked bounds how many objects a rate-limit rule remembers: beyond it,
// objects with no write inside the window are forgotten.
const maxTracked = 4096

// limited reports whether an object already had Limit admitted writes in
// the window ending now: a sliding window, not fixed one-second buckets.
func (ru *rule) limited(key string, now time.Time) bool {
	ts := ru.prune(key, now)
	return len(ts) >= ru.Limit
}

func (ru *rule) prune(key string, now time.Time) []time.Time {
	ts := ru.writes[key]
	i := 0
	for i < len(ts) && !ts[i].After(now.Add(-ru.Window)) {
		i++
	}
	ts = ts[i:]
	if len(ts) == 0 {
		delete(ru.writes, key)
		return nil
	}
	ru.writes[key] = ts
	return ts
}

func (ru *rule) admit(key string, now time.Time) {
	if len(ru.writes) >= maxTracked {
		for k := range ru.writes {
			ru.prune(k, now)
		}
	}
	ts := ru.prune(key, now)
	// Only the last Limit times can decide a later request.
	if len(ts) >= ru.Limit {
		ts = ts[len(ts)-ru.Limit+1:]
	}
	ru.writes[key] = append(ts, now)
}

func (m *Middleware) emit(e Event) {
	if m.onEvent != nil {
		m.onEvent(e)
	}
}

// wait holds for d or until ctx ends, reporting whether d ran out.
func wait(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// drop closes the connection without a reply. Hijacking and closing with
// linger 0 resets it at once, so the client fails fast with a reset (as
// when a front end crashes after the backend committed); where the
// connection cannot be hijacked (HTTP/2, an in-memory transport's
// recorder), http.ErrAbortHandler makes the server abort the stream.
func drop(w http.ResponseWriter) {
	if hj, ok := w.(http.Hijacker); ok {
		conn, _, err := hj.Hijack()
		if err == nil {
			if tc, ok := conn.(*net.TCPConn); ok {
				tc.SetLinger(0)
			}
			conn.Close()
			return
		}
	}
	panic(http.ErrAbortHandler)
}

const (
	msgUnavailable = "We encountered an internal error. Please try again."
	msgRateLimit   = "The object exceeded the rate limit for object mutation operations (create, update, and delete). Please reduce your request rate."
)

// writeError answers in GCS's shape: the JSON API's error object, or the
// XML API's <Error> document on the XML route.
func writeError(w http.ResponseWriter, method string, req request, status int) {
	reason, msg, xmlCode := "backendError", msgUnavailable, "InternalError"
	if status == http.StatusTooManyRequests {
		reason, msg, xmlCode = "rateLimitExceeded", msgRateLimit, "SlowDown"
	}
	if !req.xml {
		domain := "global"
		if status == http.StatusTooManyRequests {
			domain = "usageLimits"
		}
		gcsapi.WriteJSONError(w, method, status, gcsapi.Error{Domain: domain, Reason: reason, Message: msg})
		return
	}
	out := []byte("<?xml version='1.0' encoding='UTF-8'?><Error><Code>" + xmlCode + "</Code><Message>" + msg + "</Message></Error>")
	w.Header().Set("Content-Type", "application/xml; charset=UTF-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(out)))
	w.WriteHeader(status)
	if method != http.MethodHead {
		w.Write(out)
	}
}

// sessionRecorder notes the session a resumable start's reply names.
type sessionRecorder struct {
	http.ResponseWriter
	m              *Middleware
	bucket, object string
	noted          bool
}

func (s *sessionRecorder) note() {
	if s.noted {
		return
	}
	s.noted = true
	if id := gcsapi.UploadIDFromLocation(s.Header().Get("Location")); id != "" {
		s.m.mu.Lock()
		s.m.sessions.put(id, s.bucket, s.object)
		s.m.mu.Unlock()
	}
}

func (s *sessionRecorder) WriteHeader(code int) {
	s.note()
	s.ResponseWriter.WriteHeader(code)
}

func (s *sessionRecorder) Write(p []byte) (int, error) {
	s.note()
	return s.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the connection.
func (s *sessionRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

func (m *Middleware) sessionObject(id, bucket string) (string, string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if s, ok := m.sessions.m[id]; ok {
		return s.bucket, s.object
	}
	return bucket, ""
}

// maxSessions bounds the resumable sessions remembered; the oldest is
// forgotten first (its final chunk then matches only rules naming no
// object).
const maxSessions = 4096

type session struct{ bucket, object string }

type sessionMap struct {
	m     map[string]session
	order []string
}

func (s *sessionMap) put(id, bucket, object string) {
	if s.m == nil {
		s.m = make(map[string]session)
	}
	if _, ok := s.m[id]; !ok {
		s.order = append(s.order, id)
	}
	s.m[id] = session{bucket, object}
	for len(s.order) > maxSessions {
		delete(s.m, s.order[0])
		s.order = s.order[1:]
	}
}
