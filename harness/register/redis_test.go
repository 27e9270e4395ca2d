package register_test

import (
	"context"
	"errors"
	"testing"

	"github.com/lockcheck/lockcheck/backends/stores"
	"github.com/lockcheck/lockcheck/harness/register"

	"github.com/redis/go-redis/v9"

	"github.com/lockcheck/lockcheck/backends/redisserver"
)

func redisClient(t *testing.T, srv *redisserver.Server) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: srv.Addr(), Dialer: srv.Dial, MaxRetries: -1})
	t.Cleanup(func() { c.Close() })
	return c
}

func TestRedisEmbedded(t *testing.T) {
	srv, err := redisserver.StartEmbedded()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	c := redisClient(t, srv)
	runSuite(t, func(t *testing.T, fenced bool) register.Store { return stores.NewRedis(c, fenced) })
}

func TestRedisReal(t *testing.T) {
	srv, err := redisserver.StartReal(context.Background(), redisserver.Options{})
	if errors.Is(err, redisserver.ErrNoRedisServer) {
		t.Skipf("no real Redis (`make redis-server` installs it): %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	c := redisClient(t, srv)
	runSuite(t, func(t *testing.T, fenced bool) register.Store { return stores.NewRedis(c, fenced) })
}
