package scenarios

import (
	"fmt"
	"slices"
	"strings"

	"github.com/lockcheck/lockcheck/faults"
	"github.com/lockcheck/lockcheck/history"
)

// Families are the fault families of the exploratory cross-product, each a
// column of the comparison tables (internal/compare), whose fault lists
// and lease multiples they reuse.
var Families = []string{"none", "contended", "latency", "partition", "lost-reply", "server-lost-reply", "429", "pause", "crash", "clock", "long-partition", "long-fail-fast", "long-pause", "deliver-late"}

// ExploreWorkloads are the workloads of the cross-product.
var ExploreWorkloads = []string{history.WorkloadMutex, history.WorkloadRegister}

// ExploreSeeds are the seeds every exploratory scenario runs: those of the
// comparison tables its expectations come from.
var ExploreSeeds = []uint64{1, 2, 3}

// backend is where a locker keeps its lock, which decides the faults that
// can reach it: a network fault needs a backend over the network, a
// server fault (429) the GCS emulator's HTTP front.
type backend int

const (
	inProcess backend = iota
	gcsBackend
	redisBackend
)

// exploreLocker is a locker of the cross-product: every built-in locker
// but the planted mutants (the lease control stays), in catalog order.
type exploreLocker struct {
	name    string
	backend backend
	// lease says the locker has a TTL, so the cross-product scales it
	// to DefaultTTL.
	lease bool
}

// exploreLockers is kept equal to the catalog's non-mutant lockers by a
// test of package catalog.
var exploreLockers = []exploreLocker{
	{"memory", inProcess, false}, {"memory-owner", inProcess, false}, {"lease", inProcess, true},
	{"tus616", gcsBackend, true}, {"lai", gcsBackend, true}, {"gcslock", gcsBackend, false}, {"gmutex", gcsBackend, true}, {"fenced", gcsBackend, true},
	{"redis", redisBackend, true}, {"redislock", redisBackend, true}, {"redsync", redisBackend, true}, {"redlock", redisBackend, true},
}

// ExploreLockers names the lockers of the cross-product, in order.
func ExploreLockers() []string {
	var out []string
	for _, l := range exploreLockers {
		out = append(out, l.name)
	}
	return out
}

// applicable says whether every fault of a family can act on the locker.
func applicable(b backend, kinds []faults.Kind) bool {
	for _, k := range kinds {
		switch k.Needs {
		case faults.NeedsNetwork:
			if b == inProcess {
				return false
			}
		case faults.NeedsServer:
			if b != gcsBackend {
				return false
			}
		}
	}
	return true
}

// Explore is every non-mutant locker × ExploreWorkloads × Families, named
// "<locker>/<workload>/<family>", leaving out the combinations whose
// faults cannot reach the locker. Each expects what the comparison tables
// measured on seeds 1, 2 and 3 with 1 s leases (README, "Comparing lockers
// side by side"): valid or invalid where every seed agreed, "either" where
// they did not. The register workload expects what the mutex cell
// measured (a lost update needs two holders; the register-pause column
// agrees with the pause column for every locker).
func Explore() []Spec {
	cols, err := LookupColumns(Families)
	if err != nil {
		panic(err) // Families names compare's columns; a test holds them together.
	}
	var out []Spec
	for _, l := range exploreLockers {
		for _, w := range ExploreWorkloads {
			for _, c := range cols {
				kinds, err := faults.Lookup(c.Faults)
				if err != nil {
					panic(err) // a column naming an unknown fault; the scenarios tests call Explore and would fail here
				}
				if !applicable(l.backend, kinds) {
					continue
				}
				s := Spec{
					Name:    fmt.Sprintf("%s/%s/%s", l.name, w, c.Name),
					Summary: fmt.Sprintf("%s, %s workload: %s", l.name, w, c.Summary),
					Locker:  l.name, Workload: w, Faults: slices.Clone(c.Faults),
					Seeds:  slices.Clone(ExploreSeeds),
					Expect: expectation(l.name, c.Name),
				}
				if l.lease {
					s.TTL = Duration(DefaultTTL)
				}
				if room := c.Room(DefaultTTL, DefaultFaultInterval); room > DefaultDuration {
					s.Duration = Duration(room)
				}
				c.Apply(&s, DefaultTTL)
				out = append(out, s)
			}
		}
	}
	return out
}

// measured are the comparison tables' cells that were not valid on every
// seed: locker → family → verdict and the step that allowed it, over two
// regenerations of the table where the verdicts moved (the long columns
// and deliver-late: one live comparison). Every other applicable cell was
// valid 3 of 3.
var measured = map[string]map[string]Expect{
	"lease": {
		"pause":      {ExpectInvalid, "invalid 3/3: the store expires the lease one TTL after the last refresh while the paused holder's refresher and Lost timer are frozen with it"},
		"long-pause": {ExpectInvalid, "invalid 3/3 (live, seeds 1-3): as under pause, a holder frozen for three leases while it works outlives its lease"},
	},
	"tus616": {
		"latency":           {ExpectEither, "invalid 1/3 in one regeneration of the table, 0/3 in the next: Unlock deletes with ifGenerationMatch=<metageneration> (step 7), so a released lock lingers until exp; two waiters judge it stale and delete with ifMetagenerationMatch=1 alone (step 3), the second removing the first's fresh lock"},
		"pause":             {ExpectInvalid, "invalid 3/3: the watcher never extends the exp waiters judge (step 6), so a waiter deletes the paused holder's lock as stale and takes it (step 3)"},
		"contended":         {ExpectEither, "invalid 1/3, then 0/3 (16 clients on one key, no faults): every release leaves its lock behind (step 7), and two waiters that judge it stale both delete it with ifMetagenerationMatch=1 alone (step 3)"},
		"partition":         {ExpectEither, "valid 3/3, then invalid 1/3: the cut-off holder's lock goes stale and two waiters both delete it with ifMetagenerationMatch=1 alone (step 3), traced in simulation"},
		"lost-reply":        {ExpectEither, "valid 3/3, then invalid 1/3: a lock left to go stale (step 7) is deleted by two waiters at once (step 3), one of them the client whose replies were lost; traced in simulation"},
		"server-lost-reply": {ExpectEither, "valid 3/3, then invalid 1/3: the overlap came after the fault, two waiters deleting one stale lock with ifMetagenerationMatch=1 alone (step 3); traced in simulation"},
		"long-partition":    {ExpectInvalid, tus616LongHolds},
		"long-fail-fast":    {ExpectInvalid, tus616LongHolds},
		"long-pause":        {ExpectInvalid, tus616LongHolds},
		"deliver-late":      {ExpectInvalid, tus616LongHolds},
	},
	"lai": {
		"partition":         {ExpectEither, "invalid 3/3, then 2/3: the cut-off holder's Unlock deletes with ifMetagenerationMatch=<remembered> alone (step 5), resent after the heal, and removes the next holder's fresh lock"},
		"lost-reply":        {ExpectEither, "valid 3/3, then invalid 1/3: the Unlock whose reply was lost is resent at the heal (step 5) and deletes the next holder's fresh lock, traced in simulation"},
		"server-lost-reply": {ExpectInvalid, "invalid 3/3 twice: a metageneration-only delete, Unlock's (step 5) or instant recovery's (step 3), applied with its reply lost, is resent by the client library and removes another client's fresh lock"},
		"429":               {ExpectEither, "invalid 1/3, then 0/3: two waiters delete one stale lock with ifMetagenerationMatch=1 alone (step 3); resent deletes after 429s remove the lock the other waiter just created"},
		"pause":             {ExpectInvalid, "invalid 3/3: the paused holder's refresher (step 4) is frozen, expires_at passes, and a waiter deletes the lock as stale by its own clock (step 3)"},
		"crash":             {ExpectEither, "invalid 2/3, then 0/3: the crashed holder's lock expires and two waiters delete it at once with ifMetagenerationMatch=1 alone (step 3)"},
		"clock":             {ExpectInvalid, "invalid 3/3: expires_at is kept by the client's clock and judged by the waiter's (step 3), so a client three leases ahead takes every live lock for stale"},
		"long-partition":    {ExpectInvalid, "invalid 3/3 (live, seeds 1-3; mutual exclusion and the backend audit): the cut-off holder is never told, goes on working for three leases, and a waiter deletes its lock as stale (step 3)"},
		"long-fail-fast":    {ExpectEither, "invalid 1/3 (live, seeds 1-3): a waiter deleted the lock as stale while its holder, whose refreshes had failed, was still to be told"},
		"long-pause":        {ExpectInvalid, "invalid 3/3 (live, seeds 1-3): as under pause, the frozen refresher lets expires_at pass and a waiter deletes the lock as stale (step 3)"},
		"deliver-late":      {ExpectInvalid, "invalid 3/3 (live, seeds 1-3; mutual exclusion and the backend audit): the holder's refreshes land three leases late, expires_at passes meanwhile, and a waiter deletes the lock as stale while the holder works"},
	},
	"gcslock": {
		"lost-reply":        {ExpectEither, "invalid 1/3, then 0/3: Unlock repeats an unconditional delete until answered (step 2); a delete whose reply was lost, repeated after the heal, removes the next holder's lock"},
		"server-lost-reply": {ExpectEither, "invalid 1/3, then 2/3: the same repeated unconditional delete (step 2), applied by the backend with its reply dropped, removes the next holder's lock; traced in simulation"},
	},
	"gmutex": {
		"pause":          {ExpectInvalid, "invalid 3/3: the extend goroutine is frozen with its holder, the lock expires on server time, and a waiter takes it over by generation (step 1) while the holder still works"},
		"long-partition": {ExpectInvalid, "invalid 3/3 (live, seeds 1-3): the cut-off holder's extends time out unheard, the lock expires on server time, and a waiter takes it over (step 1) while the holder still works"},
		"long-pause":     {ExpectInvalid, "invalid 3/3 (live, seeds 1-3): as under pause, for three leases"},
		"deliver-late":   {ExpectInvalid, "invalid 3/3 (live, seeds 1-3; mutual exclusion and the backend audit): the holder's extends land three leases late, the lock expires on server time meanwhile, and a waiter takes it over while the holder works"},
	},
	"fenced": {
		"pause":      {ExpectEither, "invalid 1/3, then 2/3: takeover waits until the server's Date, less a second of slack, passes updated + TTL; a pause of 2.5 leases only sometimes outlasts that, and then the paused holder's section overlaps the next (no lease lock survives a pause)"},
		"long-pause": {ExpectInvalid, "invalid 3/3 (live, seeds 1-3): a pause of three leases always outlasts the takeover's slack; the lost-notice check and the backend audit see it too (no lease lock survives a pause)"},
	},
	"redis": {
		"pause":          {ExpectInvalid, "invalid 3/3: the watchdog that extends every ttl/2 is frozen with the holder, the key's PX expires and the next SET NX succeeds"},
		"long-partition": {ExpectInvalid, redisNoNotice},
		"long-fail-fast": {ExpectInvalid, redisNoNotice},
		"long-pause":     {ExpectInvalid, "invalid 3/3 (live, seeds 1-3): as under pause, for three leases"},
		"deliver-late":   {ExpectInvalid, redisNoNotice},
	},
	"redislock": {
		"pause":      {ExpectInvalid, "invalid 3/3: the refresh loop is frozen with the holder, the key's PX expires and the next Obtain succeeds"},
		"long-pause": {ExpectInvalid, "invalid 3/3 (live, seeds 1-3): as under pause, for three leases"},
	},
	"redsync": {
		"pause":      {ExpectInvalid, "invalid 3/3: ExtendContext cannot run while the holder is paused, the key expires and the next LockContext succeeds"},
		"long-pause": {ExpectInvalid, "invalid 3/3 (live, seeds 1-3): as under pause, for three leases"},
	},
	"redlock": {
		"pause":      {ExpectInvalid, "invalid 3/3: the key expires on all three servers at once and the next client wins a majority: Redlock's known exposure to pauses"},
		"long-pause": {ExpectInvalid, "invalid 3/3 (live, seeds 1-3): as under pause, for three leases"},
	},
}

// Reasons shared by several cells of one locker.
const (
	tus616LongHolds = "invalid 3/3 (live, seeds 1-3; mutual exclusion, linearizability and the backend audit): holds of three to five leases outlast the exp the watcher never extends (step 6), so a waiter deletes a working holder's lock as stale (step 3), whatever the fault"
	redisNoNotice   = "invalid 3/3 (live, seeds 1-3): the watchdog ignores an extend that fails or does not come back (the source's), so a holder whose extends are lost, refused or delivered three leases late goes on working after its key's PX expired and the next SET NX succeeded; it learns only when an extend answers that the key is not its own"
)

func expectation(locker, family string) Expect {
	if e, ok := measured[locker][family]; ok {
		return e
	}
	if e, ok := audited[locker]; ok {
		return e
	}
	return Expect{ExpectValid, "valid 3/3 in the comparison tables (seeds 1-3, 1 s leases)"}
}

// audited are the lockers whose cells the backend audit may turn invalid
// where the comparison tables, measured before it, had them valid: until
// the tables are measured again, such a cell expects either verdict.
var audited = map[string]Expect{
	"tus616": {ExpectEither, "valid 3/3 before the backend audit, which then found step 3's double delete (a waiter deleting, with ifMetagenerationMatch=1 alone, the fresh lock another waiter had just created in place of a stale one) on 19 of 20 simulated seeds with no faults, mostly where no overlap followed"},
}

// All is every regression scenario, then their sim forms, then every
// exploratory scenario.
func All() []Spec {
	return append(append(Regression(), RegressionSim()...), Explore()...)
}

// Lookup finds a scenario by name.
func Lookup(name string) (Spec, error) {
	all := All()
	for _, s := range all {
		if s.Name == name {
			return s, nil
		}
	}
	var close []string
	for _, s := range all {
		if near(name, s.Name) {
			close = append(close, s.Name)
		}
	}
	if len(close) > 10 {
		close = close[:10]
	}
	if len(close) == 0 {
		return Spec{}, fmt.Errorf("unknown scenario %q; `verify scenarios` lists them (names are <locker>/<workload>/<fault> or regression/<defect>)", name)
	}
	return Spec{}, fmt.Errorf("unknown scenario %q; did you mean %s?", name, strings.Join(close, ", "))
}

// near is true when b shares a path element with a, or one contains the
// other.
func near(a, b string) bool {
	a, b = strings.ToLower(a), strings.ToLower(b)
	if a == "" {
		return false
	}
	if strings.Contains(b, a) || strings.Contains(a, b) {
		return true
	}
	bs := strings.Split(b, "/")
	matched := 0
	for _, p := range strings.Split(a, "/") {
		if p != "" && slices.Contains(bs, p) {
			matched++
		}
	}
	return matched >= 2 || (matched == 1 && !strings.Contains(a, "/"))
}

// Suites are the named sets of scenarios `verify suite` runs.
var Suites = []string{"quick", "nightly", "regression", "regression-sim"}

// quick is a fast cross-section: controls that must stay valid, and an
// invalid cell that is invalid on every seed per fault family that has
// one, each on its first seed.
var quick = []string{
	"memory-owner/mutex/none",
	"lease/mutex/none",
	"fenced/mutex/crash",
	"lease/mutex/pause",
	"redis/register/pause",
	"gmutex/mutex/pause",
	"lai/mutex/server-lost-reply",
	"lai/mutex/clock",
}

// Suite returns the scenarios of a named suite: "quick" (a few minutes on
// two cores at parallel 2, one seed each), "nightly" (every exploratory
// scenario, three seeds each), "regression" (every pinned defect) or
// "regression-sim" (the sim form of each, in virtual time).
func Suite(name string) ([]Spec, error) {
	switch name {
	case "quick":
		var out []Spec
		for _, n := range quick {
			s, err := Lookup(n)
			if err != nil {
				return nil, fmt.Errorf("suite quick: %w", err)
			}
			s.Seeds = s.Seeds[:1]
			out = append(out, s)
		}
		return out, nil
	case "nightly":
		return Explore(), nil
	case "regression":
		return Regression(), nil
	case "regression-sim":
		return RegressionSim(), nil
	}
	return nil, fmt.Errorf("unknown suite %q; known suites: %s", name, strings.Join(Suites, ", "))
}
