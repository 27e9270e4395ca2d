package scenarios

import (
	"embed"
	"fmt"
	"io/fs"
	"path"
	"strings"
)

// regressionFS holds one file per defect lockcheck has found in a ported
// locker, each pinned to a seed that reproduced it on every try.
//
// The sim forms that are scenarios of their own (regression/sim/) are
// the defect's counterexample shrunk by verify shrink: a run of 32
// clients for 15 s that takes 20 s of wall time to simulate becomes one of
// a few clients for a few seconds, with an explicit fault plan, that takes
// a fraction of a second.
//
//go:embed regression/*.json regression/sim/*.json
var regressionFS embed.FS

// SimForm is s's simulation, named "<name>/sim", and whether s has one:
// regression/sim/<defect>.json when there is one, or else s itself as a
// simulation on its SimSeed.
func SimForm(s Spec) (Spec, bool) {
	if f, err := simFile(regressionFS, s); err == nil {
		return f, true
	}
	if s.SimSeed == 0 {
		return Spec{}, false
	}
	s.Name += "/sim"
	s.Sim, s.Seeds, s.SimSeed, s.Attempts = true, []uint64{s.SimSeed}, 0, 0
	return s, true
}

// simFile reads the sim form of s from fsys, which must be a simulation
// named after s, expecting what s expects.
func simFile(fsys fs.FS, s Spec) (Spec, error) {
	n := "regression/sim/" + strings.TrimPrefix(s.Name, "regression/") + ".json"
	f, err := decodeFile(fsys, n)
	if err != nil {
		return Spec{}, err
	}
	switch {
	case f.Name != s.Name+"/sim":
		return Spec{}, fmt.Errorf("%s: name %q, want %q", n, f.Name, s.Name+"/sim")
	case !f.Sim:
		return Spec{}, fmt.Errorf("%s: not a simulation; give \"sim\": true", n)
	case f.Expect.Verdict != s.Expect.Verdict:
		return Spec{}, fmt.Errorf("%s: expects %q, but %s expects %q", n, f.Expect.Verdict, s.Name, s.Expect.Verdict)
	case len(f.Seeds) != 1:
		return Spec{}, fmt.Errorf("%s: seeds %v: a sim form is pinned to one seed", n, f.Seeds)
	}
	return f, nil
}

// RegressionSim is the sim form of every regression scenario that has
// one, in file-name order.
func RegressionSim() []Spec {
	var out []Spec
	for _, s := range Regression() {
		if f, ok := SimForm(s); ok {
			out = append(out, f)
		}
	}
	return out
}

// Regression returns every regression scenario, in file-name order.
func Regression() []Spec {
	specs, err := loadRegression(regressionFS)
	if err != nil {
		panic(err) // embedded at build time; TestRegressionFilesLoad keeps them valid.
	}
	return specs
}

func loadRegression(fsys fs.FS) ([]Spec, error) {
	names, err := fs.Glob(fsys, "regression/*.json")
	if err != nil {
		return nil, err
	}
	var out []Spec
	for _, n := range names {
		s, err := decodeFile(fsys, n)
		if err != nil {
			return nil, err
		}
		if want := "regression/" + strings.TrimSuffix(path.Base(n), ".json"); s.Name != want {
			return nil, fmt.Errorf("%s: name %q, want %q (the file is named after the defect)", n, s.Name, want)
		}
		out = append(out, s)
	}
	return out, nil
}

func decodeFile(fsys fs.FS, name string) (Spec, error) {
	b, err := fs.ReadFile(fsys, name)
	if err != nil {
		return Spec{}, err
	}
	return Decode(name, b)
}

// pinnedBy names, for each cell of the comparison tables where a ported
// locker was not valid on every seed (locker/family, as in measured and
// the data table's columns), the regression scenario that pins the defect
// behind it. Several cells may share one defect. Not listed, because they
// are not ports: the planted mutants (lease), the project's own lock
// (fenced) and the third-party libraries run as they are (redislock,
// redsync, redlock).
var pinnedBy = map[string]string{
	"tus616/latency":            "regression/tus616-contention-double-stale-delete",
	"tus616/contended":          "regression/tus616-contention-double-stale-delete",
	"tus616/pause":              "regression/tus616-pause-stale-delete",
	"tus616/register-pause":     "regression/tus616-pause-stale-delete",
	"tus616/fenced-pause":       "regression/tus616-pause-stale-delete",
	"tus616/sigstop":            "regression/tus616-pause-stale-delete",
	"tus616/request-release":    "regression/tus616-pause-stale-delete", // holds of two leases outlive an exp nobody extends (step 6), as a pause does
	"tus616/skew":               "regression/tus616-skew-stale-delete",
	"tus616/server-lost-reply":  "regression/tus616-contention-double-stale-delete", // traced: the overlap came after the fault, two waiters deleting one stale lock (step 3)
	"tus616/partition":          "regression/tus616-contention-double-stale-delete", // traced: two waiters delete the cut-off holder's stale lock (step 3)
	"tus616/lost-reply":         "regression/tus616-contention-double-stale-delete", // traced: likewise, after the lost replies
	"lai/lost-reply":            "regression/lai-partition-resent-unlock",           // traced: the same resent Unlock (step 5), after lost replies instead of a partition
	"lai/partition":             "regression/lai-partition-resent-unlock",
	"lai/server-lost-reply":     "regression/lai-server-lost-reply-resent-delete",
	"lai/429":                   "regression/lai-crash-double-stale-delete", // the same step 3 race, met after 429s
	"lai/crash":                 "regression/lai-crash-double-stale-delete",
	"lai/pause":                 "regression/lai-pause-frozen-refresher",
	"lai/register-pause":        "regression/lai-pause-frozen-refresher",
	"lai/fenced-pause":          "regression/lai-pause-frozen-refresher",
	"lai/sigstop":               "regression/lai-pause-frozen-refresher",
	"lai/clock":                 "regression/lai-skew-client-clock-expiry",
	"lai/skew":                  "regression/lai-skew-client-clock-expiry",
	"gcslock/lost-reply":        "regression/gcslock-lost-reply-resent-delete",
	"gcslock/server-lost-reply": "regression/gcslock-lost-reply-resent-delete", // traced: the same repeated unconditional delete (step 2), its reply dropped by the backend
	"gcslock/crash":             "regression/gcslock-crash-never-released",     // liveness: the stuck key
	"gcslock/sigkill":           "regression/gcslock-crash-never-released",
	"gmutex/pause":              "regression/gmutex-pause-register-lost-update",
	"gmutex/register-pause":     "regression/gmutex-pause-register-lost-update",
	"gmutex/fenced-pause":       "regression/gmutex-pause-register-lost-update",
	"gmutex/sigstop":            "regression/gmutex-pause-register-lost-update",
	"redis/pause":               "regression/redis-pause-frozen-watchdog",
	"redis/register-pause":      "regression/redis-pause-frozen-watchdog",
	"redis/fenced-pause":        "regression/redis-pause-frozen-watchdog",
	"redis/sigstop":             "regression/redis-pause-frozen-watchdog",
	"redis/long-pause":          "regression/redis-pause-frozen-watchdog",
	"redis/long-fail-fast":      "regression/redis-fail-fast-ignored-extend",
	"redis/long-partition":      "regression/redis-fail-fast-ignored-extend", // the same ignored extend, timed out instead of refused
	"redis/deliver-late":        "regression/redis-fail-fast-ignored-extend", // the same ignored extend, three leases late
	"tus616/long-partition":     "regression/tus616-pause-stale-delete",      // holds of three leases outlive an exp nobody extends (step 6), as a pause does
	"tus616/long-fail-fast":     "regression/tus616-pause-stale-delete",
	"tus616/long-pause":         "regression/tus616-pause-stale-delete",
	"tus616/deliver-late":       "regression/tus616-pause-stale-delete",
	"lai/long-pause":            "regression/lai-pause-frozen-refresher",
	"lai/long-partition":        "regression/lai-pause-frozen-refresher", // the refresher cannot refresh, and the holder is not told: expires_at passes, a waiter deletes the lock (step 3), as under a pause
	"lai/long-fail-fast":        "regression/lai-pause-frozen-refresher",
	"lai/deliver-late":          "regression/lai-pause-frozen-refresher",
	"gmutex/long-pause":         "regression/gmutex-pause-register-lost-update",
	"gmutex/long-partition":     "regression/gmutex-pause-register-lost-update", // the extends do not reach the server, the lock expires on server time and is taken over while its holder works, as under a pause
	"gmutex/deliver-late":       "regression/gmutex-pause-register-lost-update",
}

// notPorted are the lockers whose defects are not pinned: see pinnedBy.
var notPorted = []string{"lease", "fenced", "redislock", "redsync", "redlock"}
