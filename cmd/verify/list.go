package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"slices"
	"text/tabwriter"

	"github.com/lockcheck/lockcheck/catalog"
	"github.com/lockcheck/lockcheck/faults"
	"github.com/lockcheck/lockcheck/runner"
)

func listCommand(args []string, stdout, stderr io.Writer) (int, error) {
	fs := flag.NewFlagSet("list", flag.ContinueOnError)
	fs.SetOutput(stderr)
	asJSON := fs.Bool("json", false, "print the lists as one JSON object (lockers, faults, workloads) for scripts")
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage: verify list [-json]

Lists the lockers (-locker), with whether they give fencing tokens and the
lease they are published with; the faults (-faults) and what each acts on;
and the workloads (-workload).

Flags:
`)
		fs.PrintDefaults()
	}
	if help, err := parseFlagsOnly(fs, args); help || err != nil {
		return exitValid, err
	}
	if *asJSON {
		return exitValid, writeListJSON(stdout)
	}
	w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "LOCKERS\tFENCING\tTTL\t")
	for _, l := range catalog.Lockers() {
		fencing := "no"
		if l.Fencing {
			fencing = "yes"
		}
		ttl := "none"
		if l.TTL > 0 {
			ttl = l.TTL.String()
		}
		fmt.Fprintf(w, "  %s\t%s\t%s\t%s\n", l.Name, fencing, ttl, l.Summary)
	}
	fmt.Fprintln(w, "\nFAULTS (-faults a,b)\tACTS ON\t\t")
	for _, k := range faults.Kinds() {
		lasts := fmt.Sprintf("%v..%v", k.Min, k.Max)
		if k.MinLeases > 0 {
			lasts = fmt.Sprintf("%g..%g leases; %s without a lease", k.MinLeases, 2*k.MinLeases, lasts)
		}
		fmt.Fprintf(w, "  %s\t%s\t\t%s (lasts %s)\n", k.Name, k.Needs, k.Summary, lasts)
	}
	fmt.Fprintln(w, "\nWORKLOADS\t\t\t")
	for _, wl := range workloads {
		fmt.Fprintf(w, "  %s\t\t\t%s\n", wl.name, wl.summary)
	}
	return exitValid, w.Flush()
}

// writeListJSON is verify list -json.
func writeListJSON(w io.Writer) error {
	type locker struct {
		Name    string `json:"name"`
		Fencing bool   `json:"fencing"`
		TTL     string `json:"ttl,omitempty"`
		Summary string `json:"summary"`
	}
	type fault struct {
		Name    string `json:"name"`
		ActsOn  string `json:"acts_on"`
		Min     string `json:"min"`
		Max     string `json:"max"`
		Summary string `json:"summary"`
	}
	type workload struct {
		Name    string `json:"name"`
		Summary string `json:"summary"`
	}
	var out struct {
		Lockers   []locker   `json:"lockers"`
		Faults    []fault    `json:"faults"`
		Workloads []workload `json:"workloads"`
	}
	for _, l := range catalog.Lockers() {
		e := locker{Name: l.Name, Fencing: l.Fencing, Summary: l.Summary}
		if l.TTL > 0 {
			e.TTL = l.TTL.String()
		}
		out.Lockers = append(out.Lockers, e)
	}
	for _, k := range faults.Kinds() {
		out.Faults = append(out.Faults, fault{Name: k.Name, ActsOn: k.Needs.String(), Min: k.Min.String(), Max: k.Max.String(), Summary: k.Summary})
	}
	for _, wl := range workloads {
		out.Workloads = append(out.Workloads, workload{Name: wl.name, Summary: wl.summary})
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

// versionCommand is verify version (and -version): this build and the
// dependencies whose behaviour shapes a verdict, as result.json records
// them.
func versionCommand(args []string, stdout, stderr io.Writer) (int, error) {
	fs := flag.NewFlagSet("version", flag.ContinueOnError)
	fs.SetOutput(stderr)
	asJSON := fs.Bool("json", false, "print the versions as a JSON object")
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: verify version [-json]\n\nPrints lockcheck's version and revision, Go's, and the versions of the\nmodules a verdict depends on (porcupine, fake-gcs-server, toxiproxy, the\nstorage and Redis clients): what every result.json records.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if help, err := parseFlagsOnly(fs, args); help || err != nil {
		return exitValid, err
	}
	v := runner.Versions()
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return exitValid, enc.Encode(v)
	}
	fmt.Fprintf(stdout, "lockcheck %s (%s)\n", v["lockcheck"], v["go"])
	var deps []string
	for k := range v {
		if k != "lockcheck" && k != "go" {
			deps = append(deps, k)
		}
	}
	slices.Sort(deps)
	for _, d := range deps {
		fmt.Fprintf(stdout, "  %s %s\n", d, v[d])
	}
	return exitValid, nil
}

var workloads = []struct{ name, summary string }{
	{"mutex", "acquire a random key, hold it a random time, release, think, repeat"},
	{"register", "the critical section reads the key's register, holds, writes it back plus one, in a store the lock does not guard (GCS object without preconditions, Redis key, or memory): lost updates prove two holders"},
	{"fenced-register", "as register, on a store that refuses a token lower than the highest it has accepted (reads included): does fencing save the data?"},
	{"request-release", "holders hold for -hold-max unless another client asks for the lock, then stop their work and unlock (tus semantics): hand-off on request"},
}
