#!/usr/bin/env bash
# pgbouncer.sh: a private PgBouncer in transaction mode in front of a
# PostgreSQL, for fstore's tests and benchmarks.
#
#   pgbouncer.sh start DIR PORT SERVER_HOST SERVER_PORT
#       start PgBouncer on 127.0.0.1:PORT (loopback only) in front of the
#       PostgreSQL at SERVER_HOST (a host name, an address or a unix socket
#       folder) and SERVER_PORT, for every database, pool_mode=transaction,
#       trusting user postgres as the server does; its configuration, log and
#       pid file go in DIR. Prints 127.0.0.1:PORT.
#   pgbouncer.sh stop DIR
#       stop it (SIGTERM) and wait until it has exited.
#   pgbouncer.sh temp CMD [ARG...]
#       run CMD with a throwaway PgBouncer in front of the server of
#       DATABASE_URL (as scripts/pg.sh temp sets it), its host:port in
#       FSTORE_TEST_PGBOUNCER (internal/store/storetest reads it); removed after.
#
# PgBouncer comes from the distribution: as root it is installed with apt-get
# when missing (Debian's package, 1.18 on bookworm), the way scripts/pg.sh
# installs PostgreSQL. PgBouncer refuses to run as root: as root it runs as
# the system user $FSTORE_PG_USER (default fstore-pg, created when missing).
set -euo pipefail

PG_USER=${FSTORE_PG_USER:-fstore-pg}

log() { echo "pgbouncer.sh: $*" >&2; }
die() { log "$*"; exit 1; }

find_pgbouncer() {
  command -v pgbouncer 2>/dev/null || { [ -x /usr/sbin/pgbouncer ] && echo /usr/sbin/pgbouncer; }
}

install_pgbouncer() {
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    die "PgBouncer was not found. Install it, e.g. 'sudo apt-get install pgbouncer' (Debian/Ubuntu),
  'sudo dnf install pgbouncer' (Fedora) or 'brew install pgbouncer' (macOS)."
  fi
  log "PgBouncer not found: installing it with apt-get"
  # The package would start a PgBouncer service of its own (port 6432): only
  # the binary is wanted, so services stay unstarted during the install.
  local policy=/usr/sbin/policy-rc.d created=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    created=1
  fi
  local rc=0
  { DEBIAN_FRONTEND=noninteractive apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q pgbouncer; } >&2 || rc=$?
  [ "$created" -eq 1 ] && rm -f "$policy"
  [ "$rc" -eq 0 ] || die "apt-get install pgbouncer failed"
}

as_server() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u "$PG_USER" -- "$@"; else "$@"; fi
}

ensure_server_user() {
  [ "$(id -u)" -eq 0 ] || return 0
  if ! id "$PG_USER" >/dev/null 2>&1; then
    log "running as root: creating system user $PG_USER to run PgBouncer"
    useradd --system --no-create-home --shell /usr/sbin/nologin "$PG_USER" 2>/dev/null \
      || adduser --system --no-create-home --group "$PG_USER" >/dev/null
  fi
}

cmd_start() {
  local dir port host server_port bin
  dir=$(mkdir -p "$1" && cd "$1" && pwd)
  port=$2 host=$3 server_port=$4
  bin=$(find_pgbouncer || { install_pgbouncer; find_pgbouncer; }) || die "no pgbouncer binary after installing"
  ensure_server_user
  if [ "$(id -u)" -eq 0 ]; then chown "$PG_USER" "$dir"; fi
  chmod 700 "$dir"
  # Trust, as the private PostgreSQL clusters of scripts/pg.sh do; PgBouncer
  # still wants the user listed.
  echo '"postgres" ""' >"$dir/userlist.txt"
  # Transaction pooling, the mode that breaks session state (named prepared
  # statements, session advisory locks, LISTEN): the one fstore must work in.
  cat >"$dir/pgbouncer.ini" <<EOF
[databases]
* = host=$host port=$server_port

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir =
auth_type = trust
auth_file = $dir/userlist.txt
pool_mode = transaction
default_pool_size = 20
max_client_conn = 2000
ignore_startup_parameters = extra_float_digits
logfile = $dir/pgbouncer.log
pidfile = $dir/pgbouncer.pid
EOF
  if [ "$(id -u)" -eq 0 ]; then chown "$PG_USER" "$dir/userlist.txt" "$dir/pgbouncer.ini"; fi
  as_server "$bin" -d "$dir/pgbouncer.ini" || { tail -n 20 "$dir/pgbouncer.log" >&2 || true; die "PgBouncer did not start"; }
  for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "127.0.0.1:$port"
      return 0
    fi
    sleep 0.1
  done
  tail -n 20 "$dir/pgbouncer.log" >&2 || true
  die "PgBouncer is not listening on 127.0.0.1:$port"
}

cmd_stop() {
  local pidfile="$1/pgbouncer.pid" pid
  [ -f "$pidfile" ] || return 0
  pid=$(cat "$pidfile")
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
}

# server_of prints the host (or unix socket folder) and port of a
# postgres:// URL: from its host= and port= parameters, else its authority.
server_of() {
  local url=$1 host port authority
  host=$(sed -nE 's/.*[?&]host=([^&]*).*/\1/p' <<<"$url")
  port=$(sed -nE 's/.*[?&]port=([^&]*).*/\1/p' <<<"$url")
  authority=$(sed -nE 's|^[a-z]+://([^/?]*).*|\1|p' <<<"$url")
  authority=${authority##*@}
  [ -n "$host" ] || host=${authority%%:*}
  [ -n "$port" ] || { [[ $authority == *:* ]] && port=${authority##*:}; }
  echo "${host:-localhost} ${port:-5432}"
}

# free_port prints a loopback port that nothing listens on now.
free_port() {
  local p
  for _ in $(seq 50); do
    p=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return 0; fi
  done
  die "no free port found"
}

cmd_temp() {
  [ $# -gt 0 ] || die "usage: pgbouncer.sh temp CMD [ARG...]"
  [ -n "${DATABASE_URL:-}" ] || die "pgbouncer.sh temp: DATABASE_URL is not set (run it under scripts/pg.sh temp)"
  local server port
  read -r -a server <<<"$(server_of "$DATABASE_URL")"
  port=$(free_port)
  TEMP_DIR=$(mktemp -d "${TMPDIR:-/tmp}/fstore-pgbouncer.XXXXXX")
  chmod 755 "$TEMP_DIR"
  trap 'cmd_stop "$TEMP_DIR/b"; rm -rf "$TEMP_DIR"' EXIT
  trap 'exit 130' INT TERM
  FSTORE_TEST_PGBOUNCER=$(cmd_start "$TEMP_DIR/b" "$port" "${server[0]}" "${server[1]}")
  export FSTORE_TEST_PGBOUNCER
  log "throwaway PgBouncer at $FSTORE_TEST_PGBOUNCER"
  "$@"
}

case "${1:-}" in
  start) shift; [ $# -eq 4 ] || die "usage: pgbouncer.sh start DIR PORT SERVER_HOST SERVER_PORT"; cmd_start "$@" ;;
  stop) shift; [ $# -eq 1 ] || die "usage: pgbouncer.sh stop DIR"; cmd_stop "$1" ;;
  temp) shift; cmd_temp "$@" ;;
  *) die "usage: pgbouncer.sh start DIR PORT SERVER_HOST SERVER_PORT | stop DIR | temp CMD [ARG...]" ;;
esac
