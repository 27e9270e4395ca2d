package gcsapi

import "testing"

func TestChunkCommits(t *testing.T) {
	for cr, want := range map[string]bool{
		"":                 true,
		"bytes 0-9/10":     true,
		"bytes 0-9/*":      false,
		"bytes */10":       true,
		"bytes 0-262143/*": false,
		"bytes 0-4/10":     false,
	} {
		if got := ChunkCommits(cr); got != want {
			t.Errorf("ChunkCommits(%q) = %v, want %v", cr, got, want)
		}
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
