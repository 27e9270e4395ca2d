package harness

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/lockcheck/lockcheck/faults"
	"github.com/lockcheck/lockcheck/faults/netfault"
	"github.com/lockcheck/lockcheck/faults/netfault/proxies"
)

func TestNetworkFaultOnAnInProcessLockerIsRefused(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, "partition")
	_, err := Run(t.Context(), cfg)
	if err == nil || !contains(err.Error(), "acts on the network, and locker test has none") {
		t.Fatalf("err = %v", err)
	}
	if _, statErr := os.Stat(cfg.Dir); !os.IsNotExist(statErr) {
		t.Errorf("a refused run left %s behind (%v)", cfg.Dir, statErr)
	}
}

// A Redis client's connections go through its own proxy in front of the
// server it asked for, and its gate: a partition of that client's path to
// one of redlock's servers stops its bytes there and no other client's.
func TestRawDialsGoThroughTheClientsProxy(t *testing.T) {
	t.Parallel()
	var ups []string
	accepted := make(chan net.Conn, 8)
	for range 3 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				accepted <- c
			}
		}()
		ups = append(ups, ln.Addr().String())
	}
	r := &run{cfg: Config{Clients: 2, Proxy: true}}
	target := faults.Target{}
	inst := &Instance{Upstreams: ups, Network: func(ctx context.Context, ups []string, clients int) (Plane, error) {
		return proxies.StartGroup(ctx, ups, clients)
	}}
	if err := r.attachNetwork(context.Background(), inst, &target); err != nil {
		t.Fatal(err)
	}
	defer r.closeNetwork()
	roundTrip := func(slot, backend int, wait time.Duration) error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		conn, err := r.dialerFor(slot, newGate())(ctx, "tcp", ups[backend])
		if err != nil {
			return err
		}
		defer conn.Close()
		if _, err := conn.Write([]byte("PING")); err != nil {
			return err
		}
		var server net.Conn
		select {
		case server = <-accepted:
		case <-ctx.Done():
			return ctx.Err()
		}
		defer server.Close()
		if remote := server.RemoteAddr().String(); remote == conn.LocalAddr().String() {
			return fmt.Errorf("backend %d saw the client itself (%s), not its proxy", backend, remote)
		}
		server.SetReadDeadline(time.Now().Add(wait))
		buf := make([]byte, 4)
		if _, err := io.ReadFull(server, buf); err != nil {
			return err
		}
		return nil
	}
	for b := range 3 {
		if err := roundTrip(0, b, 5*time.Second); err != nil {
			t.Fatalf("client 0 to backend %d: %v", b, err)
		}
	}
	minority, err := r.plane.(netfault.BackendGroup).Backends([]int{1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := minority.Partition([]int{0}, netfault.Both); err != nil {
		t.Fatal(err)
	}
	if err := roundTrip(0, 1, 300*time.Millisecond); err == nil {
		t.Fatal("client 0's bytes reached backend 1 through a partition")
	}
	if err := roundTrip(0, 2, 5*time.Second); err != nil {
		t.Fatalf("client 0 to backend 2, not partitioned: %v", err)
	}
	if err := roundTrip(1, 1, 5*time.Second); err != nil {
		t.Fatalf("client 1 to backend 1, not partitioned: %v", err)
	}
}
