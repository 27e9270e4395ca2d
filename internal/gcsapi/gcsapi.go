// Package gcsapi holds what every HTTP-level part of lockcheck needs to know
// about the GCS JSON API's requests and replies: when a resumable upload
// commits, which session a reply names, and a reply buffered so it can be
// rewritten, withheld or delayed after the backend has answered.
package gcsapi

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// ChunkCommits reports whether a request to a resumable session with this
// Content-Range completes the upload, so that its preconditions must hold:
//   - no Content-Range: the body is the whole object;
//   - "bytes a-b/N": the last chunk when b+1 >= N, else a middle one;
//   - "bytes a-b/*": a middle chunk of an upload of unknown length;
//   - "bytes a-*/N" and "bytes a-*/*": the rest of the object, to the
//     body's end (the Node.js client's one-request upload sends
//     "bytes 0-*/*");
//   - "bytes */N": finalize at N bytes;
//   - "bytes */*": a status query (see IsStatusQuery), which commits
//     nothing.
//
// A header that does not parse counts as committing: checked once too
// often is safe, unchecked never is.
func ChunkCommits(contentRange string) bool {
	spec, ok := strings.CutPrefix(strings.TrimSpace(contentRange), "bytes ")
	if !ok {
		return true
	}
	rng, total, ok := strings.Cut(spec, "/")
	if !ok {
		return true
	}
	if rng == "*" {
		return total != "*"
	}
	_, end, ok := strings.Cut(rng, "-")
	if !ok || end == "*" {
		return true
	}
	if total == "*" {
		return false
	}
	e, err1 := strconv.ParseInt(end, 10, 64)
	n, err2 := strconv.ParseInt(total, 10, 64)
	if err1 != nil || err2 != nil {
		return true
	}
	return e+1 >= n
}

// IsStatusQuery reports whether a request to a resumable session asks how
// much of the upload the server has ("bytes */*" with an empty body, as
// the Node.js client sends before resuming), committing nothing.
func IsStatusQuery(contentRange string, bodyLen int) bool {
	return strings.TrimSpace(contentRange) == "bytes */*" && bodyLen == 0
}

// UploadIDFromLocation reads the session id of a resumable start's reply.
func UploadIDFromLocation(location string) string {
	u, err := url.Parse(location)
	if err != nil {
		return ""
	}
	return u.Query().Get("upload_id")
}

// Reply is an http.ResponseWriter that keeps the reply instead of sending
// it, so a middleware can rewrite it, or release a lock before writing to
// a possibly slow client, or hold it back to fake a lost reply.
type Reply struct {
	header http.Header
	Code   int
	Body   bytes.Buffer
	wrote  bool
}

// NewReply returns an empty reply, 200 unless told otherwise.
func NewReply() *Reply { return &Reply{header: make(http.Header), Code: http.StatusOK} }

func (r *Reply) Header() http.Header { return r.header }

func (r *Reply) WriteHeader(code int) {
	if !r.wrote {
		r.Code, r.wrote = code, true
	}
}

func (r *Reply) Write(p []byte) (int, error) {
	r.wrote = true
	return r.Body.Write(p)
}

// Flush sends the kept reply to w.
func (r *Reply) Flush(w http.ResponseWriter, req *http.Request) {
	h := w.Header()
	for k, v := range r.header {
		h[k] = v
	}
	// HEAD, 204 and 304 replies carry no body; the backend's own
	// Content-Length (of the object, for HEAD) is kept for HEAD.
	bodyless := req.Method == http.MethodHead || r.Code == http.StatusNoContent || r.Code == http.StatusNotModified
	if !bodyless {
		h.Set("Content-Length", strconv.Itoa(r.Body.Len()))
	}
	w.WriteHeader(r.Code)
	if !bodyless {
		w.Write(r.Body.Bytes())
	}
}

// Error is the one entry of a JSON API error reply that lockcheck writes.
type Error struct {
	Domain       string `json:"domain"`
	Reason       string `json:"reason"`
	Message      string `json:"message"`
	LocationType string `json:"locationType,omitempty"`
	Location     string `json:"location,omitempty"`
}

// WriteJSONError answers status with GCS's JSON API error object, which is
// what the Go client parses into a googleapi.Error.
func WriteJSONError(w http.ResponseWriter, method string, status int, e Error) {
	var body struct {
		Error struct {
			Code    int     `json:"code"`
			Message string  `json:"message"`
			Errors  []Error `json:"errors"`
		} `json:"error"`
	}
	body.Error.Code, body.Error.Message, body.Error.Errors = status, e.Message, []Error{e}
	out, _ := json.Marshal(body)
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(out)))
	w.WriteHeader(status)
	if method != http.MethodHead {
		w.Write(out)
	}
}

// WriterHeader is the request header that names the client that sent a
// request to the embedded GCS, whose backend audit records who wrote
// what. A harness sets it on its clients' requests; a real bucket never
// sees it.
const WriterHeader = "X-Lockcheck-Writer"
