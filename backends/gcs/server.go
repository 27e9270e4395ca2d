package gcs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	"cloud.google.com/go/storage"
	"github.com/fsouza/fake-gcs-server/fakestorage"
	"google.golang.org/api/option"
)

// DefaultBucket is the bucket every embedded backend creates at start.
const DefaultBucket = "lockcheck"

// Options configures Start. The zero value is a faithful backend with no
// server-side faults.
type Options struct {
	// Wrap, when set, wraps the handler that serves every request: the place
	// for server-side fault middleware (429, 503 before or after commit, slow
	// replies). It sits in front of the fidelity layer, so a fault it injects
	// before calling the next handler never reaches the emulator, and one it
	// injects after sees a committed write.
	Wrap func(http.Handler) http.Handler

	// OnWrite, when set, is told of every write the backend accepts (see
	// Write), under the object's lock, so the writes of one object reach
	// it in the order they took effect. The fidelity layer calls it; a
	// Raw backend never does.
	OnWrite func(Write)

	// Raw serves the emulator with no fidelity layer. It exists only so the
	// known-gaps test can measure what the bare emulator gets wrong; never use
	// it to judge a locker.
	Raw bool

	// Forbid positional literals so fields can be added later.
	_ struct{}
}

// Server is an embedded GCS backend listening on 127.0.0.1.
type Server struct {
	fake     *fakestorage.Server
	handler  http.Handler
	srv      *http.Server
	endpoint string
	served   chan error
}

// Start creates the emulator, the bucket DefaultBucket and an HTTP server on
// 127.0.0.1 with a kernel-chosen port. ctx bounds only the start-up; the
// server runs until Close.
func Start(ctx context.Context, opts Options) (*Server, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("gcs: start: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("gcs: listen: %w", err)
	}
	addr := ln.Addr().(*net.TCPAddr)
	hostPort := net.JoinHostPort("127.0.0.1", strconv.Itoa(addr.Port))
	// NoListener: we serve the emulator's handler ourselves, behind the
	// fidelity layer. PublicHost must equal the Host header clients send, or
	// the emulator's XML read route (used by the raw mode) answers 404.
	fake, err := fakestorage.NewServerWithOptions(fakestorage.Options{
		NoListener: true,
		Scheme:     "http",
		Host:       "127.0.0.1",
		Port:       uint16(addr.Port),
		PublicHost: hostPort,
		Writer:     io.Discard,
	})
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("gcs: new emulator: %w", err)
	}
	fake.CreateBucketWithOpts(fakestorage.CreateBucketOpts{Name: DefaultBucket})

	var h http.Handler = fake.HTTPHandler()
	if !opts.Raw {
		h = newFidelity(fake, h, opts.OnWrite)
	}
	if opts.Wrap != nil {
		h = opts.Wrap(h)
	}
	s := &Server{
		fake:     fake,
		handler:  h,
		endpoint: "http://" + hostPort + "/storage/v1/",
		served:   make(chan error, 1),
		srv: &http.Server{
			Handler: h,
			// Bound how long a client that never finishes its headers holds a
			// connection; request bodies are bounded by the fidelity layer.
			ReadHeaderTimeout: 10 * time.Second,
		},
	}
	go func() { s.served <- s.srv.Serve(ln) }()
	return s, nil
}

// Endpoint is the JSON API endpoint to give option.WithEndpoint, e.g.
// "http://127.0.0.1:PORT/storage/v1/".
func (s *Server) Endpoint() string { return s.endpoint }

// Bucket is the name of the bucket created at start.
func (s *Server) Bucket() string { return DefaultBucket }

// Handler is the full handler chain (fault middleware, fidelity layer,
// emulator) so an in-memory transport can serve requests without sockets.
func (s *Server) Handler() http.Handler { return s.handler }

// Close stops the HTTP server at once (open connections are closed) and then
// the emulator.
func (s *Server) Close() error {
	err := s.srv.Close()
	serveErr := <-s.served
	s.fake.Stop()
	if err != nil {
		return fmt.Errorf("gcs: close: %w", err)
	}
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		return fmt.Errorf("gcs: serve: %w", serveErr)
	}
	return nil
}

// NewClient returns a storage client that talks to endpoint through hc with
// no authentication, as the embedded backend expects. extra options are
// appended (for example storage.WithJSONReads()). The client keeps the
// library's default retry policy: callers that want single requests set
// Retryer(storage.WithPolicy(storage.RetryNever)) on their handles.
func NewClient(ctx context.Context, endpoint string, hc *http.Client, extra ...option.ClientOption) (*storage.Client, error) {
	if hc == nil {
		// The harness owns every HTTP client so it can inject faults; a
		// silent fallback to a default client would bypass them.
		return nil, errors.New("gcs: new client: nil *http.Client")
	}
	opts := append([]option.ClientOption{
		option.WithEndpoint(endpoint),
		option.WithoutAuthentication(),
		option.WithHTTPClient(hc),
	}, extra...)
	c, err := storage.NewClient(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("gcs: new client: %w", err)
	}
	return c, nil
}
