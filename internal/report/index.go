package report

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/lockcheck/lockcheck/models"
)

// Run is one row of an index: a run directory and what its result says.
type Run struct {
	// Dir is the run's directory relative to the index.
	Dir string
	ID  string
	// Scenario names the scenario the run was made from; empty for runs
	// made before runs recorded it.
	Scenario string
	Locker   string
	Workload string
	Faults   []string
	Seed     uint64
	Verdict  models.Verdict
	// Expect is the scenario's expected verdict (valid, invalid or
	// either; empty for a run recorded without one): the index colours a
	// run by whether its verdict met it, so a pinned defect caught again
	// is green, not red.
	Expect string
	Start  time.Time
	// Report is the page's path relative to the index; empty when there
	// is none.
	Report string
	// Problem says why the run could not be read or its page built.
	Problem string

	_ struct{}
}

// SortRuns orders runs newest first, then by directory, so that an index
// reads the same every time it is built.
func SortRuns(runs []Run) {
	sort.SliceStable(runs, func(i, j int) bool {
		if !runs[i].Start.Equal(runs[j].Start) {
			return runs[i].Start.After(runs[j].Start)
		}
		return runs[i].Dir < runs[j].Dir
	})
}

// WriteIndex writes an index page of runs to path, newest first.
func WriteIndex(path, title string, runs []Run) error {
	runs = append([]Run(nil), runs...)
	SortRuns(runs)
	counts := map[models.Verdict]int{}
	for _, r := range runs {
		counts[verdictOrUnknown(r.Verdict)]++
	}
	var b strings.Builder
	fmt.Fprintf(&b, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>%s</title><style>%s</style></head><body>\n", esc(title), css)
	fmt.Fprintf(&b, "<h1>%s</h1>\n<p>%d runs: %d valid, %d invalid, %d unknown. Newest first.</p>\n",
		esc(title), len(runs), counts[models.Valid], counts[models.Invalid], counts[models.Unknown])
	b.WriteString("<p class=\"note\">A verdict is green when it is what its scenario expects (a pinned defect found again is green), red when it is not, amber when unknown; a run that expects either verdict (a compare cell) is green when valid and red when invalid; the expectation is beside it.</p>\n")
	b.WriteString("<table id=\"runs\">\n<tr><th>started (UTC)</th><th>run</th><th>scenario</th><th>locker</th><th>workload</th><th>faults</th><th>seed</th><th>verdict</th><th>expected</th></tr>\n")
	for _, r := range runs {
		v := verdictOrUnknown(r.Verdict)
		name := esc(r.Dir)
		if r.Report != "" {
			name = fmt.Sprintf("<a href=\"%s\">%s</a>", esc(filepath.ToSlash(r.Report)), esc(r.Dir))
		}
		if r.Problem != "" {
			name += fmt.Sprintf("<br><span class=\"note\">%s</span>", esc(r.Problem))
		}
		started := ""
		if !r.Start.IsZero() {
			started = r.Start.UTC().Format("2006-01-02 15:04:05")
		}
		faults := strings.Join(r.Faults, ", ")
		if faults == "" {
			faults = "none"
		}
		expect := r.Expect
		if expect == "" {
			expect = "valid"
		}
		fmt.Fprintf(&b, "<tr class=\"run\"><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%d</td><td class=\"%s\">%s</td><td>%s</td></tr>\n",
			started, name, esc(r.Scenario), esc(r.Locker), esc(r.Workload), esc(faults), r.Seed, expectationClass(v, expect), esc(string(v)), esc(expect))
	}
	b.WriteString("</table>\n</body></html>\n")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("report: index: %w", err)
	}
	return nil
}

// expectationClass colours a verdict by its expectation: met is valid's
// green, missed invalid's red, unknown amber whatever was expected. A run
// that expects nothing in particular ("either": a compare cell, an ad hoc
// run) is coloured by its verdict: an invalid run is red, whatever
// anyone expected of it.
func expectationClass(v models.Verdict, expect string) string {
	switch {
	case v == models.Unknown:
		return "unknown"
	case expect == "either" || expect == "":
		return string(v)
	case string(v) == expect:
		return "valid"
	}
	return "invalid"
}

func verdictOrUnknown(v models.Verdict) models.Verdict {
	if v != models.Valid && v != models.Invalid {
		return models.Unknown
	}
	return v
}
