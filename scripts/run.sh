#!/usr/bin/env bash
# run.sh: 'make run'. Starts the fstore API and the dispatcher against
# DATABASE_URL, or, when it is unset, against a private PostgreSQL kept in
# .fstore/pg (started on 127.0.0.1:${FSTORE_PG_PORT:-54329}; stop it with
# 'make pg-stop'). The dispatcher stops when the API does.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${DATABASE_URL:-}" ]; then
  DATABASE_URL=$(scripts/pg.sh start .fstore/pg "${FSTORE_PG_PORT:-54329}")
  export DATABASE_URL
  echo "fstore: PostgreSQL: $DATABASE_URL (data in .fstore/pg; 'make pg-stop' stops it)"
fi
addr=${FSTORE_ADDR:-127.0.0.1:8080}
export FSTORE_METRICS_ADDR=${FSTORE_METRICS_ADDR:-127.0.0.1:9090}
export FSTORE_LOG_FORMAT=${FSTORE_LOG_FORMAT:-console}
echo "fstore: API  http://$addr/v1"
echo "fstore: docs http://$addr/docs/   (OpenAPI: http://$addr/openapi.json)"
echo "fstore: console http://$addr/console/   (the operator console)"
echo "fstore: dispatcher metrics http://$FSTORE_METRICS_ADDR/metrics"

bin/fstore-dispatcher &
dispatcher=$!
trap 'kill -TERM $dispatcher 2>/dev/null; wait $dispatcher 2>/dev/null' EXIT
trap 'exit 130' INT TERM
bin/fstore-api
