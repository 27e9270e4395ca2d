package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lockcheck/lockcheck/internal/compare"
	"github.com/lockcheck/lockcheck/models"
)

// A comparison with a planted bug exits 1, writes both tables, and the
// Markdown copy asked for; the control's cell stays valid.
func TestCompareWritesTablesAndExitsOnTheWorstVerdict(t *testing.T) {
	t.Parallel()
	out := t.TempDir()
	md := filepath.Join(t.TempDir(), "table.md")
	// In simulation: the planted double grant is caught on seed 3 on every
	// run, loaded machine or not (live, one run on two busy cores missed it).
	code, stdout, stderr := verify(t, "compare", "-sim", "-lockers", "lease,mutant-double-grant", "-scenarios", "none,latency",
		"-seeds", "3", "-duration", "1500ms", "-recovery-timeout", "3s", "-clients", "4", "-keys", "1", "-rate", "50", "-out", out, "-markdown", md)
	if code != exitInvalid {
		t.Fatalf("exit %d, want 1\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	dirs, _ := filepath.Glob(filepath.Join(out, "compare-*"))
	if len(dirs) != 1 {
		t.Fatalf("want one comparison directory in %s, got %v", out, dirs)
	}
	b, err := os.ReadFile(filepath.Join(dirs[0], "compare.json"))
	if err != nil {
		t.Fatal(err)
	}
	var table struct {
		Runs  []struct{ Locker, Scenario, Verdict, Dir string }
		Cells []struct {
			Locker, Scenario        string
			Valid, Invalid, Unknown int
			NotApplicable           int `json:"not_applicable"`
		}
	}
	if err := json.Unmarshal(b, &table); err != nil {
		t.Fatal(err)
	}
	if len(table.Runs) != 4 || len(table.Cells) != 4 {
		t.Fatalf("%d runs and %d cells, want 4 and 4", len(table.Runs), len(table.Cells))
	}
	for _, c := range table.Cells {
		switch {
		case c.Scenario == "latency" && c.NotApplicable != 1:
			t.Errorf("%s / latency: %+v, want n/a", c.Locker, c)
		case c.Scenario == "none" && c.Locker == "lease" && c.Valid != 1:
			t.Errorf("lease / none: %+v, want valid", c)
		case c.Scenario == "none" && c.Locker == "mutant-double-grant" && c.Invalid != 1:
			t.Errorf("mutant-double-grant / none: %+v, want invalid", c)
		}
	}
	var bad string
	for _, r := range table.Runs {
		if r.Scenario == "none" {
			for _, f := range []string{"result.json", "scenario.json", "report.html"} {
				if _, err := os.Stat(filepath.Join(r.Dir, f)); err != nil {
					t.Errorf("%s / none: no %s in its run directory: %v", r.Locker, f, err)
				}
			}
			if r.Locker == "mutant-double-grant" {
				bad = r.Dir
			}
		}
	}
	// A comparison's run is a run like any other: replayed from its own
	// scenario.json, and listed by verify report.
	if code, out, errOut := verify(t, "replay", "-q", "-out", t.TempDir(), bad); code != exitInvalid || !strings.Contains(out, "saved invalid: reproduced") {
		t.Errorf("replay of %s: exit %d\n%s\n%s", bad, code, out, errOut)
	}
	if code, out, errOut := verify(t, "report", dirs[0]); code != exitValid {
		t.Errorf("report: exit %d\n%s\n%s", code, out, errOut)
	}
	index, err := os.ReadFile(filepath.Join(dirs[0], "index.html"))
	if err != nil || !strings.Contains(string(index), "compare/mutant-double-grant/none") {
		t.Errorf("verify report's index does not list the comparison's runs by scenario (%v)", err)
	}
	copied, err := os.ReadFile(md)
	if err != nil || !strings.Contains(string(copied), "| mutant-double-grant | **invalid** 1/1 | n/a |") {
		t.Errorf("-markdown copy: %v\n%s", err, copied)
	}
	if !strings.Contains(stderr, "[4/4]") {
		t.Errorf("no progress lines on stderr:\n%s", stderr)
	}
}

func TestCompareRefusesBadFlags(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"-seeds", "x"}, {"-seeds", "0"}, {"-lockers", "nope"}, {"-scenarios", "nope"}, {"-parallel", "0"}, {"-ttl", "-1s"}, {"extra"},
	} {
		code, _, stderr := verify(t, append([]string{"compare", "-out", t.TempDir()}, args...)...)
		if code != exitCouldNot || stderr == "" {
			t.Errorf("compare %v: exit %d, stderr %q; want 3 and a message", args, code, stderr)
		}
	}
}

// Stuck clients fail a comparison as an unsafe run does: a lock that is
// safe only because nobody gets it again is not a pass.
func TestCompareExitsInvalidOnALivenessFailureAlone(t *testing.T) {
	t.Parallel()
	safeButStuck := &compare.Table{Runs: []compare.Run{
		{Locker: "lease", Scenario: "none", Verdict: models.Valid, Liveness: models.Valid},
		{Locker: "mutant-unlock-keeps", Scenario: "none", Verdict: models.Valid, Liveness: models.Invalid, LivenessCounts: true, Stuck: 3},
	}}
	if code := exitCodeOfTable(safeButStuck); code != exitInvalid {
		t.Errorf("a liveness failure alone: exit %d, want %d", code, exitInvalid)
	}
	// The same rule as verify run: a locker without a lease, run without
	// -require-recovery, is judged on safety.
	noLease := &compare.Table{Runs: []compare.Run{{Locker: "gcslock", Scenario: "crash", Verdict: models.Valid, Liveness: models.Invalid, Stuck: 2}}}
	if code := exitCodeOfTable(noLease); code != exitValid {
		t.Errorf("a liveness failure that does not count: exit %d, want %d", code, exitValid)
	}
	allWell := &compare.Table{Runs: safeButStuck.Runs[:1]}
	if code := exitCodeOfTable(allWell); code != exitValid {
		t.Errorf("safe and live: exit %d, want %d", code, exitValid)
	}
	unmeasured := &compare.Table{Runs: []compare.Run{{Locker: "lease", Scenario: "none", Verdict: models.Valid, Liveness: models.Unknown}}}
	if code := exitCodeOfTable(unmeasured); code != exitValid {
		t.Errorf("safe with liveness unmeasured: exit %d, want %d (liveness is judged only when measured)", code, exitValid)
	}
}
