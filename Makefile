# lockcheck: `make verify` runs the main job, `make test` the whole suite.
GO      ?= go
VERIFY  := $(GO) run ./cmd/verify
export PATH := $(PATH):/usr/local/go/bin

.PHONY: verify test vet bench build clean redis-conformance-table determinism determinism-lockers determinism-table determinism-readme fuzz-table mutant-table node-worker tus616-table redis-server compare-table compare-data-table sim-table quick nightly regression report-check chromium help

## verify: a quick run of the default locker through pauses and crashes, checked
verify:
	$(VERIFY) run -locker memory-owner -clients 8 -keys 2 -duration 10s -faults pause,crash

# The packages whose tests wait longest, named first so that go test starts them first.
SLOW_FIRST := ./lockers/tus616 ./cmd/verify ./lockers/redsync

## test: vet and every test with the race detector (installs redis-server and the Node worker's packages first when missing: the Redis lockers are also tested against a real server), then the example module that tests its own lock through the Go API; a package killed by the race runtime's own internal CHECK failure (not a test failure, not a race) runs once more (.ci/race-retry)
test: redis-server node-worker
	.ci/race-retry $(GO) test -race $(RACE_TEST_FLAGS) -p 3 -parallel 4 -timeout 25m $(SLOW_FIRST) ./...
	cd examples/ownlock && $(GO) test -race $(RACE_TEST_FLAGS) -count=1 -timeout 5m ./...

# The race runtime sleeps 1 s as each test binary exits (GORACE's
# atexit_sleep_ms), 40 binaries here; a race found still fails its test.
export GORACE ?= atexit_sleep_ms=0
# -vet=all: go test runs all of go vet's checks, on every package, with the
# race build it compiles anyway; a separate go vet would compile each
# package a second time. -s -w: no DWARF or symbol table to write when
# linking 40 race test binaries; race reports and panics still name files
# and lines. -p 3 -parallel 4 (above): many packages' tests, and the
# tests marked parallel (live runs), mostly wait, so three test binaries
# and four tests in each share two cores.
RACE_TEST_FLAGS := -vet=all -ldflags='-s -w'

## redis-server: install Debian's redis-server when it is not on PATH (only the binary is used; tests start their own on loopback)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
redis-server:
	@command -v redis-server >/dev/null 2>&1 || { \
	  echo "installing redis-server from Debian packages"; \
	  $(SUDO) apt-get install -y -q redis-server >/dev/null 2>&1 || \
	  { $(SUDO) apt-get update -q >/dev/null && $(SUDO) apt-get install -y -q redis-server >/dev/null; }; }
	@command -v redis-server >/dev/null 2>&1 || { echo "redis-server could not be installed; install it (apt-get install redis-server) or set LOCKCHECK_REDIS_SERVER"; exit 1; }

## node-worker: install Node.js from Debian packages when it is missing, then the Node worker's npm packages (npm ci in workers/node)
node-worker:
	@command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || { \
	  echo "installing nodejs and npm from Debian packages"; \
	  $(SUDO) apt-get install -y -q nodejs npm >/dev/null 2>&1 || \
	  { $(SUDO) apt-get update -q >/dev/null && $(SUDO) apt-get install -y -q nodejs npm >/dev/null; }; }
	@command -v node >/dev/null 2>&1 || { echo "node could not be installed; install Node.js 18 or later (apt-get install nodejs npm)"; exit 1; }
	cd workers/node && npm ci --no-audit --no-fund --loglevel=error

## vet: go vet alone (make test runs the same checks inside go test)
vet:
	$(GO) vet ./...

## bench: checker time and memory on synthetic histories (the register search too), lock/unlock cycles on the embedded GCS, raw and through the harness, the simulation's speed and the client libraries' own cost per request under it; the tables go into README.md
bench:
	$(GO) test -run '^$$' -bench 'BenchmarkCheck' -benchtime 1x -benchmem -timeout 60m ./models/ | tee results/bench-checkers.txt
	$(GO) run ./models/internal/benchtable < results/bench-checkers.txt > results/bench-checkers.md
	$(GO) run ./internal/readmetable -marker bench-checkers -table results/bench-checkers.md README.md
	$(GO) test -run '^$$' -bench 'BenchmarkRegisterCheck' -benchtime 1x -benchmem -timeout 20m ./models/ | tee results/bench-register.txt
	$(GO) test -run '^$$' -bench 'BenchmarkCycles' -benchtime 1x -timeout 10m ./harness/ | tee results/bench-cycles.txt
	grep '^|' results/bench-cycles.txt > results/bench-cycles.md
	$(GO) test -run '^$$' -bench 'BenchmarkSim' -benchtime 20x -cpu 1 -timeout 20m ./runner/ | tee results/bench-sim.txt
	$(GO) test -run '^$$' -bench 'BenchmarkClientFloor' -benchmem -cpu 1 -count 3 -timeout 10m ./lockers/internal/gcsclient/ ./lockers/redis/ | tee results/bench-client-floor.txt
	$(GO) test -run '^$$' -bench 'BenchmarkResumableCreateRace' -benchtime 1x -timeout 20m ./backends/gcs/ | tee results/bench-resumable-race.txt
	$(GO) run ./internal/readmetable -marker bench-cycles -table results/bench-cycles.md README.md

## build: the verify binary, as bin/verify
build:
	$(GO) build -o bin/verify ./cmd/verify

## redis-conformance-table: the same RESP cases on the embedded (plain and audited), in-memory and real redis-server; the table goes into README.md
redis-conformance-table: redis-server
	$(GO) test -count=1 -run '^TestConformance$$' ./backends/redisserver/ -args -conformance.table=$(CURDIR)/results/redis-conformance.md
	$(GO) run ./internal/readmetable -marker redis-conformance -table results/redis-conformance.md README.md

## tus616-table: tus616 at 1/10 time scale under each fault, 5 seeds of 20 s; the table goes into README.md (about 15 min)
TUS616_FAULTS := none latency partition-holder lost-reply server-429 pause-holder crash-holder
tus616-table: build
	rm -rf results/tus616-table
	for f in $(TUS616_FAULTS); do for s in 1 2 3 4 5; do \
	  faults=""; [ $$f = none ] || faults="-faults $$f"; \
	  bin/verify run -q -out results/tus616-table -locker tus616 -time-scale 0.1 -duration 20s -seed $$s $$faults > /dev/null; \
	  echo "$$f seed $$s: exit $$?"; \
	done; done
	$(GO) run ./internal/verdicttable results/tus616-table > results/tus616-table.md
	$(GO) run ./internal/readmetable -marker tus616 -table results/tus616-table.md README.md

## compare-table: every locker × {none, latency, partition, lost-reply, 429, pause, crash} on 3 seeds, each locker scaled to a 1 s lease; the table goes into README.md (about 30 min)
compare-table: build
	bin/verify compare -parallel 2 -seeds 1,2,3 -markdown results/compare-table.md > /dev/null || [ $$? -le 2 ]
	sed -E 's/\[(s[0-9]+)\]\([^)]*\)/\1/g' results/compare-table.md > results/compare-table.readme.md # the run links point into the comparison's own directory
	$(GO) run ./internal/readmetable -marker compare -table results/compare-table.readme.md README.md

## compare-data-table: every locker × {clock, skew, register-pause, fenced-pause, sigstop, sigkill, request-release} on 3 seeds, 1 s leases; the second README table (about 35 min)
compare-data-table: build
	bin/verify compare -parallel 2 -seeds 1,2,3 -scenarios clock,skew,register-pause,fenced-pause,sigstop,sigkill,request-release -markdown results/compare-data-table.md > /dev/null || [ $$? -le 2 ]
	sed -E 's/\[(s[0-9]+)\]\([^)]*\)/\1/g' results/compare-data-table.md > results/compare-data-table.readme.md
	$(GO) run ./internal/readmetable -marker compare-data -table results/compare-data-table.readme.md README.md

## determinism: the determinism self-check (verify sim -determinism): every seed of DET_SEEDS run twice, at -parallel 1 and at -parallel 2, for each locker of DET_LOCKERS (default: every locker that runs in simulation) under faults it survives, and the histories compared byte for byte; each locker's row goes to results/determinism/LOCKER.row; fails if any history differed or a run did not finish (the nightly job runs one locker per machine)
DET_SEEDS ?= 1-1000
DET_RUNS := memory:pause,crash memory-owner:pause,crash lease:crash fenced:partition,lost-reply,server-503 tus616:latency,partition lai:partition,crash gmutex:partition,lost-reply gcslock:latency,lost-reply redis:partition,lost-reply,pause,crash redislock:partition,crash redsync:partition,lost-reply,reset
DET_LOCKERS ?= $(foreach r,$(DET_RUNS),$(firstword $(subst :, ,$(r))))
determinism: build
	@mkdir -p results/determinism
	@bad=0; for l in $(DET_LOCKERS); do \
	  f=$$(for r in $(DET_RUNS); do [ "$${r%%:*}" = "$$l" ] && echo "$${r#*:}"; done); \
	  [ -n "$$f" ] || { echo "determinism: $$l is not one of the lockers that run in simulation: $(foreach r,$(DET_RUNS),$(firstword $(subst :, ,$(r))))" >&2; exit 3; }; \
	  row="| \`$$l\` | $$f | $(DET_SEEDS)"; \
	  for p in 1 2; do \
	    out=$$(bin/verify sim -q -out results/determinism -locker $$l -ttl 1s -faults $$f -fault-coverage any -seeds $(DET_SEEDS) -all -determinism -parallel $$p 2>&1); \
	    n=$$(echo "$$out" | sed -n 's/^determinism self-check: \([0-9]* of [0-9]*\) seeds.*/\1/p'); \
	    case "$$n" in "0 of "*) ;; *) bad=1; echo "$$out" | tail -20 >&2;; esac; \
	    row="$$row | $${n:-error: $$(echo "$$out" | tail -1)}"; \
	  done; echo "$$row |" | tee results/determinism/$$l.row; done; exit $$bad

## determinism-lockers: DET_LOCKERS as a JSON list (the nightly job's matrix)
determinism-lockers:
	@echo '[$(subst $(eval) ,$(comma),$(foreach l,$(DET_LOCKERS),"$(l)"))]'
comma := ,

## determinism-table: runs determinism (DET_LOCKERS, DET_SEEDS), then determinism-readme (DET_SEEDS=1-1000 takes about three and a half hours on 2 cores: one locker at a time, DET_LOCKERS=fenced, fits beside other work)
determinism-table:
	-@$(MAKE) --no-print-directory determinism
	@$(MAKE) --no-print-directory determinism-readme

## determinism-readme: writes every locker's latest row (results/determinism/LOCKER.row, from this run or an earlier one) into README.md, without running anything
determinism-readme:
	@{ echo "| locker | faults | seeds | differing at -parallel 1 | differing at -parallel 2 |"; echo "|---|---|---|---|---|"; \
	for r in $(DET_RUNS); do cat results/determinism/$${r%%:*}.row 2>/dev/null; done; } > results/determinism-table.md
	$(GO) run ./internal/readmetable -marker determinism -table results/determinism-table.md README.md

## mutant-table: every planted mutant (verify list: "BROKEN on purpose") and its controls, lease, fenced and redis, × the standard compare columns, seeds 1-3, in simulation; the table goes into docs/mutants.md
mutant-table: build
	@mkdir -p results
	bin/verify compare -sim -parallel 2 -seeds 1,2,3 -lockers lease,fenced,redis,$$(bin/verify list | awk '/BROKEN on purpose/ {print $$1}' | paste -sd, -) -markdown results/mutant-table.md > /dev/null || [ $$? -le 2 ]
	sed -E 's/\[(s[0-9]+)\]\([^)]*\)/\1/g' results/mutant-table.md > results/mutant-table.docs.md
	$(GO) run ./internal/readmetable -marker mutants -table results/mutant-table.docs.md docs/mutants.md

## fuzz-table: every planted mutant searched by random seeds (verify sim) and by coverage-guided fuzzing (verify fuzz), FUZZ_BUDGET of wall time each on one core, under one fault mix per kind of backend; the table goes into docs/fuzz.md (about 2 × FUZZ_BUDGET per mutant, and a few minutes to build the fuzz target once)
FUZZ_BUDGET ?= 60s
fuzz-table:
	@mkdir -p results
	$(GO) run ./internal/simtable -fuzz $(FUZZ_BUDGET) > results/fuzz-table.md
	$(GO) run ./internal/readmetable -marker fuzz-table -table results/fuzz-table.md docs/fuzz.md

## sim-table: every regression scenario and planted mutant, sim (seeds 1-200) against live (seeds 1-5): the first failing seed, seeds explored and wall time to the first violation, one command at a time; the table goes into README.md (about 4 min)
sim-table:
	$(GO) run ./internal/simtable > results/sim-table.md
	$(GO) run ./internal/readmetable -marker sim-table -table results/sim-table.md README.md

## report-check: a short invalid run and a valid one, their index, every page opened in headless Chromium (installed first when missing); fails on any script error and leaves screenshots of the invalid run's page and of the index in results/report-check/
REPORT_CHECK := results/report-check
report-check: build chromium
	rm -rf $(REPORT_CHECK)
	bin/verify run -q -out $(REPORT_CHECK) -locker mutant-silent-expiry -clients 4 -keys 1 -rate 0 -hold-min 40ms -hold-max 60ms -duration 2s -recovery-timeout 3s -seed 1 > /dev/null; \
	  code=$$?; [ $$code -eq 1 ] || { echo "the invalid run exited $$code, want 1"; exit 1; }
	bin/verify run -q -out $(REPORT_CHECK) -locker memory-owner -clients 4 -keys 2 -faults pause -fault-interval 300ms -duration 2s -recovery-timeout 3s -seed 1 > /dev/null
	bin/verify report $(REPORT_CHECK)
	LOCKCHECK_CHROMIUM=chromium LOCKCHECK_REPORT_DIR=$(CURDIR)/$(REPORT_CHECK) LOCKCHECK_REPORT_SCREENSHOTS=$(CURDIR)/$(REPORT_CHECK) \
	  $(GO) test -count=1 -run TestRenderInChromium -v ./internal/report/
	@echo "screenshots: $(REPORT_CHECK)/invalid-run.png $(REPORT_CHECK)/index.png"

## chromium: install Debian's chromium when it is not on PATH (the report check opens pages in it, headless)
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing chromium from Debian packages"; \
	  $(SUDO) apt-get install -y -q chromium >/dev/null 2>&1 || \
	  { $(SUDO) apt-get update -q >/dev/null && $(SUDO) apt-get install -y -q chromium >/dev/null; }; }
	@command -v chromium >/dev/null 2>&1 || { echo "chromium could not be installed; install it (apt-get install chromium)"; exit 1; }

# Suites: each run is judged against its scenario's expected verdict; JUnit
# XML, a Markdown table and results.json go to results/suite-<name>-<time>/.
# PARALLEL=N runs N at once (default half the CPUs), JUNIT=FILE copies the
# JUnit XML where CI looks for it. Exit 0 all as expected, 1 a verdict
# differs (an unsafe locker found safe included), 2 unknown or not run.
SUITE_FLAGS = $(if $(PARALLEL),-parallel $(PARALLEL)) $(if $(JUNIT),-junit $(JUNIT))

## quick: the quick suite, a few minutes: controls that must stay valid and cells that must stay invalid, one seed each
quick: build
	bin/verify suite quick $(SUITE_FLAGS)

## nightly: every exploratory scenario on each of its seeds; SHARD=i/n runs shard i of n, so n CI machines share it
SHARD ?= 1/1
nightly: build
	bin/verify suite nightly -shard $(SHARD) $(SUITE_FLAGS)

## regression: every pinned defect in scenarios/regression/ must still reproduce
regression: build
	bin/verify suite regression $(SUITE_FLAGS)

## regression/<defect>: one pinned defect, named after its file in scenarios/regression/ (make regression/tus616-pause-stale-delete)
regression/%: build
	bin/verify suite regression -only regression/$* $(SUITE_FLAGS)

clean:
	rm -rf bin

## help: every target, with what it does
help:
	@sed -n 's/^## /  /p' Makefile
