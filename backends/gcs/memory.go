package gcs

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/fsouza/fake-gcs-server/fakestorage"
)

// memoryHost is the host of an in-memory backend's endpoint. It is never
// resolved: the in-memory transport serves every request itself.
const memoryHost = "gcs.in-memory.invalid"

// InMemory is an embedded GCS backend with no socket: the same handler chain
// as [Start] (fault middleware, fidelity layer, emulator), reached through an
// HTTP client whose transport calls the handler directly. It works inside a
// testing/synctest bubble, where a real listener would keep the bubble from
// ever being idle, so lease tests can run unscaled TTLs in virtual time.
type InMemory struct {
	fake    *fakestorage.Server
	handler http.Handler
}

// NewInMemory builds an in-memory backend with the bucket DefaultBucket.
func NewInMemory(opts Options) (*InMemory, error) {
	fake, err := fakestorage.NewServerWithOptions(fakestorage.Options{
		NoListener: true,
		Scheme:     "http",
		Host:       memoryHost,
		PublicHost: memoryHost,
		Writer:     io.Discard,
	})
	if err != nil {
		return nil, fmt.Errorf("gcs: new in-memory emulator: %w", err)
	}
	fake.CreateBucketWithOpts(fakestorage.CreateBucketOpts{Name: DefaultBucket})
	var h http.Handler = fake.HTTPHandler()
	if !opts.Raw {
		h = newFidelity(fake, h, opts.OnWrite)
	}
	if opts.Wrap != nil {
		h = opts.Wrap(h)
	}
	return &InMemory{fake: fake, handler: h}, nil
}

// Endpoint is the JSON API endpoint to give option.WithEndpoint; only
// HTTPClient's transport can reach it.
func (m *InMemory) Endpoint() string { return "http://" + memoryHost + "/storage/v1/" }

// Bucket is the name of the bucket created at start.
func (m *InMemory) Bucket() string { return DefaultBucket }

// Handler is the full handler chain.
func (m *InMemory) Handler() http.Handler { return m.handler }

// HTTPClient returns a client whose every request is served by the handler
// chain in the calling goroutine. wrap, when not nil, wraps that transport
// (a test's journal or a lost-reply injector).
func (m *InMemory) HTTPClient(wrap func(http.RoundTripper) http.RoundTripper) *http.Client {
	var rt http.RoundTripper = handlerTransport{m.handler}
	if wrap != nil {
		rt = wrap(rt)
	}
	return &http.Client{Transport: rt}
}

// Close stops the emulator.
func (m *InMemory) Close() { m.fake.Stop() }

// handlerTransport serves a request with a handler, as a server would.
type handlerTransport struct{ h http.Handler }

// errDropped is what a client sees of a handler that aborted (panicked
// with http.ErrAbortHandler, as the server-drop fault does): on a socket,
// net/http closes the connection and the client reads an unexpected EOF.
var errDropped = fmt.Errorf("gcs in-memory: the server dropped the connection: %w", io.ErrUnexpectedEOF)

func (t handlerTransport) RoundTrip(r *http.Request) (resp *http.Response, err error) {
	if err := r.Context().Err(); err != nil {
		return nil, err
	}
	defer func() {
		if p := recover(); p != nil {
			if p != http.ErrAbortHandler {
				panic(p)
			}
			if r.Body != nil {
				r.Body.Close()
			}
			resp, err = nil, errDropped
		}
	}()
	in := r.Clone(r.Context())
	in.RequestURI = r.URL.RequestURI()
	in.RemoteAddr = "127.0.0.1:1"
	if in.Body == nil {
		in.Body = http.NoBody
	}
	rec := httptest.NewRecorder()
	t.h.ServeHTTP(rec, in)
	if r.Body != nil {
		r.Body.Close()
	}
	resp = rec.Result()
	if resp.Header.Get("Date") == "" {
		// A real server stamps every reply; lockers that judge expiry on
		// server time read it.
		resp.Header.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	}
	resp.Request = r
	return resp, nil
}
