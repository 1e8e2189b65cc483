#!/usr/bin/env bash
# bench.sh: 'make bench'. Builds the API and the benchmark driver, starts a
# throwaway PostgreSQL with durable settings (fsync on, as in production),
# and runs cmd/fstore-bench, which writes docs/benchmarks.md and the figures
# in README.md. The seed's SQL (fstore-sql) is measured in the same cluster,
# from $FSTORE_SEED_SCHEMA (default ../shared/reference/fstore-sql-schema.sql).
set -euo pipefail
cd "$(dirname "$0")/.."
go build -o bin/fstore-api ./cmd/api
go build -tags fstore_notrace -o bin/fstore-api-notrace ./cmd/api
go build -o bin/fstore-dispatcher ./cmd/dispatcher
go build -o bin/fstore-bench ./cmd/fstore-bench
seed=${FSTORE_SEED_SCHEMA:-../shared/reference/fstore-sql-schema.sql}
FSTORE_PG_DURABLE=1 exec scripts/pg.sh temp bin/fstore-bench \
  -api bin/fstore-api -seed "$seed" -out docs/benchmarks.md -readme README.md "$@"
