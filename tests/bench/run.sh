#!/usr/bin/env bash
# Benchmarks: tests/bench/run.sh [queue|e2e|dispatch|requeue|cas|sandbox|checkout|tu|pg|fleet|overhead]...
# (default: all but tu, pg, fleet and overhead). Runs under `flock /tmp/kiln-bench.lock`
# (takes it itself when not started so).
# KILN_BENCH_HISTORY=off runs the farm benchmarks' controller without the
# farm's history (job_timings = false, sample_interval = 0); on, the
# default, with it and a sample every second (docs/performance.md, "The
# farm's history": alternate both and compare medians).
# Builds what it needs, starts its own durable PostgreSQL (fsync and
# synchronous_commit on, as in production) in a temp directory, prints one
# key=value line per figure, and removes everything on exit.
#
# cas hashes and submits the PostgreSQL 15 source tree, fetched once with
# apt-get source into KILN_BENCH_SRC_DIR (default /var/tmp/kiln-bench-src) and
# reused; it adds a deb-src entry (/etc/apt/sources.list.d/zz-kiln-src.sources)
# when apt has none. It ends with the action cache: three new commands on the
# same tree in the busybox image, each run (action_cache_miss_s, the median),
# then the first submitted again, end to end (action_cache_hit_s). With
# KILN_BENCH_INSECURE=1 the farm runs without TLS and without content
# scoping (see below): alternate both on one build to measure their cost.
#
# tu builds PostgreSQL 15 (the same source tree; ./configure --enable-depend
# --without-icu --without-readline --without-zlib && make -j2) side by side:
# locally with ccache and on a one-worker farm in the toolchain image, each
# cold, then in three alternating rounds warm in a fresh directory and warm
# in a fresh directory with one .c file changed (medians), then the
# identical tree again through the action cache. About 15 minutes on 2 cores.
#
# pg is the "compile PostgreSQL" proof (docs/performance.md): cold (local
# plain gcc and farm, twice each: local, farm, farm, local; then local
# ccache), the identical tree again on the farm, then
# three alternating rounds of a fresh checkout with warm caches (local
# ccache, farm), each followed by two one-file changes (local incremental
# make, farm warm workspace; medians of the six), then a widely included
# header changed (a declaration, then a comment). About 25 minutes on 2
# cores.
#
# fleet is issue 24's benchmark (docs/performance.md, "Fleet"): one build's
# compiles spread over K simulated hosts, each a cgroup with a CPU quota (its
# worker, and the worker's containers and action boxes below it). PostgreSQL
# 15 (the pg case's tree and configure line) cold on one host locally (plain
# gcc, make -j$KILN_FLEET_J), then on fresh farms of K hosts (new database
# contents, controller, workers, caches; make -j$KILN_JOBS in the toolchain
# image); after each, utils/builtins.h gets a declaration and the same tree
# builds again incrementally (local) or in its warm workspace (farm). Prints
# the make phases (configure not counted), fleet_kK_ratio= and
# fleet_header_kK_ratio= (farm / local), each host's, the controller's and
# PostgreSQL's CPU seconds (cpuacct.usage), where the compilers ran (their
# cpu cgroup, sampled), and remote_overhead_p50_ms= / _p99_ms= of the largest
# farm. Settings (environment):
#   KILN_FLEET_K              the farms' host counts (default "1 3")
#   KILN_FLEET_QUOTA_US       each host's cpu.cfs_quota_us per 100 ms period (default 50000: half a CPU)
#   KILN_FLEET_J              the local build's make -j (default 2)
#   KILN_FLEET_FARM_J         the farm build's make -j (default '$KILN_JOBS', as the job sees it)
#   KILN_FLEET_ACTION_SLOTS   each worker's action_slots (default 2)
#   KILN_FLEET_TARGET         a directory of the tree to build alone, after the backend's generated
#                             headers, for a quick run (e.g. src/backend/utils/adt); default: the whole tree
# KILN_FLEET_TARGET=src/backend/utils/adt took 16 minutes on a loaded 2-core
# machine (three configures at half a CPU included); the whole tree is
# estimated from it at about an hour (docs/performance.md, "Fleet").
#
# overhead is issue 24's cost of a remote action, unsaturated: a farm of
# three workers on loopback without CPU quotas, the job's (label role=home,
# no action slots) and two helpers (action_slots 2 each); a generated C
# program of KILN_OVERHEAD_UNITS (default 300) small units (each includes
# <stdio.h> and <string.h>), built cold with make -j1: one compile at a
# time, which never waits for a slot. Then the same cold with make
# -j$KILN_JOBS (every slot busy). kiln-cc records per remote unit the
# remote compile as it waited for it (remote_ms) and the compile's own run
# on the helper (remote_run_ms): remote_overhead_p50_ms= / _p99_ms= are
# the percentiles of the difference in the unsaturated build,
# remote_overhead_saturated_p50_ms= / _p99_ms= in the other; and how many
# units each helper ran. About 3 minutes.
#
# checkout times a fresh job's tree setup on a worker for PostgreSQL's source
# tree (the same as cas), before and after the writable checkout (hard links
# alone, against the overlay with its own disk), median of 15 alternating:
# job_setup_ms_pg_tree_before and job_setup_ms_pg_tree.
#
# sandbox times the worker's per-job runc path against bare `runc run` of the
# same bundle (busybox image, median of 50) and unpacking the toolchain image
# (deploy/images/toolchain.sh, built once per machine).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"

# One benchmark at a time on a machine (they use fixed ports and simulated
# hosts' cgroups): run under `flock /tmp/kiln-bench.lock`, or this takes it.
lock=/tmp/kiln-bench.lock
under_lock() {  # whether this process or an ancestor (flock(1) runs its command as a child) holds $lock
  [[ -e $lock ]] || return 1
  local ino holders p
  ino="$(stat -c %i "$lock")"
  holders="$(awk -v ino="$ino" '$2 == "FLOCK" { n = split($6, f, ":"); if (f[n] == ino) print $5 }' /proc/locks)"
  p=$$
  while ((p > 1)); do
    grep -qx "$p" <<<"$holders" && return 0
    p="$(awk '{print $4}' "/proc/$p/stat" 2>/dev/null)" || return 1
  done
  return 1
}
under_lock || exec flock "$lock" "$0" "$@"

modes=("$@")
((${#modes[@]})) || modes=(queue e2e dispatch requeue cas sandbox checkout)
bench_modes=() run_cas=0 run_sandbox=0 run_checkout=0 run_tu=0 run_pg=0 run_fleet=0 run_overhead=0
for m in "${modes[@]}"; do
  case $m in
    cas) run_cas=1 ;;
    tu) run_tu=1 ;;
    pg) run_pg=1 ;;
    fleet) run_fleet=1 ;;
    overhead) run_overhead=1 ;;
    sandbox) run_sandbox=1 ;;
    checkout) run_checkout=1 ;;
    *) bench_modes+=("$m") ;;  # kiln-bench checks the names
  esac
done

if [[ "${KILN_BENCH_NO_BUILD:-0}" != 1 ]]; then
  deploy/install-deps.sh >&2
  deploy/build.sh >&2
fi
build="${BUILD_DIR:-build}"
for b in kiln-bench kiln kiln-controller kiln-worker; do
  [[ -x "$build/bin/$b" ]] || { echo "bench: $build/bin/$b is missing; build first" >&2; exit 1; }
done

pgdir="$(mktemp -d /tmp/kiln-bench-pg.XXXXXX)"
chmod 755 "$pgdir"  # the postgres user must enter it
state="$(mktemp -d /var/tmp/kiln-bench-state.XXXXXX)"  # daemons' dirs, the tree copy, caches
pids=()
# shellcheck source=../../deploy/pg.sh
source deploy/pg.sh

# Simulated hosts (fleet): cgroup v1 groups named kiln-bench-*, made in the
# cpu hierarchy (the quota) and in cpuacct (the usage; here it is mounted
# apart from cpu, not as cpu,cpuacct).
cg_root=/sys/fs/cgroup
cg_groups=()
cg_make() {  # cg_make NAME [QUOTA_US]
  local h
  for h in cpu cpuacct; do
    rmdir "$cg_root/$h/$1" 2>/dev/null || true  # an empty leftover of a killed run
    mkdir "$cg_root/$h/$1" || { echo "bench: cannot make cgroup $cg_root/$h/$1 (a leftover with processes in it?)" >&2; exit 1; }
  done
  cg_groups+=("$1")
  [[ -z ${2:-} ]] || echo "$2" >"$cg_root/cpu/$1/cpu.cfs_quota_us"
}
# cg_exec NAME CMD...: this process enters group NAME and becomes CMD (its
# children inherit the group). Run it with & or in a subshell.
cg_exec() {
  # shellcheck disable=SC2016
  exec sh -c 'for h in cpu cpuacct; do echo $$ >"$0/$h/$1/cgroup.procs" || exit 1; done; shift; exec "$@"' \
    "$cg_root" "$@"
}
cg_join() { local h; for h in cpu cpuacct; do echo "$2" >"$cg_root/$h/$1/cgroup.procs"; done; }  # cg_join NAME PID
cg_usage_ns() { cat "$cg_root/cpuacct/$1/cpuacct.usage"; }
# Stops what is left in a worker's runc state directory (containers, boxes).
runc_leftovers() {
  local id
  [[ -d $1 ]] || return 0
  for id in $(runc --root "$1" list -q 2>/dev/null); do runc --root "$1" delete --force "$id" >/dev/null 2>&1 || true; done
}
# Kills what is left in the groups (by pid), then removes them, deepest first.
cg_remove_all() {
  local g h d left
  for g in "${cg_groups[@]}"; do
    for h in cpu cpuacct; do
      d=$cg_root/$h/$g
      [[ -d $d ]] || continue
      for _ in $(seq 50); do
        left="$(find "$d" -name cgroup.procs -exec cat {} + 2>/dev/null)"
        [[ -z $left ]] && break
        # shellcheck disable=SC2086
        kill -KILL $left 2>/dev/null || true
        sleep 0.1
      done
      find "$d" -depth -type d -exec rmdir {} + 2>/dev/null || true
      [[ ! -d $d ]] || echo "bench: warning: cgroup $d is still there" >&2
    done
  done
  cg_groups=()
}

cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  for p in "$state"/fleet-*/runc; do runc_leftovers "$p"; done
  kiln_pg_stop "$pgdir/pg" >/dev/null 2>&1 || true
  cg_remove_all
  rm -rf "$pgdir" "$state"
}
trap cleanup EXIT
trap 'exit 130' INT  # the EXIT trap cleans up after a signal too (processes, cgroups, temp dirs)
trap 'exit 143' TERM
KILN_PG_DURABLE=1 kiln_pg_start "$pgdir/pg" >&2
"$build/bin/kiln-controller" migrate --database-url "$KILN_DATABASE_URL" >&2
# Secure by default, as a farm is: TLS with a CA of the run's own, workers
# enrolled by join token, and submits (the CLI's and kiln-bench's) with a
# `submit` token of project default, whose uploads, FindMissing and reads
# the controller checks against the project's content scope. The admin
# token (which sees all content: no scope checks) imports images.
# KILN_BENCH_INSECURE=1 is the farm without TLS and without scoping:
# plaintext, and every call with the admin token (tokens are still
# checked; the workers' own reads stay scoped, as they cannot be turned
# off). Alternate the two on one build to measure their cost (issue 23).
"$build/bin/kiln-controller" certs init --dir "$state/tls" >/dev/null
"$build/bin/kiln-controller" tokens create --database-url "$KILN_DATABASE_URL" --out "$state/admin.token" >&2
export KILN_CA="$state/tls/ca.crt" KILN_TOKEN_FILE="$state/admin.token" KILN_BENCH_TLS_DIR="$state/tls"
if [[ "${KILN_BENCH_INSECURE:-0}" == 1 ]]; then
  export KILN_INSECURE=1
  tls_ctl=(--set insecure=true) tls_wrk=(--set insecure=true)
  submit_token="$state/admin.token"
else
  tls_ctl=(--set "tls_dir=$state/tls") tls_wrk=(--set "ca_file=$state/tls/ca.crt")
  submit_token="$state/submit.token"
  "$build/bin/kiln-controller" tokens create --database-url "$KILN_DATABASE_URL" --role submit --project default \
    --description "kiln bench submits" --out "$submit_token" >&2
fi
export KILN_BENCH_SUBMIT_TOKEN_FILE="$submit_token"

port="$(sed -n 's/.*port=\([0-9]*\).*/\1/p' <<<"$KILN_DATABASE_URL")"
echo "# kiln benchmarks on $(nproc) cores, $(date -u +%Y-%m-%dT%H:%M:%SZ), durable commits" 
if ((${#bench_modes[@]})); then
  KILN_BENCH_PGHOST="$pgdir/pg" KILN_BENCH_PGPORT="$port" KILN_BENCH_PGDATABASE=kiln \
    "$build/bin/kiln-bench" --database-url "$KILN_DATABASE_URL" "${bench_modes[@]}"
fi
if ((run_sandbox)); then
  bb="$(deploy/images/busybox.sh "$state/busybox.tar")"
  tc="$(deploy/images/toolchain.sh)"
  "$build/bin/kiln-bench" sandbox "$bb" "$tc"
fi
sql() { "$KILN_PG_BIN/psql" -X -qtA -v ON_ERROR_STOP=1 -h "$pgdir/pg" -p "$port" -U postgres -d kiln -c "$1"; }
now() { date +%s.%N; }
median3() { printf '%s\n' "$@" | sort -g | sed -n 2p; }
# The median of any count (of an even count, the mean of the middle two).
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {printf "%.2f", NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

# Prints the unpacked PostgreSQL 15 source tree, fetching it the first time.
pg_source_tree() {
  local cache="${KILN_BENCH_SRC_DIR:-/var/tmp/kiln-bench-src}" fresh=1 tree
  compgen -G "$cache/postgresql-15_*.unpacked" >/dev/null && fresh=0
  tree="$(tests/debian-source.sh postgresql-15 "$cache")" || exit 1
  # The hash cache does not trust files changed in the last 2 s (tar keeps
  # mtimes: belt and braces).
  ((fresh)) && sleep 2
  printf '%s\n' "$tree"
}

# PostgreSQL's configure line for the tu, pg and fleet builds, and the widely
# included header of the header cases.
pg_conf="./configure --enable-depend --without-icu --without-readline --without-zlib"
pg_header=src/include/utils/builtins.h
# fresh_copy DIR: DIR a fresh copy of $tree (cp -a keeps mtimes).
fresh_copy() { rm -rf "$1" "$1.log"; cp -a "$tree" "$1"; }
# edit FILE NAME [TEXT]: TEXT appended to FILE; by default a real change of the
# code (a new symbol kiln_bench_NAME), not a comment.
edit() { echo "${3:-int kiln_bench_$2;}" >>"$1"; }


# remote_overhead JOB [TAG [NOTE]]: remote_overhead${TAG}_p50_ms=, _p99_ms=
# and _units= of the job's remote units. Per unit: the remote compile as
# kiln-cc waited for it (remote_ms: from the unit's start, its preprocessor
# pass, its inputs named and uploaded, queued, run, outputs back and
# written) less the compile's own run on the other host (remote_run_ms):
# the same compile as it runs locally.
remote_overhead() {
  if [[ $(sql "SELECT count(*) FROM compile_events WHERE job_id = $1 AND remote_worker <> ''") == 0 ]]; then
    echo "bench: no unit of job $1 compiled on another worker: no remote overhead to measure (kiln why $1 says why)" >&2
    return 1
  fi
  sql "SELECT 'remote_overhead${2:-}_p50_ms=' || round(percentile_cont(0.5) WITHIN GROUP (ORDER BY remote_ms - remote_run_ms)) ||
              E'\nremote_overhead${2:-}_p99_ms=' || round(percentile_cont(0.99) WITHIN GROUP (ORDER BY remote_ms - remote_run_ms)) ||
              E'\nremote_overhead${2:-}_units=' || count(*) ||
              E'\n# ${3:-}${3:+: }remote_ms p50/p99: ' || round(percentile_cont(0.5) WITHIN GROUP (ORDER BY remote_ms)) || '/' ||
              round(percentile_cont(0.99) WITHIN GROUP (ORDER BY remote_ms)) ||
              ', remote_run_ms p50/p99: ' || round(percentile_cont(0.5) WITHIN GROUP (ORDER BY remote_run_ms)) || '/' ||
              round(percentile_cont(0.99) WITHIN GROUP (ORDER BY remote_run_ms))
       FROM compile_events WHERE job_id = $1 AND remote_worker <> ''"
}

# Empties the database's jobs, tree nodes, compile cache and workers.
reset_farm_db() {
  sql "TRUNCATE action_cache, job_logs, job_secrets, compile_stats, compile_events, build_jobs, cas_trees, compile_results,
       compile_manifests RESTART IDENTITY CASCADE;
       DELETE FROM workers"
}
# start_controller [LAUNCHER...]: a controller (own CAS dir in the state
# directory), started through LAUNCHER when given; sets addr and writes a
# join token to $state/join.
start_controller() {
  rm -f "$state/addr"
  "$@" "$build/bin/kiln-controller" --database-url "$KILN_DATABASE_URL" --listen 127.0.0.1:0 \
    --address-file "$state/addr" --cas-dir "$state/cas" --log-level warn "${tls_ctl[@]}" >"$state/controller.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 200); do [[ -s $state/addr ]] && break; sleep 0.1; done
  [[ -s $state/addr ]] || { echo "bench: controller did not start:" >&2; cat "$state/controller.log" >&2; exit 1; }
  addr="$(<"$state/addr")"
  "$build/bin/kiln-controller" join-token --database-url "$KILN_DATABASE_URL" --out "$state/join"
}
# wait_workers N LOG...: waits until N workers are connected; on a timeout
# prints the logs.
wait_workers() {
  for _ in $(seq 300); do [[ $(sql "SELECT count(*) FROM workers WHERE state = 'connected'") == "$1" ]] && return 0; sleep 0.1; done
  echo "bench: $1 worker(s) did not connect:" >&2
  tail -n 20 "${@:2}" >&2
  exit 1
}

# stop_pids PID...: SIGTERM, then after 20 s SIGKILL; they leave $pids.
stop_pids() {
  local p keep=()
  kill "$@" 2>/dev/null || true
  local alive
  for _ in $(seq 200); do
    alive=0
    for p in "$@"; do kill -0 "$p" 2>/dev/null && alive=1; done
    ((alive)) || break
    sleep 0.1
  done
  kill -KILL "$@" 2>/dev/null || true
  for p in "$@"; do wait "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do [[ " $* " == *" $p "* ]] || keep+=("$p"); done
  pids=("${keep[@]}")
}

# Starts a controller (the database emptied) and one worker with $1 slots;
# sets addr.
start_farm() {
  reset_farm_db
  start_controller
  "$build/bin/kiln-worker" --controller "$addr" --slots "$1" --work-dir "$state/w0" --label bench=cas \
    --set allow_plain_jobs=true "${tls_wrk[@]}" --set "join_token_file=$state/join" \
    --log-level warn >"$state/worker.log" 2>&1 &
  pids+=($!)
  wait_workers 1 "$state/worker.log"
}

run_cas_bench() {
# ---- cas: hashing and uploading a real source tree ----
tree="$(pg_source_tree)"  # read only: the upload part changes a copy
# A copy for the uploads (cp -a keeps mtimes, so the CLI's hash cache takes
# its files at the first submit).
copy="$state/pg-src-copy"
cp -a "$tree" "$copy"
files="$(find "$tree" -type f | wc -l)"
tree_bytes="$(find "$tree" -type f -printf '%s\n' | awk '{s += $1} END {printf "%d\n", s}')"
echo "files=$files"
echo "tree_bytes=$tree_bytes"

hash_tree() { "$build/bin/kiln-bench" hash "$tree" --cache-file "$state/hashcache"; }
field() { sed -n "s/^$1=//p"; }
sha256sum_tree() { (cd "$tree" && find . -type f -print0 | xargs -0 sha256sum >/dev/null); }

sha256sum_tree  # warm the page cache for both
sha_s=() cold_s=()
for _ in 1 2 3; do
  t0="$(now)"
  sha256sum_tree
  sha_s+=("$(awk -v a="$t0" -v b="$(now)" 'BEGIN {printf "%.3f", b - a}')")
  rm -f "$state/hashcache"
  out="$(hash_tree)"
  cold_s+=("$(field seconds <<<"$out")")
  [[ $(field hashed <<<"$out") == "$files" && $(field files <<<"$out") == "$files" &&
     $(field bytes <<<"$out") == "$tree_bytes" ]] ||
    { echo "bench: the cold hash did not read exactly the $files files ($tree_bytes bytes):"$'\n'"$out" >&2; exit 1; }
done
out="$(hash_tree)"  # the cache from the last cold run, nothing changed
[[ $(field hashed <<<"$out") == 0 ]] ||
  echo "bench: warning: the warm hash read $(field hashed <<<"$out") files" >&2
cold="$(median3 "${cold_s[@]}")" sha="$(median3 "${sha_s[@]}")"
echo "hash_tree_s_cold=$cold"
echo "hash_tree_s_warm=$(field seconds <<<"$out")"
printf 'sha256sum_tree_s=%.3f\n' "$sha"
awk -v c="$cold" -v s="$sha" 'BEGIN {printf "hash_vs_sha256sum=%.2f\n", c / s}'

# Uploads: a fresh controller (own CAS dir; the database's tree nodes emptied)
# and one worker, as the e2e mode runs them.
start_farm 2

# Submits the copy; sets up_bytes, up_blobs, up_nodes, up_s from the CLI's report,
# then waits for the job so the worker's fetch does not overlap the next one.
submit() {
  local err id
  err="$(XDG_CACHE_HOME="$state/xdg" KILN_TOKEN_FILE="$submit_token" "$build/bin/kiln" --controller "$addr" \
    submit --detach --no-gitignore \
    --input "$copy" -- true 2>&1 >"$state/job")" || { echo "bench: submit failed:"$'\n'"$err" >&2; exit 1; }
  grep '^kiln: ' <<<"$err" >&2 || true  # the CLI's hashed/uploaded lines, for the reader
  local line
  line="$(grep '^kiln: uploaded ' <<<"$err")" || { echo "bench: no upload report:"$'\n'"$err" >&2; exit 1; }
  read -r up_blobs blob_bytes up_nodes node_bytes < <(sed -E \
    's/^kiln: uploaded ([0-9]+) files? \(([0-9]+) bytes.* and ([0-9]+) directory nodes? \(([0-9]+) bytes\).*/\1 \2 \3 \4/' <<<"$line")
  up_bytes=$((blob_bytes + node_bytes))
  up_s="$(sed -E 's/.* in ([0-9.]+) s;.*/\1/' <<<"$line")"
  id="$(grep -o '[0-9]\+' "$state/job" | head -n 1)"
  for _ in $(seq 600); do
    case "$(sql "SELECT status FROM build_jobs WHERE id = $id")" in
      succeeded) return 0 ;;
      failed | cancelled | lost) echo "bench: warning: job $id did not succeed (worker log: see below)" >&2
        tail -n 20 "$state/worker.log" >&2; return 0 ;;
    esac
    sleep 0.1
  done
  echo "bench: warning: job $id still not finished after 60 s" >&2
}

submit
echo "upload_cold_bytes=$up_bytes"
echo "upload_cold_s=$up_s"  # the CLI's own figure: FindMissing, blobs and nodes sent
submit
echo "upload_resubmit_bytes=$up_bytes"
changed=src/backend/utils/adt/int.c
echo "/* kiln bench: one changed file */" >>"$copy/$changed"
submit
echo "upload_onefile_bytes=$up_bytes"
echo "upload_onefile_blobs=$up_blobs"
echo "upload_onefile_nodes=$up_nodes"
slashes="${changed//[^\/]/}"
echo "onefile_path_depth=$((${#slashes} + 1))"  # the root, src, backend, utils, adt

# Action cache: the same tree and command in an image, submitted again end to
# end (hash with the warm local cache, FindMissing, submit, cache hit, log,
# exit). The first submit of each command runs the job (and materializes
# the whole tree).
bb="$(deploy/images/busybox.sh "$state/busybox.tar")"
img="$("$build/bin/kiln" --controller "$addr" image import "$bb" 2>/dev/null)"
kiln_image_submit() {  # $1: the command's $0, which tells actions apart
  XDG_CACHE_HOME="$state/xdg" KILN_TOKEN_FILE="$submit_token" "$build/bin/kiln" --controller "$addr" \
    submit --no-gitignore --image "$img" \
    --input "$copy" -- sh -c 'ls | wc -l' "$1" >/dev/null 2>"$state/ac.err"
}
# Misses: three actions new to the cache (the tree already uploaded and in
# the worker's CAS cache), each run as a job; the median.
miss_s=()
for i in 1 2 3; do
  t0="$(now)"
  kiln_image_submit "miss$i" || { echo "bench: the image job failed:" >&2; cat "$state/ac.err" >&2; exit 1; }
  miss_s+=("$(awk -v a="$t0" -v b="$(now)" 'BEGIN {printf "%.3f", b - a}')")
  ! grep -q 'from the action cache' "$state/ac.err" ||
    { echo "bench: a new action was served from the action cache:" >&2; cat "$state/ac.err" >&2; exit 1; }
done
echo "action_cache_miss_s=$(median3 "${miss_s[@]}")"
hit_s=()
for _ in 1 2 3; do
  t0="$(now)"
  kiln_image_submit miss1 || { echo "bench: the cached submit failed:" >&2; cat "$state/ac.err" >&2; exit 1; }
  hit_s+=("$(awk -v a="$t0" -v b="$(now)" 'BEGIN {printf "%.3f", b - a}')")
  grep -q 'from the action cache' "$state/ac.err" ||
    { echo "bench: the identical submit was not served from the action cache:" >&2; cat "$state/ac.err" >&2; exit 1; }
done
echo "action_cache_hit_s=$(median3 "${hit_s[@]}")"
}

# ---- tu: building PostgreSQL, locally with ccache and on the farm ----
run_tu_bench() {
  command -v ccache >/dev/null || { echo "bench: ccache is missing (deploy/install-deps.sh installs it)" >&2; exit 1; }
  local tree tc conf changed t0 s img job r
  tree="$(pg_source_tree)"
  tc="$(deploy/images/toolchain.sh)"
  conf="$pg_conf"
  changed=src/backend/utils/adt/int.c
  secs() { awk -v a="$1" -v b="$(now)" 'BEGIN {printf "%.1f", b - a}'; }

  # Local: the host's gcc (the toolchain image's: Debian 12's gcc 12) through
  # ccache, given its best settings for fresh checkouts.
  export CCACHE_DIR="$state/ccache" CCACHE_BASEDIR="$state" CCACHE_MAXSIZE=5G
  local_build() {  # local_build [CHANGE]: a fresh copy of the tree (CHANGE appended to one file), timed into $s
    local d="$state/local"
    rm -rf "$d"
    cp -a "$tree" "$d"
    [[ -z ${1:-} ]] || echo "$1" >>"$d/$changed"
    t0="$(now)"
    (cd "$d" && CC="ccache gcc" $conf >"$d.log" 2>&1 && make -j2 >>"$d.log" 2>&1) ||
      { echo "bench: the local build in $d failed:" >&2; tail -n 30 "$d.log" >&2; exit 1; }
    s="$(secs "$t0")"
  }

  # The farm: one worker; the build's own make -j2 takes both cores.
  start_farm 1
  img="$("$build/bin/kiln" --controller "$addr" image import "$tc" 2>/dev/null)"
  farm_build() {  # farm_build [CHANGE [submit flags]]: the same, on the farm, timed into $s; sets job
    local d="$state/farm-src"
    rm -rf "$d"
    cp -a "$tree" "$d"
    [[ -z ${1:-} ]] || echo "$1" >>"$d/$changed"
    t0="$(now)"
    XDG_CACHE_HOME="$state/xdg" KILN_TOKEN_FILE="$submit_token" "$build/bin/kiln" --controller "$addr" \
    submit --no-gitignore --image "$img" \
      --input "$d" "${@:2}" -- sh -c "$conf && make -j2" >"$state/farm.log" 2>&1 ||
      { echo "bench: the farm build failed:" >&2; tail -n 30 "$state/farm.log" >&2; exit 1; }
    s="$(secs "$t0")"
    job="$(sql "SELECT max(id) FROM build_jobs")"
  }
  tu_stat() { sql "SELECT $1 FROM compile_stats WHERE job_id = $job"; }

  local_build
  echo "ccache_cold_s=$s"
  farm_build "" --no-cache
  echo "tu_cold_s=$s"
  echo "tu_cold_units=$(tu_stat "hits + hits_preprocessed + misses + failed")"
  # Warm: three rounds, local and farm alternating (this machine is shared
  # and noisy); each round's one-file change is new to both caches.
  local lf=() ff=() lo=() fo=()
  for r in 1 2 3; do
    ccache -z >/dev/null
    local_build
    lf+=("$s")
    ((r > 1)) || echo "ccache_warm_stats=$(ccache --print-stats |
      awk -F'\t' '$1 ~ /^(direct_cache_hit|preprocessed_cache_hit|cache_miss)$/ {printf "%s:%s ", $1, $2}')"
    farm_build "" --no-cache
    ff+=("$s")
    if ((r == 1)); then
      echo "tu_warm_hits=$(tu_stat "hits + hits_preprocessed") tu_warm_misses=$(tu_stat misses)" \
        "tu_warm_failed=$(tu_stat failed) tu_warm_fallbacks=$(tu_stat fallbacks)"
      # Failed compiles (configure's probes that must fail) are never cacheable.
      echo "tu_hit_rate=$(tu_stat "round(100.0 * (hits + hits_preprocessed) / nullif(hits + hits_preprocessed + misses, 0), 2)")"
    fi
    local_build "int kiln_bench_onefile_$r;"
    lo+=("$s")
    farm_build "int kiln_bench_onefile_$r;"
    fo+=("$s")
    echo "tu_onefile_recompiled_round$r=$(tu_stat misses)"
  done
  local a b c d
  a="$(median3 "${lf[@]}")" b="$(median3 "${ff[@]}")" c="$(median3 "${lo[@]}")" d="$(median3 "${fo[@]}")"
  echo "ccache_warm_fresh_tree_s=$a   # rounds: ${lf[*]}"
  echo "tu_warm_fresh_tree_s=$b   # rounds: ${ff[*]}"
  echo "ccache_onefile_s=$c   # rounds: ${lo[*]}"
  echo "tu_onefile_s=$d   # rounds: ${fo[*]}"
  awk -v a="$a" -v b="$b" -v c="$c" -v d="$d" \
    'BEGIN {printf "tu_vs_ccache_fresh_tree=%.2f\ntu_vs_ccache_onefile=%.2f\n", b / a, d / c}'
  local hit_s=()
  for _ in 1 2 3; do
    farm_build
    grep -q 'from the action cache' "$state/farm.log" ||
      { echo "bench: the identical tree was not served from the action cache:" >&2; tail "$state/farm.log" >&2; exit 1; }
    hit_s+=("$s")
  done
  echo "action_cache_hit_s=$(median3 "${hit_s[@]}")"
}

# ---- pg: compile PostgreSQL, locally and on the farm ----
run_pg_bench() {
  command -v ccache >/dev/null || { echo "bench: ccache is missing (deploy/install-deps.sh installs it)" >&2; exit 1; }
  local tree tc conf one header t0 s img r ccache_fresh ccache_fresh_one farm_fresh local_one farm_one
  tree="$(pg_source_tree)"
  tc="$(deploy/images/toolchain.sh)"
  conf="$pg_conf"
  one=src/backend/utils/adt/int.c
  header=$pg_header
  secs() { awk -v a="$1" -v b="$(now)" 'BEGIN {printf "%.2f", b - a}'; }
  run_in() {  # run_in DIR CMD: CMD in DIR, timed into $s
    t0="$(now)"
    (cd "$1" && sh -c "$2") >>"$1.log" 2>&1 || { echo "bench: '$2' failed in $1:" >&2; tail -n 30 "$1.log" >&2; exit 1; }
    s="$(secs "$t0")"
  }

  # The farm: one worker; the same commands in the toolchain image. In a warm
  # workspace configure runs once (config.status is kept), as in a developer's
  # incremental build.
  sql "ALTER SYSTEM SET track_wal_io_timing = on" && sql "SELECT pg_reload_conf()" >/dev/null
  start_farm 1
  img="$("$build/bin/kiln" --controller "$addr" image import "$tc" 2>/dev/null)"
  local copy="$state/farm-src"
  fresh_copy "$copy"
  # With stamp=1 each line of the CLI's output is kept in farm.stamped with
  # the time it arrived ("@SECONDS line"): where a short build's time went.
  local stamp=0
  farm() {  # farm CMD [submit flags]: timed into $s (with farm_token's token, default the submit token)
    local cmd=$1 rc
    shift
    t0="$(now)"
    if ((stamp)); then
      { XDG_CACHE_HOME="$state/xdg" KILN_TOKEN_FILE="${farm_token:-$submit_token}" "$build/bin/kiln" \
          --controller "$addr" submit --no-gitignore --image "$img" \
          --input "$copy" "$@" -- sh -c "$cmd" 2>&1; echo "kiln-bench-rc=$?"; } |
        while IFS= read -r l; do printf '@%s %s\n' "$EPOCHREALTIME" "$l"; done >"$state/farm.stamped"
      s="$(secs "$t0")"
      sed 's/^@[0-9.]* //' "$state/farm.stamped" >"$state/farm.log"
      rc="$(sed -n 's/^kiln-bench-rc=//p' "$state/farm.log")"
    else
      rc=0
      XDG_CACHE_HOME="$state/xdg" KILN_TOKEN_FILE="${farm_token:-$submit_token}" "$build/bin/kiln" --controller "$addr" \
    submit --no-gitignore --image "$img" \
        --input "$copy" "$@" -- sh -c "$cmd" >"$state/farm.log" 2>&1 || rc=$?
      s="$(secs "$t0")"
    fi
    [[ $rc == 0 ]] || { echo "bench: the farm build failed:" >&2; tail -n 30 "$state/farm.log" >&2; exit 1; }
  }
  # The CLI's own lines of the last stamped farm build with their times
  # from its start; of the build's output only its first and last line.
  stamped() {
    awk -v t0="$t0" '{ l = sprintf("#   %+7.3f %s", substr($1, 2) - t0, substr($0, length($1) + 2, 160)) }
      $2 ~ /^kiln/ { if (last != "") print last; last = ""; print l; next }
      { if (!n++) print l; else last = l }' "$state/farm.stamped"
  }
  # The WAL's flushes so far, for the one-file rounds: "syncs count, sync
  # ms, writes count" (track_wal_io_timing is on for this cluster).
  wal_io() { sql "SELECT wal_sync || ' syncs, ' || round(wal_sync_time) || ' ms, ' || wal_write || ' writes' FROM pg_stat_wal"; }
  dirty_kb() { awk '/^(Dirty|Writeback):/ {s += $2} END {print s}' /proc/meminfo; }
  local build_cmd="$conf && make -j2" warm_cmd="{ test -f config.status || $conf; } && make -j2"
  export CCACHE_DIR="$state/ccache" CCACHE_BASEDIR="$state" CCACHE_MAXSIZE=5G
  local plain="$state/local-plain" cc="$state/local-ccache"

  # Cold, twice each in the order local, farm, farm, local (this host's
  # speed drifts by 10-20% over minutes: the order cancels a steady drift):
  # local plain gcc, and the farm with empty caches (the second farm build in
  # a project of its own, so that its compile cache is empty too). Then local
  # ccache (fills it).
  local lc=() fc=()
  fresh_copy "$plain"
  run_in "$plain" "CC=gcc $conf && make -j2"
  lc+=("$s")
  farm "$build_cmd" --workspace fresh --no-cache
  fc+=("$s")
  "$build/bin/kiln" --controller "$addr" projects create bench-cold >/dev/null
  "$build/bin/kiln" --controller "$addr" clusters map default bench-cold >/dev/null
  # The submit token is project default's: bench-cold needs one of its own.
  local cold_token=$submit_token
  if [[ $submit_token != "$state/admin.token" ]]; then
    cold_token="$state/submit-bench-cold.token"
    "$build/bin/kiln-controller" tokens create --database-url "$KILN_DATABASE_URL" --role submit --project bench-cold \
      --description "kiln bench submits, project bench-cold" --out "$cold_token" >&2
  fi
  farm_token=$cold_token farm "$build_cmd" --workspace fresh --no-cache --project bench-cold
  fc+=("$s")
  fresh_copy "$plain"
  run_in "$plain" "CC=gcc $conf && make -j2"
  lc+=("$s")
  fresh_copy "$cc"
  run_in "$cc" "CC='ccache gcc' $conf && make -j2"
  local ccache_cold=$s
  local local_cold farm_cold
  local_cold="$(median "${lc[@]}")" farm_cold="$(median "${fc[@]}")"
  echo "pg_local_cold_s=$local_cold   # mean of: ${lc[*]}"
  echo "pg_ccache_cold_s=$ccache_cold"
  echo "pg_farm_cold_s=$farm_cold   # mean of: ${fc[*]}"
  farm "$build_cmd" --workspace fresh
  grep -q 'from the action cache' "$state/farm.log" ||
    { echo "bench: the identical tree was not served from the action cache" >&2; exit 1; }
  local farm_identical=$s
  echo "pg_farm_identical_s=$farm_identical"
  farm "$warm_cmd" --workspace persistent --workspace-name bench
  local farm_ws_first=$s
  echo "pg_farm_workspace_first_s=$farm_ws_first   # a new warm workspace, the compile cache warm"

  # Warm, three alternating rounds (this machine is shared and noisy): a
  # fresh checkout (local ccache, farm compile cache), then one .c changed
  # twice (local incremental make in the built tree, farm warm workspace,
  # alternating: six pairs in all; each change new to both).
  local lf=() lof=() ff=() lo=() fo=()
  for r in 1 2 3; do
    fresh_copy "$cc"
    run_in "$cc" "CC='ccache gcc' $conf && make -j2"
    lf+=("$s")
    fresh_copy "$cc"
    edit "$cc/$one" "fresh_$r"
    run_in "$cc" "CC='ccache gcc' $conf && make -j2"
    lof+=("$s")
    stamp=1
    farm "$build_cmd" --workspace fresh --no-cache
    stamp=0
    ff+=("$s")
    echo "# farm fresh round $r: ${ff[-1]} s"
    stamped
    for k in a b; do
      edit "$plain/$one" "onefile_$r$k"
      run_in "$plain" "make -j2"
      lo+=("$s")
      edit "$copy/$one" "onefile_$r$k"
      local wal0 dirty0
      wal0="$(wal_io)" dirty0="$(dirty_kb)"
      stamp=1
      farm "$warm_cmd" --workspace persistent --workspace-name bench
      stamp=0
      fo+=("$s")
      # Where the round went: the CLI's lines with their times (its hash
      # and upload, the submit, the sync, the job: container start, build,
      # end), the WAL's flushes and the dirty pages before it.
      echo "# farm onefile round $r$k: local ${lo[-1]} s, farm ${fo[-1]} s; WAL before: $wal0; after: $(wal_io);" \
        "dirty+writeback before: $dirty0 kB"
      stamped
    done
  done
  ccache_fresh="$(median3 "${lf[@]}")" ccache_fresh_one="$(median3 "${lof[@]}")" farm_fresh="$(median3 "${ff[@]}")"
  local_one="$(median "${lo[@]}")" farm_one="$(median "${fo[@]}")"
  echo "pg_ccache_fresh_s=$ccache_fresh   # rounds: ${lf[*]}"
  echo "pg_ccache_fresh_onefile_s=$ccache_fresh_one   # rounds: ${lof[*]}"
  echo "pg_farm_fresh_s=$farm_fresh   # rounds: ${ff[*]}"
  echo "pg_local_incremental_onefile_s=$local_one   # median of: ${lo[*]}"
  echo "pg_farm_onefile_warm_s=$farm_one   # median of: ${fo[*]}"
  # One widely included header: a declaration (every dependant recompiles),
  # then a comment (the preprocessed units do not change). header_round NAME
  # TEXT: TEXT appended to the header, local incremental make, then the farm's
  # warm workspace; the two times in $hl and $hf.
  local hl hf
  header_round() {
    edit "$plain/$header" "" "$2"
    run_in "$plain" "make -j2"
    hl=$s
    echo "pg_local_incremental_$1_s=$hl"
    edit "$copy/$header" "" "$2"
    farm "$warm_cmd" --workspace persistent --workspace-name bench
    hf=$s
    echo "pg_farm_$1_warm_s=$hf"
  }
  header_round header "extern int kiln_bench_header;"  # a declaration: a definition would clash at link time
  local local_header=$hl farm_header=$hf
  header_round header_comment "/* kiln bench: a comment */"
  local local_comment=$hl farm_comment=$hf
  rm -rf "$plain" "$cc"

  awk -v lc="$local_cold" -v fc="$farm_cold" -v cf="$ccache_fresh" -v ff="$farm_fresh" -v lo="$local_one" \
    -v fo="$farm_one" 'BEGIN {
      printf "pg_farm_cold_ratio=%.2f\npg_farm_fresh_ratio=%.2f\npg_farm_onefile_ratio=%.2f\n", fc / lc, ff / cf, fo / lo }'
  echo "pg_farm_identical_s=$farm_identical"
  printf '\n%-50s %10s %10s\n' "PostgreSQL 15.18, make -j2, $(nproc) cores" local farm
  printf '%-50s %9ss %9ss\n' "cold (local: plain gcc)" "$local_cold" "$farm_cold"
  printf '%-50s %9ss %10s\n' "cold (local: ccache)" "$ccache_cold" "-"
  printf '%-50s %10s %9ss\n' "identical tree again (action cache)" "-" "$farm_identical"
  printf '%-50s %9ss %9ss\n' "fresh checkout, warm cache (local: ccache)" "$ccache_fresh" "$farm_fresh"
  printf '%-50s %9ss %10s\n' "fresh checkout + one .c changed (local: ccache)" "$ccache_fresh_one" "-"
  printf '%-50s %9ss %9ss\n' "one .c changed (local: incremental make)" "$local_one" "$farm_one"
  printf '%-50s %9ss %9ss\n' "utils/builtins.h: a declaration (incremental)" "$local_header" "$farm_header"
  printf '%-50s %9ss %9ss\n' "utils/builtins.h: a comment (incremental)" "$local_comment" "$farm_comment"
}

# ---- fleet: one build over K simulated hosts (issue 24) ----
run_fleet_bench() {
  command -v runc >/dev/null || { echo "bench: runc is missing (deploy/install-deps.sh installs it)" >&2; exit 1; }
  [[ -d $cg_root/cpu && -d $cg_root/cpuacct ]] ||
    { echo "bench: fleet needs cgroup v1's cpu and cpuacct hierarchies under $cg_root" >&2; exit 1; }
  local tree tc img ks=${KILN_FLEET_K:-1 3} quota=${KILN_FLEET_QUOTA_US:-50000} j=${KILN_FLEET_J:-2}
  local farm_j=${KILN_FLEET_FARM_J:-'$KILN_JOBS'} slots=${KILN_FLEET_ACTION_SLOTS:-2} target=${KILN_FLEET_TARGET:-}
  local k kmax=1 n
  for k in $ks; do
    [[ $k =~ ^[1-9][0-9]*$ ]] || { echo "bench: KILN_FLEET_K: '$k' is not a number of hosts (e.g. KILN_FLEET_K='1 3')" >&2; exit 1; }
    ((k > kmax)) && kmax=$k
  done
  [[ $quota =~ ^[1-9][0-9]*$ ]] || { echo "bench: KILN_FLEET_QUOTA_US: '$quota' is not a number of microseconds per 100 ms" >&2; exit 1; }
  tree="$(pg_source_tree)"
  [[ -z $target || -d $tree/$target ]] ||
    { echo "bench: KILN_FLEET_TARGET: $target is not a directory of PostgreSQL's tree (e.g. src/backend/utils/adt)" >&2; exit 1; }
  tc="$(deploy/images/toolchain.sh)"
  # make_cmd J: the make phase (a directory target: its generated headers first).
  make_cmd() {
    if [[ -z $target ]]; then echo "make -j$1"; else echo "make -C src/backend generated-headers && make -j$1 -C $target"; fi
  }
  # The build as a job runs it: configure (unless the workspace has run it)
  # then make, which the build times itself (kiln_fleet_make_ms=).
  timed_build() {  # timed_build J
    echo "echo kiln_fleet_j=$1 && { test -f config.status || $pg_conf >configure.out 2>&1; } &&" \
      "t0=\$(date +%s%N) && $(make_cmd "$1") &&" \
      "echo kiln_fleet_make_ms=\$(( (\$(date +%s%N) - t0) / 1000000 ))"
  }
  make_s() { sed -n 's/^kiln_fleet_make_ms=\([0-9]*\)$/\1/p' "$1" | tail -n 1 | awk '{printf "%.2f", $1 / 1000}'; }
  now_s() { awk -v a="$1" -v b="$(now)" 'BEGIN {printf "%.2f", b - a}'; }

  # The groups: one per simulated host (h1 is also the local baseline's
  # host), the controller's and PostgreSQL's (no quota: only their usage).
  for ((n = 1; n <= kmax; n++)); do cg_make "kiln-bench-h$n" "$quota"; done
  cg_make kiln-bench-ctl
  cg_make kiln-bench-pg
  local pm
  pm="$(head -n 1 "$pgdir/pg/data/postmaster.pid")"
  cg_join kiln-bench-pg "$pm"
  for n in $(pgrep -P "$pm"); do cg_join kiln-bench-pg "$n" 2>/dev/null || true; done

  # Every half second, the cpu cgroup of each compiler process (cc1) on the
  # machine, to show where the compiles ran: below their host's group.
  watch_compilers() {  # watch_compilers FILE: until FILE.stop exists
    local p
    while [[ ! -e $1.stop ]]; do
      for p in $(pgrep -x cc1 || true); do sed -n 's/^[0-9]*:cpu:\(.*\)$/\1/p' "/proc/$p/cgroup" 2>/dev/null || true; done >>"$1"
      sleep 0.5
    done
  }
  # usage_snapshot: "GROUP NS" lines of every group.
  usage_snapshot() { local g; for g in "${cg_groups[@]}"; do echo "$g $(cg_usage_ns "$g")"; done; }
  # cpu_report CASE BEFORE-FILE HOSTS: the CPU seconds each group used since BEFORE.
  cpu_report() {
    local line
    line="$(usage_snapshot | awk -v hosts="$3" 'NR == FNR {b[$1] = $2; next}
      {d = ($2 - b[$1]) / 1e9; sub(/^kiln-bench-/, "", $1)}
      $1 ~ /^h/ && substr($1, 2) + 0 <= hosts {h = h sprintf("%s%s:%.1f", h == "" ? "" : " ", $1, d); next}
      $1 == "ctl" {c = d} $1 == "pg" {p = d}
      END {printf "%s|%.1f|%.1f", h, c, p}' "$2" -)"
    IFS='|' read -r host_cpu ctl_cpu pg_cpu <<<"$line"
    echo "fleet_$1_host_cpu_s=$host_cpu"
    echo "fleet_$1_controller_cpu_s=$ctl_cpu"
    echo "fleet_$1_postgres_cpu_s=$pg_cpu"
  }
  # where_compiled CASE FILE [WORKER-ID...]: the compilers seen, by group:
  # each host's own (the job's container or the local build), its action
  # boxes, and the containers of these workers found anywhere else (other
  # compilers on the machine, say another farm's, are not counted).
  where_compiled() {
    local seen ours
    ours="$(printf '%s\n' "${@:3}" | awk 'NF {printf "%s%s", n++ ? "|" : "", $1}')"
    seen="$(awk -v ours="/kiln-(${ours:-^$})-" '{
        if (match($0, /^\/kiln-bench-h[0-9]+/)) {
          h = substr($0, 14, RLENGTH - 13); rest = substr($0, RLENGTH + 1)
          k = rest ~ /-box-[0-9]+$/ ? "h" h "_box" : rest == "" ? "h" h "_bare" : "h" h "_job"
        } else if ($0 ~ ours) k = "outside_hosts"; else next
        n[k]++ }
      END {for (k in n) printf "%s=%d ", k, n[k]}' "$2" | xargs -n1 | sort | xargs)"
    echo "fleet_$1_compilers_seen=${seen:-none}   # samples of cc1 by cpu cgroup: hN_job (a job container), hN_box (an action box), hN_bare (no container)"
    [[ $seen != *outside_hosts* ]] || echo "bench: warning: compilers in this farm's containers ran outside their host's cgroup:" \
      "$(grep -v '^/kiln-bench-' "$2" | grep -E "/kiln-($ours)-" | sort | uniq -c | head -n 5)" >&2
  }

  local local_cold local_header cold=() header=() header_wall=() host_cpu ctl_cpu pg_cpu watcher
  local dir="$state/fleet-local" before="$state/fleet-usage"
  # Local baseline: the same make on one host (group h1), plain gcc.
  fresh_copy "$dir"
  usage_snapshot >"$before"
  watch_compilers "$state/fleet-seen-local" &
  watcher=$!
  (cd "$dir" && cg_exec kiln-bench-h1 sh -c "export CC=gcc; $(timed_build "$j")") >"$dir.log" 2>&1 ||
    { echo "bench: the local build failed:" >&2; tail -n 30 "$dir.log" >&2; exit 1; }
  touch "$state/fleet-seen-local.stop"
  wait "$watcher"
  local_cold="$(make_s "$dir.log")"
  echo "fleet_local_make_s=$local_cold   # make -j$j on one host (cpu quota ${quota} us per 100 ms), plain gcc, configure not counted"
  cpu_report local "$before" 1
  where_compiled local "$state/fleet-seen-local"
  edit "$dir/$pg_header" "" "extern int kiln_bench_header;"
  (cd "$dir" && cg_exec kiln-bench-h1 sh -c "$(timed_build "$j")") >>"$dir.log" 2>&1 ||
    { echo "bench: the local incremental build failed:" >&2; tail -n 30 "$dir.log" >&2; exit 1; }
  local_header="$(make_s "$dir.log")"
  echo "fleet_local_header_make_s=$local_header   # $pg_header: a declaration, incremental make"
  rm -rf "$dir"

  # The farm with K hosts, each a fresh one: database emptied, a new
  # controller, new workers (empty work dirs and compile caches), a new
  # warm workspace; the build's make -j$KILN_JOBS.
  local copy="$state/fleet-src" farm_pids job t0 wall
  fleet_submit() {  # fleet_submit LOG: the build in the warm workspace "fleet"
    "$build/bin/kiln" --controller "$addr" submit --no-gitignore --image "$img" --input "$copy" --no-cache \
      --workspace persistent --workspace-name fleet -- sh -c "$(timed_build "$farm_j")" >"$1" 2>&1 ||
      { echo "bench: the farm build failed:" >&2; tail -n 30 "$1" >&2; exit 1; }
    job="$(sql "SELECT max(id) FROM build_jobs")"
  }
  for k in $ks; do
    reset_farm_db
    local first=${#pids[@]}
    start_controller cg_exec kiln-bench-ctl
    for ((n = 1; n <= k; n++)); do
      rm -rf "$state/fleet-h$n"
      # A join token is single-use: one per worker.
      "$build/bin/kiln-controller" join-token --database-url "$KILN_DATABASE_URL" --out "$state/join-h$n"
      cg_exec "kiln-bench-h$n" "$build/bin/kiln-worker" --controller "$addr" --slots 1 --work-dir "$state/fleet-h$n" \
        "${tls_wrk[@]}" --set "join_token_file=$state/join-h$n" --set "action_slots=$slots" --set remote_compiles=true \
        --log-level info >"$state/fleet-h$n.log" 2>&1 &
      pids+=($!)
    done
    farm_pids=("${pids[@]:first}")
    wait_workers "$k" "$state"/fleet-h*.log
    echo "fleet_k${k}_workers=$(for ((n = 1; n <= k; n++)); do
      printf 'h%s:%s ' "$n" "$(sed -n 's/.* starting: worker_id=\([^ ]*\) .*/\1/p' "$state/fleet-h$n.log" | head -n 1)"; done)"
    img="$("$build/bin/kiln" --controller "$addr" image import "$tc" 2>/dev/null)"
    fresh_copy "$copy"
    usage_snapshot >"$before"
    rm -f "$state/fleet-seen-k$k"*
    watch_compilers "$state/fleet-seen-k$k" &
    watcher=$!
    t0="$(now)"
    fleet_submit "$state/fleet-k$k.log"
    wall="$(now_s "$t0")"
    touch "$state/fleet-seen-k$k.stop"
    wait "$watcher"
    cold+=("$(make_s "$state/fleet-k$k.log")")
    echo "fleet_k${k}_make_s=${cold[-1]}   # the job's make -j\$KILN_JOBS; the submit took $wall s (configure, image, upload included)"
    echo "fleet_k${k}_job_worker=$(sed -n 's/^kiln: job [0-9]* running on worker \([^ ]*\) .*/\1/p' "$state/fleet-k$k.log" | head -n 1)"
    echo "fleet_k${k}_make_j=$(sed -n 's/^kiln_fleet_j=//p' "$state/fleet-k$k.log" | head -n 1)   # \$KILN_JOBS: 1 + the cluster's action slots"
    cpu_report "k$k" "$before" "$k"
    # shellcheck disable=SC2046
    where_compiled "k$k" "$state/fleet-seen-k$k" $(sql "SELECT id FROM workers")
    echo "fleet_k${k}_units=$(sql "SELECT 'misses=' || misses || ' remote=' || remote || ' fallbacks=' || fallbacks || ' failed=' || failed FROM compile_stats WHERE job_id = $job")"
    if ((k > 1)); then
      # The misses that compiled on the job's own host, by the reason kiln-cc gave.
      sql "SELECT '# compiled at home: ' || n || ' x ' || why FROM (
             SELECT count(*) AS n, coalesce(left(substring(detail FROM '\(compiled here: (.*)\)$'), 140), '(no reason given)') AS why
             FROM compile_events WHERE job_id = $job AND outcome = 'miss' AND remote_worker = '' GROUP BY 2) t
           ORDER BY n DESC LIMIT 5"
      remote_overhead "$job" |
        if ((k == kmax)); then cat; else sed "s/^remote_/fleet_k${k}_remote_/"; fi
      sql "SELECT '# ran on ' || remote_worker || ': ' || count(*) FROM compile_events
           WHERE job_id = $job AND remote_worker <> '' GROUP BY remote_worker ORDER BY 1"
    fi
    # The header case in the warm workspace, against local incremental make.
    edit "$copy/$pg_header" "" "extern int kiln_bench_header;"
    t0="$(now)"
    fleet_submit "$state/fleet-k$k-header.log"
    header_wall+=("$(now_s "$t0")")
    header+=("$(make_s "$state/fleet-k$k-header.log")")
    echo "fleet_header_k${k}_make_s=${header[-1]}   # the submit took ${header_wall[-1]} s"
    echo "fleet_header_k${k}_units=$(sql "SELECT 'misses=' || misses || ' remote=' || remote FROM compile_stats WHERE job_id = $job")"
    stop_pids "${farm_pids[@]}"
    for ((n = 1; n <= k; n++)); do runc_leftovers "$state/fleet-h$n/runc"; done
  done
  # The p50/p99 of the largest farm are the figures.
  local i=0
  for k in $ks; do
    awk -v k="$k" -v f="${cold[i]}" -v l="$local_cold" -v hf="${header[i]}" -v hl="$local_header" \
      'BEGIN {printf "fleet_k%s_ratio=%.2f\nfleet_header_k%s_ratio=%.2f\n", k, f / l, k, hf / hl}'
    i=$((i + 1))
  done
}

run_overhead_bench() {
  command -v runc >/dev/null || { echo "bench: runc is missing (deploy/install-deps.sh installs it)" >&2; exit 1; }
  local units=${KILN_OVERHEAD_UNITS:-300} src="$state/overhead-src" i tc img job j n logs=()
  [[ $units =~ ^[1-9][0-9]*$ ]] || { echo "bench: KILN_OVERHEAD_UNITS: '$units' is not a number of units" >&2; exit 1; }
  mkdir -p "$src"
  for ((i = 1; i <= units; i++)); do
    printf '#include <stdio.h>\n#include <string.h>\nint unit%d(const char *s) {\n  char b[64];\n  snprintf(b, sizeof b, "%%s-%d", s);\n  return (int)strlen(b) + KILN_ROUND;\n}\n' \
      "$i" "$i" >"$src/u$i.c"
  done
  {
    printf 'OBJS ='
    for ((i = 1; i <= units; i++)); do printf ' u%d.o' "$i"; done
    printf '\nall: $(OBJS)\n%%.o: %%.c\n\t$(CC) -O1 -DKILN_ROUND=$(ROUND) -c -o $@ $<\n'
  } >"$src/Makefile"
  reset_farm_db
  start_controller
  for n in 0 1 2; do
    local role=helper action_slots=2
    ((n == 0)) && role=home action_slots=0
    "$build/bin/kiln-controller" join-token --database-url "$KILN_DATABASE_URL" --out "$state/join-o$n"
    "$build/bin/kiln-worker" --controller "$addr" --slots 1 --work-dir "$state/overhead-w$n" --label "role=$role" \
      "${tls_wrk[@]}" --set "join_token_file=$state/join-o$n" --set "action_slots=$action_slots" \
      --set remote_compiles=true --log-level info >"$state/overhead-w$n.log" 2>&1 &
    pids+=($!)
    logs+=("$state/overhead-w$n.log")
  done
  wait_workers 3 "${logs[@]}"
  tc="$(deploy/images/toolchain.sh)"
  img="$("$build/bin/kiln" --controller "$addr" image import "$tc" 2>/dev/null)"
  # A warm-up build of one unit: each helper starts its box (image unpacked,
  # launcher up) before the timed builds, which measure actions, not that.
  for j in warm 1 '$KILN_JOBS'; do
    local target=all round=$RANDOM
    [[ $j == warm ]] && target="u1.o u2.o u3.o u4.o" && j=4
    "$build/bin/kiln" --controller "$addr" submit --no-gitignore --image "$img" --input "$src" --no-cache \
      --require role=home -- sh -c "make -j$j ROUND=$round $target" >"$state/overhead-$round.log" 2>&1 ||
      { echo "bench: the build failed:" >&2; tail -n 30 "$state/overhead-$round.log" >&2; exit 1; }
    [[ $target == all ]] || continue
    job="$(sql "SELECT max(id) FROM build_jobs")"
    local tag=""
    [[ $j == 1 ]] || tag=_saturated
    remote_overhead "$job" "$tag" "make -j$j"
    sql "SELECT '# make -j$j: ' || count(*) FILTER (WHERE outcome = 'miss') || ' misses, ' ||
                count(*) FILTER (WHERE remote_worker <> '') || ' remote' FROM compile_events WHERE job_id = $job"
    sql "SELECT '# make -j$j ran on ' || remote_worker || ': ' || count(*) FROM compile_events
         WHERE job_id = $job AND remote_worker <> '' GROUP BY remote_worker ORDER BY 1"
  done
}

((run_cas)) && run_cas_bench
if ((run_checkout)); then
  tree="$(pg_source_tree)"
  "$build/bin/kiln-bench" checkout "$tree"
fi
((run_tu)) && run_tu_bench
((run_pg)) && run_pg_bench
((run_fleet)) && run_fleet_bench
((run_overhead)) && run_overhead_bench
exit 0
