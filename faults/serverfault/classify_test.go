package serverfault

import (
	"bytes"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"testing"
)

func multipartUpload(t *testing.T, name string) (string, []byte) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	pw, err := mw.CreatePart(map[string][]string{"Content-Type": {"application/json"}})
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(pw, `{"name":"`+name+`"}`)
	pw, _ = mw.CreatePart(map[string][]string{"Content-Type": {"text/plain"}})
	io.WriteString(pw, "data")
	mw.Close()
	return "multipart/related; boundary=" + mw.Boundary(), buf.Bytes()
}

func TestClassify(t *testing.T) {
	ctype, body := multipartUpload(t, "locks/a")
	for _, tc := range []struct {
		method, target, ctype, body string
		want                        request
	}{
		{"POST", "/upload/storage/v1/b/bk/o?uploadType=media&name=locks%2Fa", "", "x", request{op: Write, bucket: "bk", object: "locks/a"}},
		{"POST", "/upload/storage/v1/b/bk/o?uploadType=multipart", ctype, string(body), request{op: Write, bucket: "bk", object: "locks/a"}},
		{"POST", "/upload/storage/v1/b/bk/o?uploadType=resumable", "application/json", `{"name":"r"}`, request{op: Other, bucket: "bk", object: "r", resumableStart: true}},
		{"PUT", "/upload/storage/v1/b/bk/o?uploadType=resumable&upload_id=s1", "", "", request{op: Write, bucket: "bk", uploadID: "s1"}},
		{"GET", "/storage/v1/b/bk/o/locks%2Fa", "", "", request{op: Read, bucket: "bk", object: "locks/a"}},
		{"GET", "/storage/v1/b/bk/o", "", "", request{op: Read, bucket: "bk"}},
		{"PATCH", "/storage/v1/b/bk/o/locks%2Fa?ifMetagenerationMatch=1", "", "{}", request{op: Write, bucket: "bk", object: "locks/a"}},
		{"DELETE", "/storage/v1/b/bk/o/locks%2Fa?ifGenerationMatch=5", "", "", request{op: Write, bucket: "bk", object: "locks/a"}},
		{"POST", "/storage/v1/b/bk/o/dst/compose", "", "{}", request{op: Write, bucket: "bk", object: "dst"}},
		{"POST", "/storage/v1/b/src/o/a/rewriteTo/b/dbk/o/d%2Fe", "", "", request{op: Write, bucket: "dbk", object: "d/e"}},
		{"POST", "/storage/v1/b/src/o/a/copyTo/b/dbk/o/d", "", "", request{op: Write, bucket: "dbk", object: "d"}},
		{"GET", "/download/storage/v1/b/bk/o/x?alt=media", "", "", request{op: Read, bucket: "bk", object: "x"}},
		{"PUT", "/bk/locks%2Fa", "", "x", request{op: Write, bucket: "bk", object: "locks/a", xml: true}},
		{"DELETE", "/bk/a", "", "", request{op: Write, bucket: "bk", object: "a", xml: true}},
		{"GET", "/bk/a", "", "", request{op: Read, bucket: "bk", object: "a", xml: true}},
		{"GET", "/storage/v1/b/bk", "", "", request{op: Other, bucket: "bk"}},
	} {
		r := httptest.NewRequest(tc.method, tc.target, bytes.NewBufferString(tc.body))
		if tc.ctype != "" {
			r.Header.Set("Content-Type", tc.ctype)
		}
		if got := classify(r); got != tc.want {
			t.Errorf("%s %s: got %+v, want %+v", tc.method, tc.target, got, tc.want)
		}
		// The body must reach the backend unchanged.
		if b, _ := io.ReadAll(r.Body); string(b) != tc.body {
			t.Errorf("%s %s: body after classify %q, want %q", tc.method, tc.target, b, tc.body)
		}
	}
}

// A resumable upload's final chunk names no object: the middleware learns
// it from the session its start opened.
func TestResumableSessionNamesFinalChunk(t *testing.T) {
	var events []Event
	m := New(Options{OnEvent: func(e Event) { events = append(events, e) }})
	backend := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("upload_id") == "" {
			w.Header().Set("Location", "http://x/upload/storage/v1/b/bk/o?uploadType=resumable&upload_id=s42")
		}
		w.WriteHeader(http.StatusOK)
	})
	h := m.Wrap(backend)
	start := httptest.NewRequest("POST", "/upload/storage/v1/b/bk/o?uploadType=resumable", bytes.NewBufferString(`{"name":"lock"}`))
	start.Header.Set("Content-Type", "application/json")
	h.ServeHTTP(httptest.NewRecorder(), start)

	if _, err := m.Inject(Rule{Kind: Unavailable, Object: "lock"}); err != nil {
		t.Fatal(err)
	}
	chunk := httptest.NewRequest("PUT", "/upload/storage/v1/b/bk/o?uploadType=resumable&upload_id=s42", bytes.NewBufferString("data"))
	chunk.Header.Set("Content-Range", "bytes 0-3/4")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, chunk)
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("final chunk of lock: status %d, want 503", rec.Code)
	}
	if len(events) != 1 || events[0].Object != "lock" || events[0].Op != Write {
		t.Fatalf("events = %+v", events)
	}
}
