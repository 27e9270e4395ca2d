// Command benchtable turns the output of the checkers' benchmarks (go test
// -bench BenchmarkCheck -benchmem) into a Markdown table: one row per
// benchmark line, with the operations, clients and keys of its name, its
// time, the memory it allocated, the heap's high-water mark and the heap
// the history alone took; and the benchmark's name, when the output holds
// more than one benchmark. It reads the benchmark output on stdin and
// writes the table on stdout.
//
//	go test -run '^$' -bench BenchmarkCheck -benchtime 1x -benchmem ./models/ | go run ./models/internal/benchtable
package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

func main() {
	if err := run(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "benchtable:", err)
		os.Exit(1)
	}
}

// row is one benchmark result: the benchmark's name without its
// parameters, the parameters, and its metrics by unit.
type row struct {
	bench   string
	params  map[string]string
	metrics map[string]float64
}

func run(in io.Reader, out io.Writer) error {
	rows, cpu, err := parse(in)
	if err != nil {
		return err
	}
	if len(rows) == 0 {
		return errors.New("no benchmark results on stdin; pipe in the output of go test -bench")
	}
	return write(out, rows, cpu)
}

func parse(in io.Reader) ([]row, string, error) {
	var rows []row
	var cpu string
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, "cpu: "); ok {
			cpu = strings.TrimSpace(rest)
			continue
		}
		if !strings.HasPrefix(line, "Benchmark") {
			continue
		}
		f := strings.Fields(line)
		// name, iterations, then value-unit pairs.
		if len(f) < 4 || len(f)%2 != 0 {
			continue
		}
		if _, err := strconv.Atoi(f[1]); err != nil {
			continue
		}
		base, _, _ := strings.Cut(f[0], "/")
		r := row{bench: strings.TrimPrefix(base, "Benchmark"), params: params(f[0]), metrics: map[string]float64{}}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				return nil, "", fmt.Errorf("%q: value %q: %w", line, f[i], err)
			}
			r.metrics[f[i+1]] = v
		}
		rows = append(rows, r)
	}
	if err := sc.Err(); err != nil {
		return nil, "", fmt.Errorf("read: %w", err)
	}
	return rows, cpu, nil
}

// params reads "BenchmarkCheck/ops=10k/clients=8/keys=1-2": key=value
// segments, without the -GOMAXPROCS suffix of the last.
func params(name string) map[string]string {
	p := map[string]string{}
	segs := strings.Split(name, "/")
	if last := segs[len(segs)-1]; strings.Contains(last, "-") {
		i := strings.LastIndex(last, "-")
		if _, err := strconv.Atoi(last[i+1:]); err == nil {
			segs[len(segs)-1] = last[:i]
		}
	}
	for _, s := range segs[1:] {
		if k, v, ok := strings.Cut(s, "="); ok {
			p[k] = v
		}
	}
	return p
}

func write(out io.Writer, rows []row, cpu string) error {
	w := bufio.NewWriter(out)
	// Name the benchmark only when there is more than one.
	named := false
	for _, r := range rows {
		named = named || r.bench != rows[0].bench
	}
	if named {
		fmt.Fprint(w, "| benchmark ")
	}
	fmt.Fprintln(w, "| ops | clients | keys | time | allocated | peak heap | history heap |")
	if named {
		fmt.Fprint(w, "|:---")
	}
	fmt.Fprintln(w, "|---:|---:|---:|---:|---:|---:|---:|")
	for _, r := range rows {
		if named {
			fmt.Fprintf(w, "| %s ", r.bench)
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s |\n",
			orDash(r.params["ops"]), orDash(r.params["clients"]), orDash(r.params["keys"]),
			metric(r, "ns/op", duration), metric(r, "B/op", byteSize),
			metric(r, "peak-heap-MB", megabytes), metric(r, "history-heap-MB", megabytes))
	}
	if cpu != "" {
		fmt.Fprintf(w, "\nMeasured on %s; peak heap includes the history.\n", cpu)
	}
	return w.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "–"
	}
	return s
}

func metric(r row, unit string, format func(float64) string) string {
	v, ok := r.metrics[unit]
	if !ok {
		return "–"
	}
	return format(v)
}

func duration(ns float64) string {
	switch {
	case ns >= 1e9:
		return fmt.Sprintf("%.2f s", ns/1e9)
	case ns >= 1e6:
		return fmt.Sprintf("%.1f ms", ns/1e6)
	case ns >= 1e3:
		return fmt.Sprintf("%.1f µs", ns/1e3)
	}
	return fmt.Sprintf("%.0f ns", ns)
}

func byteSize(b float64) string {
	return megabytes(b / 1e6)
}

func megabytes(mb float64) string {
	switch {
	case mb >= 1000:
		return fmt.Sprintf("%.2f GB", mb/1000)
	case mb >= 1:
		return fmt.Sprintf("%.1f MB", mb)
	}
	return fmt.Sprintf("%.0f kB", mb*1000)
}
