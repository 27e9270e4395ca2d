# lockcheck: `make verify` runs the main job, `make test` the whole suite.
GO      ?= go
VERIFY  := $(GO) run ./cmd/verify
export PATH := $(PATH):/usr/local/go/bin

.PHONY: verify test vet bench build clean

## verify: a quick run of the default locker through pauses and crashes, checked
verify:
	$(VERIFY) run -locker memory-owner -clients 8 -keys 2 -duration 10s -faults pause,crash

## test: vet and every test with the race detector
test: vet
	$(GO) test -race -timeout 25m ./...

vet:
	$(GO) vet ./...

## bench: checker time and memory on synthetic histories; the table goes into README.md
bench:
	$(GO) test -run '^$$' -bench 'BenchmarkCheck' -benchtime 1x -benchmem -timeout 60m ./models/ | tee results/bench-checkers.txt
	$(GO) run ./models/internal/benchtable < results/bench-checkers.txt > results/bench-checkers.md
	$(GO) run ./internal/readmetable -marker bench-checkers -table results/bench-checkers.md README.md

build:
	$(GO) build -o bin/verify ./cmd/verify

clean:
	rm -rf bin
