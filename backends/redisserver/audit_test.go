package redisserver

import (
	"bufio"
	"context"
	"reflect"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// auditLog collects what an audited server reports.
type auditLog struct {
	mu     sync.Mutex
	writes []Write
}

func (l *auditLog) add(w Write) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.writes = append(l.writes, w)
}

// take returns the writes reported since the last take.
func (l *auditLog) take() []Write {
	l.mu.Lock()
	defer l.mu.Unlock()
	w := l.writes
	l.writes = nil
	return w
}

// namedClient dials s as client n (-1: unnamed), speaking raw RESP.
func namedClient(t *testing.T, s *Server, n int) *respConn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	conn, err := s.Dial(ctx, "tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	if n >= 0 {
		conn = NameConn(conn, n)
	}
	c := &respConn{t: t, conn: conn, r: bufio.NewReader(conn)}
	t.Cleanup(c.close)
	return c
}

func expectWrites(t *testing.T, log *auditLog, step string, want ...Write) {
	t.Helper()
	if got := log.take(); !reflect.DeepEqual(got, want) {
		t.Errorf("%s: audit saw %+v; want %+v", step, got, want)
	}
}

// auditSteps run the same steps on the embedded server over loopback and
// on the in-memory one: the writes a lock's life makes, each with its
// writer, and the commands that write nothing.
func auditSteps(t *testing.T, s *Server, log *auditLog) {
	a, b, anon := namedClient(t, s, 0), namedClient(t, s, 1), namedClient(t, s, -1)

	// The name is no command the client sees: its first reply is PONG.
	a.expect(simple("PONG"), "PING")
	expectWrites(t, log, "PING")

	a.expect(simple("OK"), "SET", "lock", "a", "NX", "PX", "60000")
	expectWrites(t, log, "a's SET NX", Write{Key: "lock", Op: "write", Client: 0, Before: 0, After: 1})

	b.expect(nil, "SET", "lock", "b", "NX", "PX", "60000")
	b.expect(int64(0), "EVAL", compareAndDelete, "1", "lock", "b")
	b.expect("a", "GET", "lock")
	expectWrites(t, log, "b's failed SET NX, its owner-checked delete of a's lock, a read")

	b.expect(int64(1), "PEXPIRE", "lock", "120000")
	expectWrites(t, log, "b's PEXPIRE of a's lock", Write{Key: "lock", Op: "update", Client: 1, Before: 1, After: 1})

	a.expect(int64(1), "EVAL", `if redis.call("get", KEYS[1]) == ARGV[1] then return redis.call("pexpire", KEYS[1], ARGV[2]) else return 0 end`, "1", "lock", "a", "60000")
	expectWrites(t, log, "a's owner-checked extend", Write{Key: "lock", Op: "update", Client: 0, Before: 1, After: 1})

	anon.expect(int64(1), "DEL", "lock")
	expectWrites(t, log, "an unnamed DEL", Write{Key: "lock", Op: "delete", Client: -1, Before: 1, After: 0})

	b.expect(simple("OK"), "MULTI")
	b.expect(simple("QUEUED"), "SET", "lock", "b")
	b.expect(simple("QUEUED"), "SET", "other", "x")
	expectWrites(t, log, "commands queued in MULTI")
	b.expect([]any{simple("OK"), simple("OK")}, "EXEC")
	expectWrites(t, log, "EXEC",
		Write{Key: "lock", Op: "write", Client: 1, Before: 0, After: 2},
		Write{Key: "other", Op: "write", Client: 1, Before: 0, After: 3})

	a.expect(simple("OK"), "SET", "lock", "a")
	expectWrites(t, log, "a's SET over b's value", Write{Key: "lock", Op: "write", Client: 0, Before: 2, After: 4})
}

// audited turns on s's audit and returns what it will report.
func audited(s *Server) *auditLog {
	log := &auditLog{}
	s.Audit(log.add)
	return log
}

func TestAudit(t *testing.T) {
	t.Run("embedded", func(t *testing.T) {
		s, err := StartEmbedded()
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		auditSteps(t, s, audited(s))
	})
	t.Run("in-memory", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			s := NewInMemory()
			defer s.Close()
			auditSteps(t, s, audited(s))
		})
	})
}

// An expired key is no value a later write acts on: the lock another
// client takes after the lease ran out is a new one (Before 0), and the
// key's disappearance is nobody's delete.
func TestAuditExpiryIsNoWrite(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := NewInMemory()
		defer s.Close()
		log := audited(s)
		a, b := namedClient(t, s, 0), namedClient(t, s, 1)

		a.expect(simple("OK"), "SET", "lock", "a", "NX", "PX", "1000")
		expectWrites(t, log, "a's SET NX", Write{Key: "lock", Op: "write", Client: 0, Before: 0, After: 1})
		time.Sleep(time.Second)
		b.expect(simple("OK"), "SET", "lock", "b", "NX", "PX", "1000")
		expectWrites(t, log, "b's SET NX after a's lease", Write{Key: "lock", Op: "write", Client: 1, Before: 0, After: 2})
		time.Sleep(time.Second)
		b.expect(int64(0), "DEL", "lock")
		expectWrites(t, log, "b's DEL of its expired lock")
	})
}

// A real redis-server has no audit: Audit leaves it as it is.
func TestAuditLeavesRealServerAlone(t *testing.T) {
	s := &Server{}
	s.Audit(func(Write) { t.Error("a server with no pub/sub layer reported a write") })
	if s.ps != nil {
		t.Fatal("Audit gave a real server an audit layer")
	}
}
