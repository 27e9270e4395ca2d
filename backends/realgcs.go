package backends

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"cloud.google.com/go/storage"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/google"
	"google.golang.org/api/iterator"
	"google.golang.org/api/option"

	"github.com/lockcheck/lockcheck/backends/stores"
	"github.com/lockcheck/lockcheck/harness"
	"github.com/lockcheck/lockcheck/harness/register"
	"github.com/lockcheck/lockcheck/lockers"
)

// realGCS runs a GCS locker against a real bucket with application default
// credentials. The run works under a prefix of its own (its run id), and
// at the end deletes only objects under that prefix: what it created.
// Requests are authenticated below each client's gate, so pauses and
// crashes still apply; there is no proxy plane (network faults are refused)
// and no server front (server faults are refused).
func realGCS(ctx context.Context, p harness.Params, build func(context.Context, GCSBucket, lockers.Env) (lockers.Locker, error)) (*harness.Instance, error) {
	creds, err := google.FindDefaultCredentials(ctx, storage.ScopeFullControl)
	if err != nil {
		return nil, fmt.Errorf("real GCS: no application default credentials (%w); run `gcloud auth application-default login` or set GOOGLE_APPLICATION_CREDENTIALS", err)
	}
	admin, err := storage.NewClient(ctx, option.WithCredentials(creds))
	if err != nil {
		return nil, fmt.Errorf("real GCS: %w", err)
	}
	if _, err := admin.Bucket(p.GCSBucket).Attrs(ctx); err != nil {
		admin.Close()
		return nil, fmt.Errorf("real GCS: bucket %q: %w", p.GCSBucket, err)
	}
	prefix := p.RunID + "/"
	return &harness.Instance{
		New: func(env lockers.Env) (lockers.Locker, error) {
			base := env.HTTP.Transport
			env.HTTP = &http.Client{Transport: &oauth2.Transport{Source: creds.TokenSource, Base: base}}
			l, err := build(context.Background(), GCSBucket{Bucket: p.GCSBucket}, env)
			if err != nil {
				return nil, err
			}
			return prefixed{prefix: prefix, Locker: l}, nil
		},
		Register: func(ctx context.Context, env lockers.Env, fenced bool) (register.Store, error) {
			hc := &http.Client{Transport: &oauth2.Transport{Source: creds.TokenSource, Base: env.HTTP.Transport}}
			store, err := stores.NewGCS(ctx, "", p.GCSBucket, hc, fenced)
			if err != nil {
				return nil, err
			}
			return prefixedStore{prefix: prefix, store: store}, nil
		},
		Close: func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if err := deletePrefix(ctx, admin.Bucket(p.GCSBucket), prefix); err != nil {
				fmt.Printf("real GCS: cleaning up gs://%s/%s: %v\n", p.GCSBucket, prefix, err)
			}
			admin.Close()
		},
	}, nil
}

// prefixed puts every key of a run under the run's own prefix.
type prefixed struct {
	prefix string
	lockers.Locker
}

func (p prefixed) Lock(ctx context.Context, key string) (lockers.Lease, error) {
	return p.Locker.Lock(ctx, p.prefix+key)
}

// deletePrefix deletes every object under prefix, and nothing else. Its
// loop is bounded by ctx.
func deletePrefix(ctx context.Context, b *storage.BucketHandle, prefix string) error {
	if prefix == "" || prefix == "/" {
		return errors.New("refusing to clean up an empty prefix")
	}
	var errs []error
	it := b.Objects(ctx, &storage.Query{Prefix: prefix})
	for {
		attrs, err := it.Next()
		if errors.Is(err, iterator.Done) {
			break
		}
		if err != nil {
			return errors.Join(append(errs, err)...)
		}
		if err := b.Object(attrs.Name).Delete(ctx); err != nil && !errors.Is(err, storage.ErrObjectNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// prefixedStore puts every register of a run under the run's own prefix.
type prefixedStore struct {
	prefix string
	store  register.Store
}

func (p prefixedStore) Read(ctx context.Context, key string, token uint64) (int64, error) {
	return p.store.Read(ctx, p.prefix+key, token)
}

func (p prefixedStore) Write(ctx context.Context, key string, value int64, token uint64) error {
	return p.store.Write(ctx, p.prefix+key, value, token)
}

// Close releases the wrapped store's storage client; the run closes every
// store that has a Close.
func (p prefixedStore) Close() error {
	if c, ok := p.store.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

func (p prefixedStore) Final(ctx context.Context, key string) (int64, error) {
	return p.store.Final(ctx, p.prefix+key)
}
