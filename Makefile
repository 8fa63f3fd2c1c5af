# Ferry's everyday commands. `make help` lists them.
GO        ?= go
BIN       ?= bin/ferry
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
FUZZTIME  ?= 2m
BENCHTIME ?= 1s
STATICCHECK_VERSION ?= v0.8.2

.DEFAULT_GOAL := help
.PHONY: help build run test test-under-load test-short lint check-deploy vulncheck fuzz bench bench-orders tidy-check clean

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z][a-zA-Z_-]+:.*## / {printf "  %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

build: ## build bin/ferry
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/ferry

run: build ## run ferry serve on the embedded store (./ferry-data)
	./$(BIN) serve

test: ## run every test with the race detector (PostgreSQL, mllp_send used when present); lists every skip with its reason
	$(GO) test -race -count=1 -timeout 20m -json ./... | $(GO) run .ci/test-summary.go

test-under-load: ## run `make test` RUNS times (default 3) while stress-ng loads every core twice over (issue 16's check that no test depends on the clock)
	@command -v stress-ng >/dev/null || { echo "stress-ng not found: apt-get install -y stress-ng"; exit 1; }
	@stress-ng --cpu $$(( 2 * $$(nproc) )) --quiet & pid=$$!; trap "kill $$pid 2>/dev/null" EXIT; \
	for i in $$(seq 1 $${RUNS:-3}); do echo "== run $$i of $${RUNS:-3} under stress-ng"; $(MAKE) test || exit 1; done

test-short: ## unit tests only, no race detector
	$(GO) test -short ./...

lint: ## gofmt, go vet, staticcheck, and go.mod tidiness
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...
	$(MAKE) tidy-check
	$(MAKE) check-deploy

check-deploy: ## promtool check and test the shipped Prometheus alert rules (deploy/prometheus); skipped, saying so, without promtool
	@if command -v promtool >/dev/null; then \
		promtool check rules deploy/prometheus/ferry-rules.yml && \
		(cd deploy/prometheus && promtool test rules ferry-rules_test.yml); \
	else echo "check-deploy: promtool not found (apt-get install prometheus): alert rules not checked"; fi

vulncheck: ## govulncheck against vuln.go.dev, else a dated snapshot from the module proxy (.ci/vulncheck; skips when neither is reachable)
	GO=$(GO) .ci/vulncheck

tidy-check: ## fail if go.mod or go.sum are stale
	$(GO) mod tidy -diff

fuzz: ## run each fuzz target for FUZZTIME (default 2m; .ci/fuzz-target says what fails)
	GO=$(GO) .ci/fuzz-target $(FUZZTIME) ./hl7 FuzzParse
	GO=$(GO) .ci/fuzz-target $(FUZZTIME) ./hl7 FuzzReadHeader
	GO=$(GO) .ci/fuzz-target $(FUZZTIME) ./hl7 FuzzSplitBatch
	GO=$(GO) .ci/fuzz-target $(FUZZTIME) ./hl7 FuzzEscape
	GO=$(GO) .ci/fuzz-target $(FUZZTIME) ./hl7 FuzzReadByNumber
	GO=$(GO) .ci/fuzz-target $(FUZZTIME) ./adapters/mllp FuzzReader
	GO=$(GO) .ci/fuzz-target $(FUZZTIME) ./adapters/dimse FuzzReadPDU
	GO=$(GO) .ci/fuzz-target $(FUZZTIME) ./dicom FuzzDataSet -fuzzminimizetime=5s
	GO=$(GO) .ci/fuzz-target $(FUZZTIME) ./dicom FuzzReadInstance -fuzzminimizetime=5s
	GO=$(GO) .ci/fuzz-target $(FUZZTIME) ./dicom FuzzReadStored -fuzzminimizetime=5s
	GO=$(GO) .ci/fuzz-target $(FUZZTIME) ./fhir FuzzValidate
	GO=$(GO) .ci/fuzz-target $(FUZZTIME) ./fhir FuzzIndex
	GO=$(GO) .ci/fuzz-target $(FUZZTIME) ./fhir FuzzParseDateQuery
	GO=$(GO) .ci/fuzz-target $(FUZZTIME) ./mappings FuzzApply
	GO=$(GO) .ci/fuzz-target $(FUZZTIME) ./mappings FuzzRender
	GO=$(GO) .ci/fuzz-target $(FUZZTIME) ./engine FuzzAppendJSONString
	GO=$(GO) .ci/fuzz-target $(FUZZTIME) ./engine FuzzDemographics
	GO=$(GO) .ci/fuzz-target $(FUZZTIME) ./engine FuzzImagingStudyContent
	GO=$(GO) .ci/fuzz-target $(FUZZTIME) ./dicom/render FuzzImage
	GO=$(GO) .ci/fuzz-target $(FUZZTIME) ./internal/textdiff FuzzDiff
	GO=$(GO) .ci/fuzz-target $(FUZZTIME) ./engine/patientid FuzzRead
	GO=$(GO) .ci/fuzz-target $(FUZZTIME) ./adapters/httpapi FuzzFHIRSearch
	GO=$(GO) .ci/fuzz-target $(FUZZTIME) ./engine/access FuzzAuthenticateToken
	GO=$(GO) .ci/fuzz-target $(FUZZTIME) ./engine/access FuzzParsePractitioner

bench: ## run the Go benchmarks (BENCHTIME each)
	$(GO) test -run='^$$' -bench=. -benchmem -benchtime=$(BENCHTIME) ./...

bench-orders: ## new orders over MLLP on PostgreSQL against pgbench committing the same rows (bench/pgbench; needs pgbench and a local PostgreSQL)
	bench/pgbench/compare.sh

clean: ## remove build output
	rm -rf bin
