# lockcheck: `make verify` runs the main job, `make test` the whole suite.
GO      ?= go
VERIFY  := $(GO) run ./cmd/verify
export PATH := $(PATH):/usr/local/go/bin

.PHONY: verify test vet bench build clean tus616-table

## verify: a quick run of the default locker through pauses and crashes, checked
verify:
	$(VERIFY) run -locker memory-owner -clients 8 -keys 2 -duration 10s -faults pause,crash

## test: vet and every test with the race detector
test: vet
	$(GO) test -race -timeout 25m ./...

vet:
	$(GO) vet ./...

## bench: checker time and memory on synthetic histories, and lock/unlock cycles on the embedded GCS, raw and through the harness; the tables go into README.md
bench:
	$(GO) test -run '^$$' -bench 'BenchmarkCheck' -benchtime 1x -benchmem -timeout 60m ./models/ | tee results/bench-checkers.txt
	$(GO) run ./models/internal/benchtable < results/bench-checkers.txt > results/bench-checkers.md
	$(GO) run ./internal/readmetable -marker bench-checkers -table results/bench-checkers.md README.md
	$(GO) test -run '^$$' -bench 'BenchmarkCycles' -benchtime 1x -timeout 10m ./harness/ | tee results/bench-cycles.txt
	grep '^|' results/bench-cycles.txt > results/bench-cycles.md
	$(GO) run ./internal/readmetable -marker bench-cycles -table results/bench-cycles.md README.md

build:
	$(GO) build -o bin/verify ./cmd/verify

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

clean:
	rm -rf bin
