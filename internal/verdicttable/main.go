// Command verdicttable summarises the result.json files of many runs as a
// Markdown table: one row per locker and fault set, the safety verdict of
// each seed, and the liveness verdicts, so a make target can regenerate the
// README's tables from real runs.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

type result struct {
	Verdict string `json:"verdict"`
	Seed    uint64 `json:"seed"`
	Run     struct {
		Locker string   `json:"locker"`
		Faults []string `json:"faults"`
	} `json:"scenario"`
	Report struct {
		Liveness struct {
			Verdict string `json:"verdict"`
		} `json:"liveness"`
	} `json:"report"`
}

func main() {
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: verdicttable RESULTS_DIR...\n\nPrints a Markdown table of the safety and liveness verdicts of every run\n(each directory holding a result.json) under the given directories.")
	}
	flag.Parse()
	if flag.NArg() == 0 {
		flag.Usage()
		os.Exit(2)
	}
	var results []result
	for _, root := range flag.Args() {
		rs, err := collect(root)
		if err != nil {
			fmt.Fprintln(os.Stderr, "verdicttable:", err)
			os.Exit(1)
		}
		results = append(results, rs...)
	}
	if len(results) == 0 {
		fmt.Fprintln(os.Stderr, "verdicttable: no result.json under", strings.Join(flag.Args(), ", "))
		os.Exit(1)
	}
	write(os.Stdout, results)
}

func collect(root string) ([]result, error) {
	paths, err := filepath.Glob(filepath.Join(root, "*", "result.json"))
	if err != nil {
		return nil, err
	}
	var out []result
	var errs []error
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		var r result
		if err := json.Unmarshal(b, &r); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", p, err))
			continue
		}
		out = append(out, r)
	}
	return out, errors.Join(errs...)
}

func write(w io.Writer, results []result) {
	type row struct {
		locker, faults string
		runs           []result
	}
	rows := map[string]*row{}
	for _, r := range results {
		faults := strings.Join(r.Run.Faults, ",")
		if faults == "" {
			faults = "none"
		}
		k := r.Run.Locker + "\x00" + faults
		if rows[k] == nil {
			rows[k] = &row{locker: r.Run.Locker, faults: faults}
		}
		rows[k].runs = append(rows[k].runs, r)
	}
	var keys []string
	for k := range rows {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	fmt.Fprintln(w, "| locker | faults | seeds | safety: invalid / unknown / valid | safety per seed | liveness stuck |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|")
	for _, k := range keys {
		r := rows[k]
		sort.Slice(r.runs, func(i, j int) bool { return r.runs[i].Seed < r.runs[j].Seed })
		count := map[string]int{}
		var per []string
		stuck := 0
		for _, x := range r.runs {
			count[x.Verdict]++
			per = append(per, fmt.Sprintf("%d:%s", x.Seed, x.Verdict))
			if x.Report.Liveness.Verdict == "invalid" {
				stuck++
			}
		}
		fmt.Fprintf(w, "| %s | %s | %d | %d / %d / %d | %s | %d/%d |\n", r.locker, r.faults, len(r.runs),
			count["invalid"], len(r.runs)-count["invalid"]-count["valid"], count["valid"], strings.Join(per, " "), stuck, len(r.runs))
	}
}
