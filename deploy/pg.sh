# shellcheck shell=bash
# Helpers for a private PostgreSQL 15 cluster living in one directory.
#
# Source it:   source deploy/pg.sh
#              kiln_pg_start DIR [PORT] [DURABLE]   # exports KILN_DATABASE_URL
#              kiln_pg_stop DIR
# Or run it:   deploy/pg.sh start DIR [PORT] [DURABLE] | stop DIR | status DIR
#
# Layout: DIR/data (cluster), DIR/server.log, DIR/.s.PGSQL.PORT (unix socket).
# The server listens on the unix socket in DIR only (no TCP).
# As root, initdb/pg_ctl run as user postgres (initdb refuses root); DIR is
# chowned to postgres. Otherwise they run as the current user.
#
# DURABLE (3rd arg, or env KILN_PG_DURABLE; default 1) keeps PostgreSQL's
# durable defaults (fsync on): needed for quickstart and benchmarks.
# DURABLE=0 gives a fast throwaway cluster (fsync, synchronous_commit and
# full_page_writes off, initdb --no-sync), for tests only.
#
# When sourced, this file does not change the caller's shell options; every
# function returns non-zero with a message on stderr when it fails.

KILN_PG_BIN=${KILN_PG_BIN:-/usr/lib/postgresql/15/bin}
KILN_PG_DB=${KILN_PG_DB:-kiln}

_kiln_pg_log() { printf 'pg.sh: %s\n' "$*" >&2; }
_kiln_pg_err() { printf 'pg.sh: error: %s\n' "$*" >&2; return 1; }

# Run a PostgreSQL server tool as the cluster's owner, from a neutral cwd.
_kiln_pg_run() {
  if ((EUID == 0)); then
    (cd / && runuser -u postgres -- "$@")
  else
    (cd / && "$@")
  fi
}

# True if nothing seems to use PORT (TCP listener or a socket file in DIR).
_kiln_pg_port_free() {
  local port=$1 dir=$2
  [[ ! -e $dir/.s.PGSQL.$port && ! -e $dir/.s.PGSQL.$port.lock ]] || return 1
  if command -v ss >/dev/null 2>&1; then
    [[ -z $(ss -Htln "sport = :$port" 2>/dev/null) ]] || return 1
  fi
  return 0
}

# Prepare DIR (create, ownership, permissions); prints its absolute path.
_kiln_pg_prepare_dir() {
  local dir=$1
  if [[ -e $dir && ! -d $dir ]]; then
    _kiln_pg_err "$dir exists and is not a directory"; return 1
  fi
  # Refuse to take over an unrelated non-empty directory (we chown/chmod it).
  if [[ -d $dir && ! -e $dir/data ]] && [[ -n $(ls -A -- "$dir") ]]; then
    _kiln_pg_err "$dir is not empty and holds no cluster: use a new or empty directory"
    return 1
  fi
  mkdir -p -- "$dir" || { _kiln_pg_err "cannot create $dir"; return 1; }
  dir=$(cd -- "$dir" && pwd -P) || return 1
  if ((EUID == 0)); then
    id -u postgres >/dev/null 2>&1 ||
      { _kiln_pg_err "user postgres missing: run deploy/install-deps.sh (installs postgresql-15)"; return 1; }
    chown postgres:postgres "$dir" && chmod 0700 "$dir" || return 1
    runuser -u postgres -- test -x "$dir" -a -w "$dir" || {
      _kiln_pg_err "user postgres cannot enter $dir: make each parent directory traversable (chmod o+x PARENT) or use a directory under /var/tmp"
      return 1
    }
    if [[ -e $dir/data && $(stat -c %U "$dir/data") != postgres ]]; then
      _kiln_pg_err "$dir/data is not owned by postgres: fix with 'chown -R postgres:postgres $dir/data' or remove it"
      return 1
    fi
  else
    [[ -O $dir ]] || { _kiln_pg_err "$dir is not owned by $(id -un): use a directory you own"; return 1; }
    chmod 0700 "$dir" || return 1
  fi
  printf '%s\n' "$dir"
}

# kiln_pg_start DIR [PORT] [DURABLE]
kiln_pg_start() {
  local dir=${1:-} port=${2:-} durable=${3:-${KILN_PG_DURABLE:-1}}
  local bin=$KILN_PG_BIN db=$KILN_PG_DB
  [[ -n $dir ]] || { _kiln_pg_err "usage: kiln_pg_start DIR [PORT] [DURABLE]"; return 1; }
  [[ -x $bin/pg_ctl && -x $bin/initdb ]] ||
    { _kiln_pg_err "PostgreSQL 15 not found in $bin: run deploy/install-deps.sh (or set KILN_PG_BIN)"; return 1; }
  # The path ends up inside pg_ctl -o "..." and a conninfo string: keep it plain.
  [[ $dir =~ ^[A-Za-z0-9_./+:@-]+$ ]] ||
    { _kiln_pg_err "DIR may only contain letters, digits and _./+:@- (got: $dir)"; return 1; }
  [[ -z $port || $port =~ ^[0-9]+$ ]] || { _kiln_pg_err "PORT must be a number (got: $port)"; return 1; }
  [[ $db =~ ^[a-z_][a-z0-9_]*$ ]] || { _kiln_pg_err "KILN_PG_DB must be a plain identifier (got: $db)"; return 1; }

  dir=$(_kiln_pg_prepare_dir "$dir") || return 1
  # unix socket paths are limited to 107 bytes: DIR/.s.PGSQL.NNNNN
  ((${#dir} <= 80)) ||
    _kiln_pg_log "warning: $dir is ${#dir} characters long; the socket path may exceed the 107-byte limit, prefer a shorter DIR"

  local data=$dir/data
  if [[ -e $data && ! -e $data/PG_VERSION ]]; then
    _kiln_pg_err "$data exists but is not a cluster (interrupted initdb?): remove it and retry"
    return 1
  fi
  if [[ ! -e $data ]]; then
    local -a sync=()
    [[ $durable == 1 ]] || sync=(--no-sync)
    _kiln_pg_log "initdb $data"
    if ! _kiln_pg_run "$bin/initdb" -D "$data" -U postgres --auth=trust -E UTF8 \
      --locale=C.UTF-8 "${sync[@]}" >"$dir/initdb.log" 2>&1; then
      tail -n 20 "$dir/initdb.log" >&2
      _kiln_pg_err "initdb failed (full log: $dir/initdb.log)"
      return 1
    fi
  fi

  if _kiln_pg_run "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    # Already running (e.g. left over): reuse it if the port agrees.
    local running
    running=$(sed -n 4p "$data/postmaster.pid")
    if [[ -n $port && $port != "$running" ]]; then
      _kiln_pg_err "cluster in $dir already runs on port $running, not $port: stop it with kiln_pg_stop $dir"
      return 1
    fi
    port=$running
    _kiln_pg_log "already running in $dir on port $port"
  else
    if [[ -z $port ]]; then
      local p
      for ((p = 55432; p <= 55532; p++)); do
        if _kiln_pg_port_free "$p" "$dir"; then port=$p; break; fi
      done
      [[ -n $port ]] || { _kiln_pg_err "no free port in 55432..55532: pass PORT explicitly"; return 1; }
    fi
    local opts="-k $dir -p $port -c listen_addresses=''"
    [[ $durable == 1 ]] || opts+=" -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    if ! _kiln_pg_run "$bin/pg_ctl" -D "$data" -l "$dir/server.log" -w -t 60 -o "$opts" start >/dev/null; then
      tail -n 20 "$dir/server.log" >&2 2>/dev/null || true
      _kiln_pg_err "PostgreSQL did not start (log: $dir/server.log)"
      return 1
    fi
    _kiln_pg_log "started in $dir on port $port (durable=$durable)"
  fi

  local -a psql=("$bin/psql" -X -q -v ON_ERROR_STOP=1 -h "$dir" -p "$port" -U postgres -d postgres)
  local exists
  exists=$("${psql[@]}" -tAc "SELECT 1 FROM pg_database WHERE datname = '$db'") ||
    { _kiln_pg_err "cannot connect to PostgreSQL in $dir on port $port (log: $dir/server.log)"; return 1; }
  if [[ $exists != 1 ]]; then
    "${psql[@]}" -c "CREATE DATABASE $db" || { _kiln_pg_err "CREATE DATABASE $db failed"; return 1; }
  fi

  export KILN_PG_DIR=$dir KILN_PG_PORT=$port
  export KILN_DATABASE_URL="host=$dir port=$port user=postgres dbname=$db"
}

# kiln_pg_stop DIR: fast shutdown; succeeds if nothing is running.
kiln_pg_stop() {
  local dir=${1:-} bin=$KILN_PG_BIN
  [[ -n $dir ]] || { _kiln_pg_err "usage: kiln_pg_stop DIR"; return 1; }
  [[ -f $dir/data/postmaster.pid ]] || return 0
  _kiln_pg_run "$bin/pg_ctl" -D "$dir/data" status >/dev/null 2>&1 || return 0
  _kiln_pg_run "$bin/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null ||
    { _kiln_pg_err "could not stop PostgreSQL in $dir (log: $dir/server.log)"; return 1; }
  _kiln_pg_log "stopped $dir"
}

# kiln_pg_status DIR: exit 0 if running.
kiln_pg_status() {
  local dir=${1:-}
  [[ -n $dir && -d $dir/data ]] || return 1
  _kiln_pg_run "$KILN_PG_BIN/pg_ctl" -D "$dir/data" status >/dev/null 2>&1
}

# Command-line use.
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
  set -euo pipefail
  case ${1:-} in
    start)
      shift
      kiln_pg_start "$@"
      printf 'export KILN_DATABASE_URL=%q\n' "$KILN_DATABASE_URL"
      ;;
    stop) shift; kiln_pg_stop "$@" ;;
    status)
      shift
      if kiln_pg_status "$@"; then echo running; else echo "not running"; exit 3; fi
      ;;
    *)
      echo "usage: $0 start DIR [PORT] [DURABLE] | stop DIR | status DIR" >&2
      exit 2
      ;;
  esac
fi
