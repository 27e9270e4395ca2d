package gcs

import "github.com/lockcheck/lockcheck/internal/gcsapi"

// WriterHeader is the request header that names who sent a request, for
// Write.Writer (gcsapi.WriterHeader).
const WriterHeader = gcsapi.WriterHeader

// Write is one write the backend accepted: what a backend audit checks
// against who held the lock at the time. It is reported under the
// object's lock, after the write took effect and before its reply leaves.
type Write struct {
	// Object is the object's name in its bucket.
	Object string
	// Op is "write" (a new generation: upload, copy, compose), "update"
	// (metadata: same generation) or "delete".
	Op string
	// Writer is the request's WriterHeader, empty when it had none.
	Writer string
	// Before is the live generation the write acted on, 0 when the
	// object did not exist; After is the live generation it left, 0 when
	// none (a delete).
	Before, After int64
}

func (k opKind) String() string {
	switch k {
	case opUpdate:
		return "update"
	case opDelete:
		return "delete"
	case opWrite, opResumeChunk:
		return "write"
	}
	return "other"
}
