package gcsapi

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestChunkCommits(t *testing.T) {
	for cr, want := range map[string]bool{
		"":                 true,
		"bytes 0-9/10":     true,
		"bytes 0-9/*":      false,
		"bytes */10":       true,
		"bytes 0-262143/*": false,
		"bytes 0-4/10":     false,
		"bytes 0-*/*":      true,
		"bytes 5-*/10":     true,
		"bytes */*":        false,
		"bytes nonsense":   true,
		"chunks 0-9/10":    true,
	} {
		if got := ChunkCommits(cr); got != want {
			t.Errorf("ChunkCommits(%q) = %v, want %v", cr, got, want)
		}
	}
}

func TestIsStatusQuery(t *testing.T) {
	if !IsStatusQuery("bytes */*", 0) || IsStatusQuery("bytes */*", 3) || IsStatusQuery("bytes */10", 0) {
		t.Error("a status query is bytes */* with no body, and nothing else")
	}
}

func TestUploadIDFromLocation(t *testing.T) {
	if got := UploadIDFromLocation("http://127.0.0.1:1/upload/storage/v1/b/b/o?uploadType=resumable&upload_id=abc"); got != "abc" {
		t.Errorf("got %q", got)
	}
	if got := UploadIDFromLocation("::"); got != "" {
		t.Errorf("garbage gave %q", got)
	}
}

func TestWriteJSONErrorIsShapedLikeGCS(t *testing.T) {
	rec := httptest.NewRecorder()
	WriteJSONError(rec, http.MethodPost, 412, Error{Domain: "global", Reason: "conditionNotMet", Message: "m", LocationType: "header", Location: "If-Match"})
	want := `{"error":{"code":412,"message":"m","errors":[{"domain":"global","reason":"conditionNotMet","message":"m","locationType":"header","location":"If-Match"}]}}`
	if rec.Code != 412 || rec.Body.String() != want {
		t.Errorf("got %d %s", rec.Code, rec.Body)
	}
	head := httptest.NewRecorder()
	WriteJSONError(head, http.MethodHead, 404, Error{Domain: "global", Reason: "notFound", Message: "x"})
	if head.Code != 404 || head.Body.Len() != 0 {
		t.Errorf("HEAD: %d with a %d-byte body", head.Code, head.Body.Len())
	}
}
