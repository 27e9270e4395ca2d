package serverfault_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/storage"
	"github.com/googleapis/gax-go/v2"
	"github.com/lockcheck/lockcheck/backends/gcs"
	"github.com/lockcheck/lockcheck/faults/serverfault"
	"google.golang.org/api/googleapi"
)

// The tests below put the middleware in front of the embedded GCS backend
// and drive it with cloud.google.com/go/storage, to pin down what a real
// client makes of each fault. They assert what was observed; see the
// package doc for what it means for lockers.

// generous bounds every call: long enough for a loaded CI machine, short
// enough that a hang fails the test instead of the job.
const generous = 20 * time.Second

type gcsFixture struct {
	m      *serverfault.Middleware
	ev     *events
	clock  *clock
	bucket *storage.BucketHandle

	mu       sync.Mutex
	requests []string // method and path of every request that arrived
}

func (g *gcsFixture) log() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]string(nil), g.requests...)
}

// startGCS starts the backend with the middleware in front, and a client
// with the library's default retry policy but a millisecond backoff, so a
// retry costs no wall time (the policy, not the pacing, is what matters).
func startGCS(t *testing.T) *gcsFixture {
	t.Helper()
	ctx := context.Background()
	g := &gcsFixture{ev: &events{}, clock: &clock{t: time.Unix(1_000_000, 0)}}
	g.m = serverfault.New(serverfault.Options{Seed: 1, OnEvent: g.ev.add, Now: g.clock.Now})
	srv, err := gcs.Start(ctx, gcs.Options{Wrap: func(next http.Handler) http.Handler {
		faulty := g.m.Wrap(next)
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			g.mu.Lock()
			g.requests = append(g.requests, r.Method+" "+r.URL.Path)
			g.mu.Unlock()
			faulty.ServeHTTP(w, r)
		})
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	c, err := gcs.NewClient(ctx, srv.Endpoint(), &http.Client{Transport: tr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetRetry(storage.WithBackoff(gax.Backoff{Initial: time.Millisecond, Max: 5 * time.Millisecond}))
	g.bucket = c.Bucket(srv.Bucket())
	return g
}

// write uploads data; with ifAbsent it is a create-if-absent
// (ifGenerationMatch=0), the acquire of every GCS lock.
func write(obj *storage.ObjectHandle, data string, ifAbsent bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), generous)
	defer cancel()
	if ifAbsent {
		obj = obj.If(storage.Conditions{DoesNotExist: true})
	}
	w := obj.NewWriter(ctx)
	// Explicit and small: the default 16 MiB buffer costs 16 MiB a writer.
	w.ChunkSize = 256 << 10
	if _, err := io.WriteString(w, data); err != nil {
		w.Close()
		return err
	}
	return w.Close()
}

func content(t *testing.T, obj *storage.ObjectHandle) (string, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), generous)
	defer cancel()
	r, err := obj.NewReader(ctx)
	if errors.Is(err, storage.ErrObjectNotExist) {
		return "", false
	}
	if err != nil {
		t.Fatalf("read %s: %v", obj.ObjectName(), err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("read %s: %v", obj.ObjectName(), err)
	}
	return string(b), true
}

func code(err error) int {
	var ge *googleapi.Error
	if errors.As(err, &ge) {
		return ge.Code
	}
	return 0
}

func uploads(log []string) int {
	n := 0
	for _, l := range log {
		if strings.HasPrefix(l, "POST /upload/") || strings.HasPrefix(l, "PUT /upload/") {
			n++
		}
	}
	return n
}

// (a) 503 before commit leaves nothing written.
func TestGCSUnavailableBeforeCommit(t *testing.T) {
	g := startGCS(t)
	mustInject(t, g.m, serverfault.Rule{Kind: serverfault.Unavailable})
	obj := g.bucket.Object("lock-a").Retryer(storage.WithPolicy(storage.RetryNever))
	if err := write(obj, "token-1", true); code(err) != http.StatusServiceUnavailable {
		t.Fatalf("create-if-absent under 503-before-commit, no retries: err = %v, want 503", err)
	}
	if _, ok := content(t, obj); ok {
		t.Fatal("a write refused before commit is in the bucket")
	}
	evs := g.ev.list()
	if len(evs) != 1 || evs[0].Object != "lock-a" || evs[0].Op != serverfault.Write {
		t.Fatalf("events = %+v", evs)
	}
}

// (a) With the default retries a 503 before commit is invisible: the retry
// creates the object and the caller sees success after two attempts.
func TestGCSUnavailableBeforeCommitRetried(t *testing.T) {
	g := startGCS(t)
	mustInject(t, g.m, serverfault.Rule{Kind: serverfault.Unavailable, Object: "lock-a", Count: 1})
	obj := g.bucket.Object("lock-a")
	if err := write(obj, "token-1", true); err != nil {
		t.Fatalf("create-if-absent after one 503-before-commit, default retries: %v, want success", err)
	}
	if v, ok := content(t, obj); !ok || v != "token-1" {
		t.Fatalf("lock-a = %q, %v", v, ok)
	}
	if n := uploads(g.log()); n != 2 {
		t.Fatalf("upload attempts = %d, want 2: %v", n, g.log())
	}
}

// (b) A reply lost after commit: the object is written while the client
// sees an error. With the default retries the create-if-absent is sent
// again, meets the object it created itself, and comes back 412: the ghost
// lock — the caller believes it lost, yet holds the lock.
func TestGCSLostReplyGhostLock(t *testing.T) {
	for _, kind := range []serverfault.Kind{serverfault.LostReply, serverfault.DroppedReply} {
		t.Run(kind.String(), func(t *testing.T) {
			g := startGCS(t)
			mustInject(t, g.m, serverfault.Rule{Kind: kind, Object: "lock-b", Count: 1})
			obj := g.bucket.Object("lock-b")
			err := write(obj, "token-1", true)
			if code(err) != http.StatusPreconditionFailed {
				t.Fatalf("create-if-absent after a lost reply, default retries: err = %v, want 412", err)
			}
			if v, ok := content(t, obj); !ok || v != "token-1" {
				t.Fatalf("lock-b = %q, %v; want our own token-1", v, ok)
			}
			if n := uploads(g.log()); n != 2 {
				t.Fatalf("upload attempts = %d, want 2: %v", n, g.log())
			}
			t.Logf("requests: %v", g.log())
			evs := g.ev.list()
			if len(evs) != 1 || evs[0].Kind != kind || evs[0].Backend != http.StatusOK {
				t.Fatalf("events = %+v", evs)
			}
		})
	}
}

// (b) Without retries the caller sees the 503 itself, the object written.
func TestGCSLostReplyNoRetry(t *testing.T) {
	g := startGCS(t)
	mustInject(t, g.m, serverfault.Rule{Kind: serverfault.LostReply})
	obj := g.bucket.Object("lock-b").Retryer(storage.WithPolicy(storage.RetryNever))
	if err := write(obj, "token-1", true); code(err) != http.StatusServiceUnavailable {
		t.Fatalf("create-if-absent under lost reply, no retries: err = %v, want 503", err)
	}
	if v, ok := content(t, obj); !ok || v != "token-1" {
		t.Fatalf("lock-b = %q, %v", v, ok)
	}
}

// An overwrite without a precondition is not idempotent, so the library
// does not retry it: the caller sees the 503 of a lost reply, the write
// applied.
func TestGCSLostReplyUnconditionalNotRetried(t *testing.T) {
	g := startGCS(t)
	obj := g.bucket.Object("data")
	mustInject(t, g.m, serverfault.Rule{Kind: serverfault.LostReply, Object: "data", Count: 1})
	if err := write(obj, "v1", false); code(err) != http.StatusServiceUnavailable {
		t.Fatalf("unconditional upload after a lost reply, default retries: err = %v, want 503", err)
	}
	if n := uploads(g.log()); n != 1 {
		t.Fatalf("upload attempts = %d, want 1 (not retried): %v", n, g.log())
	}
	if v, ok := content(t, obj); !ok || v != "v1" {
		t.Fatalf("data = %q, %v", v, ok)
	}
}

// A release whose reply is lost: the retried conditional delete finds the
// object gone and answers 404, although the release took effect.
func TestGCSLostReplyOnDelete(t *testing.T) {
	g := startGCS(t)
	obj := g.bucket.Object("lock-c")
	if err := write(obj, "token-1", true); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), generous)
	defer cancel()
	attrs, err := obj.Attrs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	mustInject(t, g.m, serverfault.Rule{Kind: serverfault.LostReply, Object: "lock-c", Count: 1})
	err = obj.If(storage.Conditions{GenerationMatch: attrs.Generation}).Delete(ctx)
	if !errors.Is(err, storage.ErrObjectNotExist) && code(err) != http.StatusNotFound {
		t.Fatalf("conditional delete after a lost reply, default retries: err = %v, want 404", err)
	}
	if _, ok := content(t, obj); ok {
		t.Fatal("the delete whose reply was lost did not take effect")
	}
}

// (c) Two writes to one object within a second: the second gets 429. The
// manual clock does not move, so "within a second" holds on any machine.
func TestGCSRateLimit(t *testing.T) {
	g := startGCS(t)
	mustInject(t, g.m, serverfault.Rule{Kind: serverfault.RateLimit})
	obj := g.bucket.Object("lock-d").Retryer(storage.WithPolicy(storage.RetryNever))
	if err := write(obj, "token-1", true); err != nil {
		t.Fatalf("first write: %v", err)
	}
	err := write(obj, "token-2", false)
	var ge *googleapi.Error
	if !errors.As(err, &ge) || ge.Code != http.StatusTooManyRequests || len(ge.Errors) == 0 || ge.Errors[0].Reason != "rateLimitExceeded" {
		t.Fatalf("second write within a second: err = %v, want 429 rateLimitExceeded", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), generous)
	defer cancel()
	// Metadata updates and deletes are writes too; reads are not.
	if _, err := obj.Update(ctx, storage.ObjectAttrsToUpdate{Metadata: map[string]string{"k": "v"}}); code(err) != http.StatusTooManyRequests {
		t.Fatalf("update within a second: err = %v, want 429", err)
	}
	if err := obj.Delete(ctx); code(err) != http.StatusTooManyRequests {
		t.Fatalf("delete within a second: err = %v, want 429", err)
	}
	if v, ok := content(t, obj); !ok || v != "token-1" {
		t.Fatalf("lock-d = %q, %v; rate-limited writes must not apply", v, ok)
	}
	// Another object has its own window.
	if err := write(g.bucket.Object("lock-e"), "x", true); err != nil {
		t.Fatalf("write to another object: %v", err)
	}
	g.clock.Advance(1001 * time.Millisecond)
	if err := write(obj, "token-3", false); err != nil {
		t.Fatalf("write a second later: %v", err)
	}
	if got := len(g.ev.list()); got != 3 {
		t.Fatalf("events = %d, want 3", got)
	}
}

// (d) Healing stops every fault.
func TestGCSHealAll(t *testing.T) {
	g := startGCS(t)
	for _, r := range []serverfault.Rule{
		{Kind: serverfault.Unavailable, Object: "u"},
		{Kind: serverfault.LostReply, Object: "l"},
		{Kind: serverfault.DroppedReply, Object: "d"},
		{Kind: serverfault.RateLimit},
		{Kind: serverfault.Latency, Ops: serverfault.AllOps, Latency: time.Millisecond},
	} {
		mustInject(t, g.m, r)
	}
	never := storage.WithPolicy(storage.RetryNever)
	if err := write(g.bucket.Object("u").Retryer(never), "1", true); code(err) != http.StatusServiceUnavailable {
		t.Fatalf("before heal: %v", err)
	}
	g.m.HealAll()
	before := len(g.ev.list())
	for _, name := range []string{"u", "l", "d", "r", "r"} {
		if err := write(g.bucket.Object(name).Retryer(never), name, false); err != nil {
			t.Fatalf("write %s after HealAll: %v", name, err)
		}
	}
	if got := g.ev.list(); len(got) != before {
		t.Fatalf("faults after HealAll: %+v", got[before:])
	}
}
