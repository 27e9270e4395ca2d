package gcs

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"testing/synctest"

	"cloud.google.com/go/storage"
)

// OnWrite hears of each write the backend accepts, with the writer its
// request named and the generations before and after, and of none it
// refused (a failed precondition) or that only read.
func TestOnWriteReportsAcceptedWrites(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var got []Write
		m, err := NewInMemory(Options{OnWrite: func(w Write) { mu.Lock(); got = append(got, w); mu.Unlock() }})
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		ctx := context.Background()
		hc := m.HTTPClient(func(next http.RoundTripper) http.RoundTripper {
			return roundTripFunc(func(r *http.Request) (*http.Response, error) {
				r = r.Clone(r.Context())
				r.Header.Set(WriterHeader, "3")
				return next.RoundTrip(r)
			})
		})
		obj := lockObject(t, m, hc)
		create := func() error { return createOnce(ctx, obj) }
		if err := create(); err != nil {
			t.Fatal(err)
		}
		if err := create(); !isCode(err, 412) {
			t.Fatalf("second create: %v, want 412", err)
		}
		attrs, err := obj.Attrs(ctx)
		if err != nil {
			t.Fatal(err)
		}
		g := attrs.Generation
		if _, err := obj.If(storage.Conditions{GenerationMatch: g}).Update(ctx, storage.ObjectAttrsToUpdate{Metadata: map[string]string{"a": "b"}}); err != nil {
			t.Fatal(err)
		}
		if err := obj.Delete(ctx); err != nil {
			t.Fatal(err)
		}
		want := []Write{
			{Object: "k.lock", Op: "write", Writer: "3", After: g},
			{Object: "k.lock", Op: "update", Writer: "3", Before: g, After: g},
			{Object: "k.lock", Op: "delete", Writer: "3", Before: g},
		}
		mu.Lock()
		defer mu.Unlock()
		if len(got) != len(want) {
			t.Fatalf("writes %+v, want %+v", got, want)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Errorf("write %d: %+v, want %+v", i, got[i], want[i])
			}
		}
	})
}
