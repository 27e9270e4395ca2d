package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestTableCountsEachVerdict(t *testing.T) {
	root := t.TempDir()
	runs := map[string]string{
		"a": `{"verdict":"invalid","seed":2,"scenario":{"locker":"tus616","faults":["pause"]},"report":{"liveness":{"verdict":"invalid"}}}`,
		"b": `{"verdict":"valid","seed":1,"scenario":{"locker":"tus616","faults":["pause"]},"report":{"liveness":{"verdict":"valid"}}}`,
		"c": `{"verdict":"unknown","seed":3,"scenario":{"locker":"tus616","faults":["pause"]},"report":{"liveness":{"verdict":"valid"}}}`,
		"d": `{"verdict":"valid","seed":1,"scenario":{"locker":"tus616","faults":[]},"report":{"liveness":{"verdict":"valid"}}}`,
	}
	for dir, body := range runs {
		os.MkdirAll(filepath.Join(root, dir), 0o755)
		os.WriteFile(filepath.Join(root, dir, "result.json"), []byte(body), 0o644)
	}
	rs, err := collect(root)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	write(&b, rs)
	out := b.String()
	for _, want := range []string{
		"| tus616 | none | 1 | 0 / 0 / 1 | 1:valid | 0/1 |",
		"| tus616 | pause | 3 | 1 / 1 / 1 | 1:valid 2:invalid 3:unknown | 1/3 |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}
