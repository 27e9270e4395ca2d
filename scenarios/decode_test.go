package scenarios

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A good file decodes; each bad one is refused naming the file, the line
// and column, and the field.
func TestDecodeNamesFileLineAndField(t *testing.T) {
	good := "{\n  \"locker\": \"fenced\",\n  \"faults\": [\"pause\"],\n  \"duration\": \"2s\",\n  \"expect\": {\"verdict\": \"invalid\", \"reason\": \"a pause outlasts the lease\"}\n}\n"
	s, err := Decode("good.json", []byte(good))
	if err != nil || s.Locker != "fenced" || s.Expect.Verdict != ExpectInvalid || s.Duration != Duration(2e9) {
		t.Fatalf("good file: %+v, %v", s, err)
	}
	for _, c := range []struct{ name, data, want string }{
		{"typo", "{\n  \"locker\": \"fenced\",\n  \"fautls\": [\"pause\"]\n}", `typo.json:3:3: unknown field "fautls"; known fields: acquire_timeout`},
		{"nested", `{"locker": "fenced", "expect": {"verdict": "valid", "reason": "x", "why": 1}}`, `nested.json:1:68: unknown field "why"`},
		{"type", "{\n  \"clients\": \"four\"\n}", "type.json:2:19: field clients: want a whole number, got a JSON string"},
		{"duration", "{\n  \"locker\": \"fenced\",\n  \"duration\": \"10 seconds\"\n}", `duration.json:3:3: field duration: time: unknown unit " seconds"`},
		{"cut", "{\n  \"locker\": \"fenced\",\n", "cut.json:3:1: the file ends inside the scenario"},
		{"syntax", "{\n  \"locker\": \"fenced\"\n  \"clients\": 4\n}", `syntax.json:3:3: invalid character '"' after object key:value pair`},
		{"array", `["fenced"]`, "array.json:1:1: a scenario is a JSON object, not a JSON array"},
		{"two", `{"locker": "fenced"} {"locker": "lai"}`, "two.json:1:22: more after the scenario's closing brace"},
		{"empty", "", "empty.json:1:1: empty file"},
		// A zero written out is refused, as verify run's flags refuse it,
		// not silently replaced by the default.
		{"zero-clients", "{\n  \"locker\": \"fenced\",\n  \"clients\": 0\n}", "zero-clients.json:3:3: clients is 0: want a positive value, or leave clients out for its default"},
		{"zero-keys", `{"keys": 0}`, "keys is 0: want a positive value"},
		{"zero-duration", `{"duration": "0s"}`, `duration is "0s": want a positive value`},
		{"zero-time-scale", `{"time_scale": 0}`, "time_scale is 0: want a positive value"},
		{"zero-acquire", `{"acquire_timeout": "0"}`, `acquire_timeout is "0": want a positive value`},
	} {
		_, err := Decode(c.name+".json", []byte(c.data))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one saying %q", c.name, err, c.want)
		}
	}
}

func TestReadDirNamesSpecsAfterTheirFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ci")
	os.Mkdir(dir, 0o755)
	os.WriteFile(filepath.Join(dir, "b.json"), []byte(`{"locker": "lai"}`), 0o644)
	os.WriteFile(filepath.Join(dir, "a.json"), []byte(`{"name": "mine", "locker": "fenced"}`), 0o644)
	os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("not a scenario"), 0o644)
	specs, err := ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(specs) != 2 || specs[0].Name != "mine" || specs[1].Name != "ci/b" {
		t.Fatalf("specs %+v, want mine then ci/b", specs)
	}
	if _, err := ReadDir(t.TempDir()); err == nil || !strings.Contains(err.Error(), "holds no *.json file") {
		t.Errorf("an empty directory: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "c.json"), []byte(`{"lokcer": "lai"}`), 0o644)
	if _, err := ReadDir(dir); err == nil || !strings.Contains(err.Error(), "c.json:1:2: unknown field \"lokcer\"") {
		t.Errorf("a bad file in the directory: %v", err)
	}
}

// A spec from a file fills what it leaves out: seeds, expectation, and an
// external worker's clients and name.
func TestNormalizeFillsAFileSpec(t *testing.T) {
	s, err := Spec{Name: "f", Locker: "fenced"}.Normalize(resolve)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Seeds) != 1 || s.Seeds[0] != 1 || s.Expect.Verdict != ExpectValid || s.Expect.Reason != DefaultExpectReason {
		t.Errorf("seeds %v, expect %+v: want [1] and valid", s.Seeds, s.Expect)
	}
	w, err := Spec{Name: "w", Worker: []string{"node", "w.js"}, Backend: BackendRedis}.Normalize(resolve)
	if err != nil {
		t.Fatal(err)
	}
	if w.Locker != DefaultWorkerLocker || w.ClientsAs != "process" {
		t.Errorf("worker spec: locker %q, clients_as %q", w.Locker, w.ClientsAs)
	}
	for _, c := range []struct {
		s    Spec
		want string
	}{
		{Spec{Name: "w", Worker: []string{"node"}}, `backend: "": an external worker needs the backend`},
		{Spec{Name: "w", Worker: []string{""}, Backend: BackendNone}, "worker: the command is empty"},
		{Spec{Name: "w", Worker: []string{"node"}, Backend: BackendGCS, ClientsAs: "goroutine"}, "clients_as: \"goroutine\": an external worker runs every client as a process"},
		{Spec{Name: "w", Worker: []string{"node"}, Backend: BackendGCS, TTL: Duration(1e9)}, "ttl: an external worker's lease is unknown"},
		{Spec{Name: "w", Locker: "fenced", Backend: BackendGCS}, `backend: "gcs" is for an external worker`},
	} {
		if _, err := c.s.Normalize(resolve); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: error %v, want one saying %q", c.s, err, c.want)
		}
	}
}

// No input makes Decode panic, and every refusal names the file and a
// line:column.
func FuzzDecode(f *testing.F) {
	for _, seed := range []string{
		`{"locker": "fenced", "faults": ["pause"], "duration": "2s"}`,
		`{"worker": ["node", "w.js"], "backend": "redis", "expect": {"verdict": "valid", "reason": "x"}}`,
		`{"rate": 0, "seeds": [1, 2], "clients": 1e3}`,
		`{"expect": {"verdict": 3}}`, `{"duration": 5}`, `[{}]`, `{"a":`, "\"\\u12", `{} {}`, ``, `null`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		_, err := Decode("f.json", data)
		if err != nil && !strings.HasPrefix(err.Error(), "f.json:") {
			t.Errorf("error without the file's name: %v", err)
		}
	})
}
