# fstore: the one entry point. 'make help' lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

GO       ?= go
BIN      := bin
PG_DIR   := .fstore/pg
PKGS     := ./...

.PHONY: help
help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  make %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## Build the binaries into bin/
	$(GO) build -o $(BIN)/fstore-api ./cmd/api
	$(GO) build -o $(BIN)/fstore-dispatcher ./cmd/dispatcher

.PHONY: run
run: build ## Start the API and the dispatcher (and a private PostgreSQL in .fstore/pg unless DATABASE_URL is set)
	@scripts/run.sh

.PHONY: test
test: vet ## Vet, the race-enabled tests (the HTTP and dispatch suites also through PgBouncer) and a short fuzz run on a throwaway PostgreSQL, the generated-files checks
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
	  if [ -n "$$unformatted" ]; then echo "gofmt would change: $$unformatted"; exit 1; fi
	scripts/pg.sh temp bash -c '$(GO) test -race -count=1 $(PKGS) \
	  && scripts/pgbouncer.sh temp $(GO) test -race -count=1 ./internal/http/ ./internal/dispatch/ \
	  && FUZZTIME=3s scripts/fuzz.sh'
	@$(MAKE) --no-print-directory sdk-check
	@$(MAKE) --no-print-directory console-check

.PHONY: fuzz
fuzz: ## Fuzz the request decoders longer (FUZZTIME per target, default 60s)
	scripts/pg.sh temp env FUZZTIME=$${FUZZTIME:-60s} scripts/fuzz.sh

.PHONY: vet
vet: ## go vet
	$(GO) vet $(PKGS)

.PHONY: lint
lint: vet ## gofmt, go vet, staticcheck and golangci-lint (pinned in go.mod; .golangci.yml)
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); exit 1)
	$(GO) tool staticcheck $(PKGS)
	$(GO) tool golangci-lint run $(PKGS)

.PHONY: vuln
vuln: ## govulncheck (pinned in go.mod) against vuln.go.dev, or the offline snapshot ../shared/vulndb when unreachable
	scripts/vuln.sh

.PHONY: openapi
openapi: ## Regenerate openapi/openapi.{json,yaml} from the swag annotations, and the Go and TypeScript clients
	$(GO) run ./openapi/gen
	cd openapi/client && $(GO) tool oapi-codegen -config cfg.yaml -o client.gen.go ../openapi.yaml
	cd sdk/typescript && npm ci --no-audit --no-fund --loglevel=error && npx openapi-typescript ../../openapi/openapi.yaml -o fstore.d.ts

.PHONY: sdk-check
sdk-check: ## Type-check a TypeScript client generated from the OpenAPI document (needs Node.js and npm)
	@command -v npm >/dev/null || { echo "sdk-check needs Node.js and npm (e.g. apt-get install nodejs npm)"; exit 1; }
	cd sdk/typescript && npm ci --no-audit --no-fund --loglevel=error \
	  && npx openapi-typescript ../../openapi/openapi.yaml -o node_modules/.fresh.d.ts >/dev/null \
	  && { cmp -s node_modules/.fresh.d.ts fstore.d.ts || { echo "sdk/typescript/fstore.d.ts is stale: run 'make openapi'"; exit 1; }; } \
	  && npx tsc --noEmit && echo "sdk-check: TypeScript client type-checks"

.PHONY: console
console: ## Build the operator console (web/console/src → web/console/dist, embedded in the API; needs Node.js and npm)
	cd web/console && npm ci --no-audit --no-fund --loglevel=error && npx tsc --noEmit && node build.mjs dist

.PHONY: console-check
console-check: ## Type-check the console and fail when web/console/dist is stale or over its 200 KB budget
	@command -v npm >/dev/null || { echo "console-check needs Node.js and npm (e.g. apt-get install nodejs npm)"; exit 1; }
	cd web/console && npm ci --no-audit --no-fund --loglevel=error && npx tsc --noEmit \
	  && node build.mjs node_modules/.fresh-dist \
	  && { diff -r node_modules/.fresh-dist dist >/dev/null || { echo "web/console/dist is stale: run 'make console'"; exit 1; }; } \
	  && echo "console-check: the built console is current"

.PHONY: bench
bench: ## Benchmarks on a throwaway PostgreSQL; writes docs/benchmarks.md
	scripts/bench.sh

.PHONY: e2e
e2e: ## Check /docs, a live follow (EventSource across an API restart) and /console in headless Chromium (installed with apt when missing); saves the screenshots in docs/
	scripts/e2e.sh

.PHONY: pg-stop
pg-stop: ## Stop the private PostgreSQL of 'make run' (its data stays in .fstore/pg)
	scripts/pg.sh stop $(PG_DIR)

.PHONY: clean
clean: ## Remove built binaries (not the database)
	rm -rf $(BIN)
