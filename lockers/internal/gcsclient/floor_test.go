package gcsclient_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"testing"

	"cloud.google.com/go/storage"
	"github.com/lockcheck/lockcheck/lockers/internal/gcsclient"
)

// instant answers every request at once with a fixed reply, as no server
// can: what is left of a request's cost is the storage client's own.
type instant struct {
	status int
	body   []byte
}

func (t instant) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		// The client's multipart writer runs behind a pipe: reading the
		// body is part of sending the request.
		_, _ = io.Copy(io.Discard, r.Body)
		_ = r.Body.Close()
	}
	h := http.Header{"Content-Type": {"application/json; charset=UTF-8"}}
	return &http.Response{StatusCode: t.status, Header: h, Body: io.NopCloser(bytes.NewReader(t.body)),
		ContentLength: int64(len(t.body)), Request: r}, nil
}

// object is the resource GCS returns for a small lock object; its crc32c is
// that of objectData, which the writer checks.
const (
	objectData = `{"x":1234}`
	object     = `{"kind":"storage#object","id":"b/o/1","name":"o","bucket":"b","generation":"1","metageneration":"1",` +
		`"contentType":"application/json","size":"10","crc32c":"AMlSFw==","etag":"CAE=",` +
		`"timeCreated":"2000-01-01T00:00:00.000Z","updated":"2000-01-01T00:00:00.000Z","metadata":{"owner":"client-1"}}`
	preconditionFailed = `{"error":{"code":412,"message":"conditionNotMet","errors":[{"reason":"conditionNotMet","message":"Precondition Failed"}]}}`
	notFound           = `{"error":{"code":404,"message":"No such object: b/o","errors":[{"reason":"notFound","message":"No such object: b/o"}]}}`
)

// BenchmarkClientFloor is the CPU the storage client spends on one request
// of each kind the GCS lockers send, with the server's reply costing
// nothing: the least a simulated GCS request can cost while lockers run
// the real client, whatever backend answers it. Times a seed's request
// counts (BenchmarkSim's requests/seed), it bounds the seeds per second
// any in-memory GCS could give.
func BenchmarkClientFloor(b *testing.B) {
	ctx := context.Background()
	create := func(chunk int) func(*storage.ObjectHandle) error {
		return func(o *storage.ObjectHandle) error {
			w := o.If(storage.Conditions{DoesNotExist: true}).NewWriter(ctx)
			w.ChunkSize = chunk
			w.Metadata = map[string]string{"owner": "client-1"}
			_, _ = w.Write([]byte(objectData))
			return w.Close()
		}
	}
	attrs := func(o *storage.ObjectHandle) error { _, err := o.Attrs(ctx); return err }
	remove := func(o *storage.ObjectHandle) error {
		return o.If(storage.Conditions{GenerationMatch: 1}).Delete(ctx)
	}
	for _, c := range []struct {
		name   string
		reply  instant
		call   func(*storage.ObjectHandle) error
		failed bool
	}{
		// fenced creates with ChunkSize 0, tus616 and lai with 256 KiB.
		{"create-chunk0-ok", instant{200, []byte(object)}, create(0), false},
		{"create-chunk0-412", instant{412, []byte(preconditionFailed)}, create(0), true},
		{"create-chunk256KiB-ok", instant{200, []byte(object)}, create(256 << 10), false},
		{"create-chunk256KiB-412", instant{412, []byte(preconditionFailed)}, create(256 << 10), true},
		{"attrs-ok", instant{200, []byte(object)}, attrs, false},
		{"attrs-404", instant{404, []byte(notFound)}, attrs, true},
		{"delete-ok", instant{204, nil}, remove, false},
	} {
		b.Run(c.name, func(b *testing.B) {
			client, err := gcsclient.New(ctx, "http://gcs.invalid/storage/v1/", &http.Client{Transport: c.reply})
			if err != nil {
				b.Fatal(err)
			}
			defer client.Close()
			obj := client.Bucket("b").Object("o").Retryer(storage.WithPolicy(storage.RetryNever))
			b.ReportAllocs()
			for b.Loop() {
				if err := c.call(obj); (err != nil) != c.failed {
					b.Fatalf("error %v, want failure %v", err, c.failed)
				}
			}
		})
	}
}
