package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestSplitCommand(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		line string
		want []string
	}{
		{"node workers/node/worker.js", []string{"node", "workers/node/worker.js"}},
		{`  node   "my worker.js"  'a b' c\ d `, []string{"node", "my worker.js", "a b", "c d"}},
		{`sh -c 'echo "$HOME"'`, []string{"sh", "-c", `echo "$HOME"`}},
		{`"" x`, []string{"", "x"}},
	} {
		got, err := splitCommand(c.line)
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("%q: %q, %v; want %q", c.line, got, err, c.want)
		}
	}
	for _, bad := range []string{"", "   ", `node "w.js`, "node 'w.js", `node w.js\`} {
		if got, err := splitCommand(bad); err == nil {
			t.Errorf("%q: accepted as %q", bad, got)
		}
	}
}

// nodeWorker is the command line of the Node.js worker on one of its
// locker modules, or a skip when this machine has no Node.js (make test
// installs it, with the worker's npm packages).
func nodeWorker(t *testing.T, locker string) string {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		t.Skipf("no node on PATH (make test installs Node.js): %v", err)
	}
	dir, err := filepath.Abs("../../workers/node")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "@tus", "server")); err != nil {
		t.Fatalf("the Node worker's packages are not installed: run `make node-worker` (npm ci in workers/node): %v", err)
	}
	return "node " + filepath.Join(dir, "worker.js") + " " + filepath.Join(dir, "lockers", locker)
}

// The Node worker runs a published npm lock end to end: node-redlock on
// the embedded Redis is valid without faults, and verify check reproduces
// the verdict; @tus/server's MemoryLocker, one per process, excludes no one.
func TestNodeWorkerRunsPublishedTusLockers(t *testing.T) {
	t.Parallel()
	out := t.TempDir()
	code, stdout, stderr := verify(t, "run", "-q", "-out", out, "-worker", nodeWorker(t, "redlock.js"), "-backend", "redis",
		"-time-scale", "0.5", "-clients", "4", "-duration", "2s", "-recovery-timeout", "10s", "-seed", "1")
	// A 4 s lease, extended every 2 s: a Node event loop stalled on a
	// loaded machine for a good part of a shorter one broke it for real.
	if code != exitValid {
		t.Fatalf("redlock on the embedded Redis: exit %d, want 0\n%s\n%s", code, stdout, stderr)
	}
	for _, want := range []string{"worker node ", "backend redis", "mutual-exclusion  safety    valid"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("output does not say %q:\n%s", want, stdout)
		}
	}
	dirs, _ := filepath.Glob(filepath.Join(out, "*-worker-s1"))
	if len(dirs) != 1 {
		t.Fatalf("run directories %v, want one", dirs)
	}
	code, stdout, _ = verify(t, "check", dirs[0])
	if code != exitValid || !strings.Contains(stdout, "saved verdict valid: reproduced") {
		t.Errorf("verify check of the Node run: exit %d\n%s", code, stdout)
	}

	code, stdout, stderr = verify(t, "run", "-q", "-out", t.TempDir(), "-worker", nodeWorker(t, "memory.js"), "-backend", "none",
		"-time-scale", "0.1", "-clients", "4", "-keys", "1", "-duration", "2s", "-recovery-timeout", "5s", "-seed", "1")
	if code != exitInvalid || !strings.Contains(stdout, "first counterexample (mutual-exclusion): key k0:") {
		t.Fatalf("MemoryLocker across processes: exit %d, want 1 with a counterexample\n%s\n%s", code, stdout, stderr)
	}
}

// A compare row and a suite of scenario files can run an external
// worker: here this test binary's own `verify worker`, which knows the
// built-in fenced lock by the name the harness gives it.
func TestCompareAndSuiteRunAnExternalWorker(t *testing.T) {
	self := os.Args[0] + " worker"
	out := t.TempDir()
	code, stdout, stderr := verify(t, "compare", "-out", out, "-lockers", "memory-owner", "-scenarios", "none", "-seeds", "1",
		"-duration", "1s", "-recovery-timeout", "5s", "-worker", self, "-backend", "gcs", "-worker-name", "fenced")
	if code != exitValid {
		t.Fatalf("compare: exit %d\n%s\n%s", code, stdout, stderr)
	}
	if !strings.Contains(stdout, "| fenced | valid 1/1 |") {
		t.Errorf("the worker's row is missing:\n%s", stdout)
	}

	dir := filepath.Join(t.TempDir(), "ci")
	os.Mkdir(dir, 0o755)
	file, _ := json.Marshal(map[string]any{"locker": "fenced", "worker": []string{os.Args[0], "worker"}, "backend": "gcs",
		"duration": "1s", "recovery_timeout": "5s", "clients": 3})
	os.WriteFile(filepath.Join(dir, "fenced.json"), file, 0o644)
	// The planted defect runs in simulation, so its catch is the same on
	// every run; the worker, a process, runs live.
	os.WriteFile(filepath.Join(dir, "unsafe.json"), []byte(`{"locker": "mutant-silent-expiry", "sim": true, "ttl": "30ms", "keys": 1, "clients": 4, "rate": 0, "hold_min": "100ms", "hold_max": "150ms", "duration": "1s",
		"expect": {"verdict": "invalid", "reason": "planted: every hold outlives the 30 ms lease, which expires without a word"}}`), 0o644)
	code, stdout, stderr = verify(t, "suite", "-dir", dir, "-out", t.TempDir(), "-parallel", "1")
	if code != exitValid {
		t.Fatalf("suite -dir: exit %d\n%s\n%s", code, stdout, stderr)
	}
	for _, want := range []string{"suite ci", "ci/fenced", "ci/unsafe"} {
		if !strings.Contains(stdout+stderr, want) {
			t.Errorf("suite output does not say %q:\n%s\n%s", want, stdout, stderr)
		}
	}
}
