package gcs

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"cloud.google.com/go/storage"
	"google.golang.org/api/googleapi"
)

// The in-memory backend keeps the fidelity layer: a second create-if-absent
// answers 412, a stale metageneration delete answers 412, and the server's
// Date header follows the bubble's virtual clock.
func TestInMemoryKeepsPreconditions(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, err := NewInMemory(Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		ctx := context.Background()
		var dates []string
		hc := m.HTTPClient(func(next http.RoundTripper) http.RoundTripper {
			return roundTripFunc(func(r *http.Request) (*http.Response, error) {
				resp, err := next.RoundTrip(r)
				if err == nil {
					dates = append(dates, resp.Header.Get("Date"))
				}
				return resp, err
			})
		})
		obj := lockObject(t, m, hc)
		create := func() error { return createOnce(ctx, obj) }
		if err := create(); err != nil {
			t.Fatalf("first create: %v", err)
		}
		time.Sleep(3 * time.Second) // virtual time, inside the bubble
		if err := create(); !isCode(err, 412) {
			t.Fatalf("second create: got %v, want 412", err)
		}
		attrs, err := obj.Attrs(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := obj.If(storage.Conditions{MetagenerationMatch: attrs.Metageneration + 1}).Delete(ctx); !isCode(err, 412) {
			t.Fatalf("stale delete: got %v, want 412", err)
		}
		if err := obj.If(storage.Conditions{GenerationMatch: attrs.Generation}).Delete(ctx); err != nil {
			t.Fatalf("delete: %v", err)
		}
		if len(dates) < 2 || dates[0] == "" || dates[0] == dates[1] {
			t.Fatalf("Date headers %q: want them set and moving with the virtual clock", dates)
		}
	})
}

// lockObject is k.lock in m's bucket, through hc, with no retries.
func lockObject(t *testing.T, m *InMemory, hc *http.Client) *storage.ObjectHandle {
	t.Helper()
	c, err := NewClient(context.Background(), m.Endpoint(), hc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.Bucket(m.Bucket()).Object("k.lock").Retryer(storage.WithPolicy(storage.RetryNever))
}

// createOnce writes obj in one request, if it does not exist.
func createOnce(ctx context.Context, obj *storage.ObjectHandle) error {
	w := obj.If(storage.Conditions{DoesNotExist: true}).NewWriter(ctx)
	w.ChunkSize = 0
	if _, err := w.Write([]byte("x")); err != nil {
		return err
	}
	return w.Close()
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func isCode(err error, code int) bool {
	var g *googleapi.Error
	return errors.As(err, &g) && g.Code == code
}

// A handler that aborts (the server-drop fault) is a dropped connection
// to the client, as on a socket, not a panic in the client's goroutine.
func TestInMemoryAbortIsADroppedConnection(t *testing.T) {
	rt := handlerTransport{http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic(http.ErrAbortHandler) })}
	req, _ := http.NewRequest(http.MethodPost, "http://"+memoryHost+"/upload/storage/v1/b/b/o", strings.NewReader("x"))
	resp, err := rt.RoundTrip(req)
	if resp != nil || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("resp %v, err %v; want a dropped connection", resp, err)
	}
}
