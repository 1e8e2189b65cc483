#!/usr/bin/env bash
# e2e.sh: 'make e2e'. Loads /docs in Debian's headless Chromium against a real
# API on a throwaway PostgreSQL: Swagger UI must list the operations, a "Try
# it out" call must succeed, nothing may be fetched from elsewhere (the docs
# work offline), and docs/swagger-ui.png is saved. Then a page's EventSource
# follows the log while events are appended and the API restarts: it must
# get every event once, in order, resuming by itself with Last-Event-ID
# (e2e/live.mjs); docs/live-follow.png is saved. Last it walks the operator
# console (e2e/console.mjs) against a real API with keys and a real
# dispatcher pushing to a failing receiver; it saves docs/console-*.png.
set -euo pipefail
cd "$(dirname "$0")/.."

CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
if [ ! -x "$CHROMIUM" ]; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "e2e: installing Chromium with apt-get" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >&2
  else
    echo "e2e: needs Chromium (apt-get install chromium), or CHROMIUM=/path/to/chromium" >&2
    exit 1
  fi
fi
command -v npm >/dev/null || { echo "e2e: needs Node.js and npm" >&2; exit 1; }
go build -o bin/fstore-api ./cmd/api
go build -o bin/fstore-dispatcher ./cmd/dispatcher
(cd e2e && npm ci --no-audit --no-fund --loglevel=error)
export CHROMIUM

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

run_check() {
  local addr api
  addr=127.0.0.1:$(free_port)
  FSTORE_ADDR=$addr FSTORE_LOG_LEVEL=warn bin/fstore-api &
  api=$!
  trap 'kill $api 2>/dev/null; wait $api 2>/dev/null' RETURN
  for _ in $(seq 1 100); do curl -fs "http://$addr/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
  (cd e2e && API="http://$addr" node docs.mjs)
  (cd e2e && API_BIN=../bin/fstore-api ADDR=127.0.0.1:$(free_port) node live.mjs)
}

# The console: an API with a read-write and a read-only key, a dispatcher
# that parks a partition after two failed pushes, and the receiver that
# console.mjs runs on RECEIVER_PORT.
run_console() {
  local addr api dispatcher
  addr=127.0.0.1:$(free_port)
  FSTORE_ADDR=$addr FSTORE_LOG_LEVEL=warn FSTORE_API_KEYS=rw-e2e-key,ro:ro-e2e-key FSTORE_ALLOW_PRIVATE_URLS=true \
    bin/fstore-api &
  api=$!
  trap 'kill $api $dispatcher 2>/dev/null; wait $api $dispatcher 2>/dev/null' RETURN
  for _ in $(seq 1 100); do curl -fs "http://$addr/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
  FSTORE_METRICS_ADDR=127.0.0.1:$(free_port) FSTORE_LOG_LEVEL=warn FSTORE_ALLOW_PRIVATE_URLS=true \
    FSTORE_DISPATCH_MAX_ATTEMPTS=2 bin/fstore-dispatcher &
  dispatcher=$!
  (cd e2e && API="http://$addr" RW_KEY=rw-e2e-key RO_KEY=ro-e2e-key RECEIVER_PORT=$(free_port) node console.mjs)
}
export -f run_check run_console free_port
scripts/pg.sh temp bash -c run_check
scripts/pg.sh temp bash -c run_console
