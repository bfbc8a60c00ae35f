#!/usr/bin/env bash
# Benchmarks: tests/bench/run.sh [queue|e2e|dispatch|requeue]...  (default: all)
# Builds what it needs, starts its own durable PostgreSQL (fsync and
# synchronous_commit on, as in production) in a temp directory, prints one
# key=value line per figure, and removes everything on exit.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"

if [[ "${KILN_BENCH_NO_BUILD:-0}" != 1 ]]; then
  deploy/install-deps.sh >&2
  deploy/build.sh >&2
fi
build="${BUILD_DIR:-build}"
[[ -x "$build/bin/kiln-bench" ]] || { echo "bench: $build/bin/kiln-bench is missing; build first" >&2; exit 1; }

pgdir="$(mktemp -d /tmp/kiln-bench-pg.XXXXXX)"
chmod 755 "$pgdir"  # the postgres user must enter it
# shellcheck source=../../deploy/pg.sh
source deploy/pg.sh
cleanup() { kiln_pg_stop "$pgdir/pg" >/dev/null 2>&1 || true; rm -rf "$pgdir"; }
trap cleanup EXIT
KILN_PG_DURABLE=1 kiln_pg_start "$pgdir/pg" >&2
"$build/bin/kiln-controller" migrate --database-url "$KILN_DATABASE_URL" >&2

port="$(sed -n 's/.*port=\([0-9]*\).*/\1/p' <<<"$KILN_DATABASE_URL")"
echo "# kiln benchmarks on $(nproc) cores, $(date -u +%Y-%m-%dT%H:%M:%SZ), durable commits" 
KILN_BENCH_PGHOST="$pgdir/pg" KILN_BENCH_PGPORT="$port" KILN_BENCH_PGDATABASE=kiln \
  "$build/bin/kiln-bench" --database-url "$KILN_DATABASE_URL" "$@"
