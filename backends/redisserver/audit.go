package redisserver

import (
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/alicebob/miniredis/v2"
)

// Write is one write the embedded server accepted: what a backend audit
// checks against who held a lock at the time. Redis keys have no
// generation, so the server numbers each value a key takes (a SET that
// creates or changes it); a delete ends the number, and so does expiry.
type Write struct {
	Key string
	// Op is "write" (a new value), "update" (the same value, a new
	// expiry: an extend) or "delete".
	Op string
	// Client is the writer the connection named (NameConn), -1 when it
	// named none.
	Client int
	// Before is the number of the value the write acted on, 0 when the
	// key did not exist (or may have expired just before the write);
	// After is the number of the value it left, 0 when none.
	Before, After int64
}

// nameCommand is the command NameConn sends first on a connection. The
// embedded server takes it as the connection's writer and answers
// nothing, so the client never sees it; a real redis-server would answer
// an error, which is why only connections to an embedded server are
// named.
const nameCommand = "LOCKCHECK.WRITER"

// NameConn names client as the writer of every command sent on c, for the
// audit of an embedded server (Server.Audit): the name goes ahead of the
// first bytes the client writes.
func NameConn(c net.Conn, client int) net.Conn {
	id := strconv.Itoa(client)
	prefix := "*2\r\n$" + strconv.Itoa(len(nameCommand)) + "\r\n" + nameCommand + "\r\n$" + strconv.Itoa(len(id)) + "\r\n" + id + "\r\n"
	return &namedConn{Conn: c, prefix: []byte(prefix)}
}

type namedConn struct {
	net.Conn
	once   sync.Once
	prefix []byte
}

func (c *namedConn) Write(b []byte) (int, error) {
	sent := false
	var n int
	var err error
	c.once.Do(func() {
		sent = true
		n, err = c.Conn.Write(append(c.prefix[:len(c.prefix):len(c.prefix)], b...))
		n = max(0, n-len(c.prefix))
	})
	if sent {
		return n, err
	}
	return c.Conn.Write(b)
}

// Audit has the server report every write it accepts to onWrite, with the
// writer its connection named (NameConn). Call it before any client
// connects; only the embedded and in-memory servers audit (a real
// redis-server runs scripts where nothing outside can see their effect).
//
// A write is what a command did to the keys it names (the key of SET,
// DEL, PEXPIRE and the like; KEYS of EVAL; the queued commands' keys at
// EXEC), seen by comparing each key before and after the command, with
// every audited command run one at a time. Database 0 only, as the
// lockers use it; a key's value is compared as a string (another type by
// its type alone). The server's clock then moves when a command arrives
// (SetTime, still the wall clock, or the bubble's) rather than whenever
// the server reads it, so no key expires while an audited command runs;
// what a client reads is the same (TestConformance's audited column).
// NameConn's command is taken, silently, whether or not Audit was called.
func (s *Server) Audit(onWrite func(Write)) {
	if s.ps == nil || onWrite == nil {
		return
	}
	s.ps.audit = &auditor{m: s.mini, onWrite: onWrite, keys: map[string]*keyTrack{}}
}

// auditor follows every key audited commands touch.
type auditor struct {
	m       *miniredis.Miniredis
	onWrite func(Write)

	mu   sync.Mutex // one audited command at a time
	keys map[string]*keyTrack
	last int64 // the last value number given
}

// keyTrack is what the auditor last saw of a key.
type keyTrack struct {
	number int64 // 0: absent
	value  string
}

// keyState is a key as a snapshot found it.
type keyState struct {
	exists   bool
	value    string
	deadline time.Time // zero: no expiry
}

// tick sets the server's clock to now and returns it. The server's clock
// moves only here, under mu, so that while an audited command runs no key
// expires and no TTL ages: the snapshots on either side of it and the
// command itself see one instant, and a key the first snapshot found is
// the one the command acted on.
func (a *auditor) tick() time.Time {
	now := time.Now().UTC() // the wall clock, as ClockTTL reads it
	a.m.SetTime(now)
	return now
}

// passing lets a command the audit does not watch through, after moving
// the server's clock for it.
func (a *auditor) passing() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.tick()
}

func (a *auditor) snapshot(key string, now time.Time) keyState {
	db := a.m.DB(0) // ages every TTL to now, removing what has expired
	if !db.Exists(key) {
		return keyState{}
	}
	st := keyState{exists: true, value: db.Type(key)}
	if st.value == "string" {
		v, err := db.Get(key)
		if err != nil {
			return keyState{}
		}
		st.value = v
	}
	if ttl := db.TTL(key); ttl > 0 {
		st.deadline = now.Add(ttl)
	}
	return st
}

// around runs a command that may write keys, and reports what it did to
// each.
func (a *auditor) around(client int, keys []string, run func()) {
	keys = slices.Compact(slices.Sorted(slices.Values(keys)))
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.tick()
	before := make([]keyState, len(keys))
	for i, k := range keys {
		before[i] = a.snapshot(k, now)
	}
	run()
	for i, k := range keys {
		a.compare(client, k, before[i], a.snapshot(k, now))
	}
}

func (a *auditor) compare(client int, key string, before, after keyState) {
	tr := a.keys[key]
	if tr == nil {
		tr = &keyTrack{}
		a.keys[key] = tr
	}
	// What changed outside the audit (expiry, a command it does not
	// know) takes a number of its own, which no client's write made.
	switch {
	case !before.exists:
		tr.number = 0
	case tr.number == 0 || tr.value != before.value:
		a.last++
		tr.number, tr.value = a.last, before.value
	}
	report := func(op string, after int64) {
		a.onWrite(Write{Key: key, Op: op, Client: client, Before: tr.number, After: after})
	}
	switch {
	case !after.exists:
		if before.exists {
			report("delete", 0)
		}
		tr.number, tr.value = 0, ""
	case !before.exists || after.value != before.value:
		a.last++
		report("write", a.last)
		tr.number, tr.value = a.last, after.value
	case !after.deadline.Equal(before.deadline):
		report("update", tr.number)
	}
}

// writtenKeys are the keys a command may write, nil for a command that
// writes none (or that the audit does not know).
func writtenKeys(cmd string, args []string) []string {
	switch cmd {
	case "SET", "SETNX", "SETEX", "PSETEX", "GETSET", "GETDEL", "GETEX", "APPEND", "SETRANGE",
		"INCR", "INCRBY", "INCRBYFLOAT", "DECR", "DECRBY",
		"EXPIRE", "PEXPIRE", "EXPIREAT", "PEXPIREAT", "PERSIST",
		"HSET", "HSETNX", "HDEL", "HINCRBY", "HMSET":
		if len(args) > 0 {
			return args[:1]
		}
	case "DEL", "UNLINK":
		return args
	case "MSET", "MSETNX":
		var keys []string
		for i := 0; i < len(args); i += 2 {
			keys = append(keys, args[i])
		}
		return keys
	case "EVAL", "EVALSHA", "FCALL":
		if len(args) >= 2 {
			if n, err := strconv.Atoi(args[1]); err == nil && n > 0 && 2+n <= len(args) {
				return args[2 : 2+n]
			}
		}
	}
	return nil
}

// isNameCommand says the command is NameConn's.
func isNameCommand(cmd string) bool { return strings.EqualFold(cmd, nameCommand) }
