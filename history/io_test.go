package history

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
)

func sampleEvents() []Event {
	fault, _ := json.Marshal(Fault{ID: 1, Kind: "pause", Clients: []int{2}, Duration: Duration(1500 * time.Millisecond)})
	return []Event{
		{Time: 10, Process: 0, Client: 0, Type: Invoke, F: Acquire, Key: "k0"},
		{Time: 20, Process: 0, Client: 0, Type: OK, F: Acquire, Key: "k0", Token: 7, Attempt: 15},
		{Time: 25, Process: Nemesis, Client: -1, Type: Info, F: FaultStart, Value: fault},
		{Time: 30, Process: 1, Client: 1, Type: Invoke, F: Acquire, Key: "k0"},
		{Time: 40, Process: 1, Client: 1, Type: Info, F: Acquire, Key: "k0", Error: "context deadline exceeded"},
		{Time: 50, Process: 0, Client: 0, Type: Invoke, F: Release, Key: "k0"},
		{Time: 60, Process: 0, Client: 0, Type: Fail, F: Release, Key: "k0", Error: "not held"},
	}
}

func writeSample(t *testing.T) (*bytes.Buffer, Header, []Event) {
	t.Helper()
	var buf bytes.Buffer
	h := Header{Start: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Run: RunInfo{ID: "r1", Locker: "memory", Seed: 42, Clients: 2, Keys: 1, Duration: Duration(time.Second), Faults: []string{"pause"}}}
	w, err := NewWriter(&buf, h)
	if err != nil {
		t.Fatal(err)
	}
	var written []Event
	for _, e := range sampleEvents() {
		got, err := w.Append(e)
		if err != nil {
			t.Fatal(err)
		}
		written = append(written, got)
	}
	h.Schema, h.Version = Schema, Version
	return &buf, h, written
}

func TestRoundTrip(t *testing.T) {
	buf, h, written := writeSample(t)
	got, err := Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	if got.Truncated {
		t.Error("complete history reported as truncated")
	}
	if !reflect.DeepEqual(got.Header, h) {
		t.Errorf("header:\n got %+v\nwant %+v", got.Header, h)
	}
	if !reflect.DeepEqual(got.Events, written) {
		t.Errorf("events:\n got %+v\nwant %+v", got.Events, written)
	}
	for i, e := range got.Events {
		if e.Index != int64(i) {
			t.Errorf("event %d has index %d", i, e.Index)
		}
	}
	if got.Events[2].Process != Nemesis {
		t.Errorf("nemesis process decoded as %v", got.Events[2].Process)
	}
}

func TestNemesisEncodesAsString(t *testing.T) {
	buf, _, _ := writeSample(t)
	if !strings.Contains(buf.String(), `"process":"nemesis"`) {
		t.Errorf("nemesis process not written as \"nemesis\":\n%s", buf)
	}
}

func TestTruncatedLastLineIsDroppedAndReported(t *testing.T) {
	buf, _, written := writeSample(t)
	cut := buf.Bytes()[:buf.Len()-9]
	got, err := Read(bytes.NewReader(cut))
	if err != nil {
		t.Fatal(err)
	}
	if !got.Truncated {
		t.Error("cut history not reported as truncated")
	}
	if len(got.Events) != len(written)-1 {
		t.Errorf("got %d events, want %d", len(got.Events), len(written)-1)
	}
}

func TestRejectsWhatIsNotAHistory(t *testing.T) {
	buf, _, _ := writeSample(t)
	lines := strings.SplitAfter(buf.String(), "\n")
	cases := map[string]struct{ input, want string }{
		"empty":          {"", "empty file"},
		"garbage":        {"\x00\x01 hello\n", "line 1: not a history header"},
		"other json":     {`{"a":1}` + "\n", `schema is ""`},
		"future":         {`{"schema":"lockcheck-history","version":99}` + "\n", "version 99"},
		"bad type":       {lines[0] + `{"index":0,"time":1,"process":0,"client":0,"type":"maybe","f":"acquire"}` + "\n", `line 2: type "maybe"`},
		"gap":            {lines[0] + lines[1] + lines[3], "line 3: index 2, want 1"},
		"bad process":    {lines[0] + `{"index":0,"time":1,"process":"x","client":0,"type":"ok","f":"acquire"}` + "\n", "line 2: process must be"},
		"unknown field":  {lines[0] + `{"index":0,"time":1,"process":0,"client":0,"type":"ok","f":"acquire","bogus":1}` + "\n", `unknown field "bogus"`},
		"corrupt middle": {lines[0] + lines[1] + "{not json\n" + lines[2], "line 3:"},
		"huge header":    {`{"schema":"lockcheck-history","version":1,"run":{"clients":1000000000000,"keys":1}}` + "\n", "1000000000000 clients and 1 keys; a run has 1 to 1024 clients"},
		"huge keys":      {`{"schema":"lockcheck-history","version":1,"run":{"clients":2,"keys":70000}}` + "\n", "a run has 1 to 1024 clients and 1 to 65536 keys"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := Read(strings.NewReader(c.input))
			if err == nil {
				t.Fatalf("accepted %q", c.input)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not mention %q", err, c.want)
			}
		})
	}
}
