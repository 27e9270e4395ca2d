package memnet

import (
	"io"
	"net"
	"os"
	"sync"
	"time"
)

// Pipe is an in-memory connection with a buffer each way: a write returns
// once its bytes are queued (up to pipeBuffer bytes ahead of the reader),
// instead of waiting for the reader as a net.Pipe does. A server that
// writes while holding a lock (miniredis publishing to a subscriber) then
// does not wait on a paused client, which redis-server, with its output
// buffer per client, never does either. Every wait is on
// a channel or a timer, so goroutines waiting here are durably blocked in
// a testing/synctest bubble.
func Pipe() (net.Conn, net.Conn) {
	ab, ba := newHalf(), newHalf()
	closed := make(chan struct{})
	var once sync.Once
	shut := func() { once.Do(func() { close(closed) }) }
	a := &pipeConn{in: ba, out: ab, closed: closed, shut: shut, local: pipeAddr("a"), remote: pipeAddr("b")}
	b := &pipeConn{in: ab, out: ba, closed: closed, shut: shut, local: pipeAddr("b"), remote: pipeAddr("a")}
	a.readDeadline, a.writeDeadline = newDeadline(), newDeadline()
	b.readDeadline, b.writeDeadline = newDeadline(), newDeadline()
	return a, b
}

// pipeBuffer is how many unread bytes a direction holds before a write
// waits: a socket's buffer and a server's output buffer together.
// redis-server keeps up to 8 MiB for a pub/sub subscriber that does not
// read (client-output-buffer-limit pubsub, its soft limit) before it
// drops the client; a subscriber paused for a few leases gets far less.
// A count of writes instead (1024 once) filled up under a paused
// subscriber, and miniredis's publish then waited holding its lock.
const pipeBuffer = 8 << 20

// half is one direction: a queue of written chunks, with tokens that wake
// its one reader and its one writer. The mutex is held only to move a
// chunk; every wait is on a channel, so a goroutine waiting here is
// durably blocked in a testing/synctest bubble.
type half struct {
	mu       sync.Mutex
	chunks   [][]byte
	bytes    int
	readable chan struct{} // a token after a push
	writable chan struct{} // a token after a pop
}

func newHalf() *half {
	return &half{readable: make(chan struct{}, 1), writable: make(chan struct{}, 1)}
}

// push queues chunk unless the buffer is full; a chunk larger than the
// whole buffer goes in once the buffer is empty.
func (h *half) push(chunk []byte) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.bytes > 0 && h.bytes+len(chunk) > pipeBuffer {
		return false
	}
	h.chunks = append(h.chunks, chunk)
	h.bytes += len(chunk)
	token(h.readable)
	return true
}

func (h *half) pop() ([]byte, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.chunks) == 0 {
		return nil, false
	}
	chunk := h.chunks[0]
	h.chunks[0] = nil
	h.chunks = h.chunks[1:]
	h.bytes -= len(chunk)
	token(h.writable)
	return chunk, true
}

// token leaves a wake-up in ch unless one is there already.
func token(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

type pipeConn struct {
	in, out       *half
	closed        chan struct{}
	shut          func()
	mu            sync.Mutex // guards rest, the unread end of a chunk
	rest          []byte
	readDeadline  *deadline
	writeDeadline *deadline
	local, remote pipeAddr
}

func (c *pipeConn) Read(b []byte) (int, error) {
	c.mu.Lock()
	if len(c.rest) > 0 {
		n := copy(b, c.rest)
		c.rest = c.rest[n:]
		c.mu.Unlock()
		return n, nil
	}
	c.mu.Unlock()
	take := func(chunk []byte) (int, error) {
		n := copy(b, chunk)
		c.mu.Lock()
		c.rest = chunk[n:]
		c.mu.Unlock()
		return n, nil
	}
	// Each wake-up is a push, a close or the deadline; a token left from
	// a chunk already taken sends the loop round once more.
	for {
		if chunk, ok := c.in.pop(); ok {
			return take(chunk)
		}
		select {
		case <-c.in.readable:
		case <-c.closed:
			// Bytes already written are read before a close is seen,
			// as on a socket.
			if chunk, ok := c.in.pop(); ok {
				return take(chunk)
			}
			return 0, io.EOF
		case <-c.readDeadline.wait():
			return 0, os.ErrDeadlineExceeded
		}
	}
}

func (c *pipeConn) Write(b []byte) (int, error) {
	select {
	case <-c.closed:
		return 0, io.ErrClosedPipe
	default:
	}
	chunk := append([]byte(nil), b...)
	for !c.out.push(chunk) {
		select {
		case <-c.out.writable:
		case <-c.closed:
			return 0, io.ErrClosedPipe
		case <-c.writeDeadline.wait():
			return 0, os.ErrDeadlineExceeded
		}
	}
	return len(b), nil
}

func (c *pipeConn) Close() error {
	c.shut()
	return nil
}

func (c *pipeConn) LocalAddr() net.Addr  { return c.local }
func (c *pipeConn) RemoteAddr() net.Addr { return c.remote }

func (c *pipeConn) SetDeadline(t time.Time) error {
	c.readDeadline.set(t)
	c.writeDeadline.set(t)
	return nil
}
func (c *pipeConn) SetReadDeadline(t time.Time) error  { c.readDeadline.set(t); return nil }
func (c *pipeConn) SetWriteDeadline(t time.Time) error { c.writeDeadline.set(t); return nil }

type pipeAddr string

func (a pipeAddr) Network() string { return "memnet" }
func (a pipeAddr) String() string  { return "memnet:" + string(a) }

// deadline is a settable deadline whose expiry is a closed channel.
type deadline struct {
	mu      sync.Mutex
	timer   *time.Timer
	expired chan struct{}
}

func newDeadline() *deadline { return &deadline{expired: make(chan struct{})} }

func (d *deadline) set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.timer != nil && !d.timer.Stop() {
		// It fired: a new deadline needs a fresh channel.
		d.expired = make(chan struct{})
	}
	d.timer = nil
	select {
	case <-d.expired:
		d.expired = make(chan struct{})
	default:
	}
	if t.IsZero() {
		return
	}
	wait := time.Until(t)
	if wait <= 0 {
		close(d.expired)
		return
	}
	ch := d.expired
	d.timer = time.AfterFunc(wait, func() { close(ch) })
}

func (d *deadline) wait() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.expired
}
