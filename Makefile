# OpenEngage. `make demo` and `make test` install what they need on a fresh
# Debian machine (deploy/deps.sh) and reuse it when present: the demo only
# the Go modules, the tests also Java, Maven, Node.js and the SDKs.
GO      ?= go
export GOFLAGS ?= -buildvcs=false
SERVICES := deploy/services/services.sh
WITH_SERVICES := deploy/services/with-services.sh
PKGS    := ./...

.PHONY: all deps deps-go build demo test unit integration bench chaos fuzz services services-down services-status lint clean

all: build

## deps: everything the tests and benchmarks need; deps-go: Go's modules only.
deps:
	@deploy/deps.sh

deps-go:
	@deploy/deps.sh go

build: deps-go
	@echo "build: compiling bin/engage (the first time takes a minute or two, then seconds)…"
	@$(GO) build -o bin/engage ./cmd/engage

## demo: three simulated weeks of a news app through the collector, the segments,
## the campaign scheduler and push delivery (stand-ins for APNs and FCM), on a
## broker inside the process: who got what and why, then the analytics.
demo: build
	@./bin/engage demo

## test: vet, unit tests and fuzz seeds, then integration tests (race detector on)
## against the real Kafka and ClickHouse that it starts and stops again.
test: deps
	$(GO) vet $(PKGS)
	$(WITH_SERVICES) $(GO) test -race -count=1 -timeout 30m $(PKGS)

## unit: the tests that need no services (integration tests skip, loudly).
unit: deps
	$(GO) test -count=1 $(PKGS)

## bench: every stage's benchmark against the real services (figures in the README).
bench: deps
	$(WITH_SERVICES) sh -c '\
	  $(GO) test -run "^$$" -bench . ./pipeline/tag ./pipeline/tagplan ./pipeline/segmentapi && \
	  $(GO) test -run "^$$" -bench CollectorToKafka -benchtime 6000x -count 3 ./bench/ && \
	  $(GO) test -run "^$$" -bench CollectorWorstVsTypical -count 3 ./bench/ && \
	  $(GO) test -run "^$$" -bench ConsumerFetch -benchtime 500000x ./pipeline/kafkabus && \
	  $(GO) test -run "^$$" -bench Writer -benchtime 500000x ./sinks/clickhouse && \
	  $(GO) test -run "^$$" -bench SinkVsKafkaEngine -benchtime 1000000x -timeout 30m ./bench/ && \
	  $(GO) test -run "^$$" -bench Apply -benchtime 3000000x -timeout 30m ./segments/engine && \
	  $(GO) test -run "^$$" -bench "StateBytes|Restore|Advance" -benchtime 3s ./segments/engine && \
	  $(GO) test -run "^$$" -bench Fill -benchtime 3x ./segments/engine && \
	  $(GO) test -run "^$$" -bench HistoryRead ./sinks/clickhouse && \
	  $(GO) test -run "^$$" -bench Decide -benchtime 1000000x ./triggers && \
	  $(GO) test -run "^$$" -bench PendingState -benchtime 2x ./triggers && \
	  $(GO) test -run "^$$" -bench "Assign|EntrySend|NextLocal|TemplateRender" ./triggers && \
	  $(GO) test -run "^$$" -bench "ProcessEndToEnd|ChangelogRestore" -benchtime 500000x -timeout 30m ./bench/ && \
	  $(GO) test -run "^$$" -bench "ScheduleEndToEnd" -benchtime 500000x -timeout 30m ./bench/ && \
	  $(GO) test -run "^$$" -bench "DeliverToAPNs" -benchtime 200000x -timeout 30m ./bench/ && \
	  $(GO) test -run "^$$" -bench "DeliverVsGorush" -benchtime 100000x -timeout 30m ./bench/ && \
	  $(GO) test -run "^$$" -bench "InAppFetch" -benchtime 100000x ./bench/ && \
	  $(GO) test -run "^$$" -bench Churn -benchtime 1x -timeout 30m ./segments/engine ./triggers && \
	  ENGAGE_ANALYTICS_BENCH_RECORDS=$${ENGAGE_ANALYTICS_BENCH_RECORDS:-2000000} $(GO) test -run "^$$" -bench Queries -benchtime 20x -timeout 30m ./sinks/analytics'


## chaos: collector, sink and processor under steady load while a seeded driver
## kills and restarts each of them and one of three brokers (a cluster and a
## ClickHouse of the run's own); then every acknowledged record must be in
## ClickHouse once and the memberships equal an undisturbed run's. About 5
## minutes; CHAOS_SEED, CHAOS_DURATION (3m), CHAOS_RATE (200 records/s),
## CHAOS_LOGS (a folder for the services' logs). Not part of `make test`.
chaos: deps
	ENGAGE_CHAOS=1 ENGAGE_REQUIRE_SERVICES=1 ENGAGE_SERVICES_SCRIPT=$(CURDIR)/$(SERVICES) \
	  $(GO) test -count=1 -v -run '^TestChaos$$' -timeout 40m ./chaos/

## fuzz: a longer run of each fuzz target (FUZZTIME each).
FUZZTIME ?= 30s
fuzz: deps
	@for t in $$(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -n1 dirname | sort -u); do \
	  for f in $$(grep -h '^func Fuzz' $$t/*_test.go | sed 's/func \(Fuzz[A-Za-z0-9_]*\).*/\1/'); do \
	    echo "== $$t $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$t || exit 1; \
	  done; done

services: deps
	$(SERVICES) up

services-down:
	$(SERVICES) down

## services-status: says whether Kafka and ClickHouse are up, and exits 0 either way;
## scripts that must know ask `deploy/services/services.sh ready` (exit 0 only when both are).
services-status:
	$(SERVICES) status

clean:
	rm -rf bin
