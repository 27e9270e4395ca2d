package register_test

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/lockcheck/lockcheck/backends/stores"
	"github.com/lockcheck/lockcheck/harness/register"

	"github.com/lockcheck/lockcheck/backends/gcs"
	"github.com/lockcheck/lockcheck/lockers"
)

func startGCS(t *testing.T) *gcs.Server {
	t.Helper()
	srv, err := gcs.Start(context.Background(), gcs.Options{})
	if err != nil {
		t.Fatalf("embedded GCS: %v", err)
	}
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("embedded GCS: %v", err)
		}
	})
	return srv
}

func httpClient(t *testing.T, wrap func(http.RoundTripper) http.RoundTripper) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(tr.CloseIdleConnections)
	var rt http.RoundTripper = tr
	if wrap != nil {
		rt = wrap(tr)
	}
	return &http.Client{Transport: rt}
}

func openGCS(t *testing.T, srv *gcs.Server, hc *http.Client, fenced bool) register.Store {
	t.Helper()
	s, err := stores.NewGCS(context.Background(), srv.Endpoint(), srv.Bucket(), hc, fenced)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.(*stores.GCS).Close() })
	return s
}

func TestGCS(t *testing.T) {
	srv := startGCS(t)
	hc := httpClient(t, nil)
	runSuite(t, func(t *testing.T, fenced bool) register.Store { return openGCS(t, srv, hc, fenced) })
}

// interposer runs hook before forwarding each of the first n uploads
// (n < 0: every upload), and notes each upload's status.
type interposer struct {
	next http.RoundTripper
	hook func()

	mu       sync.Mutex
	n        int
	statuses []int
}

func (p *interposer) RoundTrip(r *http.Request) (*http.Response, error) {
	upload := r.Method == http.MethodPost && strings.Contains(r.URL.Path, "/upload/")
	if upload {
		p.mu.Lock()
		run := p.n != 0
		if p.n > 0 {
			p.n--
		}
		p.mu.Unlock()
		if run {
			p.hook()
		}
	}
	resp, err := p.next.RoundTrip(r)
	if upload && err == nil {
		p.mu.Lock()
		p.statuses = append(p.statuses, resp.StatusCode)
		p.mu.Unlock()
	}
	return resp, err
}

func (p *interposer) seen() []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]int(nil), p.statuses...)
}

// TestGCSFencedConflict puts a competing fenced call between a fenced
// call's read and its conditional upload: the upload must fail its
// precondition, and the loop read again and decide on what it finds.
func TestGCSFencedConflict(t *testing.T) {
	srv := startGCS(t)
	other := openGCS(t, srv, httpClient(t, nil), true)

	cases := []struct {
		name string
		n    int // uploads preceded by the competitor; -1: all
		// compete is the competitor's call; call is the one under test,
		// which returns what check needs.
		compete func(ctx context.Context, key string) error
		call    func(ctx context.Context, s register.Store, key string) (int64, error)
		check   func(ctx context.Context, t *testing.T, key string, got int64, err error)
		final   int64
		uploads []int
	}{
		{
			name:    "equal-token-write-retries-and-lands",
			n:       1,
			compete: func(ctx context.Context, key string) error { return other.Write(ctx, key, 10, 2) },
			call: func(ctx context.Context, s register.Store, key string) (int64, error) {
				return 0, s.Write(ctx, key, 2, 2)
			},
			check: func(_ context.Context, t *testing.T, _ string, _ int64, err error) {
				if err != nil {
					t.Fatalf("write after a lost round: %v", err)
				}
			},
			final:   2,
			uploads: []int{http.StatusPreconditionFailed, http.StatusOK},
		},
		{
			name:    "higher-token-wins-the-retry-is-stale",
			n:       1,
			compete: func(ctx context.Context, key string) error { return other.Write(ctx, key, 10, 3) },
			call: func(ctx context.Context, s register.Store, key string) (int64, error) {
				return 0, s.Write(ctx, key, 2, 2)
			},
			check: func(_ context.Context, t *testing.T, _ string, _ int64, err error) {
				wantStale(t, "write overtaken by a higher token", err)
			},
			final:   10,
			uploads: []int{http.StatusPreconditionFailed},
		},
		{
			name:    "read-raising-the-fence-retries-and-sees-the-new-value",
			n:       1,
			compete: func(ctx context.Context, key string) error { return other.Write(ctx, key, 7, 2) },
			call: func(ctx context.Context, s register.Store, key string) (int64, error) {
				return s.Read(ctx, key, 5)
			},
			check: func(ctx context.Context, t *testing.T, key string, got int64, err error) {
				if err != nil || got != 7 {
					t.Fatalf("read after a lost round = %d, %v; want 7, nil", got, err)
				}
				// The retried read raised the fence to 5.
				wantStaleWrite(ctx, t, other, key, 0, 4)
			},
			final:   7,
			uploads: []int{http.StatusPreconditionFailed, http.StatusOK},
		},
		{
			name:    "gives-up-after-the-bound-with-no-effect",
			n:       -1,
			compete: func(ctx context.Context, key string) error { return other.Write(ctx, key, 10, 2) },
			call: func(ctx context.Context, s register.Store, key string) (int64, error) {
				return 0, s.Write(ctx, key, 2, 2)
			},
			check: func(_ context.Context, t *testing.T, _ string, _ int64, err error) {
				if err == nil || register.IsStale(err) || !errors.Is(err, lockers.ErrNoEffect) || !strings.Contains(err.Error(), "rounds in a row") {
					t.Fatalf("write losing every round: got %v, want a no-effect error naming the bound", err)
				}
			},
			final: 10,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), suiteTimeout)
			defer cancel()
			key := caseKey(t)
			mustWrite(ctx, t, other, key, 1, 1)
			p := &interposer{n: c.n}
			p.hook = func() {
				if err := c.compete(ctx, key); err != nil {
					t.Errorf("competing call: %v", err)
				}
			}
			s := openGCS(t, srv, httpClient(t, func(rt http.RoundTripper) http.RoundTripper { p.next = rt; return p }), true)
			got, err := c.call(ctx, s, key)
			c.check(ctx, t, key, got, err)
			wantFinal(ctx, t, other, key, c.final)
			want := c.uploads
			if want == nil {
				want = make([]int, stores.GCSRounds)
				for i := range want {
					want[i] = http.StatusPreconditionFailed
				}
			}
			if got := p.seen(); !slices.Equal(got, want) {
				t.Fatalf("upload statuses %v, want %v", got, want)
			}
		})
	}
}
