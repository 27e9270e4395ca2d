package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/lockcheck/lockcheck/history"
)

// The Node worker runs tus-node-server PR #846's ioredis locker on the
// embedded Redis: each worker's one subscriber connection subscribes and
// unsubscribes per lock, and waiters publish release requests. Only what
// holds on a loaded machine is asserted: the worker keeps to the
// protocol and the run recorded acquisitions. The verdict and the
// release-request figures depend on scheduling, so they are not.
//
// ioredis reports a message written after the UNSUBSCRIBE reply that ends
// subscriber mode as "Command queue state error", which the locker logs
// and the harness passes on. A server that writes such messages shows it
// in about one run in three of this size, so a pass proves nothing about
// the ordering (redisserver's TestConformance does); a failure is a real
// regression.
func TestNodeWorkerRunsTus846RedisLocker(t *testing.T) {
	t.Parallel()
	out := t.TempDir()
	code, stdout, stderr := verify(t, "run", "-q", "-out", out, "-worker", nodeWorker(t, "tus846-redis.js"), "-backend", "redis",
		"-workload", "request-release", "-time-scale", "0.1", "-clients", "8", "-keys", "1", "-duration", "3s",
		"-recovery-timeout", "5s", "-seed", "1")
	output := stdout + stderr
	if code == exitCouldNot || strings.Contains(output, "broke the protocol") {
		t.Fatalf("the worker did not run to the end of the protocol: exit %d\n%s\n%s", code, stdout, stderr)
	}
	if strings.Contains(output, "Command queue state error") {
		t.Errorf("ioredis met a reply it could not match to a command on the embedded Redis:\n%s\n%s", stdout, stderr)
	}
	dirs, _ := filepath.Glob(filepath.Join(out, "*-worker-s1"))
	if len(dirs) != 1 {
		t.Fatalf("run directories %v, want one\n%s\n%s", dirs, stdout, stderr)
	}
	h, err := history.ReadFile(filepath.Join(dirs[0], "history.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	acquired := 0
	for _, e := range h.Events {
		if e.F == history.Acquire && e.Type == history.OK {
			acquired++
		}
	}
	if acquired == 0 {
		t.Fatalf("the history records no acquisition: exit %d\n%s\n%s", code, stdout, stderr)
	}
}
