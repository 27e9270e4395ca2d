package harness

import (
	"bytes"
	"encoding/json"
	"strconv"
	"testing"
	"testing/synctest"
	"time"

	"github.com/lockcheck/lockcheck/history"
)

// Events of one virtual instant, recorded in whatever order the scheduler
// ran their goroutines, are written in one order: a simulated seed's
// history repeats byte for byte. Each client's events keep the order they
// were recorded in; a later instant's events come after.
func TestSimulatedInstantIsWrittenInOneOrder(t *testing.T) {
	write := func(c int) history.Event {
		v, _ := json.Marshal(history.Write{Object: "k", Op: "write", Client: c, After: int64(c + 1)})
		return history.Event{Process: history.Nemesis, Client: -1, Type: history.Info, F: history.BackendWrite, Value: v}
	}
	call := func(c int, typ history.Type) history.Event {
		return history.Event{Process: history.Process(c), Client: c, Type: typ, F: history.Acquire, Key: "k"}
	}
	fault := history.Event{Process: history.Nemesis, Client: -1, Type: history.Info, F: history.FaultStart, Value: json.RawMessage(`{"kind":"pause","clients":[1]}`)}
	orders := [][]history.Event{
		{call(1, history.Invoke), write(3), call(3, history.OK), fault, write(1), call(1, history.OK)},
		{write(3), fault, call(1, history.Invoke), write(1), call(3, history.OK), call(1, history.OK)},
	}
	var outs []string
	for _, events := range orders {
		synctest.Test(t, func(t *testing.T) {
			var buf bytes.Buffer
			w, err := history.NewWriter(&buf, history.Header{})
			if err != nil {
				t.Fatal(err)
			}
			r := newRecorder(w, time.Now(), nil, true)
			time.Sleep(time.Millisecond)
			for _, e := range events {
				r.record(e)
			}
			time.Sleep(time.Millisecond)
			r.record(call(0, history.Invoke)) // the next instant
			if err := r.Err(); err != nil {
				t.Fatal(err)
			}
			outs = append(outs, buf.String())
		})
	}
	if outs[0] != outs[1] {
		t.Fatalf("one instant, two histories:\n%s\n%s", outs[0], outs[1])
	}
	h, err := history.Read(bytes.NewReader([]byte(outs[0])))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range h.Events {
		got = append(got, string(e.Type)+" "+e.F+" "+strconv.Itoa(concerns(e)))
	}
	want := []string{
		"info fault-start -1",
		"invoke acquire 1", "info backend-write 1", "ok acquire 1",
		"info backend-write 3", "ok acquire 3",
		"invoke acquire 0",
	}
	if len(got) != len(want) {
		t.Fatalf("events %q, want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("events %q, want %q", got, want)
		}
	}
}
