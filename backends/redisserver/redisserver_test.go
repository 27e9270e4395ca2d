package redisserver

import (
	"context"
	"errors"
	"strings"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

const compareAndDelete = `if redis.call("get", KEYS[1]) == ARGV[1] then return redis.call("del", KEYS[1]) else return 0 end`

// servers starts each kind of server that listens on loopback; the real one
// is skipped when redis-server is missing.
func servers(t *testing.T) map[string]*Server {
	t.Helper()
	all := map[string]*Server{}
	emb, err := StartEmbedded()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { emb.Close() })
	all["embedded"] = emb
	real, err := StartReal(context.Background(), Options{})
	switch {
	case errors.Is(err, ErrNoRedisServer):
		t.Logf("real server not tested: %v", err)
	case err != nil:
		t.Fatal(err)
	default:
		t.Cleanup(func() { real.Close() })
		all["real"] = real
	}
	return all
}

func client(t *testing.T, s *Server) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: s.Addr(), Dialer: s.Dial})
	t.Cleanup(func() { c.Close() })
	return c
}

func TestCommandsLockersNeed(t *testing.T) {
	for name, s := range servers(t) {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			c := client(t, s)

			if ok, err := c.SetNX(ctx, "k", "a", time.Minute).Result(); err != nil || !ok {
				t.Fatalf("SET NX PX on a free key: %v, %v", ok, err)
			}
			if ok, err := c.SetNX(ctx, "k", "b", time.Minute).Result(); err != nil || ok {
				t.Fatalf("SET NX PX on a held key: %v, %v; want false", ok, err)
			}
			if n, err := c.Eval(ctx, compareAndDelete, []string{"k"}, "b").Int(); err != nil || n != 0 {
				t.Fatalf("compare-and-delete with a stranger's token: %d, %v; want 0", n, err)
			}
			if n, err := c.Eval(ctx, compareAndDelete, []string{"k"}, "a").Int(); err != nil || n != 1 {
				t.Fatalf("compare-and-delete with the owner's token: %d, %v; want 1", n, err)
			}
			if n, err := c.Exists(ctx, "k").Result(); err != nil || n != 0 {
				t.Fatalf("key still there after its owner deleted it: %d, %v", n, err)
			}

			sub := c.Subscribe(ctx, "ch")
			defer sub.Close()
			if _, err := sub.Receive(ctx); err != nil { // the subscription confirmation
				t.Fatal(err)
			}
			if n, err := c.Publish(ctx, "other", "x").Result(); err != nil || n != 0 {
				t.Fatalf("PUBLISH to a channel nobody listens on reached %d, %v", n, err)
			}
			if n, err := c.Publish(ctx, "ch", "hello").Result(); err != nil || n != 1 {
				t.Fatalf("PUBLISH reached %d subscribers, %v; want 1", n, err)
			}
			msg, err := sub.ReceiveMessage(ctx)
			if err != nil || msg.Channel != "ch" || msg.Payload != "hello" {
				t.Fatalf("received %+v, %v", msg, err)
			}
		})
	}
}

// TestExpiryInRealTime: a PX key lives its TTL and no more, on the wall
// clock, with nobody calling FastForward.
func TestExpiryInRealTime(t *testing.T) {
	const ttl = 300 * time.Millisecond
	for name, s := range servers(t) {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			c := client(t, s)
			start := time.Now()
			if err := c.Set(ctx, "k", "v", ttl).Err(); err != nil {
				t.Fatal(err)
			}
			var gone time.Duration
			for tries := 0; ; tries++ {
				n, err := c.Exists(ctx, "k").Result()
				if err != nil {
					t.Fatal(err)
				}
				if n == 0 {
					gone = time.Since(start)
					break
				}
				if tries > 5000 || ctx.Err() != nil {
					t.Fatalf("key with PX %v still there after %v", ttl, time.Since(start))
				}
				time.Sleep(5 * time.Millisecond) // polling a condition, bounded above
			}
			// Redis rounds nothing away from PX; a few ms of slack cover
			// the wall clock ClockTTL reads against our monotonic one.
			if gone < ttl-20*time.Millisecond {
				t.Errorf("key with PX %v gone after only %v", ttl, gone)
			}
			// Generous: this shows keys expire on their own in real
			// time, not how promptly on a loaded machine.
			if gone > ttl+20*time.Second {
				t.Errorf("key with PX %v lived %v", ttl, gone)
			}
		})
	}
}

// TestInMemoryExpiresOnBubbleClock: the in-memory server works inside a
// synctest bubble and ages keys on its virtual clock.
func TestInMemoryExpiresOnBubbleClock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := NewInMemory()
		defer s.Close()
		// No maintenance notifications: the client would look "in-memory"
		// up in DNS from inside the bubble, and the resolver's channel
		// then trips the next bubble.
		c := redis.NewClient(&redis.Options{Addr: s.Addr(), Dialer: s.Dial, MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}})
		defer c.Close()
		ctx := context.Background()
		if ok, err := c.SetNX(ctx, "k", "v", 30*time.Second).Result(); err != nil || !ok {
			t.Fatalf("SET NX PX: %v, %v", ok, err)
		}
		time.Sleep(30*time.Second - time.Millisecond)
		if n, err := c.Exists(ctx, "k").Result(); err != nil || n != 1 {
			t.Fatalf("1 ms before its TTL the key is gone: %d, %v", n, err)
		}
		time.Sleep(time.Millisecond)
		if n, err := c.Exists(ctx, "k").Result(); err != nil || n != 0 {
			t.Fatalf("at its TTL the key is still there: %d, %v", n, err)
		}
	})
}

func TestCloseReapsRealServer(t *testing.T) {
	s, err := StartReal(context.Background(), Options{})
	if errors.Is(err, ErrNoRedisServer) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	pid := s.proc.cmd.Process.Pid
	if err := syscall.Kill(pid, 0); err != nil {
		t.Fatalf("redis-server pid %d not running before Close: %v", pid, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// ESRCH, not success: a zombie would still answer signal 0.
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("after Close, signal 0 to pid %d gave %v; want ESRCH", pid, err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if ping(context.Background(), s.Addr()) == nil {
		t.Errorf("something still answers PING on %s after Close", s.Addr())
	}
}

func TestMissingBinary(t *testing.T) {
	t.Run("option", func(t *testing.T) {
		_, err := StartReal(context.Background(), Options{Binary: "/nonexistent/redis-server"})
		if !errors.Is(err, ErrNoRedisServer) {
			t.Fatalf("got %v; want ErrNoRedisServer", err)
		}
		for _, hint := range []string{"make redis-server", "apt-get install redis-server", "/nonexistent/redis-server"} {
			if !strings.Contains(err.Error(), hint) {
				t.Errorf("error %q does not mention %q", err, hint)
			}
		}
	})
	t.Run("env", func(t *testing.T) {
		t.Setenv("LOCKCHECK_REDIS_SERVER", "/nonexistent/from-env")
		_, err := StartReal(context.Background(), Options{})
		if !errors.Is(err, ErrNoRedisServer) || !strings.Contains(err.Error(), "/nonexistent/from-env") {
			t.Fatalf("got %v; want ErrNoRedisServer naming the env binary", err)
		}
	})
}
