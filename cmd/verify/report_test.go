package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fixtureRun makes a run directory from a checker fixture, with its start
// moved to start, and writes its results with verify check -write.
func fixtureRun(t *testing.T, dir, fixture, start string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "models", "testdata", fixture))
	if err != nil {
		t.Fatal(err)
	}
	const orig = `"start":"2026-01-01T00:00:00Z"`
	if !strings.Contains(string(b), orig) {
		t.Fatalf("%s does not start at %s", fixture, orig)
	}
	b = []byte(strings.Replace(string(b), orig, `"start":"`+start+`"`, 1))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "history.jsonl"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	// The fixtures hold the first few calls of a run: judged as partial.
	code, stdout, stderr := verify(t, "check", "-partial", "-write", dir)
	if code == exitCouldNot {
		t.Fatalf("check -write %s: exit %d\n%s\n%s", dir, code, stdout, stderr)
	}
}

func TestCheckWriteLeavesAReportPage(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "run")
	fixtureRun(t, dir, "double-grant-bad.jsonl", "2026-02-01T00:00:00Z")
	b, err := os.ReadFile(filepath.Join(dir, "report.html"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `class="verdict invalid"`) {
		t.Error("report.html of an invalid run does not say invalid")
	}
}

func TestReportIndexesNestedRunsNewestFirstAndRebuildsMissingPages(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	fixtureRun(t, filepath.Join(root, "old-run"), "double-grant-good.jsonl", "2026-01-01T00:00:00Z")
	fixtureRun(t, filepath.Join(root, "compare-x", "new-run"), "double-grant-bad.jsonl", "2026-03-01T00:00:00Z")
	fixtureRun(t, filepath.Join(root, "suite-y", "shard", "locker", "column", "mid-run"), "crash-takeover-good.jsonl", "2026-02-01T00:00:00Z")
	missing := filepath.Join(root, "compare-x", "new-run", "report.html")
	if err := os.Remove(missing); err != nil {
		t.Fatal(err)
	}
	spec := []byte(`{"name": "regression/double-grant", "locker": "x", "seeds": [1], "expect": {"verdict": "invalid", "reason": "r"}}`)
	if err := os.WriteFile(filepath.Join(root, "compare-x", "new-run", "scenario.json"), spec, 0o644); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := verify(t, "report", root)
	if code != exitValid {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
	b, err := os.ReadFile(filepath.Join(root, "index.html"))
	if err != nil {
		t.Fatal(err)
	}
	index := string(b)
	iNew := strings.Index(index, `href="compare-x/new-run/report.html"`)
	iMid := strings.Index(index, `href="suite-y/shard/locker/column/mid-run/report.html"`)
	iOld := strings.Index(index, `href="old-run/report.html"`)
	if iNew < 0 || iMid < 0 || iOld < 0 || !(iNew < iMid && iMid < iOld) {
		t.Errorf("want the runs linked newest first; positions %d %d %d\n%s", iNew, iMid, iOld, index)
	}
	if !strings.Contains(index, "<td>regression/double-grant</td>") {
		t.Errorf("index does not name the scenario a run was made from:\n%s", index)
	}
	if !strings.Contains(index, "2 valid, 1 invalid") {
		t.Errorf("index lacks the verdict counts:\n%s", index)
	}
	page, err := os.ReadFile(missing)
	if err != nil {
		t.Fatalf("the missing report.html was not rebuilt: %v", err)
	}
	if !strings.Contains(string(page), "rebuilt by verify report") || !strings.Contains(string(page), `class="verdict invalid"`) {
		t.Error("the rebuilt page does not say it was rebuilt, or lost the verdict")
	}
}

func TestReportOnEmptyOrMissingDirExitsThree(t *testing.T) {
	t.Parallel()
	empty := t.TempDir()
	for _, tc := range []struct{ dir, want string }{
		{empty, "no run directories"},
		{filepath.Join(empty, "absent"), "no such file or directory"},
	} {
		code, _, stderr := verify(t, "report", tc.dir)
		if code != exitCouldNot || !strings.Contains(stderr, tc.want) {
			t.Errorf("verify report %s: exit %d, stderr %q; want 3 and %q", tc.dir, code, stderr, tc.want)
		}
	}
	if code, _, _ := verify(t, "report"); code != exitCouldNot {
		t.Errorf("verify report with no directory: exit %d, want 3", code)
	}
}
