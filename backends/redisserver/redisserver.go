// Package redisserver starts Redis servers for tests and runs: an embedded
// one (miniredis) and a real redis-server process, both on loopback.
//
// Expiry is the point of every Redis lock, so both servers expire keys in
// real time. A real redis-server does so by itself. miniredis, by default,
// only ages keys when told (FastForward); this package turns on its
// ClockTTL mode, in which every command first ages all TTLs by the time
// elapsed since the previous command. Keys therefore vanish on the first
// access after their TTL, as a client sees them vanish on real Redis (which
// also expires lazily on access, plus a background sweep a client cannot
// observe). ClockTTL reads the wall clock without its monotonic part: a
// backward step of the system clock pauses expiry until the clock catches
// up, a forward step expires keys early. Inside a testing/synctest bubble
// the clock is the bubble's, so [NewInMemory] expires keys on virtual time.
//
// # Where the embedded server is not miniredis
//
// Pub/sub is this package's own (pubsub.go), served through miniredis's
// pre-command hook in place of miniredis's commands. miniredis hands each
// published message to a goroutine per subscriber, which writes it to the
// connection once it gets the connection's lock: after PUBLISH has
// returned, so possibly after the subscriber's reply to an UNSUBSCRIBE of
// that channel (Subscriber.Publish and monitorPublish in miniredis's
// pubsub.go, v2.40.0). redis-server never writes a message for a channel
// after its UNSUBSCRIBE reply, and a client that shares one subscriber
// connection between lock waits fails on such a message: ioredis, as
// tus-node-server's Redis locker uses it, throws "Command queue state
// error". Here PUBLISH writes each message into the subscriber's output
// before it answers, under the lock that SUBSCRIBE and UNSUBSCRIBE hold
// while they change a subscription and write their reply, as redis-server
// does; it starts no goroutine, the publisher's own writes the message.
//
// Having its own pub/sub, the embedded server also follows redis-server
// where miniredis does not: a message that matches several of a
// connection's patterns arrives once per pattern and counts each time;
// PUBSUB NUMPAT counts patterns, not subscriptions; patterns match as
// Redis's glob does (miniredis compiles them to regular expressions and
// panics on a range such as [d-b]); a subscribed RESP3 connection may run
// any command, PING answering PONG, and a message never lands inside the
// reply to one (miniredis may write it between two parts of a reply). Two
// things differ from redis-server: on a subscribed RESP3 connection,
// messages published while the connection's own command runs follow its
// reply (for a blocking command, once it returns); and SUBSCRIBE,
// UNSUBSCRIBE, PUBLISH and PUBSUB are refused inside MULTI, the EXEC then
// aborting, where redis-server would queue them. No locker here does
// either. TestConformance runs the same cases on both servers.
package redisserver

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/lockcheck/lockcheck/faults/netfault/memnet"
)

// ErrNoRedisServer is returned by [StartReal] when no redis-server binary
// can be found. Tests that need a real server skip on it.
var ErrNoRedisServer = errors.New("redis-server not found: install it with `make redis-server` or `apt-get install redis-server`, or name the binary in $LOCKCHECK_REDIS_SERVER")

// Bounds on starting and stopping a real server.
const (
	// readyWithin bounds the wait for a fresh redis-server to answer PING.
	readyWithin = 10 * time.Second
	// readyPoll is the pause between PING attempts while it starts.
	readyPoll = 20 * time.Millisecond
	// stopWithin is how long Close waits after SIGTERM before SIGKILL.
	stopWithin = 5 * time.Second
	// portTries bounds the restarts after losing a race for a free port.
	portTries = 3
)

// Server is a running Redis server: embedded, in memory, or a real process.
type Server struct {
	addr string
	mini *miniredis.Miniredis
	// inMemory servers have no listener; Dial is the only way in.
	inMemory bool
	ps       *pubsub // nil for a real server

	proc *process
}

// Embedded says the server is miniredis (on loopback or in memory), not a
// real redis-server.
func (s *Server) Embedded() bool { return s.mini != nil }

// Addr is the server's host:port on 127.0.0.1. An in-memory server has
// none and answers a placeholder that its Dial ignores.
func (s *Server) Addr() string { return s.addr }

// Dial connects to the server. It fits redis.Options.Dialer and
// lockers.Env.Dial. For an in-memory server it ignores network and addr
// and returns one end of a net.Pipe; otherwise it dials TCP to addr.
func (s *Server) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	if s.inMemory {
		client, server := memnet.Pipe()
		s.mini.Server().ServeConn(server)
		return client, nil
	}
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}

// Close stops the server. For a real server it sends SIGTERM to the
// server's process group, then SIGKILL after a bounded wait, and reaps the
// process before returning.
func (s *Server) Close() error {
	if s.mini != nil {
		s.mini.Close()
		return nil
	}
	return s.proc.stop()
}

// StartEmbedded starts miniredis on 127.0.0.1 with a port the kernel
// chooses, with keys expiring in real time (see the package doc).
func StartEmbedded() (*Server, error) {
	m := miniredis.NewMiniRedis()
	m.ClockTTL(true)
	if err := m.StartAddr("127.0.0.1:0"); err != nil {
		return nil, fmt.Errorf("redisserver: start miniredis: %w", err)
	}
	// Before Addr is known to any client, so every connection gets it.
	ps := servePubsub(m.Server())
	return &Server{addr: m.Addr(), mini: m, ps: ps}, nil
}

// NewInMemory makes a miniredis with no listener: every connection is a
// net.Pipe made by [Server.Dial]. It touches no socket, so it works inside
// a testing/synctest bubble, where its keys expire on the bubble's clock.
func NewInMemory() *Server { return NewInMemoryAt("in-memory:0") }

// NewInMemoryAt is NewInMemory with addr as its address, so that several
// in-memory servers of one run can be told apart by the address a locker
// dials.
func NewInMemoryAt(addr string) *Server {
	m := miniredis.NewMiniRedis()
	m.ClockTTL(true)
	// Its first Dial starts the server; connections are then served
	// over pipes with a socket's buffer (memnet.Pipe), on which a
	// publish to a paused subscriber does not wait.
	if c, err := m.Dial(); err == nil {
		c.Close()
	}
	ps := servePubsub(m.Server())
	return &Server{addr: addr, mini: m, inMemory: true, ps: ps}
}

// Options configures [StartReal].
type Options struct {
	// Binary is the redis-server to run. Empty means $LOCKCHECK_REDIS_SERVER,
	// then redis-server on $PATH.
	Binary string

	_ struct{}
}

// StartReal runs a redis-server bound to 127.0.0.1 on a free port, without
// persistence, in its own process group, and returns once it answers PING.
// The server is killed when the calling process dies (Linux parent-death
// signal), so a crashed test leaves no server behind; Close stops it
// otherwise. A missing binary gives an error wrapping [ErrNoRedisServer].
func StartReal(ctx context.Context, opts Options) (*Server, error) {
	bin, err := binary(opts.Binary)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "lockcheck-redis-")
	if err != nil {
		return nil, fmt.Errorf("redisserver: %w", err)
	}
	var lastErr error
	for range portTries {
		port, err := freePort()
		if err != nil {
			lastErr = err
			continue
		}
		p, err := startProcess(ctx, bin, dir, port)
		if err == nil {
			return &Server{addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), proc: p}, nil
		}
		lastErr = err
		if ctx.Err() != nil {
			break
		}
	}
	os.RemoveAll(dir)
	return nil, lastErr
}

func binary(name string) (string, error) {
	if name == "" {
		name = os.Getenv("LOCKCHECK_REDIS_SERVER")
	}
	if name == "" {
		name = "redis-server"
	}
	path, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("redisserver: %q: %w", name, ErrNoRedisServer)
	}
	return path, nil
}

// freePort asks the kernel for a free port. Another process may take it
// before redis-server binds it; StartReal then tries another.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("redisserver: find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// process is a running redis-server and what it takes to stop it.
type process struct {
	cmd    *exec.Cmd
	dir    string
	output *syncBuffer
	exited chan struct{} // closed once cmd.Wait has returned
	err    error         // cmd.Wait's result, set before exited closes

	once    sync.Once
	stopErr error
}

func startProcess(ctx context.Context, bin, dir string, port int) (*process, error) {
	cmd := exec.Command(bin,
		"--bind", "127.0.0.1",
		"--port", strconv.Itoa(port),
		"--save", "",
		"--appendonly", "no",
		"--dir", dir,
		"--daemonize", "no",
		"--loglevel", "warning",
	)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("redisserver: start %s: %w", bin, err)
	}
	p := &process{cmd: cmd, dir: dir, output: out, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	if err := p.waitReady(ctx, addr); err != nil {
		p.kill()
		return nil, err
	}
	return p, nil
}

// waitReady pings addr until the server answers, exits, or readyWithin
// passes.
func (p *process) waitReady(ctx context.Context, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, readyWithin)
	defer cancel()
	for {
		if err := ping(ctx, addr); err == nil {
			return nil
		}
		select {
		case <-p.exited:
			return fmt.Errorf("redisserver: redis-server on %s exited before answering PING (%v): %s", addr, p.err, p.output.tail())
		case <-ctx.Done():
			return fmt.Errorf("redisserver: redis-server on %s did not answer PING: %w; output: %s", addr, ctx.Err(), p.output.tail())
		case <-time.After(readyPoll):
		}
	}
}

func ping(ctx context.Context, addr string) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if strings.TrimSpace(line) != "+PONG" {
		return fmt.Errorf("PING answered %q", line)
	}
	return nil
}

// stop sends SIGTERM to the process group, then SIGKILL if it has not
// exited within stopWithin, and waits until it is reaped.
func (p *process) stop() error {
	p.once.Do(func() {
		pgid := p.cmd.Process.Pid
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(stopWithin):
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			<-p.exited
			p.stopErr = fmt.Errorf("redisserver: redis-server ignored SIGTERM for %v and was killed", stopWithin)
		}
		os.RemoveAll(p.dir)
	})
	return p.stopErr
}

// kill ends a server that never became ready.
func (p *process) kill() {
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.exited
}

// syncBuffer collects a process's output, which exec copies from its own
// goroutine.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.buf.Len() > 64<<10 {
		return len(p), nil // enough to explain a failure
	}
	return b.buf.Write(p)
}

func (b *syncBuffer) tail() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := strings.TrimSpace(b.buf.String())
	if len(s) > 2000 {
		s = "…" + s[len(s)-2000:]
	}
	return s
}
