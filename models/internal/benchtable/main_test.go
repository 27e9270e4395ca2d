package main

import (
	"bytes"
	"strings"
	"testing"
)

const sample = `goos: linux
goarch: amd64
pkg: github.com/lockcheck/lockcheck/models
cpu: AMD EPYC
BenchmarkCheck/ops=10k/clients=8/keys=1-2         	       1	  19249571 ns/op	         3.142 history-heap-MB	        12.50 peak-heap-MB	15301104 B/op	   64097 allocs/op
BenchmarkCheck/ops=1M/clients=64/keys=16-2        	       1	2154000000 ns/op	       321.0 history-heap-MB	      1450 peak-heap-MB	1234000000 B/op	   64097 allocs/op
--- FAIL: BenchmarkCheck/ops=100k/clients=64/keys=1
PASS
ok  	github.com/lockcheck/lockcheck/models	0.169s
`

func TestTableFromBenchOutput(t *testing.T) {
	var out bytes.Buffer
	if err := run(strings.NewReader(sample), &out); err != nil {
		t.Fatal(err)
	}
	want := `| ops | clients | keys | time | allocated | peak heap | history heap |
|---:|---:|---:|---:|---:|---:|---:|
| 10k | 8 | 1 | 19.2 ms | 15.3 MB | 12.5 MB | 3.1 MB |
| 1M | 64 | 16 | 2.15 s | 1.23 GB | 1.45 GB | 321.0 MB |

Measured on AMD EPYC; peak heap includes the history.
`
	if out.String() != want {
		t.Errorf("got\n%s\nwant\n%s", out.String(), want)
	}
}

func TestBenchmarksAreNamedWhenThereAreSeveral(t *testing.T) {
	in := sample + "BenchmarkCheckUnreportedAttempts/ops=100k/clients=64/keys=1-2  1  145000000 ns/op  30.2 history-heap-MB  80.0 peak-heap-MB  100000000 B/op  5 allocs/op\n"
	var out bytes.Buffer
	if err := run(strings.NewReader(in), &out); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(out.String(), "\n")
	if !strings.HasPrefix(lines[0], "| benchmark | ops |") || !strings.HasPrefix(lines[2], "| Check | 10k |") ||
		!strings.HasPrefix(lines[4], "| CheckUnreportedAttempts | 100k | 64 | 1 | 145.0 ms |") {
		t.Errorf("table:\n%s", out.String())
	}
}

func TestNoResultsIsAnError(t *testing.T) {
	if err := run(strings.NewReader("PASS\n"), &bytes.Buffer{}); err == nil {
		t.Error("empty input gave a table")
	}
}
