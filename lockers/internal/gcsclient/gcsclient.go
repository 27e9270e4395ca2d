// Package gcsclient builds the storage client every GCS locker uses, so
// that each one reaches the backend the same way: through the harness's
// HTTP client (where faults are injected), with no credentials.
package gcsclient

import (
	"context"
	"errors"
	"net/http"

	"cloud.google.com/go/storage"
	"google.golang.org/api/option"
)

// New returns a storage client that sends every request through hc, with
// no authentication, to endpoint (the JSON API endpoint, e.g.
// "http://127.0.0.1:PORT/storage/v1/"); an empty endpoint means the
// client's default, storage.googleapis.com. The client keeps the library's
// default retry policy: lockers that want single requests say so on their
// handles.
func New(ctx context.Context, endpoint string, hc *http.Client) (*storage.Client, error) {
	if hc == nil {
		// A silent fallback to a default client would bypass every fault.
		return nil, errors.New("gcsclient: nil *http.Client")
	}
	opts := []option.ClientOption{option.WithHTTPClient(hc), option.WithoutAuthentication()}
	if endpoint != "" {
		opts = append(opts, option.WithEndpoint(endpoint))
	}
	return storage.NewClient(ctx, opts...)
}
