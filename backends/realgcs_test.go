package backends

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"testing"

	"cloud.google.com/go/storage"
	"google.golang.org/api/iterator"

	"github.com/lockcheck/lockcheck/backends/gcs"
	"github.com/lockcheck/lockcheck/lockers"
)

// The real-GCS path itself needs credentials and the network, which tests
// here do not have; what it does to a bucket is tested on the embedded one.

func TestDeletePrefixDeletesOnlyTheRunsObjects(t *testing.T) {
	ctx := context.Background()
	server, err := gcs.Start(ctx, gcs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	client, err := gcs.NewClient(ctx, server.Endpoint(), &http.Client{})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	b := client.Bucket(server.Bucket())
	for _, name := range []string{"run-1/k0.lock", "run-1/k1.lock.release", "run-10/k0.lock", "other/k0.lock"} {
		w := b.Object(name).NewWriter(ctx)
		w.ChunkSize = 256 << 10
		if _, err := w.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if err := deletePrefix(ctx, b, "run-1/"); err != nil {
		t.Fatal(err)
	}
	var left []string
	it := b.Objects(ctx, &storage.Query{})
	for {
		attrs, err := it.Next()
		if errors.Is(err, iterator.Done) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		left = append(left, attrs.Name)
	}
	slices.Sort(left)
	if !slices.Equal(left, []string{"other/k0.lock", "run-10/k0.lock"}) {
		t.Errorf("left %v", left)
	}
	if err := deletePrefix(ctx, b, ""); err == nil {
		t.Error("an empty prefix was accepted for deletion")
	}
}

type keyRecorder struct{ keys []string }

func (k *keyRecorder) Lock(_ context.Context, key string) (lockers.Lease, error) {
	k.keys = append(k.keys, key)
	return nil, lockers.ErrNoEffect
}

func TestPrefixedLockerKeepsKeysUnderTheRunPrefix(t *testing.T) {
	rec := &keyRecorder{}
	l := prefixed{prefix: "run-7/", Locker: rec}
	l.Lock(context.Background(), "k3")
	if !slices.Equal(rec.keys, []string{"run-7/k3"}) {
		t.Errorf("keys %v", rec.keys)
	}
}
