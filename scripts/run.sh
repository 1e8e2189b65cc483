#!/usr/bin/env bash
# run.sh: 'make run'. Starts the fstore API against DATABASE_URL, or, when it
# is unset, against a private PostgreSQL kept in .fstore/pg (started on
# 127.0.0.1:${FSTORE_PG_PORT:-54329}; stop it with 'make pg-stop').
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${DATABASE_URL:-}" ]; then
  DATABASE_URL=$(scripts/pg.sh start .fstore/pg "${FSTORE_PG_PORT:-54329}")
  export DATABASE_URL
  echo "fstore: PostgreSQL: $DATABASE_URL (data in .fstore/pg; 'make pg-stop' stops it)"
fi
addr=${FSTORE_ADDR:-127.0.0.1:8080}
echo "fstore: API  http://$addr/v1"
echo "fstore: docs http://$addr/docs/   (OpenAPI: http://$addr/openapi.json)"
export FSTORE_LOG_FORMAT=${FSTORE_LOG_FORMAT:-console}
exec bin/fstore-api
