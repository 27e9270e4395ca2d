package serverfault

import (
	"bytes"
	"encoding/json"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"strings"

	"github.com/lockcheck/lockcheck/internal/gcsapi"
)

// Op is what a request does, as far as faults care.
type Op uint8

const (
	// Write is a request that commits a mutation of one object: a media or
	// multipart upload, the final chunk of a resumable upload, a metadata
	// patch or update, a delete, and the destination of a copy, rewrite or
	// compose (JSON API), or an XML API PUT or DELETE.
	Write Op = 1 << iota
	// Read is a metadata or media read of an object, or a listing.
	Read
	// Other is everything else: starting a resumable upload, a chunk that
	// does not complete one, bucket-level calls.
	Other
)

// AllOps matches every request.
const AllOps = Write | Read | Other

func (o Op) String() string {
	var parts []string
	for _, p := range []struct {
		op   Op
		name string
	}{{Write, "write"}, {Read, "read"}, {Other, "other"}} {
		if o&p.op != 0 {
			parts = append(parts, p.name)
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, "|")
}

// request is the classified meaning of one request.
type request struct {
	op             Op
	bucket, object string // object "" when unknown or bucket-level
	xml            bool   // XML API: errors answered in XML
	resumableStart bool   // its reply's Location names an upload session
	uploadID       string // a resumable chunk: the session it belongs to
}

// peekLimit bounds how much of an upload body is read to find the object
// name: the JSON metadata that names it comes first, and lock objects are
// tiny, so a name beyond this is not worth buffering a large body for.
const peekLimit = 64 << 10

// classify reads the escaped path, where an object name's own slashes are
// %2F and cannot be confused with separators. For uploads whose name is
// only in the body it reads up to peekLimit bytes of it and puts them back.
func classify(r *http.Request) request {
	p := r.URL.EscapedPath()
	q := r.URL.Query()
	get := r.Method == http.MethodGet || r.Method == http.MethodHead
	unescape := func(s string) string {
		u, err := url.PathUnescape(s)
		if err != nil {
			return s
		}
		return u
	}
	switch {
	case strings.HasPrefix(p, "/storage/v1/b/"):
		segs := strings.Split(strings.TrimPrefix(p, "/storage/v1/b/"), "/")
		if len(segs) < 2 || segs[1] != "o" {
			return request{op: Other, bucket: unescape(segs[0])}
		}
		b := unescape(segs[0])
		if len(segs) == 2 || (len(segs) == 3 && segs[2] == "") {
			if get {
				return request{op: Read, bucket: b}
			}
			return request{op: Other, bucket: b}
		}
		o := unescape(segs[2])
		switch {
		case len(segs) == 3:
			switch {
			case get:
				return request{op: Read, bucket: b, object: o}
			case r.Method == http.MethodDelete, r.Method == http.MethodPatch,
				r.Method == http.MethodPut, r.Method == http.MethodPost:
				return request{op: Write, bucket: b, object: o}
			}
		case len(segs) == 4 && segs[3] == "compose" && r.Method == http.MethodPost:
			return request{op: Write, bucket: b, object: o}
		case len(segs) == 8 && (segs[3] == "rewriteTo" || segs[3] == "copyTo") &&
			segs[4] == "b" && segs[6] == "o" && r.Method == http.MethodPost:
			// The destination is what is written; the source is only read.
			return request{op: Write, bucket: unescape(segs[5]), object: unescape(segs[7])}
		}
		return request{op: Other, bucket: b, object: o}
	case strings.HasPrefix(p, "/download/storage/v1/b/"):
		segs := strings.Split(strings.TrimPrefix(p, "/download/storage/v1/b/"), "/")
		if len(segs) == 3 && segs[1] == "o" {
			return request{op: Read, bucket: unescape(segs[0]), object: unescape(segs[2])}
		}
		return request{op: Other}
	case strings.HasPrefix(p, "/upload/storage/v1/b/"):
		segs := strings.Split(strings.TrimPrefix(p, "/upload/storage/v1/b/"), "/")
		b := unescape(segs[0])
		if len(segs) < 2 || segs[1] != "o" {
			return request{op: Other, bucket: b}
		}
		if id := q.Get("upload_id"); id != "" {
			if r.Method != http.MethodPut && r.Method != http.MethodPost {
				return request{op: Other, bucket: b, uploadID: id}
			}
			op := Other
			if gcsapi.ChunkCommits(r.Header.Get("Content-Range")) {
				op = Write
			}
			return request{op: op, bucket: b, uploadID: id}
		}
		if r.Method != http.MethodPost {
			return request{op: Other, bucket: b}
		}
		name := uploadName(r)
		if q.Get("uploadType") == "resumable" {
			// Starting a session commits nothing; its final chunk does.
			return request{op: Other, bucket: b, object: name, resumableStart: true}
		}
		return request{op: Write, bucket: b, object: name}
	}
	// The XML API's path-style object route, /BUCKET/OBJECT.
	b, o, ok := strings.Cut(strings.TrimPrefix(p, "/"), "/")
	if !ok || b == "" || o == "" || reserved(b) {
		return request{op: Other}
	}
	req := request{bucket: unescape(b), object: unescape(o), xml: true}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		req.op = Read
	case http.MethodPut, http.MethodDelete:
		req.op = Write
	default:
		req.op = Other
	}
	return req
}

func reserved(seg string) bool {
	switch seg {
	case "storage", "upload", "download", "batch", "_internal":
		return true
	}
	return false
}

// uploadName finds an upload's object name: the name query parameter, else
// the "name" of the JSON metadata (resumable start) or of the first part
// (multipart). It reads at most peekLimit bytes of the body and restores
// them, so the backend sees the body unchanged.
func uploadName(r *http.Request) string {
	if n := r.URL.Query().Get("name"); n != "" {
		return n
	}
	if r.Body == nil || r.Body == http.NoBody {
		return ""
	}
	prefix, _ := io.ReadAll(io.LimitReader(r.Body, peekLimit))
	r.Body = struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(prefix), r.Body), r.Body}

	var meta struct {
		Name string `json:"name"`
	}
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err == nil && strings.HasPrefix(mt, "multipart/") {
		part, err := multipart.NewReader(bytes.NewReader(prefix), params["boundary"]).NextPart()
		if err != nil {
			return ""
		}
		if json.NewDecoder(part).Decode(&meta) != nil {
			return ""
		}
		return meta.Name
	}
	if json.Unmarshal(prefix, &meta) != nil {
		return ""
	}
	return meta.Name
}
