package main

import (
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/lockcheck/lockcheck/catalog"
	"github.com/lockcheck/lockcheck/faults"
)

func listCommand(args []string, stdout io.Writer) (int, error) {
	if len(args) > 0 {
		return 0, fmt.Errorf("list takes no arguments, got %q", args)
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
		fmt.Fprintf(w, "  %s\t%s\t\t%s (lasts %v..%v)\n", k.Name, k.Needs, k.Summary, k.Min, k.Max)
	}
	fmt.Fprintln(w, "\nWORKLOADS\t\t\t")
	for _, wl := range workloads {
		fmt.Fprintf(w, "  %s\t\t\t%s\n", wl.name, wl.summary)
	}
	return exitValid, w.Flush()
}

var workloads = []struct{ name, summary string }{
	{"mutex", "acquire a random key, hold it a random time, release, think, repeat"},
	{"register", "the critical section reads the key's register, holds, writes it back plus one, in a store the lock does not guard (GCS object without preconditions, Redis key, or memory): lost updates prove two holders"},
	{"fenced-register", "as register, on a store that refuses a token lower than the highest it has accepted (reads included): does fencing save the data?"},
	{"request-release", "holders hold for -hold-max unless another client asks for the lock, then stop their work and unlock (tus semantics): hand-off on request"},
}
