package stores

import (
	"context"
	"errors"
	"fmt"
	"github.com/lockcheck/lockcheck/harness/register"
	"io"
	"net/http"
	"strconv"
	"strings"

	"cloud.google.com/go/storage"
	"google.golang.org/api/googleapi"

	"github.com/lockcheck/lockcheck/backends/gcs"
	"github.com/lockcheck/lockcheck/lockers"
)

// GCSRounds bounds a fenced call's compare-and-swap loop. Each lost round
// means another call committed in between, so the bound is only reached
// under heavy contention on one key.
const GCSRounds = 20

// metaFence is the custom metadata that holds a fenced object's fence.
const metaFence = "fence"

// GCS keeps each register in the object register/<key>, the body being the
// decimal value.
//
// A fenced store keeps the fence in the object's custom metadata and turns
// every call into a compare-and-swap on the object's generation: read the
// generation, fence and value; refuse a stale token; otherwise upload the
// value (the new one for a Write, the same one for a Read that raises the
// fence) with ifGenerationMatch on the generation read. A 412 means another
// call committed first and this round wrote nothing, so the loop reads
// again, at most GCSRounds times. Only whole-object uploads are used: the
// fence and the value it guards change in one generation, never one
// without the other.
//
// Every request goes out once (RetryNever on every handle, one multipart
// request per upload): a library retry of a committed write would either
// apply a plain write twice or turn a committed conditional write into a
// 412 that the loop takes for a lost round, and then write again.
type GCS struct {
	client *storage.Client
	bucket *storage.BucketHandle
	fenced bool
}

var _ register.Store = (*GCS)(nil)

// NewGCS returns a store on bucket at endpoint, talking through hc. The
// store owns the storage client it builds; Close releases it.
func NewGCS(ctx context.Context, endpoint, bucket string, hc *http.Client, fenced bool) (register.Store, error) {
	if bucket == "" {
		return nil, errors.New("register: gcs store: empty bucket name")
	}
	c, err := gcs.NewClient(ctx, endpoint, hc)
	if err != nil {
		return nil, fmt.Errorf("register: gcs store: %w", err)
	}
	return &GCS{client: c, bucket: c.Bucket(bucket), fenced: fenced}, nil
}

// Close closes the storage client.
func (s *GCS) Close() error { return s.client.Close() }

func (s *GCS) object(key string) *storage.ObjectHandle {
	return s.bucket.Object("register/" + key).Retryer(storage.WithPolicy(storage.RetryNever))
}

// Read returns key's value; a fenced store first checks and raises the fence.
func (s *GCS) Read(ctx context.Context, key string, token uint64) (int64, error) {
	if !s.fenced {
		v, err := s.readValue(ctx, s.object(key))
		if errors.Is(err, storage.ErrObjectNotExist) {
			return 0, nil
		}
		if err != nil {
			return 0, fmt.Errorf("register: gcs read %q: %w", key, err)
		}
		return v, nil
	}
	var value int64
	err := s.swap(ctx, "read", key, token, func(cur int64) (int64, bool) {
		value = cur
		return cur, false
	})
	return value, err
}

// Write sets key's value; a fenced store first checks and raises the fence.
func (s *GCS) Write(ctx context.Context, key string, value int64, token uint64) error {
	if !s.fenced {
		if err := s.upload(ctx, s.object(key), value, nil); err != nil {
			return fmt.Errorf("register: gcs write %q: %w", key, err)
		}
		return nil
	}
	return s.swap(ctx, "write", key, token, func(int64) (int64, bool) { return value, true })
}

// Final returns key's value, whatever the fence.
func (s *GCS) Final(ctx context.Context, key string) (int64, error) {
	v, err := s.readValue(ctx, s.object(key))
	if errors.Is(err, storage.ErrObjectNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("register: gcs final %q: %w", key, err)
	}
	return v, nil
}

// errChanged: the object changed between reading its attributes and its
// content. Nothing was written; the loop reads again.
var errChanged = errors.New("object changed while being read")

// swap is one fenced call. next gets the current value and says what to
// store and whether the call writes it regardless of the fence (a Write);
// a Read writes only to raise the fence.
func (s *GCS) swap(ctx context.Context, op, key string, token uint64, next func(cur int64) (int64, bool)) error {
	obj := s.object(key)
	for range GCSRounds {
		if err := ctx.Err(); err != nil {
			// Every earlier round was refused with 412: nothing written.
			return fmt.Errorf("register: gcs %s %q: %w: %w", op, key, err, lockers.ErrNoEffect)
		}
		gen, fence, cur, err := s.snapshot(ctx, obj)
		if errors.Is(err, errChanged) {
			continue
		}
		if err != nil {
			return fmt.Errorf("register: gcs %s %q: %w", op, key, err)
		}
		if token < fence {
			return register.StaleError(op, key, token, fence)
		}
		value, write := next(cur)
		if !write && token == fence {
			return nil
		}
		cond := storage.Conditions{GenerationMatch: gen}
		if gen == 0 {
			cond = storage.Conditions{DoesNotExist: true}
		}
		meta := map[string]string{metaFence: strconv.FormatUint(token, 10)}
		err = s.upload(ctx, obj.If(cond), value, meta)
		if err == nil {
			return nil
		}
		var gerr *googleapi.Error
		if errors.As(err, &gerr) && gerr.Code == http.StatusPreconditionFailed {
			continue
		}
		return fmt.Errorf("register: gcs %s %q: conditional upload: %w", op, key, err)
	}
	return fmt.Errorf("register: gcs %s %q: %d rounds in a row lost the compare-and-swap to other writers of the key; fewer concurrent callers per key would let it through: %w",
		op, key, GCSRounds, lockers.ErrNoEffect)
}

// snapshot reads the live generation (0 when absent), its fence and its
// value. The content is read under ifGenerationMatch, so all three belong to
// one generation; errChanged when a write came in between.
func (s *GCS) snapshot(ctx context.Context, obj *storage.ObjectHandle) (gen int64, fence uint64, value int64, err error) {
	attrs, err := obj.Attrs(ctx)
	if errors.Is(err, storage.ErrObjectNotExist) {
		return 0, 0, 0, nil
	}
	if err != nil {
		return 0, 0, 0, err
	}
	if f, ok := attrs.Metadata[metaFence]; ok {
		fence, err = strconv.ParseUint(f, 10, 64)
		if err != nil {
			return 0, 0, 0, fmt.Errorf("object %q generation %d: metadata %s=%q is not a token: %w", attrs.Name, attrs.Generation, metaFence, f, err)
		}
	}
	value, err = s.readValue(ctx, obj.If(storage.Conditions{GenerationMatch: attrs.Generation}))
	var gerr *googleapi.Error
	if errors.Is(err, storage.ErrObjectNotExist) || (errors.As(err, &gerr) && gerr.Code == http.StatusPreconditionFailed) {
		return 0, 0, 0, errChanged
	}
	if err != nil {
		return 0, 0, 0, err
	}
	return attrs.Generation, fence, value, nil
}

// readValue reads and parses the object's content. Absence comes back as
// storage.ErrObjectNotExist: it means 0 to an unconditional read, and a
// change under way to a conditional one.
func (s *GCS) readValue(ctx context.Context, obj *storage.ObjectHandle) (int64, error) {
	r, err := obj.NewReader(ctx)
	if err != nil {
		return 0, err
	}
	defer r.Close()
	// A register is a decimal int64; anything much longer is not one.
	body, err := io.ReadAll(io.LimitReader(r, 64))
	if err != nil {
		return 0, err
	}
	v, err := strconv.ParseInt(strings.TrimSpace(string(body)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("object %q holds %q, not a decimal register value: %w", obj.ObjectName(), body, err)
	}
	return v, nil
}

// upload writes value as the object's whole content in one request.
func (s *GCS) upload(ctx context.Context, obj *storage.ObjectHandle, value int64, meta map[string]string) error {
	w := obj.NewWriter(ctx)
	// One multipart request: a zero ChunkSize also turns off the writer's
	// own resumable retries.
	w.ChunkSize = 0
	w.ContentType = "text/plain"
	w.CacheControl = "no-store"
	w.Metadata = meta
	if _, err := io.WriteString(w, strconv.FormatInt(value, 10)); err != nil {
		w.Close()
		return err
	}
	return w.Close()
}
