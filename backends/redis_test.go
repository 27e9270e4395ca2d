package backends

import (
	"errors"
	"net"
	"testing"
	"time"

	"github.com/lockcheck/lockcheck/backends/redisserver"
	"github.com/lockcheck/lockcheck/harness"
)

// Backend redis-server starts a real server per server the locker talks
// to, and the instance's Close stops them.
func TestRedisServerBackendStartsAndStopsRealServers(t *testing.T) {
	inst, err := Redis(3, nil)(t.Context(), harness.Params{Backend: harness.BackendRedisServer})
	if errors.Is(err, redisserver.ErrNoRedisServer) {
		t.Skipf("no real Redis (`make redis-server` installs it): %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if len(inst.Upstreams) != 3 || len(inst.Attach.Redis) != 3 {
		inst.Close()
		t.Fatalf("%d upstreams, %d to attach to, want 3 each", len(inst.Upstreams), len(inst.Attach.Redis))
	}
	for _, a := range inst.Upstreams {
		c, err := net.DialTimeout("tcp", a, time.Second)
		if err != nil {
			inst.Close()
			t.Fatalf("server %s: %v", a, err)
		}
		c.Close()
	}
	inst.Close()
	for _, a := range inst.Upstreams {
		if c, err := net.DialTimeout("tcp", a, time.Second); err == nil {
			c.Close()
			t.Errorf("server %s still accepts connections after Close", a)
		}
	}
}

func TestAnUnknownBackendIsRefused(t *testing.T) {
	if _, err := Redis(1, nil)(t.Context(), harness.Params{Backend: "etcd"}); err == nil {
		t.Error("a Redis locker accepted backend etcd")
	}
	if _, err := External("etcd")(t.Context(), harness.Params{}); err == nil {
		t.Error("an external worker accepted backend etcd")
	}
}
