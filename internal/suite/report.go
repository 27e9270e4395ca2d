package suite

import (
	"encoding/xml"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/lockcheck/lockcheck/models"
)

// The JUnit elements: a <testsuites> root around one <testsuite>, which
// every common reader (Jenkins, GitLab, GitHub actions) accepts. Counts
// are repeated on both, as Jenkins reads the inner and GitLab the outer.
type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Name     string       `xml:"name,attr"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Errors   int          `xml:"errors,attr"`
	Skipped  int          `xml:"skipped,attr"`
	Time     string       `xml:"time,attr"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name     string      `xml:"name,attr"`
	Tests    int         `xml:"tests,attr"`
	Failures int         `xml:"failures,attr"`
	Errors   int         `xml:"errors,attr"`
	Skipped  int         `xml:"skipped,attr"`
	Time     string      `xml:"time,attr"`
	Cases    []junitCase `xml:"testcase"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	Time      string        `xml:"time,attr"`
	Failure   *junitProblem `xml:"failure,omitempty"`
	Error     *junitProblem `xml:"error,omitempty"`
	Skipped   *junitProblem `xml:"skipped,omitempty"`
	SystemOut string        `xml:"system-out,omitempty"`
}

type junitProblem struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr,omitempty"`
	Body    string `xml:",chardata"`
}

func seconds(d time.Duration) string { return fmt.Sprintf("%.3f", d.Seconds()) }

// WriteJUnit writes results as JUnit XML: one testcase per job, named
// after the scenario and seed, classed by locker. A failure carries the
// expectation, what happened and the counterexample; an unknown verdict
// or a run that could not be done is an error (unknown is never a pass);
// a job not run is skipped; a flaky job passes with its verdict in
// system-out.
func WriteJUnit(w io.Writer, suiteName string, results []Result) error {
	s := junitSuite{Name: suiteName}
	var total time.Duration
	for _, r := range results {
		c := junitCase{Name: r.Job.Name(), Classname: r.Job.Spec.Locker, Time: seconds(r.Outcome.Elapsed)}
		total += r.Outcome.Elapsed
		body := problemBody(r)
		switch r.Status {
		case Fail:
			typ := "verdict"
			if r.BecameSafe() {
				typ = "became-safe"
			}
			c.Failure = &junitProblem{Message: r.Detail, Type: typ, Body: body}
			s.Failures++
		case Unknown, Error:
			c.Error = &junitProblem{Message: r.Detail, Type: string(r.Status), Body: body}
			s.Errors++
		case NotRun:
			c.Skipped = &junitProblem{Message: r.Detail}
			s.Skipped++
		case Flaky:
			c.SystemOut = "flaky scenario (either verdict is accepted): " + r.Detail + "\n" + body
		}
		s.Cases = append(s.Cases, c)
	}
	s.Tests, s.Time = len(results), seconds(total)
	root := junitSuites{Name: suiteName, Tests: s.Tests, Failures: s.Failures, Errors: s.Errors, Skipped: s.Skipped, Time: s.Time, Suites: []junitSuite{s}}
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(root); err != nil {
		return fmt.Errorf("junit: %w", err)
	}
	_, err := io.WriteString(w, "\n")
	return err
}

func problemBody(r Result) string {
	var b strings.Builder
	fmt.Fprintf(&b, "scenario %s, locker %s, seed %d\n", r.Job.Spec.Name, r.Job.Spec.Locker, r.Job.Seed)
	if e := r.Job.Spec.Expect; e.Reason != "" {
		fmt.Fprintf(&b, "expected %s because %s\n", e.Verdict, e.Reason)
	}
	fmt.Fprintf(&b, "%s\n", r.Detail)
	if r.Outcome.Counterexample != "" {
		fmt.Fprintf(&b, "counterexample:\n%s\n", r.Outcome.Counterexample)
	}
	if r.Outcome.Dir != "" {
		fmt.Fprintf(&b, "run directory: %s (re-check with verify check %s)\n", r.Outcome.Dir, r.Outcome.Dir)
	}
	return b.String()
}

// statusOrder puts what needs a look first in the table.
var statusOrder = []Status{Fail, Unknown, Error, NotRun, Flaky, Pass}

// WriteMarkdown writes a summary table, failures first and otherwise in
// the jobs' order, then a totals line.
func WriteMarkdown(w io.Writer, results []Result) error {
	sorted := slices.Clone(results)
	slices.SortStableFunc(sorted, func(a, b Result) int {
		return slices.Index(statusOrder, a.Status) - slices.Index(statusOrder, b.Status)
	})
	var b strings.Builder
	b.WriteString("| scenario | seed | expected | got | status | time | counterexample |\n")
	b.WriteString("|---|---:|---|---|---|---:|---|\n")
	for _, r := range sorted {
		got := string(r.Outcome.Verdict)
		switch {
		case r.Status == NotRun:
			got = "not run"
		case r.Status == Error:
			got = "error: " + r.Detail
		case got == "":
			got = "—"
		}
		if r.Outcome.Liveness == models.Invalid {
			got += "; liveness invalid"
			if !r.Outcome.LivenessCounts {
				got += " (not counted: no lease, or a recovery window shorter than two leases, and the scenario does not require recovery)"
			}
		}
		status := string(r.Status)
		if r.BecameSafe() {
			status = "**fail: became safe**"
		} else if r.Status == Fail {
			status = "**fail**"
		}
		if r.Attempts > 1 {
			status += fmt.Sprintf(" (attempt %d of %d)", r.Attempts, max(r.Job.Spec.Attempts, 1))
		}
		fmt.Fprintf(&b, "| %s | %d | %s | %s | %s | %.1fs | %s |\n",
			cell(r.Job.Spec.Name), r.Job.Seed, cell(r.Job.Spec.Expect.Verdict), cell(got), status,
			r.Outcome.Elapsed.Seconds(), cell(firstLine(r.Outcome.Counterexample)))
	}
	b.WriteString("\n" + Totals(results) + "\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// Totals is one line: how many runs, and how many of each status.
func Totals(results []Result) string {
	c := Counts(results)
	parts := []string{fmt.Sprintf("%d runs", len(results))}
	for _, s := range []Status{Pass, Fail, Unknown, Error, Flaky, NotRun} {
		if c[s] == 0 && s != Pass && s != Fail {
			continue
		}
		p := fmt.Sprintf("%d %s", c[s], s)
		if s == Fail {
			safe := 0
			for _, r := range results {
				if r.BecameSafe() {
					safe++
				}
			}
			if safe > 0 {
				p += fmt.Sprintf(" (%d became safe)", safe)
			}
		}
		parts = append(parts, p)
	}
	return fmt.Sprintf("%s; exit status %d", strings.Join(parts, ", "), ExitCode(results))
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}

// cell keeps a value inside its Markdown table cell.
func cell(s string) string {
	s = strings.ReplaceAll(firstLine(s), "|", `\|`)
	if r := []rune(s); len(r) > 160 {
		s = string(r[:157]) + "..."
	}
	return s
}
