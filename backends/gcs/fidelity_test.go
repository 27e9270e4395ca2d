package gcs

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lockcheck/lockcheck/internal/gcsapi"
)

// do sends one raw request and returns status, headers and body.
func do(t *testing.T, hc *http.Client, method, u string, hdr http.Header, body []byte) (int, http.Header, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	res, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, res.Header, b
}

type objectJSON struct {
	Generation     string `json:"generation"`
	Metageneration string `json:"metageneration"`
	Updated        string `json:"updated"`
}

// TestRawHTTP drives the paths the storage client does not use, or whose
// exact bodies it hides: media uploads, error shapes, 304 and HEAD.
func TestRawHTTP(t *testing.T) {
	srv, _ := newTestBackend(t, false)
	hc := newHTTPClient(t)
	base := strings.TrimSuffix(srv.Endpoint(), "/storage/v1/")
	b := srv.Bucket()
	name := "raw/a b/c" // a space and a slash, to exercise escaping
	esc := url.PathEscape(name)
	media := base + "/upload/storage/v1/b/" + b + "/o?uploadType=media&name=" + url.QueryEscape(name)

	code, _, body := do(t, hc, "POST", media+"&ifGenerationMatch=0", nil, []byte("one"))
	if code != 200 {
		t.Fatalf("media create: %d %s", code, body)
	}
	var o objectJSON
	if err := json.Unmarshal(body, &o); err != nil {
		t.Fatal(err)
	}
	if o.Metageneration != "1" {
		t.Errorf("media create: metageneration %q, want 1", o.Metageneration)
	}

	// A second create-if-absent answers 412 with GCS's body.
	code, _, body = do(t, hc, "POST", media+"&ifGenerationMatch=0", nil, []byte("two"))
	want := `{"error":{"code":412,"message":"At least one of the pre-conditions you specified did not hold.","errors":[{"domain":"global","reason":"conditionNotMet","message":"At least one of the pre-conditions you specified did not hold.","locationType":"header","location":"If-Match"}]}}`
	if code != 412 || string(body) != want {
		t.Errorf("second create: %d %s\nwant 412 %s", code, body, want)
	}

	// Media upload with a stale metageneration.
	code, _, _ = do(t, hc, "POST", media+"&ifMetagenerationMatch=9", nil, []byte("two"))
	if code != 412 {
		t.Errorf("media upload ifMetagenerationMatch=9: %d, want 412", code)
	}

	obj := base + "/storage/v1/b/" + b + "/o/" + esc
	patchBody := []byte(`{"metadata":{"k":"v"}}`)
	jsonHdr := http.Header{"Content-Type": {"application/json"}}
	code, _, body = do(t, hc, "PATCH", obj+"?ifMetagenerationMatch=1", jsonHdr, patchBody)
	var p objectJSON
	if code != 200 || json.Unmarshal(body, &p) != nil {
		t.Fatalf("patch: %d %s", code, body)
	}
	if p.Metageneration != "2" || p.Generation != o.Generation {
		t.Errorf("patch reply: gen %s meta %s, want gen %s meta 2", p.Generation, p.Metageneration, o.Generation)
	}
	t0, err1 := time.Parse(time.RFC3339Nano, o.Updated)
	t1, err2 := time.Parse(time.RFC3339Nano, p.Updated)
	if err1 != nil || err2 != nil || !t1.After(t0) {
		t.Errorf("patch: updated %q not after %q (%v %v)", p.Updated, o.Updated, err1, err2)
	}

	// A listing's items carry the layer's metageneration and updated too.
	code, _, body = do(t, hc, "GET", base+"/storage/v1/b/"+b+"/o?prefix=raw/", nil, nil)
	var listing struct{ Items []objectJSON }
	if code != 200 || json.Unmarshal(body, &listing) != nil || len(listing.Items) != 1 {
		t.Fatalf("list: %d %s", code, body)
	}
	if it := listing.Items[0]; it != p {
		t.Errorf("listed %+v, want the patch reply's %+v", it, p)
	}

	// 304 on reads for NotMatch, on both the metadata and the media routes.
	for _, u := range []string{
		obj + "?ifGenerationNotMatch=" + o.Generation,
		obj + "?alt=media&ifMetagenerationNotMatch=2",
		base + "/download/storage/v1/b/" + b + "/o/" + esc + "?alt=media&ifGenerationNotMatch=" + o.Generation,
	} {
		if code, _, body := do(t, hc, "GET", u, nil, nil); code != 304 || len(body) != 0 {
			t.Errorf("GET %s: %d %q, want 304 and no body", u, code, body)
		}
	}
	// ...and 412 on writes.
	if code, _, _ := do(t, hc, "DELETE", obj+"?ifGenerationNotMatch="+o.Generation, nil, nil); code != 412 {
		t.Errorf("delete ifGenerationNotMatch=live: %d, want 412", code)
	}

	// The download route reports the layer's metageneration.
	code, hdr, body := do(t, hc, "GET", base+"/download/storage/v1/b/"+b+"/o/"+esc+"?alt=media&ifGenerationMatch="+o.Generation, nil, nil)
	if code != 200 || string(body) != "one" || hdr.Get("X-Goog-Metageneration") != "2" {
		t.Errorf("download: %d %q metageneration %q, want 200 \"one\" 2", code, body, hdr.Get("X-Goog-Metageneration"))
	}
	// XML read with a stale generation header: 412 in XML.
	code, _, body = do(t, hc, "GET", base+"/"+b+"/"+esc, http.Header{"X-Goog-If-Generation-Match": {"1"}}, nil)
	if code != 412 || !strings.Contains(string(body), "<Code>PreconditionFailed</Code>") {
		t.Errorf("xml read stale: %d %s", code, body)
	}
	// HEAD of the metadata route with a failed precondition: status only.
	if code, _, body := do(t, hc, "HEAD", obj+"?ifGenerationMatch=1", nil, nil); code != 412 || len(body) != 0 {
		t.Errorf("HEAD stale: %d %q", code, body)
	}

	// Listing reports the layer's metageneration too.
	code, _, body = do(t, hc, "GET", base+"/storage/v1/b/"+b+"/o?prefix=raw/", nil, nil)
	var list struct{ Items []objectJSON }
	if code != 200 || json.Unmarshal(body, &list) != nil || len(list.Items) != 1 || list.Items[0].Metageneration != "2" {
		t.Errorf("list: %d %s", code, body)
	}

	// Delete with the right generation, then 404 shaped like GCS's.
	if code, _, body := do(t, hc, "DELETE", obj+"?ifGenerationMatch="+o.Generation+"&ifMetagenerationMatch=2", nil, nil); code != 204 && code != 200 {
		t.Fatalf("delete: %d %s", code, body)
	}
	code, _, body = do(t, hc, "GET", obj, nil, nil)
	want404 := `{"error":{"code":404,"message":"No such object: ` + b + `/` + name + `","errors":[{"domain":"global","reason":"notFound","message":"No such object: ` + b + `/` + name + `"}]}}`
	if code != 404 || string(body) != want404 {
		t.Errorf("get after delete: %d %s\nwant 404 %s", code, body, want404)
	}
	// ifGenerationMatch=0 succeeds again once the object is gone.
	if code, _, body := do(t, hc, "POST", media+"&ifGenerationMatch=0", nil, []byte("three")); code != 200 {
		t.Errorf("re-create: %d %s", code, body)
	}
	// Routes that would reach the emulator unchecked are refused.
	for _, p := range []string{"/batch/storage/v1", "/upload/resumable/someid", "/single-segment"} {
		if code, _, _ := do(t, hc, "POST", base+p, nil, nil); code != 501 {
			t.Errorf("POST %s: %d, want 501", p, code)
		}
	}
}

// TestWrapInFront checks that Options.Wrap sees every request before the
// fidelity layer, and that Handler serves without a socket.
func TestWrapInFront(t *testing.T) {
	var seen atomic.Int64
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv, err := Start(ctx, Options{Wrap: func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			seen.Add(1)
			if r.Header.Get("X-Test-Fault") != "" {
				// A fault answered before the layer never reaches the emulator.
				http.Error(w, "injected", http.StatusServiceUnavailable)
				return
			}
			next.ServeHTTP(w, r)
		})
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Error(err)
		}
	})
	hc := newHTTPClient(t)
	base := strings.TrimSuffix(srv.Endpoint(), "/storage/v1/")
	media := base + "/upload/storage/v1/b/" + srv.Bucket() + "/o?uploadType=media&name=w&ifGenerationMatch=0"
	if code, _, _ := do(t, hc, "POST", media, http.Header{"X-Test-Fault": {"1"}}, []byte("x")); code != 503 {
		t.Errorf("faulted create: %d, want 503", code)
	}
	if code, _, body := do(t, hc, "POST", media, nil, []byte("x")); code != 200 {
		t.Errorf("create after fault: %d %s, want 200 (the fault must not have committed)", code, body)
	}
	if n := seen.Load(); n != 2 {
		t.Errorf("wrap saw %d requests, want 2", n)
	}

	// In memory, through Handler: the object just created is there.
	req, err := http.NewRequestWithContext(ctx, "GET", "http://in-memory/storage/v1/b/"+srv.Bucket()+"/o/w?ifMetagenerationMatch=1", nil)
	if err != nil {
		t.Fatal(err)
	}
	rec := gcsapi.NewReply()
	srv.Handler().ServeHTTP(rec, req)
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), `"metageneration":"1"`) {
		t.Errorf("in-memory get: %d %s", rec.Code, rec.Body.String())
	}
}

// TestResumableRechecksAtCommit: a session started while the object was
// absent must not commit over an object created meanwhile, and a retried
// final chunk is checked again rather than committed unchecked.
func TestResumableRechecksAtCommit(t *testing.T) {
	srv, _ := newTestBackend(t, false)
	hc := newHTTPClient(t)
	base := strings.TrimSuffix(srv.Endpoint(), "/storage/v1/")
	b := srv.Bucket()
	start := base + "/upload/storage/v1/b/" + b + "/o?uploadType=resumable&ifGenerationMatch=0"
	code, hdr, body := do(t, hc, "POST", start, http.Header{"Content-Type": {"application/json"}}, []byte(`{"name":"resumable"}`))
	if code != 200 || hdr.Get("Location") == "" {
		t.Fatalf("initiate: %d %s", code, body)
	}
	loc := hdr.Get("Location")

	media := base + "/upload/storage/v1/b/" + b + "/o?uploadType=media&name=resumable&ifGenerationMatch=0"
	if code, _, body := do(t, hc, "POST", media, nil, []byte("winner")); code != 200 {
		t.Fatalf("competing create: %d %s", code, body)
	}
	chunk := http.Header{"Content-Range": {"bytes 0-4/5"}}
	for attempt := range 2 {
		if code, _, body := do(t, hc, "PUT", loc, chunk, []byte("loser")); code != 412 {
			t.Errorf("final chunk attempt %d: %d %s, want 412", attempt, code, body)
		}
	}
	code, _, body = do(t, hc, "GET", base+"/download/storage/v1/b/"+b+"/o/resumable?alt=media", nil, nil)
	if code != 200 || string(body) != "winner" {
		t.Errorf("object: %d %q, want \"winner\"", code, body)
	}
	// A session the layer never saw is refused, not committed unchecked.
	bogus := base + "/upload/storage/v1/b/" + b + "/o?uploadType=resumable&name=resumable&upload_id=bogus"
	if code, _, _ := do(t, hc, "PUT", bogus, chunk, []byte("loser")); code != 404 {
		t.Errorf("unknown session: %d, want 404", code)
	}
}

// TestXMLWrites drives the XML API the way gmutex does: PUT and DELETE with
// x-goog-if-generation-match, HEAD for the state.
func TestXMLWrites(t *testing.T) {
	srv, _ := newTestBackend(t, false)
	hc := newHTTPClient(t)
	u := strings.TrimSuffix(srv.Endpoint(), "/storage/v1/") + "/" + srv.Bucket() + "/xml/lock"
	put := func(gen string) (int, http.Header, []byte) {
		return do(t, hc, "PUT", u, http.Header{
			"X-Goog-If-Generation-Match": {gen},
			"X-Goog-Meta-Ttl":            {"30"},
			"Cache-Control":              {"no-store"},
		}, []byte("data"))
	}
	code, hdr, body := put("0")
	g1 := hdr.Get("X-Goog-Generation")
	if code != 200 || g1 == "" || hdr.Get("X-Goog-Metageneration") != "1" || len(body) != 0 {
		t.Fatalf("create: %d %v %q", code, hdr, body)
	}
	if code, _, body := put("0"); code != 412 || !strings.Contains(string(body), "<Code>PreconditionFailed</Code>") {
		t.Errorf("second create: %d %s, want 412 PreconditionFailed", code, body)
	}
	code, hdr, _ = do(t, hc, "HEAD", u, nil, nil)
	if code != 200 || hdr.Get("X-Goog-Meta-Ttl") != "30" || hdr.Get("X-Goog-Generation") != g1 || hdr.Get("Last-Modified") == "" || hdr.Get("Date") == "" {
		t.Errorf("head: %d %v", code, hdr)
	}
	// Atomic takeover by generation, then the old generation is stale.
	code, hdr, _ = put(g1)
	g2 := hdr.Get("X-Goog-Generation")
	if code != 200 || g2 == "" || g2 == g1 {
		t.Fatalf("takeover: %d generation %q (was %q)", code, g2, g1)
	}
	if code, _, _ := put(g1); code != 412 {
		t.Errorf("stale takeover: %d, want 412", code)
	}
	if code, _, _ := do(t, hc, "DELETE", u, http.Header{"X-Goog-If-Generation-Match": {g1}}, nil); code != 412 {
		t.Errorf("stale delete: %d, want 412", code)
	}
	if code, _, _ := do(t, hc, "DELETE", u, http.Header{"X-Goog-If-Generation-Match": {g2}}, nil); code != 204 {
		t.Errorf("delete: %d, want 204", code)
	}
	if code, _, _ := do(t, hc, "HEAD", u, nil, nil); code != 404 {
		t.Errorf("head after delete: %d, want 404", code)
	}
	if code, _, _ := do(t, hc, "DELETE", u, http.Header{"X-Goog-If-Generation-Match": {g2}}, nil); code != 404 {
		t.Errorf("second delete: %d, want 404", code)
	}
	// XML requests the layer cannot check are refused, not passed through.
	if code, _, _ := do(t, hc, "POST", u, nil, nil); code != 501 {
		t.Errorf("xml post: %d, want 501", code)
	}
}
