package gcs

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fsouza/fake-gcs-server/fakestorage"
	"github.com/lockcheck/lockcheck/internal/gcsapi"
)

// maxBody bounds how much of a request body the layer buffers. Lock objects
// are tiny; the bound only stops a runaway client from exhausting memory.
const maxBody = 64 << 20

// opKind is what a request does to its target object.
type opKind int

const (
	opPass        opKind = iota // not object-scoped: forwarded untouched
	opRead                      // metadata GET/HEAD
	opDownload                  // media GET/HEAD (JSON alt=media, /download, XML)
	opUpdate                    // metadata patch/update: same generation, metageneration+1
	opDelete                    // delete the live generation
	opWrite                     // new generation: media/multipart upload, copy, rewrite, compose
	opResumeStart               // initiation of a resumable upload
	opResumeChunk               // a chunk of a resumable upload; the last one commits
	opList                      // object listing: only the reply is rewritten
)

// target is the parsed meaning of one request.
type target struct {
	kind   opKind
	bucket string
	object string
	xml    bool // XML API read: preconditions in headers, errors in XML
	// uploadID names the resumable session of an opResumeChunk.
	uploadID string
	// copyFrom is the source of a copy or rewrite, whose preconditions
	// (ifSource*) the layer checks too; compose sources come from the body.
	copyFrom *source
	compose  bool // sources and their preconditions are in the body
}

// source is one object a copy, rewrite or compose reads, with the
// preconditions it must meet.
type source struct {
	bucket, object string
	gen            *int64 // a specific generation: must be the live one
	conds          conds
}

// conds holds the four generation preconditions; nil means absent.
type conds struct {
	genMatch, genNotMatch, metaMatch, metaNotMatch *int64
}

// objState is the layer's own bookkeeping for one live generation: the
// emulator keeps metageneration at 1 and never advances updated.
type objState struct {
	gen     int64
	meta    int64
	updated time.Time
}

type upload struct {
	bucket, object string
	conds          conds
	// received counts the bytes of the chunks the emulator took without
	// committing: the Range a status query is answered with.
	received int64
}

// finishedSessions bounds how many completed sessions the layer remembers
// to answer a resent final chunk or a status query with the object, as
// GCS does; an older one is answered as unknown (404).
const finishedSessions = 4096

// fidelity is the HTTP middleware that makes the emulator answer
// preconditions, metageneration and updated as GCS does. See the package doc.
type fidelity struct {
	fake *fakestorage.Server
	next http.Handler

	locks keyedMutex
	// onWrite hears of every accepted write (Options.OnWrite).
	onWrite func(Write)

	mu      sync.Mutex // guards objects, uploads, finished and lastGen
	objects map[string]objState
	uploads map[string]upload
	// finished holds the reply of each completed session, in order of
	// completion (finishedOrder), at most finishedSessions of them.
	finished      map[string]*gcsapi.Reply
	finishedOrder []string
	// lastGen is the newest generation each name ever had, deleted or
	// not: the emulator's generations are its clock in microseconds, and
	// a new one must never repeat an old one (see freshGeneration).
	lastGen map[string]int64
}

func newFidelity(fake *fakestorage.Server, next http.Handler, onWrite func(Write)) *fidelity {
	return &fidelity{
		fake:     fake,
		next:     next,
		onWrite:  onWrite,
		objects:  make(map[string]objState),
		uploads:  make(map[string]upload),
		finished: make(map[string]*gcsapi.Reply),
		lastGen:  make(map[string]int64),
	}
}

func objKey(bucket, object string) string { return bucket + "\x00" + object }

func (f *fidelity) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	t, err := parseTarget(r)
	if errors.Is(err, errXMLUnsupported) {
		writeXMLError(w, r, t, http.StatusNotImplemented, err.Error())
		return
	}
	if err != nil {
		writeJSONError(w, r, http.StatusBadRequest, "invalid", err.Error(), "", "")
		return
	}
	switch t.kind {
	case opPass:
		if !passThrough(r.URL.EscapedPath()) {
			// Routes the layer does not understand could reach the emulator's
			// unchecked writes (batch, /upload/resumable/{id}, host-style
			// object paths): refuse them loudly instead.
			writeJSONError(w, r, http.StatusNotImplemented, "notImplemented",
				"gcs fidelity: "+r.Method+" "+r.URL.EscapedPath()+" is not supported by the embedded backend", "", "")
			return
		}
		f.next.ServeHTTP(w, r)
		return
	case opList:
		rec := gcsapi.NewReply()
		f.next.ServeHTTP(rec, r)
		f.rewriteObjects(rec)
		rec.Flush(w, r)
		return
	}

	// Buffer the body before taking the object lock, so a slow client never
	// holds the lock while its bytes trickle in.
	var body []byte
	if r.Body != nil {
		// A server request always has a body, but Handler may be driven
		// directly by an in-memory transport with a client-side request.
		body, err = io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	}
	if err != nil {
		writeJSONError(w, r, http.StatusBadRequest, "invalid", "gcs fidelity: read body: "+err.Error(), "", "")
		return
	}
	if len(body) > maxBody {
		writeJSONError(w, r, http.StatusRequestEntityTooLarge, "uploadTooLarge", "request body too large", "", "")
		return
	}

	if t.xml && t.compose {
		if body, err = xmlComposeToJSON(r, body); err != nil {
			writeError(w, r, t, http.StatusBadRequest, "invalid", err.Error())
			return
		}
	}
	if body, err = normalizeMetadata(r, t, body); err != nil {
		writeError(w, r, t, http.StatusBadRequest, "invalid", err.Error())
		return
	}

	var c conds
	commit := true
	switch t.kind {
	case opResumeChunk:
		f.mu.Lock()
		u, ok := f.uploads[t.uploadID]
		done := f.finished[t.uploadID]
		f.mu.Unlock()
		if done != nil {
			// A completed session answers anything sent to it (a final
			// chunk resent after its reply was lost, a status query) with
			// the object it made, as GCS does; nothing is written again.
			done.Flush(w, r)
			return
		}
		if ok && gcsapi.IsStatusQuery(r.Header.Get("Content-Range"), len(body)) {
			// The emulator would commit what it has; GCS says how much it
			// has and commits nothing.
			writeIncomplete(w, r, u.received)
			return
		}
		if !ok {
			// A session the layer did not see start has no recorded
			// preconditions: forwarding it could commit unchecked, so it is
			// answered as an unknown session.
			writeJSONError(w, r, http.StatusNotFound, "notFound", "No such upload session", "", "")
			return
		}
		t.bucket, t.object, c = u.bucket, u.object, u.conds
		commit = gcsapi.ChunkCommits(r.Header.Get("Content-Range"))
	default:
		if t.object == "" {
			t.object = uploadName(r, body)
		}
		if t.object == "" {
			// No name to lock on: the emulator rejects such requests itself.
			r.Body = io.NopCloser(bytes.NewReader(body))
			f.next.ServeHTTP(w, r)
			return
		}
		c, err = parseConds(r, t.xml)
		if err != nil {
			writeError(w, r, t, http.StatusBadRequest, "invalid", err.Error())
			return
		}
	}

	var sources []source
	if t.copyFrom != nil {
		sources = []source{*t.copyFrom}
	} else if t.compose {
		if sources, err = composeSources(t.bucket, body); err != nil {
			writeError(w, r, t, http.StatusBadRequest, "invalid", err.Error())
			return
		}
	}

	fwd := forwardRequest(r, t, body)

	key := objKey(t.bucket, t.object)
	keys := []string{key}
	for _, src := range sources {
		keys = append(keys, objKey(src.bucket, src.object))
	}
	unlock := f.locks.lockAll(keys)
	// A write that makes a generation waits, outside the lock, until the
	// clock has moved past the name's newest generation. On a real clock
	// that is at most a microsecond, and rare; inside a synctest bubble,
	// where time stands still between events, it is what keeps a
	// lock-unlock-lock sequence from reusing a generation (and a stale
	// ifGenerationMatch from matching a new lock).
	for wait := 0; makesGeneration(t, commit) && !f.freshGeneration(key) && wait < maxGenerationWaits; wait++ {
		unlock()
		time.Sleep(time.Microsecond)
		unlock = f.locks.lockAll(keys)
	}
	status := f.checkSources(sources)
	var rec *gcsapi.Reply
	if status == 0 {
		rec, status = f.serveLocked(fwd, t, c, commit, key)
	}
	unlock()

	if status != 0 {
		writeError(w, r, t, status, "", "")
		return
	}
	if t.xml && t.kind == opWrite {
		rec = xmlWriteReply(rec)
	}
	if t.kind == opResumeChunk && commit && rec.Code >= 200 && rec.Code < 300 {
		f.finish(t.uploadID, rec)
	}
	rec.Flush(w, r)
}

// finish remembers a completed session's reply, forgetting the oldest
// beyond finishedSessions.
func (f *fidelity) finish(id string, rec *gcsapi.Reply) {
	kept := gcsapi.NewReply()
	for k, v := range rec.Header() {
		kept.Header()[k] = slices.Clone(v)
	}
	kept.WriteHeader(rec.Code)
	kept.Write(rec.Body.Bytes())
	f.mu.Lock()
	defer f.mu.Unlock()
	f.finished[id] = kept
	f.finishedOrder = append(f.finishedOrder, id)
	if len(f.finishedOrder) > finishedSessions {
		delete(f.finished, f.finishedOrder[0])
		f.finishedOrder = f.finishedOrder[1:]
	}
}

// writeIncomplete answers a status query of a session that has received
// n bytes: 308 with the Range it holds, or, for the Go client (which asks
// with X-Guploader-No-308), 200 saying 308 in a header.
func writeIncomplete(w http.ResponseWriter, r *http.Request, n int64) {
	if n > 0 {
		w.Header().Set("Range", fmt.Sprintf("bytes=0-%d", n-1))
	}
	w.Header().Set("Content-Length", "0")
	if _, no308 := r.Header["X-Guploader-No-308"]; no308 {
		w.Header().Set("X-Http-Status-Code-Override", "308")
		w.WriteHeader(http.StatusOK)
		return
	}
	w.WriteHeader(http.StatusPermanentRedirect)
}

// xmlWriteReply turns the JSON object resource of an upload into an XML API
// PUT reply: an empty body, the object's identity in x-goog-* headers.
func xmlWriteReply(rec *gcsapi.Reply) *gcsapi.Reply {
	if rec.Code < 200 || rec.Code > 299 {
		return rec
	}
	var o struct {
		Generation     string `json:"generation"`
		Metageneration string `json:"metageneration"`
		Etag           string `json:"etag"`
		Md5Hash        string `json:"md5Hash"`
		Crc32c         string `json:"crc32c"`
	}
	if json.Unmarshal(rec.Body.Bytes(), &o) != nil {
		return rec
	}
	out := gcsapi.NewReply()
	out.Header().Set("X-Goog-Generation", o.Generation)
	out.Header().Set("X-Goog-Metageneration", o.Metageneration)
	out.Header().Set("X-Goog-Hash", "crc32c="+o.Crc32c+",md5="+o.Md5Hash)
	if o.Etag != "" {
		out.Header().Set("ETag", strconv.Quote(o.Etag))
	}
	out.Code = http.StatusOK
	return out
}

// serveLocked runs under the object's lock: it checks the preconditions
// against the live object, forwards to the emulator and updates the layer's
// bookkeeping, so no other request on the same object can interleave between
// the check and the effect. It returns either a buffered reply or a status the
// layer must answer itself.
func (f *fidelity) serveLocked(r *http.Request, t target, c conds, commit bool, key string) (*gcsapi.Reply, int) {
	live, cur := f.current(t.bucket, t.object, key)

	// A resumable session's preconditions are judged when it commits, as
	// GCS judges them (google-cloud-java issue 201): its start is never
	// refused for them, and a middle chunk is not checked. A failed final
	// chunk keeps its session: a retry of it is checked again rather than
	// committed unchecked.
	judged := t.kind != opResumeStart && (t.kind != opResumeChunk || commit)
	if judged {
		if st := evaluate(t.kind, c, live, cur); st != 0 {
			return nil, st
		}
	}
	// A request for a specific generation of a non-versioned bucket can only
	// name the live one.
	if g := r.URL.Query().Get("generation"); g != "" && (t.kind == opRead || t.kind == opDownload || t.kind == opUpdate || t.kind == opDelete) {
		if n, err := strconv.ParseInt(g, 10, 64); err != nil || !live || n != cur.gen {
			return nil, http.StatusNotFound
		}
	}

	rec := gcsapi.NewReply()
	f.next.ServeHTTP(rec, r)
	ok := rec.Code >= 200 && rec.Code < 300

	if ok && makesGeneration(t, commit) {
		f.recordGeneration(t.bucket, t.object, key)
	}
	if ok && f.onWrite != nil && (makesGeneration(t, commit) || t.kind == opUpdate || t.kind == opDelete) {
		w := Write{Object: t.object, Op: t.kind.String(), Writer: r.Header.Get(WriterHeader)}
		if live {
			w.Before = cur.gen
		}
		switch t.kind {
		case opUpdate:
			w.After = cur.gen
		case opDelete:
		default:
			if _, now := f.current(t.bucket, t.object, key); now.gen != 0 {
				w.After = now.gen
			}
		}
		f.onWrite(w)
	}
	switch t.kind {
	case opUpdate:
		if ok && live {
			next := objState{gen: cur.gen, meta: cur.meta + 1, updated: advance(cur.updated)}
			f.mu.Lock()
			f.objects[key] = next
			f.mu.Unlock()
		}
	case opDelete:
		if ok {
			f.mu.Lock()
			delete(f.objects, key)
			f.mu.Unlock()
			// GCS answers a delete, JSON or XML, with 204 and no body; the
			// emulator says 200.
			rec = gcsapi.NewReply()
			rec.Code = http.StatusNoContent
		}
	case opResumeStart:
		if ok {
			if id := gcsapi.UploadIDFromLocation(rec.Header().Get("Location")); id != "" {
				f.mu.Lock()
				f.uploads[id] = upload{bucket: t.bucket, object: t.object, conds: c}
				f.mu.Unlock()
			}
		}
	case opResumeChunk:
		f.mu.Lock()
		switch {
		case commit && ok:
			delete(f.uploads, t.uploadID)
		case ok:
			if u, live := f.uploads[t.uploadID]; live {
				u.received += r.ContentLength
				f.uploads[t.uploadID] = u
			}
		}
		f.mu.Unlock()
	}
	// Reshape the emulator's own 404s for requests that name an existing
	// object; other 404s (a missing bucket on upload) pass through as they are.
	if rec.Code == http.StatusNotFound && (t.kind == opRead || t.kind == opDownload || t.kind == opUpdate || t.kind == opDelete) {
		return nil, http.StatusNotFound
	}
	if ok {
		if t.kind == opDownload {
			if st, found := f.lookup(key, parseIntHeader(rec.Header().Get("X-Goog-Generation"))); found {
				rec.Header().Set("X-Goog-Metageneration", strconv.FormatInt(st.meta, 10))
				if !st.updated.IsZero() {
					rec.Header().Set("Last-Modified", st.updated.UTC().Format(http.TimeFormat))
				}
			}
		} else if t.kind != opDelete && t.kind != opResumeStart {
			f.rewriteObjects(rec)
		}
	}
	return rec, 0
}

// checkSources applies the preconditions of a copy's or compose's sources,
// under their locks: a missing source is 404, a failed precondition 412.
func (f *fidelity) checkSources(sources []source) int {
	for _, src := range sources {
		live, cur := f.current(src.bucket, src.object, objKey(src.bucket, src.object))
		if !live || (src.gen != nil && *src.gen != cur.gen) {
			return http.StatusNotFound
		}
		if st := evaluate(opWrite, src.conds, live, cur); st != 0 {
			return st
		}
	}
	return 0
}

// maxGenerationWaits bounds the microsecond waits for a fresh generation.
const maxGenerationWaits = 1000

func makesGeneration(t target, commit bool) bool {
	return t.kind == opWrite || (t.kind == opResumeChunk && commit)
}

// freshGeneration says the emulator's clock is past key's newest
// generation, so a write now gets a new one.
func (f *fidelity) freshGeneration(key string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return time.Now().UnixMicro() > f.lastGen[key]
}

// recordGeneration notes the generation a write just made: it starts at
// metageneration 1 and is updated now. The emulator's compose keeps an
// existing destination's timestamps, where GCS stamps the new generation.
func (f *fidelity) recordGeneration(bucket, object, key string) {
	obj, err := f.fake.GetObjectStreaming(bucket, object)
	if err != nil {
		return
	}
	gen := obj.Generation
	obj.Close()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.objects[key] = objState{gen: gen, meta: 1, updated: time.Now()}
	f.lastGen[key] = max(f.lastGen[key], gen)
}

// current reads the live object from the emulator and pairs it with the
// layer's bookkeeping. A generation the layer has not seen yet (a new upload,
// copy or compose) starts at metageneration 1 with the emulator's timestamp.
func (f *fidelity) current(bucket, object, key string) (bool, objState) {
	obj, err := f.fake.GetObjectStreaming(bucket, object)
	if err != nil {
		// The emulator reports a missing bucket or object only through
		// errors; either way there is no live object to compare with.
		return false, objState{}
	}
	gen, updated := obj.Generation, obj.Updated
	obj.Close()
	f.mu.Lock()
	defer f.mu.Unlock()
	st, ok := f.objects[key]
	if !ok || st.gen != gen {
		st = objState{gen: gen, meta: 1, updated: updated}
		f.objects[key] = st
	}
	return true, st
}

// lookup returns the bookkeeping for one generation, or metageneration 1 if
// the layer has none (the generation was never updated).
func (f *fidelity) lookup(key string, gen int64) (objState, bool) {
	if gen == 0 {
		return objState{}, false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	st, ok := f.objects[key]
	if ok && st.gen == gen {
		return st, true
	}
	return objState{gen: gen, meta: 1}, true
}

// advance returns a new updated timestamp strictly after prev, because GCS
// advances updated on every metadata update and a coarse clock must not make
// two updates look simultaneous.
func advance(prev time.Time) time.Time {
	now := time.Now().UTC()
	if !now.After(prev) {
		now = prev.Add(time.Millisecond)
	}
	return now
}

// evaluate applies GCS's precondition rules to the live object. It returns 0
// when the request may proceed, or the status GCS would answer.
func evaluate(kind opKind, c conds, live bool, cur objState) int {
	switch kind {
	case opRead, opDownload, opUpdate, opDelete:
		// These name an existing object: a missing one is 404 whatever the
		// preconditions say.
		if !live {
			return http.StatusNotFound
		}
	}
	read := kind == opRead || kind == opDownload
	if c.genMatch != nil {
		if *c.genMatch == 0 {
			// ifGenerationMatch=0: only if there is no live object.
			if live {
				return http.StatusPreconditionFailed
			}
		} else if !live || cur.gen != *c.genMatch {
			return http.StatusPreconditionFailed
		}
	}
	if c.metaMatch != nil && (!live || cur.meta != *c.metaMatch) {
		return http.StatusPreconditionFailed
	}
	// The NotMatch conditions answer 304 Not Modified on reads, as HTTP's
	// If-None-Match does, and 412 on writes.
	notMatchFail := http.StatusPreconditionFailed
	if read {
		notMatchFail = http.StatusNotModified
	}
	if c.genNotMatch != nil {
		if live && cur.gen == *c.genNotMatch {
			return notMatchFail
		}
		// ifGenerationNotMatch=0: only if there is a live object.
		if !live && *c.genNotMatch == 0 {
			return notMatchFail
		}
	}
	if c.metaNotMatch != nil && live && cur.meta == *c.metaNotMatch {
		return notMatchFail
	}
	return 0
}

// parseTarget classifies a request by its escaped path, where an object
// name's own slashes are %2F and cannot be confused with separators.
func parseTarget(r *http.Request) (target, error) {
	p := r.URL.EscapedPath()
	q := r.URL.Query()
	get := r.Method == http.MethodGet || r.Method == http.MethodHead
	switch {
	case strings.HasPrefix(p, "/storage/v1/b/"):
		segs := strings.Split(strings.TrimPrefix(p, "/storage/v1/b/"), "/")
		if len(segs) < 2 || segs[1] != "o" {
			return target{}, nil
		}
		b, err := url.PathUnescape(segs[0])
		if err != nil {
			return target{}, fmt.Errorf("bad bucket name: %w", err)
		}
		if len(segs) == 2 || (len(segs) == 3 && segs[2] == "") {
			if get {
				return target{kind: opList, bucket: b}, nil
			}
			return target{}, nil
		}
		o, err := url.PathUnescape(segs[2])
		if err != nil {
			return target{}, fmt.Errorf("bad object name: %w", err)
		}
		switch {
		case len(segs) == 3:
			switch {
			case get && q.Get("alt") == "media":
				return target{kind: opDownload, bucket: b, object: o}, nil
			case get:
				return target{kind: opRead, bucket: b, object: o}, nil
			case r.Method == http.MethodDelete:
				return target{kind: opDelete, bucket: b, object: o}, nil
			case r.Method == http.MethodPatch || r.Method == http.MethodPut || r.Method == http.MethodPost:
				return target{kind: opUpdate, bucket: b, object: o}, nil
			}
		case len(segs) == 4 && segs[3] == "compose" && r.Method == http.MethodPost:
			return target{kind: opWrite, bucket: b, object: o, compose: true}, nil
		case len(segs) == 8 && (segs[3] == "rewriteTo" || segs[3] == "copyTo") && segs[4] == "b" && segs[6] == "o" && r.Method == http.MethodPost:
			db, err := url.PathUnescape(segs[5])
			if err != nil {
				return target{}, fmt.Errorf("bad bucket name: %w", err)
			}
			do, err := url.PathUnescape(segs[7])
			if err != nil {
				return target{}, fmt.Errorf("bad object name: %w", err)
			}
			sb, err1 := url.PathUnescape(segs[0])
			so, err2 := url.PathUnescape(segs[2])
			if err := errors.Join(err1, err2); err != nil {
				return target{}, fmt.Errorf("bad source path: %w", err)
			}
			src := &source{bucket: sb, object: so}
			for _, p := range sourceCondParams {
				if v := q.Get(p.query); v != "" {
					n, err := strconv.ParseInt(v, 10, 64)
					if err != nil {
						return target{}, fmt.Errorf("invalid %s %q: %w", p.query, v, err)
					}
					*p.field(&src.conds) = &n
				}
			}
			if v := q.Get("sourceGeneration"); v != "" {
				n, err := strconv.ParseInt(v, 10, 64)
				if err != nil {
					return target{}, fmt.Errorf("invalid sourceGeneration %q: %w", v, err)
				}
				src.gen = &n
			}
			return target{kind: opWrite, bucket: db, object: do, copyFrom: src}, nil
		}
		return target{}, nil
	case strings.HasPrefix(p, "/download/storage/v1/b/"):
		segs := strings.Split(strings.TrimPrefix(p, "/download/storage/v1/b/"), "/")
		if len(segs) != 3 || segs[1] != "o" || !get {
			return target{}, nil
		}
		b, err1 := url.PathUnescape(segs[0])
		o, err2 := url.PathUnescape(segs[2])
		if err := errors.Join(err1, err2); err != nil {
			return target{}, fmt.Errorf("bad object path: %w", err)
		}
		return target{kind: opDownload, bucket: b, object: o}, nil
	case strings.HasPrefix(p, "/upload/storage/v1/b/"):
		segs := strings.Split(strings.TrimPrefix(p, "/upload/storage/v1/b/"), "/")
		if len(segs) < 2 || len(segs) > 3 || segs[1] != "o" || (len(segs) == 3 && segs[2] != "") {
			return target{}, nil
		}
		b, err := url.PathUnescape(segs[0])
		if err != nil {
			return target{}, fmt.Errorf("bad bucket name: %w", err)
		}
		if id := q.Get("upload_id"); id != "" {
			if r.Method == http.MethodPut || r.Method == http.MethodPost {
				return target{kind: opResumeChunk, bucket: b, uploadID: id}, nil
			}
			return target{}, nil
		}
		if r.Method != http.MethodPost {
			return target{}, nil
		}
		if q.Get("uploadType") == "resumable" {
			return target{kind: opResumeStart, bucket: b}, nil
		}
		return target{kind: opWrite, bucket: b}, nil
	}
	// The XML API object path, /BUCKET/OBJECT: the Go client's NewReader
	// reads through it by default, and some lockers (gmutex) write and delete
	// through it with x-goog-if-* headers.
	rest := strings.TrimPrefix(p, "/")
	b, o, ok := strings.Cut(rest, "/")
	if !ok || b == "" || o == "" || reservedPrefix(b) {
		return target{}, nil
	}
	bu, err1 := url.PathUnescape(b)
	ou, err2 := url.PathUnescape(o)
	if err := errors.Join(err1, err2); err != nil {
		return target{}, fmt.Errorf("bad object path: %w", err)
	}
	t := target{bucket: bu, object: ou, xml: true}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		t.kind = opDownload
	case http.MethodPut:
		t.kind = opWrite
		// PUT ?compose concatenates the components named in an XML
		// ComposeRequest body into the object: a new generation.
		_, t.compose = r.URL.Query()["compose"]
	case http.MethodDelete:
		t.kind = opDelete
	default:
		// XML POST (resumable sessions, multipart) is not translated; the
		// emulator would serve it with its own, unchecked preconditions.
		return target{}, errXMLUnsupported
	}
	return t, nil
}

// errXMLUnsupported refuses XML requests the layer cannot check, rather than
// let them reach the emulator unchecked.
var errXMLUnsupported = errors.New("gcs fidelity: this XML API request is not supported by the embedded backend")

// passThrough reports whether a request the layer does not classify may go
// to the emulator as it is: JSON API bucket-level and ACL routes, cancelling
// a resumable session, and the emulator's own /_internal routes. None of them
// creates, changes or deletes an object's data or metadata.
func passThrough(p string) bool {
	return strings.HasPrefix(p, "/storage/v1/") ||
		strings.HasPrefix(p, "/upload/storage/v1/b/") ||
		strings.HasPrefix(p, "/_internal/")
}

func reservedPrefix(seg string) bool {
	switch seg {
	case "storage", "upload", "download", "batch", "_internal":
		return true
	}
	return false
}

var sourceCondParams = []struct {
	query string
	field func(*conds) **int64
}{
	{"ifSourceGenerationMatch", func(c *conds) **int64 { return &c.genMatch }},
	{"ifSourceGenerationNotMatch", func(c *conds) **int64 { return &c.genNotMatch }},
	{"ifSourceMetagenerationMatch", func(c *conds) **int64 { return &c.metaMatch }},
	{"ifSourceMetagenerationNotMatch", func(c *conds) **int64 { return &c.metaNotMatch }},
}

// composeSources reads the sources of a compose request body.
func composeSources(bucket string, body []byte) ([]source, error) {
	var req struct {
		SourceObjects []struct {
			Name                string `json:"name"`
			Generation          string `json:"generation"`
			ObjectPreconditions *struct {
				IfGenerationMatch string `json:"ifGenerationMatch"`
			} `json:"objectPreconditions"`
		} `json:"sourceObjects"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, fmt.Errorf("compose body: %w", err)
	}
	var out []source
	for _, so := range req.SourceObjects {
		src := source{bucket: bucket, object: so.Name}
		if so.Generation != "" && so.Generation != "0" {
			n, err := strconv.ParseInt(so.Generation, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("compose source generation %q: %w", so.Generation, err)
			}
			src.gen = &n
		}
		if p := so.ObjectPreconditions; p != nil && p.IfGenerationMatch != "" {
			n, err := strconv.ParseInt(p.IfGenerationMatch, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("compose source ifGenerationMatch %q: %w", p.IfGenerationMatch, err)
			}
			src.conds.genMatch = &n
		}
		out = append(out, src)
	}
	return out, nil
}

var condParams = []struct {
	query, header string
	field         func(*conds) **int64
}{
	{"ifGenerationMatch", "X-Goog-If-Generation-Match", func(c *conds) **int64 { return &c.genMatch }},
	{"ifGenerationNotMatch", "", func(c *conds) **int64 { return &c.genNotMatch }},
	{"ifMetagenerationMatch", "X-Goog-If-Metageneration-Match", func(c *conds) **int64 { return &c.metaMatch }},
	{"ifMetagenerationNotMatch", "", func(c *conds) **int64 { return &c.metaNotMatch }},
}

// parseConds reads the preconditions from the query (JSON API) or the
// x-goog-if-* headers (XML API).
func parseConds(r *http.Request, xml bool) (conds, error) {
	var c conds
	q := r.URL.Query()
	for _, p := range condParams {
		v := q.Get(p.query)
		if xml {
			if p.header == "" {
				continue
			}
			v = r.Header.Get(p.header)
		}
		if v == "" {
			continue
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return conds{}, fmt.Errorf("invalid %s %q: %w", p.query, v, err)
		}
		*p.field(&c) = &n
	}
	return c, nil
}

// forwardRequest builds the request the emulator sees: preconditions removed
// (the layer is their only judge, so the emulator's partial checks cannot
// disagree with it), XML reads turned into the JSON download route (which
// needs no public-host match), and the buffered body restored.
func forwardRequest(r *http.Request, t target, body []byte) *http.Request {
	u := *r.URL
	q := u.Query()
	for _, p := range condParams {
		q.Del(p.query)
	}
	for _, p := range sourceCondParams {
		q.Del(p.query)
	}
	method := r.Method
	var ctype string
	if t.xml {
		// Each XML request is served by the emulator's JSON route with the
		// same meaning, which needs no public-host match.
		eb, eo := url.PathEscape(t.bucket), url.PathEscape(t.object)
		switch t.kind {
		case opDownload:
			u.Path = "/download/storage/v1/b/" + t.bucket + "/o/" + t.object
			u.RawPath = "/download/storage/v1/b/" + eb + "/o/" + eo
			q.Set("alt", "media")
		case opDelete:
			u.Path = "/storage/v1/b/" + t.bucket + "/o/" + t.object
			u.RawPath = "/storage/v1/b/" + eb + "/o/" + eo
		case opWrite:
			if t.compose {
				// The body is already the JSON compose request.
				u.Path = "/storage/v1/b/" + t.bucket + "/o/" + t.object + "/compose"
				u.RawPath = "/storage/v1/b/" + eb + "/o/" + eo + "/compose"
				q = url.Values{}
				method, ctype = http.MethodPost, "application/json"
				break
			}
			u.Path = "/upload/storage/v1/b/" + t.bucket + "/o"
			u.RawPath = ""
			q = url.Values{"uploadType": {"multipart"}}
			method = http.MethodPost
			body, ctype = xmlPutToMultipart(r, t, body)
		}
	}
	u.RawQuery = q.Encode()
	fwd := r.Clone(r.Context())
	fwd.Method = method
	if ctype != "" {
		fwd.Header.Set("Content-Type", ctype)
	}
	fwd.URL = &u
	fwd.RequestURI = ""
	for _, p := range condParams {
		if p.header != "" {
			fwd.Header.Del(p.header)
		}
	}
	fwd.Body = io.NopCloser(bytes.NewReader(body))
	fwd.ContentLength = int64(len(body))
	return fwd
}

// xmlComposeToJSON rewrites an XML API compose (components in an XML
// ComposeRequest, the destination's metadata in x-goog-meta-* and standard
// headers) as the JSON API compose request with the same meaning.
func xmlComposeToJSON(r *http.Request, body []byte) ([]byte, error) {
	var req struct {
		Components []struct {
			Name       string `xml:"Name"`
			Generation string `xml:"Generation"`
			Match      *struct {
				IfGenerationMatch string `xml:"IfGenerationMatch"`
			} `xml:"IfGenerationMatch"`
		} `xml:"Component"`
	}
	if err := xml.Unmarshal(body, &req); err != nil {
		return nil, fmt.Errorf("XML compose body: %w", err)
	}
	if len(req.Components) == 0 {
		return nil, errors.New("XML compose body names no component")
	}
	type precond struct {
		IfGenerationMatch string `json:"ifGenerationMatch,omitempty"`
	}
	type sourceObject struct {
		Name                string   `json:"name"`
		Generation          string   `json:"generation,omitempty"`
		ObjectPreconditions *precond `json:"objectPreconditions,omitempty"`
	}
	var sources []sourceObject
	for _, c := range req.Components {
		so := sourceObject{Name: c.Name, Generation: c.Generation}
		if c.Match != nil && c.Match.IfGenerationMatch != "" {
			so.ObjectPreconditions = &precond{IfGenerationMatch: c.Match.IfGenerationMatch}
		}
		sources = append(sources, so)
	}
	dest := map[string]any{}
	custom := map[string]string{}
	for k, v := range r.Header {
		if name, ok := strings.CutPrefix(http.CanonicalHeaderKey(k), "X-Goog-Meta-"); ok && len(v) > 0 {
			custom[strings.ToLower(name)] = v[0]
		}
	}
	if len(custom) > 0 {
		dest["metadata"] = custom
	}
	for h, field := range map[string]string{"Cache-Control": "cacheControl", "Content-Type": "contentType"} {
		if v := r.Header.Get(h); v != "" {
			dest[field] = v
		}
	}
	return json.Marshal(map[string]any{"sourceObjects": sources, "destination": dest})
}

// xmlPutToMultipart rewrites an XML API PUT (metadata in x-goog-meta-* and
// standard headers) as a JSON API multipart upload body.
func xmlPutToMultipart(r *http.Request, t target, data []byte) ([]byte, string) {
	meta := map[string]any{"name": t.object}
	custom := map[string]string{}
	for k, v := range r.Header {
		if name, ok := strings.CutPrefix(http.CanonicalHeaderKey(k), "X-Goog-Meta-"); ok && len(v) > 0 {
			custom[strings.ToLower(name)] = v[0]
		}
	}
	if len(custom) > 0 {
		meta["metadata"] = custom
	}
	for h, field := range map[string]string{
		"Cache-Control":       "cacheControl",
		"Content-Type":        "contentType",
		"Content-Encoding":    "contentEncoding",
		"Content-Disposition": "contentDisposition",
		"Content-Language":    "contentLanguage",
	} {
		if v := r.Header.Get(h); v != "" {
			meta[field] = v
		}
	}
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	mh := make(map[string][]string)
	mh["Content-Type"] = []string{"application/json; charset=UTF-8"}
	pw, _ := mw.CreatePart(mh)
	json.NewEncoder(pw).Encode(meta)
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		ct = "application/octet-stream"
	}
	pw, _ = mw.CreatePart(map[string][]string{"Content-Type": {ct}})
	pw.Write(data)
	mw.Close()
	return buf.Bytes(), "multipart/related; boundary=" + mw.Boundary()
}

// uploadName finds the object name of an upload: the name query parameter,
// else the "name" of the JSON metadata (resumable initiation) or of the
// metadata part (multipart).
func uploadName(r *http.Request, body []byte) string {
	if n := r.URL.Query().Get("name"); n != "" {
		return n
	}
	var meta struct {
		Name string `json:"name"`
	}
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err == nil && strings.HasPrefix(mt, "multipart/") {
		part, err := multipart.NewReader(bytes.NewReader(body), params["boundary"]).NextPart()
		if err != nil {
			return ""
		}
		if json.NewDecoder(part).Decode(&meta) != nil {
			return ""
		}
		return meta.Name
	}
	if json.Unmarshal(body, &meta) != nil {
		return ""
	}
	return meta.Name
}

func parseIntHeader(v string) int64 {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0
	}
	return n
}

// rewriteObjects puts the layer's metageneration and updated into every
// object resource of a JSON reply: the object itself, a rewrite reply's
// "resource", or a listing's "items". Only the fields it reads are
// decoded; the rest pass through as raw JSON.
func (f *fidelity) rewriteObjects(rec *gcsapi.Reply) {
	if rec.Code < 200 || rec.Code > 299 || rec.Body.Len() == 0 {
		return
	}
	var doc map[string]json.RawMessage
	if json.Unmarshal(rec.Body.Bytes(), &doc) != nil {
		return
	}
	changed := f.rewriteOne(doc)
	if out, ok := f.rewriteRaw(doc["resource"]); ok {
		doc["resource"], changed = out, true
	}
	var items []json.RawMessage
	if raw, ok := doc["items"]; ok && json.Unmarshal(raw, &items) == nil {
		rewritten := false
		for i, it := range items {
			if out, ok := f.rewriteRaw(it); ok {
				items[i], rewritten = out, true
			}
		}
		if out, err := json.Marshal(items); rewritten && err == nil {
			doc["items"], changed = out, true
		}
	}
	if !changed {
		return
	}
	out, err := json.Marshal(doc)
	if err != nil {
		return
	}
	rec.Body.Reset()
	rec.Body.Write(out)
}

// rewriteRaw rewrites one object resource given as raw JSON; false when it
// is not one the layer knows, or not an object at all.
func (f *fidelity) rewriteRaw(raw json.RawMessage) (json.RawMessage, bool) {
	var m map[string]json.RawMessage
	if json.Unmarshal(raw, &m) != nil || !f.rewriteOne(m) {
		return raw, false
	}
	out, err := json.Marshal(m)
	if err != nil {
		return raw, false
	}
	return out, true
}

func (f *fidelity) rewriteOne(m map[string]json.RawMessage) bool {
	var b, n string
	if json.Unmarshal(m["bucket"], &b) != nil || json.Unmarshal(m["name"], &n) != nil || b == "" || n == "" {
		return false
	}
	// The generation is a string in GCS's JSON, a number in some
	// emulator replies.
	var gen int64
	var text string
	var num json.Number
	if json.Unmarshal(m["generation"], &text) == nil {
		gen, _ = strconv.ParseInt(text, 10, 64)
	} else if json.Unmarshal(m["generation"], &num) == nil {
		gen, _ = num.Int64()
	}
	st, ok := f.lookup(objKey(b, n), gen)
	if !ok {
		return false
	}
	m["metageneration"] = jsonString(strconv.FormatInt(st.meta, 10))
	if !st.updated.IsZero() {
		m["updated"] = jsonString(st.updated.UTC().Format(time.RFC3339Nano))
	}
	return true
}

// jsonString is s as a JSON string.
func jsonString(s string) json.RawMessage {
	out, _ := json.Marshal(s)
	return out
}

const preconditionMessage = "At least one of the pre-conditions you specified did not hold."

// writeError answers as GCS would for the request's API: JSON error bodies
// for the JSON API, XML for XML reads, no body for 304 or HEAD.
func writeError(w http.ResponseWriter, r *http.Request, t target, status int, reason, msg string) {
	if t.xml {
		writeXMLError(w, r, t, status, msg)
		return
	}
	switch status {
	case http.StatusPreconditionFailed:
		writeJSONError(w, r, status, "conditionNotMet", preconditionMessage, "header", "If-Match")
	case http.StatusNotFound:
		m := "No such object: " + t.bucket + "/" + t.object
		writeJSONError(w, r, status, "notFound", m, "", "")
	case http.StatusNotModified:
		w.WriteHeader(status)
	default:
		if msg == "" {
			msg = http.StatusText(status)
		}
		writeJSONError(w, r, status, reason, msg, "", "")
	}
}

func writeJSONError(w http.ResponseWriter, r *http.Request, status int, reason, msg, locType, loc string) {
	gcsapi.WriteJSONError(w, r.Method, status, gcsapi.Error{Domain: "global", Reason: reason, Message: msg, LocationType: locType, Location: loc})
}

func writeXMLError(w http.ResponseWriter, r *http.Request, t target, status int, msg string) {
	var code, details string
	switch status {
	case http.StatusPreconditionFailed:
		code, msg = "PreconditionFailed", preconditionMessage
	case http.StatusNotFound:
		code, msg, details = "NoSuchKey", "The specified key does not exist.", "No such object: "+t.bucket+"/"+t.object
	case http.StatusNotModified:
		w.WriteHeader(status)
		return
	default:
		code = strings.ReplaceAll(http.StatusText(status), " ", "")
	}
	out := "<?xml version='1.0' encoding='UTF-8'?><Error><Code>" + code + "</Code><Message>" + msg + "</Message>"
	if details != "" {
		out += "<Details>" + details + "</Details>"
	}
	out += "</Error>"
	w.Header().Set("Content-Type", "application/xml; charset=UTF-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(out)))
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		io.WriteString(w, out)
	}
}

// keyedMutex is one mutex per object name, created on demand and dropped
// when no request holds or waits for it, so memory follows live contention
// rather than every name ever seen.
type keyedMutex struct {
	mu sync.Mutex
	m  map[string]*keyedEntry
}

type keyedEntry struct {
	mu   sync.Mutex
	refs int
}

// lockAll locks several keys in sorted order, so two requests that need
// overlapping sets (a copy A→B and a copy B→A) cannot deadlock.
func (k *keyedMutex) lockAll(keys []string) (unlock func()) {
	keys = slices.Clone(keys)
	slices.Sort(keys)
	keys = slices.Compact(keys)
	unlocks := make([]func(), 0, len(keys))
	for _, key := range keys {
		unlocks = append(unlocks, k.lock(key))
	}
	return func() {
		for i := len(unlocks) - 1; i >= 0; i-- {
			unlocks[i]()
		}
	}
}

func (k *keyedMutex) lock(key string) (unlock func()) {
	k.mu.Lock()
	if k.m == nil {
		k.m = make(map[string]*keyedEntry)
	}
	e, ok := k.m[key]
	if !ok {
		e = &keyedEntry{}
		k.m[key] = e
	}
	e.refs++
	k.mu.Unlock()

	e.mu.Lock()
	return func() {
		e.mu.Unlock()
		k.mu.Lock()
		e.refs--
		if e.refs == 0 {
			delete(k.m, key)
		}
		k.mu.Unlock()
	}
}
