package redis_test

import (
	"bytes"
	"context"
	"net"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// instantConn is a server that answers every write at once with reply:
// what is left of a command's cost is the client library's own.
type instantConn struct {
	reply   []byte
	pending bytes.Buffer
}

func (c *instantConn) Write(p []byte) (int, error) {
	if bytes.Contains(p, []byte("\r\nhello\r\n")) {
		// The connection's handshake: an old server's answer, after which
		// go-redis goes on with RESP2 and no more set-up.
		c.pending.WriteString("-ERR unknown command 'hello'\r\n")
		return len(p), nil
	}
	c.pending.Write(c.reply)
	return len(p), nil
}
func (c *instantConn) Read(p []byte) (int, error)       { return c.pending.Read(p) }
func (c *instantConn) Close() error                     { return nil }
func (c *instantConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *instantConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *instantConn) SetDeadline(time.Time) error      { return nil }
func (c *instantConn) SetReadDeadline(time.Time) error  { return nil }
func (c *instantConn) SetWriteDeadline(time.Time) error { return nil }

// BenchmarkClientFloor is the CPU go-redis spends on each command the
// locker sends in its retry loop, configured as the locker configures it,
// with the server's reply costing nothing: times BenchmarkSim's
// round-trips/seed, it bounds the seeds per second any in-memory Redis
// could give.
func BenchmarkClientFloor(b *testing.B) {
	ctx := context.Background()
	for _, c := range []struct {
		name  string
		reply string
		args  []any
	}{
		{"set-nx-px-won", "+OK\r\n", []any{"set", "lock:k0", "0123456789abcdef", "PX", 3000, "NX"}},
		{"set-nx-px-held", "$-1\r\n", []any{"set", "lock:k0", "0123456789abcdef", "PX", 3000, "NX"}},
		{"publish", ":1\r\n", []any{"publish", "lock:release:k0", "if you aint gonna play pass the controller"}},
	} {
		b.Run(c.name, func(b *testing.B) {
			client := goredis.NewClient(&goredis.Options{
				Addr: "redis.invalid:6379",
				Dialer: func(context.Context, string, string) (net.Conn, error) {
					return &instantConn{reply: []byte(c.reply)}, nil
				},
				Protocol: 2, DisableIdentity: true,
				MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
				ReadTimeout:              -1, WriteTimeout: -1, ContextTimeoutEnabled: true, MaxRetries: -1,
			})
			defer client.Close()
			b.ReportAllocs()
			for b.Loop() {
				if err := client.Do(ctx, c.args...).Err(); err != nil && err != goredis.Nil {
					b.Fatal(err)
				}
			}
		})
	}
}
