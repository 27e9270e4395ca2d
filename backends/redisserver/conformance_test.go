package redisserver

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// conformanceTable, when set, is a file that TestConformance writes its
// table to, in Markdown.
var conformanceTable = flag.String("conformance.table", "", "write TestConformance's table of cases and servers to this file, in Markdown")

// TestConformance runs every case against each server a locker may get: the
// embedded one on loopback, the in-memory one inside a synctest bubble, and
// a real redis-server. The cases are what the Redis lockers rely on, at the
// level of the protocol, so a difference shows as exactly what a client
// would read. Each case logs a line per server, and the test ends with the
// table of all of them (-v shows it; -conformance.table writes it).
func TestConformance(t *testing.T) {
	emb, err := StartEmbedded()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { emb.Close() })
	// The backend audit watches every command and drives the server's
	// clock itself; it must change nothing a client reads.
	audited, err := StartEmbedded()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { audited.Close() })
	audited.Audit(func(Write) {})
	targets := []conformanceTarget{
		{"embedded", func(t *testing.T, c conformanceCase) { runOn(t, emb, c) }},
		{"audited", func(t *testing.T, c conformanceCase) { runOn(t, audited, c) }},
		{"in-memory", func(t *testing.T, c conformanceCase) {
			synctest.Test(t, func(t *testing.T) {
				s := NewInMemory()
				defer s.Close()
				c.run(t, &target{t: t, s: s})
			})
		}},
	}
	rs, err := StartReal(context.Background(), Options{})
	switch {
	case errors.Is(err, ErrNoRedisServer):
		missing := err
		t.Logf("redis-server column skipped: %v", missing)
		targets = append(targets, conformanceTarget{"redis-server", func(t *testing.T, c conformanceCase) { t.Skip(missing) }})
	case err != nil:
		t.Fatal(err)
	default:
		t.Cleanup(func() { rs.Close() })
		targets = append(targets, conformanceTarget{"redis-server", func(t *testing.T, c conformanceCase) { runOn(t, rs, c) }})
	}

	width := 0
	for _, c := range conformanceCases {
		width = max(width, len(c.name))
	}
	results := make([][]string, len(conformanceCases))
	for i, c := range conformanceCases {
		t.Run(c.name, func(t *testing.T) {
			for _, tg := range targets {
				got := "-" // left out by -run
				t.Run(tg.name, func(t *testing.T) {
					defer func() { got = outcome(t) }()
					tg.run(t, c)
				})
				results[i] = append(results[i], got)
				t.Logf("%-*s  %-12s  %s", width, c.name, tg.name, got)
			}
		})
	}

	var b strings.Builder
	b.WriteString("| case |")
	for _, tg := range targets {
		b.WriteString(" " + tg.name + " |")
	}
	b.WriteString("\n|---|")
	for range targets {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	for i, c := range conformanceCases {
		if len(results[i]) == 0 { // not selected by -run
			continue
		}
		b.WriteString("| " + c.name + " |")
		for _, r := range results[i] {
			b.WriteString(" " + r + " |")
		}
		b.WriteString("\n")
	}
	t.Logf("conformance:\n%s", b.String())
	if *conformanceTable != "" {
		if err := os.WriteFile(*conformanceTable, []byte(b.String()), 0o644); err != nil {
			t.Error(err)
		}
	}
}

// outcome is what a finished subtest shows in the table. Deferred in the
// subtest, it also sees a subtest that Fatal or Skip stopped.
func outcome(t *testing.T) string {
	switch {
	case t.Failed():
		return "FAIL"
	case t.Skipped():
		return "skip"
	default:
		return "pass"
	}
}

// runOn runs c against s, a server the whole test shares, emptied first.
func runOn(t *testing.T, s *Server, c conformanceCase) {
	tg := &target{t: t, s: s}
	if got := tg.dial().do("FLUSHALL"); got != simple("OK") {
		t.Fatalf("FLUSHALL: %s", show(got))
	}
	c.run(t, tg)
}

// conformanceTarget is a column of the table: a kind of server, and how a
// case runs on it.
type conformanceTarget struct {
	name string
	run  func(t *testing.T, c conformanceCase)
}

type conformanceCase struct {
	name string
	run  func(t *testing.T, tg *target)
}

// opTimeout bounds every read and write on a connection. It is generous:
// a case that waits for it has failed already.
const opTimeout = 10 * time.Second

var conformanceCases = []conformanceCase{
	{"SET NX PX, GET", func(t *testing.T, tg *target) {
		c := tg.dial()
		c.expect(simple("OK"), "SET", "k", "a", "NX", "PX", "60000")
		c.expect(nil, "SET", "k", "b", "NX", "PX", "60000")
		c.expect("a", "GET", "k")
		c.expect(nil, "GET", "missing")
		c.expect(simple("OK"), "SET", "k", "c", "PX", "60000")
		c.expect("c", "GET", "k")
	}},
	{"PEXPIRE, PTTL", func(t *testing.T, tg *target) {
		c := tg.dial()
		c.expect(simple("OK"), "SET", "k", "v")
		c.expect(int64(-1), "PTTL", "k")
		c.expect(int64(1), "PEXPIRE", "k", "60000")
		if ttl, ok := c.do("PTTL", "k").(int64); !ok || ttl <= 0 || ttl > 60000 {
			t.Errorf("PTTL after PEXPIRE 60000: %v; want 1..60000", ttl)
		}
		c.expect(int64(0), "PEXPIRE", "missing", "60000")
		c.expect(int64(-2), "PTTL", "missing")
	}},
	{"DEL", func(t *testing.T, tg *target) {
		c := tg.dial()
		c.expect(simple("OK"), "SET", "a", "1")
		c.expect(simple("OK"), "SET", "b", "2", "PX", "60000")
		c.expect(int64(2), "DEL", "a", "b", "missing")
		c.expect(int64(0), "DEL", "a")
		c.expect(int64(0), "EXISTS", "a", "b")
		c.expect(simple("OK"), "SET", "a", "3", "NX", "PX", "60000")
	}},
	{"key expiry (PX)", func(t *testing.T, tg *target) {
		const ttl = 300 * time.Millisecond
		// The key lives from some instant between sent and set; the
		// slack covers the wall clock miniredis ages keys by against
		// the monotonic one measured here.
		const slack = 20 * time.Millisecond
		c := tg.dial()
		sent := time.Now()
		c.expect(simple("OK"), "SET", "k", "v", "NX", "PX", strconv.Itoa(int(ttl.Milliseconds())))
		set := time.Now()
		got := c.do("GET", "k")
		if time.Since(sent) < ttl-slack && got != "v" {
			t.Errorf("GET before the TTL: %s; want \"v\"", show(got))
		}
		// Waiting out the TTL is what this case tests; inside a bubble
		// the wait is on virtual time.
		<-time.After(ttl + slack - time.Since(set))
		c.expect(nil, "GET", "k")
		c.expect(int64(0), "EXISTS", "k")
		c.expect(simple("OK"), "SET", "k", "w", "NX", "PX", "60000")
	}},
	{"EVAL compare-and-delete", func(t *testing.T, tg *target) {
		c := tg.dial()
		c.expect(simple("OK"), "SET", "k", "mine", "NX", "PX", "60000")
		c.expect(int64(0), "EVAL", compareAndDelete, "1", "k", "theirs")
		c.expect("mine", "GET", "k")
		c.expect(int64(1), "EVAL", compareAndDelete, "1", "k", "mine")
		c.expect(int64(0), "EXISTS", "k")
		c.expect(int64(0), "EVAL", compareAndDelete, "1", "k", "mine")
	}},
	{"EVAL compare-and-pexpire", func(t *testing.T, tg *target) {
		const extend = `if redis.call("get", KEYS[1]) == ARGV[1] then return redis.call("pexpire", KEYS[1], ARGV[2]) else return 0 end`
		c := tg.dial()
		c.expect(simple("OK"), "SET", "k", "mine", "NX", "PX", "1000")
		c.expect(int64(0), "EVAL", extend, "1", "k", "theirs", "60000")
		c.expect(int64(1), "EVAL", extend, "1", "k", "mine", "60000")
		if ttl, ok := c.do("PTTL", "k").(int64); !ok || ttl <= 1000 || ttl > 60000 {
			t.Errorf("PTTL after the owner's extend to 60000: %v; want 1001..60000", ttl)
		}
	}},
	{"PUBLISH, SUBSCRIBE delivery", func(t *testing.T, tg *target) {
		sub, pub := tg.dial(), tg.dial()
		sub.expect([]any{"subscribe", "ch", int64(1)}, "SUBSCRIBE", "ch")
		pub.expect(int64(0), "PUBLISH", "other", "x")
		pub.expect(int64(1), "PUBLISH", "ch", "hello")
		sub.expectFrame([]any{"message", "ch", "hello"})
		sub.expect([]any{"unsubscribe", "ch", int64(0)}, "UNSUBSCRIBE", "ch")
		pub.expect(int64(0), "PUBLISH", "ch", "late")
		sub.expect(simple("PONG"), "PING")
	}},
	{"PSUBSCRIBE delivery", func(t *testing.T, tg *target) {
		sub, pub := tg.dial(), tg.dial()
		sub.expect([]any{"psubscribe", "lock:*", int64(1)}, "PSUBSCRIBE", "lock:*")
		sub.expect([]any{"psubscribe", "l?ck:[ab]*", int64(2)}, "PSUBSCRIBE", "l?ck:[ab]*")
		pub.expect(int64(0), "PUBLISH", "other:a", "x")
		pub.expect(int64(1), "PUBLISH", "lock:c", "one")
		sub.expectFrame([]any{"pmessage", "lock:*", "lock:c", "one"})
		// One frame per matching pattern, each counted.
		pub.expect(int64(2), "PUBLISH", "lock:a1", "two")
		frames := []any{sub.read(), sub.read()}
		slices.SortFunc(frames, func(a, b any) int { return strings.Compare(show(a), show(b)) })
		want := []any{
			[]any{"pmessage", "l?ck:[ab]*", "lock:a1", "two"},
			[]any{"pmessage", "lock:*", "lock:a1", "two"},
		}
		if !reflect.DeepEqual(frames, want) {
			t.Errorf("frames for a channel two patterns match: %s; want %s", show(frames), show(want))
		}
		sub.expect([]any{"punsubscribe", "lock:*", int64(1)}, "PUNSUBSCRIBE", "lock:*")
		pub.expect(int64(0), "PUBLISH", "lock:c", "late")
		sub.expect([]any{"punsubscribe", "l?ck:[ab]*", int64(0)}, "PUNSUBSCRIBE")
		sub.expect(simple("PONG"), "PING")
	}},
	{"subscribed connection: PING, other commands refused", func(t *testing.T, tg *target) {
		c := tg.dial()
		c.expect([]any{"subscribe", "a", int64(1)}, "SUBSCRIBE", "a")
		c.expect([]any{"pong", ""}, "PING")
		c.expect([]any{"pong", "hi"}, "PING", "hi")
		if got, ok := c.do("GET", "k").(respError); !ok || !strings.HasPrefix(string(got), "ERR Can't execute 'get'") {
			t.Errorf("GET while subscribed: %s; want an error ERR Can't execute 'get' …", show(got))
		}
		c.expect([]any{"subscribe", "a", int64(1)}, "SUBSCRIBE", "a")
		c.expect([]any{"subscribe", "b", int64(2)}, "SUBSCRIBE", "b")
		// Unsubscribing from all answers once per channel, in no set order,
		// each with the count left.
		c.send("UNSUBSCRIBE")
		var chans []string
		for _, left := range []int64{1, 0} {
			f, ok := c.read().([]any)
			if !ok || len(f) != 3 || f[0] != "unsubscribe" || f[2] != left {
				t.Fatalf("UNSUBSCRIBE of all: frame %s; want [\"unsubscribe\" <channel> %d]", show(f), left)
			}
			ch, _ := f[1].(string)
			chans = append(chans, ch)
		}
		if slices.Sort(chans); !slices.Equal(chans, []string{"a", "b"}) {
			t.Errorf("UNSUBSCRIBE of all answered for %q; want a and b", chans)
		}
		c.expect([]any{"unsubscribe", nil, int64(0)}, "UNSUBSCRIBE")
		c.expect(simple("PONG"), "PING")
		c.expect(nil, "GET", "k")
		c.expect([]any{"psubscribe", "p*", int64(1)}, "PSUBSCRIBE", "p*")
		c.expect([]any{"unsubscribe", nil, int64(1)}, "UNSUBSCRIBE")
		c.expect(simple("OK"), "QUIT")
	}},
	{"subscribed RESP3 connection: replies stay whole among messages", resp3Subscriber},
	{"glob patterns (PUBSUB CHANNELS)", func(t *testing.T, tg *target) {
		sub, c := tg.dial(), tg.dial()
		channels := []string{"lock:a", "lock:b1", "l*ck", "abc", "adc", "a-c", "a[c", "x]y", `a\b`, "ab"}
		for i, ch := range channels {
			sub.expect([]any{"subscribe", ch, int64(i + 1)}, "SUBSCRIBE", ch)
		}
		for _, tc := range []struct {
			pattern string
			want    []string
		}{
			{"lock:*", []string{"lock:a", "lock:b1"}},
			{"l?ck:[ab]*", []string{"lock:a", "lock:b1"}},
			{`l\*ck`, []string{"l*ck"}},
			{"a[^b]c", []string{"a-c", "a[c", "adc"}},
			{"a[b-d]c", []string{"abc", "adc"}},
			{"a[d-b]c", []string{"abc", "adc"}},
			{"a[-]c", []string{"a-c"}},
			{`a[\[]c`, []string{"a[c"}},
			{"x]y", []string{"x]y"}},
			{`a\\b`, []string{`a\b`}},
			{"a[bc", []string{"ab"}}, // an unclosed class ends the pattern
			{"ab[", nil},
			{"*b*", []string{`a\b`, "ab", "abc", "lock:b1"}},
			{"??", []string{"ab"}},
		} {
			got, _ := c.do("PUBSUB", "CHANNELS", tc.pattern).([]any)
			var names []string
			for _, g := range got {
				name, _ := g.(string)
				names = append(names, name)
			}
			slices.Sort(names)
			if !slices.Equal(names, tc.want) {
				t.Errorf("PUBSUB CHANNELS %q: %q; want %q", tc.pattern, names, tc.want)
			}
		}
	}},
	{"PUBSUB NUMSUB, CHANNELS, NUMPAT", func(t *testing.T, tg *target) {
		s1, s2, c := tg.dial(), tg.dial(), tg.dial()
		s1.expect([]any{"subscribe", "a", int64(1)}, "SUBSCRIBE", "a")
		s1.expect([]any{"subscribe", "b", int64(2)}, "SUBSCRIBE", "b")
		s2.expect([]any{"subscribe", "b", int64(1)}, "SUBSCRIBE", "b")
		s2.expect([]any{"psubscribe", "p*", int64(2)}, "PSUBSCRIBE", "p*")
		s1.expect([]any{"psubscribe", "p*", int64(3)}, "PSUBSCRIBE", "p*")
		c.expect([]any{"a", int64(1), "b", int64(2), "c", int64(0)}, "PUBSUB", "NUMSUB", "a", "b", "c")
		chans, _ := c.do("PUBSUB", "CHANNELS").([]any)
		slices.SortFunc(chans, func(a, b any) int { return strings.Compare(show(a), show(b)) })
		if want := []any{"a", "b"}; !reflect.DeepEqual(chans, want) {
			t.Errorf("PUBSUB CHANNELS: %s; want %s", show(chans), show(want))
		}
		c.expect([]any{"a"}, "PUBSUB", "CHANNELS", "[a]*")
		c.expect(int64(1), "PUBSUB", "NUMPAT")
		c.expect(int64(2), "PUBLISH", "b", "x") // two subscribers; p* does not match
		s1.close()
		// The server sees the close on its own time: ask until it has.
		for i := 0; ; i++ {
			if got := c.do("PUBSUB", "NUMSUB", "a"); reflect.DeepEqual(got, []any{"a", int64(0)}) {
				break
			}
			if i == 100000 {
				t.Fatal("a closed subscriber is still counted")
			}
		}
		c.expect(int64(1), "PUBLISH", "b", "y")
	}},
	{"PUBLISH from a script", func(t *testing.T, tg *target) {
		sub, c := tg.dial(), tg.dial()
		sub.expect([]any{"subscribe", "ch", int64(1)}, "SUBSCRIBE", "ch")
		c.expect(int64(1), "EVAL", `return redis.call("publish", KEYS[1], ARGV[1])`, "1", "ch", "from lua")
		sub.expectFrame([]any{"message", "ch", "from lua"})
		if got, ok := c.do("EVAL", `return redis.call("subscribe", "x")`, "0").(respError); !ok {
			t.Errorf("SUBSCRIBE from a script: %s; want an error", show(got))
		}
		c.expect(int64(1), "PUBLISH", "ch", "after")
		sub.expectFrame([]any{"message", "ch", "after"})
	}},
	{"shared subscriber: no message after UNSUBSCRIBE reply", sharedSubscriber},
}

// sharedSubscriber is one connection that subscribes and unsubscribes in a
// loop, one channel at a time, while other connections publish to those
// channels without pause: a Redis locker with one subscriber connection
// for all its lock waits. Once the UNSUBSCRIBE reply for a channel is out,
// redis-server writes no more messages for it on that connection, and a
// client that has matched its replies to its commands (ioredis) takes a
// later one for a reply and fails ("Command queue state error").
func sharedSubscriber(t *testing.T, tg *target) {
	const (
		rounds     = 500
		publishers = 3
		// maxPublishes bounds each publisher should the subscriber
		// stall; the subscriber stops them long before.
		maxPublishes = 1_000_000
	)
	channels := []string{"lock:release:0", "lock:release:1", "lock:release:2", "lock:release:3"}

	sub := tg.dial()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	pubErrs := make(chan error, publishers)
	// current is the channel the subscriber is on now, or about to
	// subscribe to: publishing there keeps a message under way when its
	// UNSUBSCRIBE arrives.
	var current atomic.Int32
	for range publishers {
		pub := tg.dial()
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range maxPublishes {
				select {
				case <-stop:
					return
				default:
				}
				ch := channels[current.Load()]
				if err := pub.sendErr("PUBLISH", ch, strconv.Itoa(i)); err != nil {
					pubErrs <- err
					return
				}
				if got, err := pub.readErr(); err != nil {
					pubErrs <- err
					return
				} else if _, ok := got.(int64); !ok {
					pubErrs <- fmt.Errorf("PUBLISH answered %s", show(got))
					return
				}
			}
		}()
	}
	stopped := false
	stopPublishers := func() {
		if !stopped {
			stopped = true
			close(stop)
			wg.Wait()
		}
	}
	defer stopPublishers()

	subscribed := map[string]bool{}
	var late, lateRounds int
	var first string
	round := 0
	lateThisRound := false
	// next reads one frame; a message outside its channel's subscription
	// (before the SUBSCRIBE reply or after the UNSUBSCRIBE reply) is
	// counted.
	next := func() []any {
		got := sub.read()
		f, ok := got.([]any)
		if !ok || len(f) == 0 {
			if s, ok := got.(simple); ok && s == "PONG" {
				return nil
			}
			t.Fatalf("round %d: frame %s", round, show(got))
		}
		if f[0] == "message" && len(f) == 3 {
			if ch, _ := f[1].(string); !subscribed[ch] {
				late++
				if !lateThisRound {
					lateThisRound = true
					lateRounds++
				}
				if first == "" {
					first = fmt.Sprintf("round %d: %s", round, show(f))
				}
			}
		}
		return f
	}
	awaitReply := func(kind, ch string) {
		for {
			f := next()
			if len(f) == 3 && f[0] == kind && f[1] == ch {
				return
			}
		}
	}
	for round = 0; round < rounds; round++ {
		lateThisRound = false
		ch := channels[round%len(channels)]
		current.Store(int32(round % len(channels)))
		sub.send("SUBSCRIBE", ch)
		awaitReply("subscribe", ch)
		subscribed[ch] = true
		// Wait for a message on ch, so that publishes to it are under
		// way when the UNSUBSCRIBE arrives.
		for {
			f := next()
			if len(f) == 3 && f[0] == "message" && f[1] == ch {
				break
			}
		}
		sub.send("UNSUBSCRIBE", ch)
		awaitReply("unsubscribe", ch)
		delete(subscribed, ch)
	}
	stopPublishers()
	select {
	case err := <-pubErrs:
		t.Fatalf("publisher: %v", err)
	default:
	}
	// Frames still under way after the last round come before this PONG.
	sub.send("PING")
	for next() != nil {
	}
	if late > 0 {
		t.Errorf("%d messages in %d of %d rounds arrived outside their channel's subscription, after its UNSUBSCRIBE reply or before its SUBSCRIBE reply; first, %s", late, lateRounds, rounds, first)
	}
}

// resp3Subscriber: a RESP3 connection may run any command while
// subscribed, and the messages published meanwhile come as push frames
// between its replies, never inside one; a reply of many elements (LRANGE)
// leaves the most room for one to land inside.
func resp3Subscriber(t *testing.T, tg *target) {
	const (
		rounds       = 200
		elements     = 50
		maxPublishes = 1_000_000
	)
	c, pub := tg.dial(), tg.dial()
	if got, ok := c.do("HELLO", "3").([]any); !ok {
		t.Fatalf("HELLO 3: %s", show(got))
	}
	c.expect(push{"subscribe", "ch", int64(1)}, "SUBSCRIBE", "ch")
	c.expect(simple("PONG"), "PING")
	c.expect(nil, "GET", "k")
	list := []string{"RPUSH", "list"}
	var want []any
	for i := range elements {
		list = append(list, strconv.Itoa(i))
		want = append(want, strconv.Itoa(i))
	}
	c.expect(int64(elements), list...)

	stop := make(chan struct{})
	pubErr := make(chan error, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range maxPublishes {
			select {
			case <-stop:
				return
			default:
			}
			if err := pub.sendErr("PUBLISH", "ch", strconv.Itoa(i)); err != nil {
				pubErr <- err
				return
			}
			if _, err := pub.readErr(); err != nil {
				pubErr <- err
				return
			}
		}
	}()
	defer func() {
		close(stop)
		wg.Wait()
	}()

	messages := 0
	// reply reads past messages, each a whole push frame, to what else
	// comes.
	reply := func() any {
		for {
			got := c.read()
			if p, ok := got.(push); !ok || len(p) != 3 || p[0] != "message" || p[1] != "ch" {
				return got
			}
			messages++
		}
	}
	// Once one message has come, the publisher is under way.
	if got := c.read(); !reflect.DeepEqual(got, push{"message", "ch", "0"}) {
		t.Fatalf("first frame %s; want the first message", show(got))
	}
	for i := range rounds {
		c.send("LRANGE", "list", "0", "-1")
		if got := reply(); !reflect.DeepEqual(got, want) {
			t.Fatalf("round %d: LRANGE answered %s", i, show(got))
		}
	}
	c.send("UNSUBSCRIBE", "ch")
	if got, want := reply(), (push{"unsubscribe", "ch", int64(0)}); !reflect.DeepEqual(got, want) {
		t.Fatalf("UNSUBSCRIBE answered %s; want %s", show(got), show(want))
	}
	select {
	case err := <-pubErr:
		t.Fatalf("publisher: %v", err)
	default:
	}
	t.Logf("%d messages among %d replies", messages, rounds)
}

// target is a server under test, as a case dials it.
type target struct {
	t testing.TB
	s *Server
}

func (tg *target) dial() *respConn {
	tg.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	conn, err := tg.s.Dial(ctx, "tcp", tg.s.Addr())
	if err != nil {
		tg.t.Fatal(err)
	}
	c := &respConn{t: tg.t, conn: conn, r: bufio.NewReader(conn)}
	tg.t.Cleanup(c.close)
	return c
}

// respConn speaks RESP2 on one connection, with a deadline on every read
// and write.
type respConn struct {
	t    testing.TB
	conn net.Conn
	r    *bufio.Reader
	once sync.Once
}

// simple is a simple-string reply (+OK); a bulk string reads as a string,
// a null bulk or array, or RESP3's null, as nil; a map as its keys and
// values in turn, in an []any like an array.
type simple string

// push is a RESP3 push frame (a message, a subscribe reply).
type push []any

type respError string

func (e respError) Error() string { return string(e) }

func (c *respConn) close() { c.once.Do(func() { c.conn.Close() }) }

func (c *respConn) sendErr(args ...string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	c.conn.SetWriteDeadline(time.Now().Add(opTimeout))
	_, err := io.WriteString(c.conn, b.String())
	return err
}

func (c *respConn) readErr() (any, error) {
	c.conn.SetReadDeadline(time.Now().Add(opTimeout))
	return readValue(c.r)
}

func (c *respConn) send(args ...string) {
	c.t.Helper()
	if err := c.sendErr(args...); err != nil {
		c.t.Fatalf("send %q: %v", args, err)
	}
}

func (c *respConn) read() any {
	c.t.Helper()
	v, err := c.readErr()
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	return v
}

func (c *respConn) do(args ...string) any {
	c.t.Helper()
	c.send(args...)
	return c.read()
}

func (c *respConn) expect(want any, args ...string) {
	c.t.Helper()
	if got := c.do(args...); !reflect.DeepEqual(got, want) {
		c.t.Errorf("%s: got %s; want %s", strings.Join(args, " "), show(got), show(want))
	}
}

func (c *respConn) expectFrame(want any) {
	c.t.Helper()
	if got := c.read(); !reflect.DeepEqual(got, want) {
		c.t.Errorf("frame: got %s; want %s", show(got), show(want))
	}
}

func readValue(r *bufio.Reader) (any, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return nil, err
	}
	if len(line) < 3 || !strings.HasSuffix(line, "\r\n") {
		return nil, fmt.Errorf("malformed line %q", line)
	}
	body := line[1 : len(line)-2]
	switch line[0] {
	case '+':
		return simple(body), nil
	case '-':
		return respError(body), nil
	case ':':
		return strconv.ParseInt(body, 10, 64)
	case '$':
		n, err := strconv.Atoi(body)
		if err != nil || n < 0 {
			return nil, err
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, err
		}
		return string(buf[:n]), nil
	case '_':
		return nil, nil
	case ',', '(':
		return body, nil
	case '#':
		return body == "t", nil
	case '*', '>', '~', '%':
		n, err := strconv.Atoi(body)
		if err != nil || n < 0 {
			return nil, err
		}
		if line[0] == '%' {
			n *= 2
		}
		vs := make([]any, n)
		for i := range vs {
			if vs[i], err = readValue(r); err != nil {
				return nil, err
			}
		}
		if line[0] == '>' {
			return push(vs), nil
		}
		return vs, nil
	}
	return nil, fmt.Errorf("unknown reply type %q", line)
}

func show(v any) string {
	switch v := v.(type) {
	case nil:
		return "nil"
	case simple:
		return "+" + string(v)
	case respError:
		return "-" + string(v)
	case string:
		return strconv.Quote(v)
	case int64:
		return strconv.FormatInt(v, 10)
	case []any:
		parts := make([]string, len(v))
		for i, e := range v {
			parts[i] = show(e)
		}
		return "[" + strings.Join(parts, " ") + "]"
	case push:
		return ">" + show([]any(v))
	}
	return fmt.Sprintf("%#v", v)
}

// TestGlobMatchesRedis compares this package's glob match with
// redis-server's on patterns and channel names drawn from the characters
// the match treats specially, through PUBSUB CHANNELS, which matches with
// the same function as PSUBSCRIBE.
func TestGlobMatchesRedis(t *testing.T) {
	s, err := StartReal(context.Background(), Options{})
	if errors.Is(err, ErrNoRedisServer) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	tg := &target{t: t, s: s}
	sub, c := tg.dial(), tg.dial()

	rng := rand.New(rand.NewPCG(1, 2))
	draw := func(alphabet string, maxLen int) string {
		b := make([]byte, 1+rng.IntN(maxLen))
		for i := range b {
			b[i] = alphabet[rng.IntN(len(alphabet))]
		}
		return string(b)
	}
	channels := map[string]bool{}
	for len(channels) < 40 {
		channels[draw(`ab-[]^\*?`, 4)] = true
	}
	for ch := range channels {
		sub.send("SUBSCRIBE", ch)
		sub.read()
	}
	matched := 0
	for range 500 {
		pattern := draw(`ab-[]^\*?`, 7)
		var want []string
		for ch := range channels {
			if globMatch(pattern, ch) {
				want = append(want, ch)
			}
		}
		got, _ := c.do("PUBSUB", "CHANNELS", pattern).([]any)
		var names []string
		for _, g := range got {
			name, _ := g.(string)
			names = append(names, name)
		}
		slices.Sort(names)
		slices.Sort(want)
		if !slices.Equal(names, want) {
			t.Errorf("pattern %q: redis-server matches %q, globMatch %q", pattern, names, want)
		}
		if len(names) > 0 {
			matched++
		}
	}
	// Patterns that match nothing on either side would show nothing.
	if matched < 100 {
		t.Errorf("only %d of 500 patterns matched a channel", matched)
	}
	t.Logf("%d of 500 patterns matched at least one of %d channels", matched, len(channels))
}

// TestEmbeddedRefusesPubsubInMulti: inside MULTI the embedded server
// refuses pub/sub commands, which redis-server would queue, and the EXEC
// aborts as after any refused command; the connection is then as before
// its MULTI.
func TestEmbeddedRefusesPubsubInMulti(t *testing.T) {
	s, err := StartEmbedded()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	c := (&target{t: t, s: s}).dial()

	c.expect(simple("OK"), "MULTI")
	c.expect(simple("QUEUED"), "SET", "k", "v")
	c.expect(respError("ERR the embedded Redis does not run PUBLISH inside MULTI"), "PUBLISH", "ch", "x")
	c.expect(respError("EXECABORT Transaction discarded because of previous errors."), "EXEC")
	c.expect(nil, "GET", "k")
	c.expect(respError("ERR EXEC without MULTI"), "EXEC")

	c.expect(simple("OK"), "MULTI")
	c.expect(respError("ERR the embedded Redis does not run SUBSCRIBE inside MULTI"), "SUBSCRIBE", "ch")
	c.expect(simple("OK"), "DISCARD")
	c.expect(simple("OK"), "MULTI")
	c.expect(simple("QUEUED"), "SET", "k", "v")
	c.expect([]any{simple("OK")}, "EXEC")
	c.expect([]any{"subscribe", "ch", int64(1)}, "SUBSCRIBE", "ch")
}
