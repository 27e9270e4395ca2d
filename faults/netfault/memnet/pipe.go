package memnet

import (
	"io"
	"net"
	"os"
	"sync"
	"time"
)

// Pipe is an in-memory connection with a socket's buffer each way: a
// write returns once its bytes are queued (up to pipeChunks writes ahead
// of the reader), as with a kernel's socket buffer, instead of waiting
// for the reader as a net.Pipe does. A server that writes while holding
// a lock (miniredis publishing to a subscriber) then does not wait on a
// paused client, which no real socket would make it do. Every wait is on
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

// pipeChunks is how many writes a direction holds unread: far more than
// a request or reply of the register and lock protocols needs.
const pipeChunks = 1024

type half struct{ ch chan []byte }

func newHalf() *half { return &half{ch: make(chan []byte, pipeChunks)} }

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
	// Bytes already written are read before a close is seen, as on a
	// socket; a select with both ready would pick at random.
	select {
	case chunk := <-c.in.ch:
		return take(chunk)
	default:
	}
	select {
	case chunk := <-c.in.ch:
		return take(chunk)
	case <-c.closed:
		return 0, io.EOF
	case <-c.readDeadline.wait():
		return 0, os.ErrDeadlineExceeded
	}
}

func (c *pipeConn) Write(b []byte) (int, error) {
	select {
	case <-c.closed:
		return 0, io.ErrClosedPipe
	default:
	}
	chunk := append([]byte(nil), b...)
	select {
	case c.out.ch <- chunk:
		return len(b), nil
	case <-c.closed:
		return 0, io.ErrClosedPipe
	case <-c.writeDeadline.wait():
		return 0, os.ErrDeadlineExceeded
	}
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
