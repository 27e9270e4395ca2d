package gcs

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"strconv"
	"strings"
)

// Custom metadata values are strings in GCS, but its JSON API takes a
// number or a boolean for one and stores its text: the Node.js client
// types them as string | boolean | number | null (FileMetadata.metadata in
// its src/file.ts), and a lock that writes its expiry as Date.now() sends a
// JSON number. The emulator decodes them into a map of strings and answers
// a number with a 500. customMetadata turns them into strings before the
// emulator sees them; a null is dropped from a new object's metadata (there
// is nothing to remove) and left to the emulator on a patch; an object or
// a list is refused with 400, which is what a string field given one gets.

// normalizeMetadata rewrites the object resource a request carries (a
// resumable start's or a patch's JSON body, a multipart upload's first
// part, a copy's or rewrite's body, a compose's destination) so that its
// custom metadata values are strings. It returns body unchanged when there
// is nothing to rewrite.
func normalizeMetadata(r *http.Request, t target, body []byte) ([]byte, error) {
	if t.xml || len(body) == 0 {
		return body, nil
	}
	insert := t.kind != opUpdate
	switch t.kind {
	case opResumeStart, opUpdate:
		return rewriteResource(body, insert, false)
	case opWrite:
		if t.compose {
			return rewriteResource(body, insert, true)
		}
		if t.copyFrom != nil {
			return rewriteResource(body, insert, false)
		}
		mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if err == nil && strings.HasPrefix(mt, "multipart/") && params["boundary"] != "" {
			return rewriteMultipart(body, params["boundary"], insert)
		}
	}
	return body, nil
}

// rewriteResource rewrites a JSON object resource, or a compose request's
// destination when nested. Only the metadata is decoded; the rest passes
// through as raw JSON.
func rewriteResource(body []byte, insert, nested bool) ([]byte, error) {
	var doc map[string]json.RawMessage
	if json.Unmarshal(body, &doc) != nil {
		// Not an object: the emulator answers it as it does.
		return body, nil
	}
	res := doc
	if nested {
		if json.Unmarshal(doc["destination"], &res) != nil || res == nil {
			return body, nil
		}
	}
	changed, err := stringMetadata(res, insert)
	if err != nil || !changed {
		return body, err
	}
	if nested {
		if doc["destination"], err = json.Marshal(res); err != nil {
			return body, nil
		}
	}
	return json.Marshal(doc)
}

// stringMetadata makes res["metadata"]'s values strings; it reports whether
// it changed anything.
func stringMetadata(res map[string]json.RawMessage, insert bool) (bool, error) {
	raw, ok := res["metadata"]
	if !ok {
		return false, nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil || v == nil {
		return false, nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		return false, fmt.Errorf("metadata: want an object of key: value pairs, got a JSON %s", jsonKind(v))
	}
	changed := false
	for k, v := range m {
		switch x := v.(type) {
		case string:
		case json.Number:
			m[k], changed = x.String(), true
		case bool:
			m[k], changed = strconv.FormatBool(x), true
		case nil:
			if insert {
				delete(m, k)
				changed = true
			}
		default:
			return false, fmt.Errorf("metadata.%s: a custom metadata value is a string (or a number or boolean, stored as its text), not a JSON %s", k, jsonKind(v))
		}
	}
	if !changed {
		return false, nil
	}
	out, err := json.Marshal(m)
	if err != nil {
		return false, nil
	}
	res["metadata"] = out
	return true, nil
}

func jsonKind(v any) string {
	switch v.(type) {
	case map[string]any:
		return "object"
	case []any:
		return "list"
	case string:
		return "string"
	case json.Number:
		return "number"
	case bool:
		return "boolean"
	}
	return "null"
}

// rewriteMultipart rewrites the metadata part (the first) of a multipart
// upload, keeping its boundary, so the request's Content-Type stays right.
func rewriteMultipart(body []byte, boundary string, insert bool) ([]byte, error) {
	mr := multipart.NewReader(bytes.NewReader(body), boundary)
	first, err := mr.NextPart()
	if err != nil {
		return body, nil
	}
	meta, err := io.ReadAll(first)
	if err != nil {
		return body, nil
	}
	fixed, err := rewriteResource(meta, insert, false)
	if err != nil || bytes.Equal(fixed, meta) {
		return body, err
	}
	var out bytes.Buffer
	mw := multipart.NewWriter(&out)
	if err := mw.SetBoundary(boundary); err != nil {
		return body, nil
	}
	pw, err := mw.CreatePart(first.Header)
	if err != nil {
		return body, nil
	}
	pw.Write(fixed)
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			return body, nil
		}
		pw, err := mw.CreatePart(p.Header)
		if err != nil {
			return body, nil
		}
		if _, err := io.Copy(pw, p); err != nil {
			return body, nil
		}
	}
	mw.Close()
	return out.Bytes(), nil
}
