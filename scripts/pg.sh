#!/usr/bin/env bash
# pg.sh: a private PostgreSQL for fstore, from the installed PostgreSQL binaries.
#
#   pg.sh start DIR [PORT]   start (initialising on first use) a persistent cluster
#                            in DIR on 127.0.0.1:PORT (default 54329); prints the
#                            DATABASE_URL of its "fstore" database on stdout;
#                            FSTORE_PG_OPTS adds server options
#   pg.sh stop DIR           stop that cluster (its data stays)
#   pg.sh standby DIR PRIMARY_DIR PORT [sync]
#                            make DIR a hot standby of the cluster running in
#                            PRIMARY_DIR (pg_basebackup, streaming replication,
#                            application_name = DIR's base name) and start it on
#                            127.0.0.1:PORT; with "sync", the primary waits for
#                            it at every commit (synchronous_standby_names).
#                            Prints the DATABASE_URL of its "fstore" database;
#                            FSTORE_PG_OPTS adds server options
#   pg.sh promote DIR        promote the standby in DIR to a primary
#   pg.sh temp CMD [ARG...]  run CMD with DATABASE_URL set to a throwaway cluster
#                            (unix socket only) that is removed after; fsync is
#                            off unless FSTORE_PG_DURABLE=1 (benchmarks);
#                            FSTORE_PG_OPTS adds server options ("-c name=value")
#
# PostgreSQL refuses to run as root: as root the server runs as the system user
# $FSTORE_PG_USER (default fstore-pg, created when missing). Binaries come from
# $PG_BINDIR, /usr/lib/postgresql/*/bin (newest), pg_config or PATH; as root
# they are installed with apt-get when missing.
set -euo pipefail

PG_USER=${FSTORE_PG_USER:-fstore-pg}

log() { echo "pg.sh: $*" >&2; }
die() { log "$*"; exit 1; }

find_bindir() {
  if [ -n "${PG_BINDIR:-}" ] && [ -x "$PG_BINDIR/initdb" ]; then echo "$PG_BINDIR"; return 0; fi
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  if [ -n "$d" ] && [ -x "$d/initdb" ]; then echo "$d"; return 0; fi
  if command -v pg_config >/dev/null 2>&1; then
    d=$(pg_config --bindir)
    if [ -x "$d/initdb" ]; then echo "$d"; return 0; fi
  fi
  if command -v initdb >/dev/null 2>&1; then dirname "$(command -v initdb)"; return 0; fi
  return 1
}

install_postgres() {
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    die "PostgreSQL server binaries (initdb, pg_ctl, postgres) were not found.
  Install them, e.g. 'sudo apt-get install postgresql' (Debian/Ubuntu),
  'sudo dnf install postgresql-server' (Fedora) or 'brew install postgresql@16' (macOS),
  or set PG_BINDIR to their folder, or point DATABASE_URL at a PostgreSQL you run,
  or use 'docker compose up' (see README.md)."
  fi
  log "PostgreSQL binaries not found: installing them with apt-get"
  # The Debian package would create and start a cluster of its own: we only want the binaries.
  mkdir -p /etc/postgresql-common
  if ! grep -qs '^create_main_cluster' /etc/postgresql-common/createcluster.conf; then
    echo 'create_main_cluster = false' >>/etc/postgresql-common/createcluster.conf
  fi
  DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >&2
}

BINDIR=$(find_bindir || { install_postgres >&2; find_bindir; }) || die "no PostgreSQL binaries after installing"

# as_server runs a command as the user the server runs as.
as_server() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u "$PG_USER" -- "$@"; else "$@"; fi
}

ensure_server_user() {
  [ "$(id -u)" -eq 0 ] || return 0
  if ! id "$PG_USER" >/dev/null 2>&1; then
    log "running as root: creating system user $PG_USER to run PostgreSQL"
    useradd --system --no-create-home --shell /usr/sbin/nologin "$PG_USER" 2>/dev/null \
      || adduser --system --no-create-home --group "$PG_USER" >/dev/null
  fi
}

# prepare_dir makes DIR owned by the server user and checks the user can reach it.
prepare_dir() {
  local dir=$1
  mkdir -p "$dir"
  if [ "$(id -u)" -eq 0 ]; then
    chown "$PG_USER" "$dir"
    chmod 700 "$dir"
    as_server test -w "$dir" || die "user $PG_USER cannot reach $dir (a parent folder is not traversable by other users).
  Make the path traversable (chmod o+x on its parents), or set DATABASE_URL to a PostgreSQL you run."
  fi
}

init_cluster() {
  local data=$1
  [ -f "$data/PG_VERSION" ] && return 0
  log "initialising a PostgreSQL cluster in $data"
  as_server "$BINDIR/initdb" -D "$data" -U postgres --auth=trust -E UTF8 --no-locale >/dev/null
}

cmd_start() {
  local dir port data url
  dir=$(mkdir -p "$1" && cd "$1" && pwd)
  port=${2:-54329}
  data="$dir/data"
  ensure_server_user
  prepare_dir "$dir"
  # One start at a time: a second "make run" waits here, then finds the server running.
  exec 9>"$dir/.lock"
  flock -w 120 9 || die "another pg.sh has held $dir/.lock for 2 minutes"
  init_cluster "$data"
  if as_server "$BINDIR/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    log "PostgreSQL already running in $data"
    port=$(sed -n 4p "$data/postmaster.pid")
  else
    log "starting PostgreSQL on 127.0.0.1:$port (data in $data, log in $dir/postgres.log)"
    if ! as_server "$BINDIR/pg_ctl" -D "$data" -l "$dir/postgres.log" -w -t 60 \
      -o "-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories=$dir -c max_connections=200 ${FSTORE_PG_OPTS:-}" start >/dev/null 9>&-; then
      tail -n 20 "$dir/postgres.log" >&2 || true
      die "PostgreSQL did not start (is port $port taken? set FSTORE_PG_PORT)"
    fi
  fi
  if ! as_server "$BINDIR/psql" -h "$dir" -p "$port" -U postgres -d postgres -Atqc \
    "SELECT 1 FROM pg_database WHERE datname = 'fstore'" | grep -q 1; then
    as_server "$BINDIR/createdb" -h "$dir" -p "$port" -U postgres fstore
  fi
  echo "postgres://postgres@127.0.0.1:$port/fstore?sslmode=disable"
}

cmd_stop() {
  local data="$1/data"
  [ -f "$data/PG_VERSION" ] || die "no cluster in $1"
  as_server "$BINDIR/pg_ctl" -D "$data" -m fast -w stop
}

# running_port prints the port of the server running in DIR.
running_port() {
  sed -n 4p "$1/data/postmaster.pid"
}

cmd_standby() {
  local dir primary port mode name pport data
  dir=$(mkdir -p "$1" && cd "$1" && pwd)
  primary=$(cd "$2" && pwd) port=$3 mode=${4:-async}
  name=$(basename "$dir" | tr -c 'a-zA-Z0-9_\n' '_')
  data="$dir/data"
  [ -f "$primary/data/postmaster.pid" ] || die "no server running in $primary"
  pport=$(running_port "$primary")
  ensure_server_user
  prepare_dir "$dir"
  log "making $data a standby of $primary (pg_basebackup)"
  as_server "$BINDIR/pg_basebackup" -h "$primary" -p "$pport" -U postgres -D "$data" -X stream -c fast >/dev/null
  # Streaming replication from the primary's socket, under a name the
  # primary can list in synchronous_standby_names.
  echo "primary_conninfo = 'host=$primary port=$pport user=postgres application_name=$name'" \
    | as_server tee -a "$data/postgresql.auto.conf" >/dev/null
  as_server touch "$data/standby.signal"
  if ! as_server "$BINDIR/pg_ctl" -D "$data" -l "$dir/postgres.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories=$dir -c max_connections=200 -c hot_standby_feedback=on ${FSTORE_PG_OPTS:-}" \
    start >/dev/null; then
    tail -n 20 "$dir/postgres.log" >&2 || true
    die "the standby did not start"
  fi
  local psql=("$BINDIR/psql" -h "$primary" -p "$pport" -U postgres -d postgres -Atq)
  if [ "$mode" = sync ]; then
    as_server "${psql[@]}" -c "ALTER SYSTEM SET synchronous_standby_names = '\"$name\"'" -c "SELECT pg_reload_conf()" >/dev/null
  fi
  for _ in $(seq 300); do
    if [ "$(as_server "${psql[@]}" -c "SELECT count(*) FROM pg_stat_replication WHERE application_name = '$name' AND state = 'streaming'")" = 1 ]; then
      echo "postgres://postgres@127.0.0.1:$port/fstore?sslmode=disable"
      return 0
    fi
    sleep 0.1
  done
  die "the standby in $dir is not streaming from $primary"
}

cmd_promote() {
  as_server "$BINDIR/pg_ctl" -D "$1/data" -w -t 60 promote >/dev/null
}

cmd_temp() {
  [ $# -gt 0 ] || die "usage: pg.sh temp CMD [ARG...]"
  ensure_server_user
  local port=5432
  TEMP_DIR=$(mktemp -d "${TMPDIR:-/tmp}/fstore-pg.XXXXXX")
  local dir=$TEMP_DIR
  chmod 755 "$dir"
  cleanup() {
    as_server "$BINDIR/pg_ctl" -D "$TEMP_DIR/data" -m immediate -w stop >/dev/null 2>&1 || true
    rm -rf "$TEMP_DIR"
  }
  trap cleanup EXIT
  trap 'exit 130' INT TERM
  prepare_dir "$dir"
  init_cluster "$dir/data" 2>/dev/null
  # A throwaway cluster reachable only through its socket; for tests,
  # durability off (nothing here must survive a crash).
  local opts="-c listen_addresses='' -k $dir -p $port -c max_connections=400 -c shared_buffers=512MB"
  opts="$opts ${FSTORE_PG_OPTS:-}"
  if [ "${FSTORE_PG_DURABLE:-0}" != 1 ]; then
    opts="$opts -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
  fi
  as_server "$BINDIR/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 -o "$opts" \
    start >/dev/null || { cat "$dir/postgres.log" >&2; die "throwaway PostgreSQL did not start"; }
  export DATABASE_URL="postgres://postgres@/postgres?host=$dir&port=$port&sslmode=disable"
  export PG_BINDIR="$BINDIR"
  log "throwaway PostgreSQL at $dir"
  local rc=0
  "$@" || rc=$?
  return $rc
}

case "${1:-}" in
  start) shift; [ $# -ge 1 ] || die "usage: pg.sh start DIR [PORT]"; cmd_start "$@" ;;
  stop) shift; [ $# -eq 1 ] || die "usage: pg.sh stop DIR"; cmd_stop "$1" ;;
  standby) shift; [ $# -ge 3 ] || die "usage: pg.sh standby DIR PRIMARY_DIR PORT [sync]"; cmd_standby "$@" ;;
  promote) shift; [ $# -eq 1 ] || die "usage: pg.sh promote DIR"; cmd_promote "$1" ;;
  temp) shift; cmd_temp "$@" ;;
  *) die "usage: pg.sh start DIR [PORT] | stop DIR | standby DIR PRIMARY_DIR PORT [sync] | promote DIR | temp CMD [ARG...]" ;;
esac
