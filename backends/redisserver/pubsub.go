package redisserver

import (
	"bufio"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/alicebob/miniredis/v2/server"
)

// pubsub serves pub/sub in place of miniredis's own, through the server's
// pre-command hook (see the package doc for why). It writes every frame a
// publish sends into the subscriber's output at the moment of the publish,
// under the same lock as SUBSCRIBE and UNSUBSCRIBE and their replies, so a
// connection reads the frames of a channel between its SUBSCRIBE reply and
// its UNSUBSCRIBE reply, and never outside them, as on redis-server.
type pubsub struct {
	srv *server.Server

	mu sync.Mutex
	// conns has every client connection, from its first command to its
	// disconnect. A peer not in it is a script's redis.call.
	conns map[*server.Peer]*psConn
	// channels and patterns hold each one's subscribers, in the order
	// they subscribed; a name with none is deleted.
	channels map[string][]*psConn
	patterns map[string][]*psConn

	// audit, when set (Server.Audit), sees every command that may write.
	audit *auditor
}

// psConn is one client connection.
type psConn struct {
	peer *server.Peer

	// Guarded by pubsub.mu.
	channels []string // in the order subscribed
	patterns []string
	// busy is set while a subscribed connection runs a command of
	// miniredis's, whose reply may take several writes; frames
	// published meanwhile are held and follow that reply.
	busy bool
	held []psFrame

	// Used only on the connection's own goroutine.
	multi        bool     // between MULTI and EXEC or DISCARD
	multiRefused bool     // a pub/sub command was refused inside MULTI
	redispatch   bool     // the hook's next call is the command it passed on
	writer       int      // the client the connection named (NameConn), -1 if none
	queued       []string // keys of the write commands queued since MULTI
}

func (c *psConn) count() int { return len(c.channels) + len(c.patterns) }

// psFrame is a published message as one subscription receives it.
type psFrame struct {
	pmessage bool
	pattern  string
	channel  string
	message  string
}

func (f psFrame) write(w *server.Writer) {
	if f.pmessage {
		w.WritePushLen(4)
		w.WriteBulk("pmessage")
		w.WriteBulk(f.pattern)
	} else {
		w.WritePushLen(3)
		w.WriteBulk("message")
	}
	w.WriteBulk(f.channel)
	w.WriteBulk(f.message)
}

// servePubsub installs the pub/sub layer on srv, before any client can
// send it a command.
func servePubsub(srv *server.Server) *pubsub {
	ps := &pubsub{
		srv:      srv,
		conns:    map[*server.Peer]*psConn{},
		channels: map[string][]*psConn{},
		patterns: map[string][]*psConn{},
	}
	srv.SetPreHook(ps.hook)
	return ps
}

// allowedSubscribed are the commands redis-server runs on a RESP2
// connection with a subscription; RESET, SSUBSCRIBE and SUNSUBSCRIBE are
// not commands miniredis knows.
var allowedSubscribed = map[string]bool{
	"SUBSCRIBE": true, "PSUBSCRIBE": true, "UNSUBSCRIBE": true, "PUNSUBSCRIBE": true,
	"PING": true, "QUIT": true,
}

// hook runs before every command, on the goroutine that serves the
// connection, or inside a script's EVAL for a redis.call. It returns true
// when it has answered the command itself.
func (ps *pubsub) hook(c *server.Peer, cmd string, args ...string) bool {
	pc := ps.conn(c)
	if pc == nil {
		// A script may publish and count subscribers; miniredis
		// refuses the rest of pub/sub to scripts, as Redis does.
		switch cmd {
		case "PUBLISH":
			return len(args) == 2 && ps.publish(c, args[0], args[1])
		case "PUBSUB":
			return pubsubForm(args) && ps.pubsubCommand(c, args)
		}
		return false
	}
	if pc.redispatch {
		pc.redispatch = false
		return false
	}
	if isNameCommand(cmd) {
		if len(args) == 1 {
			if n, err := strconv.Atoi(args[0]); err == nil {
				pc.writer = n
			}
		}
		return true // no reply: the client did not send it
	}

	ps.mu.Lock()
	subscribed := pc.count() > 0
	ps.mu.Unlock()
	if subscribed && !c.Resp3 && !allowedSubscribed[cmd] && ps.srv.IsRegisteredCommand(cmd) {
		c.WriteError(fmt.Sprintf("ERR Can't execute '%s': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context", strings.ToLower(cmd)))
		return true
	}

	switch cmd {
	case "SUBSCRIBE", "PSUBSCRIBE":
		if len(args) == 0 {
			return false // miniredis answers the arity error
		}
		if pc.multi {
			return ps.refuseInMulti(pc, cmd)
		}
		ps.subscribe(pc, cmd == "PSUBSCRIBE", args)
		return true
	case "UNSUBSCRIBE", "PUNSUBSCRIBE":
		if pc.multi {
			return ps.refuseInMulti(pc, cmd)
		}
		ps.unsubscribe(pc, cmd == "PUNSUBSCRIBE", args)
		return true
	case "PUBLISH":
		if len(args) != 2 {
			return false
		}
		if pc.multi {
			return ps.refuseInMulti(pc, cmd)
		}
		return ps.publish(c, args[0], args[1])
	case "PUBSUB":
		if !pubsubForm(args) {
			return false
		}
		if pc.multi {
			return ps.refuseInMulti(pc, cmd)
		}
		return ps.pubsubCommand(c, args)
	case "PING":
		if subscribed && !c.Resp3 && len(args) <= 1 {
			payload := ""
			if len(args) == 1 {
				payload = args[0]
			}
			c.Block(func(w *server.Writer) {
				w.WriteLen(2)
				w.WriteBulk("pong")
				w.WriteBulk(payload)
			})
			return true
		}
	case "MULTI":
		if len(args) == 0 {
			pc.multi = true
		}
	case "DISCARD":
		if len(args) == 0 {
			pc.multi, pc.multiRefused = false, false
		}
	case "EXEC":
		if len(args) == 0 && pc.multi {
			refused := pc.multiRefused
			pc.multi, pc.multiRefused = false, false
			if refused {
				ps.abortExec(c)
				return true
			}
		}
	}
	keys := ps.auditedKeys(pc, cmd, args)
	if subscribed {
		ps.runHolding(pc, cmd, args, keys)
		return true
	}
	if ps.audit == nil {
		return false
	}
	ps.execute(pc, cmd, args, keys)
	return true
}

// execute has miniredis run a command the hook passed on, under the
// audit's eye when there is one.
func (ps *pubsub) execute(pc *psConn, cmd string, args []string, audited []string) {
	switch {
	case ps.audit == nil:
		ps.redispatch(pc, cmd, args)
	case len(audited) > 0:
		ps.audit.around(pc.writer, audited, func() { ps.redispatch(pc, cmd, args) })
	default:
		ps.audit.passing()
		ps.redispatch(pc, cmd, args)
	}
}

// auditedKeys are the keys the audit must watch while cmd runs: none
// without an audit, for a command queued inside MULTI (its keys wait for
// the EXEC), or for one that writes nothing.
func (ps *pubsub) auditedKeys(pc *psConn, cmd string, args []string) []string {
	if ps.audit == nil {
		return nil
	}
	switch cmd {
	case "MULTI", "DISCARD":
		pc.queued = nil
		return nil
	case "EXEC":
		keys := pc.queued
		pc.queued = nil
		return keys
	}
	if pc.multi {
		pc.queued = append(pc.queued, writtenKeys(cmd, args)...)
		return nil
	}
	return writtenKeys(cmd, args)
}

// redispatch has miniredis run a command the hook passed on.
func (ps *pubsub) redispatch(pc *psConn, cmd string, args []string) {
	pc.redispatch = true
	ps.srv.Dispatch(pc.peer, append([]string{cmd}, args...))
	pc.redispatch = false
}

// conn is c's connection, registered at its first command, or nil for a
// peer that is no connection: miniredis serves a connection on a peer
// with no Ctx until its first command, and gives a script's redis.call a
// peer of its own with Ctx set.
func (ps *pubsub) conn(c *server.Peer) *psConn {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if pc, ok := ps.conns[c]; ok {
		return pc
	}
	if c.Ctx != nil {
		return nil
	}
	pc := &psConn{peer: c, writer: -1}
	ps.conns[c] = pc
	c.OnDisconnect(func() { ps.disconnect(pc) })
	return pc
}

func (ps *pubsub) disconnect(pc *psConn) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for _, ch := range pc.channels {
		drop(ps.channels, ch, pc)
	}
	for _, pat := range pc.patterns {
		drop(ps.patterns, pat, pc)
	}
	pc.channels, pc.patterns, pc.held = nil, nil, nil
	delete(ps.conns, pc.peer)
}

// drop removes pc from name's subscribers.
func drop(subs map[string][]*psConn, name string, pc *psConn) {
	rest := slices.DeleteFunc(subs[name], func(s *psConn) bool { return s == pc })
	if len(rest) == 0 {
		delete(subs, name)
	} else {
		subs[name] = rest
	}
}

func (ps *pubsub) subscribe(pc *psConn, pattern bool, names []string) {
	kind, own, subs := "subscribe", &pc.channels, ps.channels
	if pattern {
		kind, own, subs = "psubscribe", &pc.patterns, ps.patterns
	}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for _, name := range names {
		if !slices.Contains(*own, name) {
			*own = append(*own, name)
			subs[name] = append(subs[name], pc)
		}
		n := pc.count()
		pc.peer.Block(func(w *server.Writer) {
			w.WritePushLen(3)
			w.WriteBulk(kind)
			w.WriteBulk(name)
			w.WriteInt(n)
		})
	}
}

// unsubscribe answers once per name, or per subscription when names is
// empty, or with a null name when there is none.
func (ps *pubsub) unsubscribe(pc *psConn, pattern bool, names []string) {
	kind, own, subs := "unsubscribe", &pc.channels, ps.channels
	if pattern {
		kind, own, subs = "punsubscribe", &pc.patterns, ps.patterns
	}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if len(names) == 0 {
		names = slices.Clone(*own)
	}
	if len(names) == 0 {
		n := pc.count()
		pc.peer.Block(func(w *server.Writer) {
			w.WritePushLen(3)
			w.WriteBulk(kind)
			w.WriteNull()
			w.WriteInt(n)
		})
		return
	}
	for _, name := range names {
		if i := slices.Index(*own, name); i >= 0 {
			*own = slices.Delete(*own, i, i+1)
			drop(subs, name, pc)
		}
		n := pc.count()
		pc.peer.Block(func(w *server.Writer) {
			w.WritePushLen(3)
			w.WriteBulk(kind)
			w.WriteBulk(name)
			w.WriteInt(n)
		})
	}
}

// publish writes the message to every subscription it matches, a frame
// for each (a connection whose patterns match twice gets two), and
// answers with their number. The frames are flushed at once: the
// subscriber may be waiting for nothing but them.
func (ps *pubsub) publish(c *server.Peer, channel, message string) bool {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	n := 0
	for _, pc := range ps.channels[channel] {
		ps.deliver(pc, psFrame{channel: channel, message: message})
		n++
	}
	// Sorted, so that one seed's run delivers in one order.
	for _, pat := range slices.Sorted(maps.Keys(ps.patterns)) {
		if !globMatch(pat, channel) {
			continue
		}
		for _, pc := range ps.patterns[pat] {
			ps.deliver(pc, psFrame{pmessage: true, pattern: pat, channel: channel, message: message})
			n++
		}
	}
	c.WriteInt(n)
	return true
}

// deliver is called with ps.mu held.
func (ps *pubsub) deliver(pc *psConn, f psFrame) {
	if pc.busy {
		pc.held = append(pc.held, f)
		return
	}
	pc.peer.Block(func(w *server.Writer) {
		f.write(w)
		w.Flush()
	})
}

// runHolding runs a command of miniredis's on a subscribed (RESP3)
// connection. miniredis may write its reply in several pieces, and a frame
// published between two of them would corrupt it, so frames wait until the
// reply is whole. A command that blocks (BLPOP) holds them until it
// returns, where redis-server would send them at once.
func (ps *pubsub) runHolding(pc *psConn, cmd string, args []string, audited []string) {
	ps.mu.Lock()
	pc.busy = true
	ps.mu.Unlock()

	ps.execute(pc, cmd, args, audited)

	ps.mu.Lock()
	defer ps.mu.Unlock()
	pc.busy = false
	held := pc.held
	pc.held = nil
	if len(held) > 0 {
		pc.peer.Block(func(w *server.Writer) {
			for _, f := range held {
				f.write(w)
			}
		})
	}
}

// refuseInMulti answers a pub/sub command queued inside MULTI with an
// error, and makes the EXEC abort, as redis-server does after any command
// it refuses to queue. redis-server would queue it; here its effect could
// not take its place in miniredis's EXEC reply.
func (ps *pubsub) refuseInMulti(pc *psConn, cmd string) bool {
	pc.multiRefused = true
	pc.peer.WriteError(fmt.Sprintf("ERR the embedded Redis does not run %s inside MULTI", cmd))
	return true
}

// abortExec ends c's transaction with EXECABORT. miniredis still holds the
// queued commands; a DISCARD on a peer that shares c's state, with its
// reply thrown away, drops them.
func (ps *pubsub) abortExec(c *server.Peer) {
	discard := server.NewPeer(bufio.NewWriter(io.Discard))
	discard.Ctx = c.Ctx
	ps.srv.Dispatch(discard, []string{"DISCARD"})
	c.WriteError("EXECABORT Transaction discarded because of previous errors.")
}

// pubsubForm reports whether args are a PUBSUB this layer answers; any
// other is left to miniredis, for its error.
func pubsubForm(args []string) bool {
	if len(args) == 0 {
		return false
	}
	switch strings.ToUpper(args[0]) {
	case "CHANNELS":
		return len(args) <= 2
	case "NUMSUB":
		return true
	case "NUMPAT":
		return len(args) == 1
	}
	return false
}

func (ps *pubsub) pubsubCommand(c *server.Peer, args []string) bool {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	switch strings.ToUpper(args[0]) {
	case "CHANNELS":
		var names []string
		for ch := range ps.channels {
			if len(args) == 1 || globMatch(args[1], ch) {
				names = append(names, ch)
			}
		}
		slices.Sort(names)
		c.WriteStrings(names)
	case "NUMSUB":
		c.Block(func(w *server.Writer) {
			w.WriteLen(2 * (len(args) - 1))
			for _, ch := range args[1:] {
				w.WriteBulk(ch)
				w.WriteInt(len(ps.channels[ch]))
			}
		})
	case "NUMPAT":
		// Patterns, not subscriptions: two clients on one pattern
		// count once.
		c.WriteInt(len(ps.patterns))
	}
	return true
}

// globMatch is Redis's glob match (stringmatchlen in util.c), case
// sensitive: * ? [abc] [^abc] [a-z] and \ to escape, with an unclosed [
// taken as the rest of the pattern.
func globMatch(pattern, s string) bool {
	skipLonger := false
	return globMatchFrom(pattern, s, &skipLonger)
}

// globMatchFrom follows the C line by line, indices in place of pointers.
// skipLonger ends the search once the rest of the pattern after a * has
// matched nowhere in the rest of s: no longer match for an earlier * can
// help.
func globMatchFrom(p, s string, skipLonger *bool) bool {
	pi, si := 0, 0
	for pi < len(p) && si < len(s) {
		switch p[pi] {
		case '*':
			for pi+1 < len(p) && p[pi+1] == '*' {
				pi++
			}
			if pi == len(p)-1 {
				return true
			}
			for si < len(s) {
				if globMatchFrom(p[pi+1:], s[si:], skipLonger) {
					return true
				}
				if *skipLonger {
					return false
				}
				si++
			}
			*skipLonger = true
			return false
		case '?':
			si++
		case '[':
			pi++
			not := pi < len(p) && p[pi] == '^'
			if not {
				pi++
			}
			match := false
			for {
				if pi+1 < len(p) && p[pi] == '\\' {
					pi++
					if p[pi] == s[si] {
						match = true
					}
				} else if pi >= len(p) {
					pi-- // unclosed: the pattern ends here
					break
				} else if p[pi] == ']' {
					break
				} else if pi+2 < len(p) && p[pi+1] == '-' {
					lo, hi := p[pi], p[pi+2]
					if lo > hi {
						lo, hi = hi, lo
					}
					pi += 2
					if s[si] >= lo && s[si] <= hi {
						match = true
					}
				} else if p[pi] == s[si] {
					match = true
				}
				pi++
			}
			if not {
				match = !match
			}
			if !match {
				return false
			}
			si++
		case '\\':
			if pi+1 < len(p) {
				pi++
			}
			fallthrough
		default:
			if p[pi] != s[si] {
				return false
			}
			si++
		}
		pi++
		if si == len(s) {
			for pi < len(p) && p[pi] == '*' {
				pi++
			}
			break
		}
	}
	return pi == len(p) && si == len(s)
}
