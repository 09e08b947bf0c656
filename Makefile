# migrationbot. `make help` lists the targets.
GO      ?= go
BIN     := bin/migrationbot
CONFIG  ?= examples/migrationbot.toml

.PHONY: help build run test bench fuzz vet fmt clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-8s %s\n", $$1, $$2}'

build: ## build bin/migrationbot
	@$(GO) build -o $(BIN) ./cmd/migrationbot

run: build ## the shell on the example config with the embedded Redis (pipe commands in, or type them)
	@env -u REDIS_URL $(BIN) shell --config $(CONFIG)

test: ## run every test (needs Redis on 127.0.0.1:6379 or REDIS_TEST_URL; .ci/run starts one)
	$(GO) test -race -count=1 ./...

BENCH_N ?= 4000
BENCH_C ?= 8
# Budgets are execution counts (about 5 s each here), not durations: a duration -fuzztime can fail
# with a bare "context deadline exceeded" at its end on go1.26 (golang/go#75804), and a red CI run
# for no crasher is worse than a few seconds' difference. FUZZTIME=30s (or 100000x) overrides all.
FUZZTIME ?=
FUZZ_TARGETS := FuzzParse:./commands/:20000x FuzzVerify:./bot/:20000x FuzzLoadConfig:./cmd/migrationbot/:2000x

bench: build ## Go benchmarks, then the load generator (bin/migrationbot vs a floor server, real redis-server)
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 500ms ./...
	$(GO) run ./bench/loadgen -bin $(BIN) -n $(BENCH_N) -c $(BENCH_C)

fuzz: ## run each fuzz target for its execution budget (about 5 s), or for FUZZTIME
	@set -e; for t in $(FUZZ_TARGETS); do \
		name=$${t%%:*}; rest=$${t#*:}; pkg=$${rest%%:*}; budget=$(if $(FUZZTIME),$(FUZZTIME),$${rest#*:}); \
		echo "fuzz $$name ($$pkg, $$budget)"; \
		$(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $$budget -fuzzminimizetime 200x $$pkg; \
	done

vet: ## go vet and gofmt
	$(GO) vet ./...
	@test -z "$$(gofmt -l .)" || (gofmt -l . && exit 1)

clean: ## remove build output
	rm -rf bin
