package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/lockcheck/lockcheck/scenarios"
)

func scenariosCommand(args []string, stdout, stderr io.Writer) (int, error) {
	fs := flag.NewFlagSet("scenarios", flag.ContinueOnError)
	fs.SetOutput(stderr)
	suite := fs.String("suite", "", "list only this suite's scenarios: "+strings.Join(scenarios.Suites, ", "))
	asJSON := fs.Bool("json", false, "print the scenarios as a JSON list of scenario files (every field, defaults unfilled)")
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage: verify scenarios [-suite NAME]

Lists the named scenarios: name, expected verdict, and why. Regression
scenarios (regression/<defect>) pin a defect lockcheck found, on a seed
that reproduced it every time; exploratory ones (<locker>/<workload>/<fault>)
are every locker × workload × fault family, expecting what the comparison
tables measured. "either" marks a cell whose seeds disagreed: any verdict
is reported, none is a regression.

  verify run -scenario NAME [-seed N]   runs one

Flags:
`)
		fs.PrintDefaults()
	}
	if help, err := parseFlagsOnly(fs, args); help || err != nil {
		return exitValid, err
	}
	specs := scenarios.All()
	if *suite != "" {
		var err error
		if specs, err = scenarios.Suite(*suite); err != nil {
			return 0, fmt.Errorf("-suite: %w", err)
		}
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return exitValid, enc.Encode(specs)
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tEXPECT\tSEEDS\tREASON")
	for _, s := range specs {
		seeds := make([]string, len(s.Seeds))
		for i, seed := range s.Seeds {
			seeds[i] = fmt.Sprint(seed)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", s.Name, s.Expect.Verdict, strings.Join(seeds, ","), s.Expect.Reason)
	}
	if err := tw.Flush(); err != nil {
		return 0, err
	}
	fmt.Fprintf(stdout, "%d scenarios\n", len(specs))
	return exitValid, nil
}
