package models

import (
	"strings"
	"testing"

	"github.com/lockcheck/lockcheck/history"
)

// auditHistory is two clients taking one key in turn on the embedded GCS,
// with the writes the backend accepted, then extra events.
func auditHistory(t *testing.T, extra ...history.Event) *history.History {
	t.Helper()
	w := func(ns int64, client int, op, object string, before, after int64) history.Event {
		return nemesisAt(t, ns, history.BackendWrite, history.Write{Object: object, Op: op, Client: client, Before: before, After: after})
	}
	call := func(ns int64, p history.Process, typ history.Type, f string) history.Event {
		return history.Event{Time: ns, Process: p, Client: int(p), Type: typ, F: f, Key: "k"}
	}
	events := []history.Event{
		call(0, 0, history.Invoke, history.Acquire),
		w(1, 0, "write", "k.lock", 0, 100),
		call(2, 0, history.OK, history.Acquire),
		call(3, 1, history.Invoke, history.Acquire),
		// A waiter's own object (a release request): not the lock.
		w(5, 1, "write", "k.lock.release", 0, 150),
		w(6, 0, "update", "k.lock", 100, 100), // the holder's extend
		call(10, 0, history.Invoke, history.Release),
		w(11, 0, "delete", "k.lock", 100, 0),
		call(12, 0, history.OK, history.Release),
		w(13, 1, "write", "k.lock", 0, 200),
		call(14, 1, history.OK, history.Acquire),
		w(15, -1, "delete", "k.lock", 200, 0), // no writer named: not judged
		call(30, 1, history.Invoke, history.Release),
		w(31, 1, "delete", "k.lock", 200, 0),
		call(32, 1, history.OK, history.Release),
	}
	events = append(events, extra...)
	h := &history.History{Events: events}
	sortByTime(h.Events)
	for i := range h.Events {
		h.Events[i].Index = int64(i)
	}
	return h
}

func sortByTime(es []history.Event) {
	for i := 1; i < len(es); i++ {
		for j := i; j > 0 && es[j].Time < es[j-1].Time; j-- {
			es[j], es[j-1] = es[j-1], es[j]
		}
	}
}

// Paired cases: writes that each holder made to its own lock, and a
// stray write that came after the lock it hit was released, pass; a
// delete or an extend that another client got accepted on a lock while
// its holder held it is caught, with who and when.
func TestBackendAuditCatchesAWriteOnAnothersLock(t *testing.T) {
	stray := func(ns int64, op string, after int64) history.Event {
		return nemesisAt(t, ns, history.BackendWrite, history.Write{Object: "k.lock", Op: op, Client: 0, Before: 200, After: after})
	}
	cases := []struct {
		name  string
		extra []history.Event
		want  Verdict
		says  string
	}{
		{"each holder writes its own lock", nil, Valid, "6 accepted writes, none on a lock another client held (2 holds' lock objects followed)"},
		{"a stray write after the hold ended", []history.Event{stray(33, "update", 200)}, Valid, "none on a lock another client held"},
		{"a late delete while another holds", []history.Event{stray(20, "delete", 0)}, Invalid,
			"at 0s the backend accepted client 0's delete of k.lock at version 200, the lock client 1 (P1) acquired on key k at 0s and held until 0s"},
		{"an extend with no precondition while another holds", []history.Event{stray(13, "update", 200)}, Invalid, "client 0's update of k.lock at version 200"},
	}
	for _, c := range cases {
		res := checkAudit(auditHistory(t, c.extra...), Options{})
		if res == nil {
			t.Fatalf("%s: no audit", c.name)
		}
		text := res.Summary + " " + strings.Join(res.Counterexamples, " ")
		if res.Verdict != c.want || !strings.Contains(text, c.says) {
			t.Errorf("%s: %s: %s; want %s saying %q", c.name, res.Verdict, text, c.want, c.says)
		}
	}
	if res := checkAudit(&history.History{Events: []history.Event{{F: history.Acquire, Type: history.Invoke}}}, Options{}); res != nil {
		t.Errorf("a history with no backend writes audited: %+v", res)
	}
}

// Paired cases: a holder that extends in time and lets go before its
// lease ends on the backend keeps the promise; one whose lease lapsed (its
// extend landed too late to count) while it went on holding breaks it;
// a locker that promises nothing is not judged.
func TestLostNoticeMustComeBeforeTheLeaseEnds(t *testing.T) {
	cases := []struct {
		name    string
		lease   int64
		promise string
		want    Verdict
		says    string
	}{
		{"extended in time", 20, history.NoticeBeforeLeaseEnd, Valid, "each of 2 holders was told, or let go, before its lease ended"},
		{"lapsed while holding", 4, history.NoticeBeforeLeaseEnd, Invalid, "client 0 (P0) acquired key k at 0s; its lease ended on the backend at 0s"},
	}
	for _, c := range cases {
		h := auditHistory(t)
		h.Header.Run.Lease, h.Header.Run.LostNotice = history.Duration(c.lease), c.promise
		res := checkNotice(h, Options{})
		if res == nil {
			t.Fatalf("%s: not judged", c.name)
		}
		text := res.Summary + " " + strings.Join(res.Counterexamples, " ")
		if res.Verdict != c.want || !strings.Contains(text, c.says) {
			t.Errorf("%s: %s: %s; want %s saying %q", c.name, res.Verdict, text, c.want, c.says)
		}
	}
	h := auditHistory(t)
	h.Header.Run.Lease = 4
	if res := checkNotice(h, Options{}); res != nil {
		t.Errorf("a locker that promises nothing was judged: %+v", res)
	}
}
