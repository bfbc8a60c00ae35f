#!/usr/bin/env bash
# Many functions run only via trap or wait_for, which shellcheck cannot see:
# shellcheck disable=SC2317
# One-command kiln demo for a fresh Debian 12 machine (run as root):
# installs dependencies, builds the binaries it runs (kiln, kiln-controller,
# kiln-worker, kiln-cc; tests/run.sh builds the tests), starts a private
# PostgreSQL and the controller in a state directory, makes the default
# cluster a managed one (1 to 3 workers: the autoscaler starts the first
# and sizes it from then on, docs/operations.md "Autoscaler"), builds a
# toolchain image from Debian's packages (once per machine) and makes it the
# `default` project's image, runs the sample C build (deploy/sample) in it
# through the farm twice (cold, then served from the farm's action cache) and
# once more with one file changed (the compile cache serves the other), prints
# what the caches saved, sends a burst of short jobs and shows the
# autoscaler scale the cluster up to 3 workers and back down to 1 (kiln
# clusters history default), then stops everything again.
#
#   deploy/quickstart.sh                 run the demo, then stop the farm
#   deploy/quickstart.sh --keep-running  leave the farm running afterwards and
#                                        print commands to try on it
#   deploy/quickstart.sh --stop          stop a farm left running by --keep-running
#   options: --no-deps (skip install-deps.sh), --no-build (skip build.sh)
#
# Env: KILN_STATE_DIR (default /var/tmp/kiln-quickstart; wiped on each run),
#      KILN_PORT (controller port, default 7070; 0 picks a free one),
#      BUILD_DIR (default build),
#      KILN_QUICKSTART_BUILD_TIMEOUT (seconds for the sample build, default 600).
# Exit status: the sample build's exit code (or 1 if the farm failed to start).
set -euo pipefail

REPO=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd -P)
STATE=${KILN_STATE_DIR:-/var/tmp/kiln-quickstart}
PORT=${KILN_PORT:-7070}
ADDR=127.0.0.1:$PORT
BUILD_DIR=${BUILD_DIR:-build}
[[ $BUILD_DIR == /* ]] || BUILD_DIR=$REPO/$BUILD_DIR
BIN=$BUILD_DIR/bin
BUILD_TIMEOUT=${KILN_QUICKSTART_BUILD_TIMEOUT:-600}
MARKER=.kiln-quickstart    # marks a state dir this script created (safe to wipe)
START_TIMEOUT=60           # seconds for each daemon to come up
STOP_TIMEOUT=30            # seconds between SIGTERM and SIGKILL

# shellcheck source=deploy/pg.sh
source "$REPO/deploy/pg.sh"

log() { printf '==> %s\n' "$*"; }
warn() { printf 'quickstart: warning: %s\n' "$*" >&2; }
die() { printf 'quickstart: error: %s\n' "$*" >&2; exit 1; }

usage() {
  sed -n '/^# One-command/,/^set -euo/{/^#/s/^# \{0,1\}//p}' "${BASH_SOURCE[0]}"
}

# ---- timing -------------------------------------------------------------------
now_us() { local t=${EPOCHREALTIME/./}; printf '%s' "$((10#$t))"; }
fmt_us() { printf '%d.%02ds' "$(($1 / 1000000))" "$(($1 % 1000000 / 10000))"; }
PHASES=()
PHASE=""
PHASE_T0=0
T0=$(now_us)
phase() {  # phase NAME: end the current phase (if any) and start NAME
  phase_end
  PHASE=$1
  PHASE_T0=$(now_us)
  log "$PHASE"
}
phase_end() {
  [[ -n $PHASE ]] || return 0
  local d=$(($(now_us) - PHASE_T0))
  PHASES+=("$(printf '  %-28s %8s' "$PHASE" "$(fmt_us "$d")")")
  PHASE=""
}
print_timings() {
  phase_end
  ((${#PHASES[@]})) || return 0
  echo "timings:"
  printf '%s\n' "${PHASES[@]}"
  printf '  %-28s %8s\n' total "$(fmt_us $(($(now_us) - T0)))"
}

# ---- processes ----------------------------------------------------------------
# Daemons are called "controller" and "worker": binary $BIN/kiln-NAME,
# pid file $STATE/NAME.pid, log $STATE/NAME.log.

# is_running NAME: the pid in NAME's pid file is alive and runs kiln-NAME as
# argv[0] (or argv[1], for a script wrapper). Guards against stale pid files
# and reused pids; a zombie has an empty cmdline.
is_running() {
  local pidfile=$STATE/$1.pid pid
  local -a argv=()
  [[ -s $pidfile ]] || return 1
  pid=$(<"$pidfile")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  mapfile -d '' -n 2 argv 2>/dev/null <"/proc/$pid/cmdline" || return 1
  [[ ${argv[0]:-} == */"kiln-$1" || ${argv[0]:-} == "kiln-$1" ||
    ${argv[1]:-} == */"kiln-$1" || ${argv[1]:-} == "kiln-$1" ]]
}

# argv0 PID: the file name of PID's argv[0]; empty if it has none (exiting, or in an exec).
argv0() {
  local -a argv=()
  mapfile -d '' -n 1 argv 2>/dev/null <"/proc/$1/cmdline" || return 0
  printf '%s' "${argv[0]##*/}"
}

# stop_daemon NAME: SIGTERM, wait up to STOP_TIMEOUT, then SIGKILL.
stop_daemon() {
  local name=$1 pid deadline
  if is_running "$name"; then
    pid=$(<"$STATE/$name.pid")
    printf 'stopping kiln-%s (pid %s)\n' "$name" "$pid"
    kill -TERM "$pid" 2>/dev/null || true
    deadline=$(($(now_us) + STOP_TIMEOUT * 1000000))
    while is_running "$name"; do
      if (($(now_us) > deadline)); then
        warn "kiln-$name did not exit within ${STOP_TIMEOUT}s after SIGTERM: sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        break
      fi
      sleep 0.1
    done
  fi
  rm -f -- "$STATE/$name.pid"
}

# start_daemon NAME ARGS...: run kiln-NAME in its own session (so a ^C reaches
# only this script, which then stops the daemons in order).
start_daemon() {
  local name=$1 pid deadline
  shift
  setsid "$BIN/kiln-$name" "$@" </dev/null >"$STATE/$name.log" 2>&1 &
  pid=$!
  echo "$pid" >"$STATE/$name.pid"
  # Wait for setsid's exec of the daemon, so is_running/check_alive see the
  # real binary: setsid's argv[1] names it too, and while the exec runs the
  # process's cmdline reads empty (check_alive would take it for dead).
  deadline=$(($(now_us) + 5000000))
  until is_running "$name" && [[ $(argv0 "$pid") != @(|setsid) ]]; do
    [[ -d /proc/$pid ]] || die "kiln-$name exited immediately (log: $STATE/$name.log)"
    (($(now_us) < deadline)) || die "kiln-$name did not start within 5s"
    sleep 0.05
  done
}

# The workers the controller deployed (the process provider's instances,
# $STATE/instances/ID/pid) that run: "PID DIR" each, if the pid still runs
# that instance's kiln-worker (a pid file may outlive its process, the pid
# be reused, and an exited worker be a zombie until its parent reaps it:
# its command line is then empty).
live_instances() {
  local f pid
  for f in "$STATE"/instances/*/pid; do
    [[ -s $f ]] || continue
    pid=$(<"$f")
    [[ $pid =~ ^[0-9]+$ ]] || continue
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "${f%/pid}/worker.conf" && echo "$pid ${f%/pid}"
  done
  return 0
}
instance_pids() { live_instances | cut -d' ' -f1; }

# Stops the deployed workers: SIGTERM (a worker finishes its jobs and
# exits), SIGKILL after STOP_TIMEOUT. Stop the controller first, or its
# autoscaler starts them again.
stop_instances() {
  local pids deadline
  mapfile -t pids < <(instance_pids)
  ((${#pids[@]})) || return 0
  printf 'stopping %d deployed kiln-worker(s) (pids %s)\n' "${#pids[@]}" "${pids[*]}"
  kill -TERM "${pids[@]}" 2>/dev/null || true
  deadline=$(($(now_us) + STOP_TIMEOUT * 1000000))
  while [[ -n $(instance_pids) ]]; do
    if (($(now_us) > deadline)); then
      warn "deployed kiln-worker(s) did not exit within ${STOP_TIMEOUT}s after SIGTERM: sending SIGKILL"
      mapfile -t pids < <(instance_pids)
      kill -KILL "${pids[@]}" 2>/dev/null || true
      break
    fi
    sleep 0.1
  done
}

# Fail fast if the controller has exited (the workers are its to restart).
check_alive() {
  if [[ -s $STATE/controller.pid ]] && ! is_running controller; then
    die "kiln-controller exited unexpectedly (log: $STATE/controller.log)"
  fi
}

# wait_for DESC TIMEOUT CMD...: poll CMD until it succeeds, or fail at the deadline.
wait_for() {
  local desc=$1 timeout=$2 deadline
  shift 2
  deadline=$(($(now_us) + timeout * 1000000))
  until "$@"; do
    check_alive
    (($(now_us) < deadline)) || die "timed out after ${timeout}s waiting for $desc"
    sleep 0.2
  done
}

address_file_ready() { [[ -s $STATE/controller.addr ]]; }

worker_connected() { workers_are 1; }

# workers_are N: exactly N workers are connected (kiln workers --json).
workers_are() {
  local out
  out=$("$BIN/kiln" --controller "$ADDR" workers --json 2>/dev/null) || return 1
  (($(grep -Eo '"state"[[:space:]]*:[[:space:]]*"connected"' <<<"$out" | wc -l) == $1))
}

# back_to_one: one worker connected, and the drained ones have exited.
back_to_one() { workers_are 1 && (($(instance_pids | wc -l) == 1)); }

# no_jobs_left: nothing queued, in setup or running (kiln list).
no_jobs_left() {
  local out
  out=$("$BIN/kiln" --controller "$ADDR" --json list --status queued,setup,running 2>/dev/null) || return 1
  ! grep -q '"id"' <<<"$out"
}

show_logs() {
  local f
  for f in "$STATE/controller.log" "$STATE"/instances/*/worker.log "$STATE/pg/server.log"; do
    [[ -s $f ]] || continue
    printf '\n----- last 40 lines of %s -----\n' "$f" >&2
    tail -n 40 -- "$f" >&2
  done
}

# ---- stop mode ----------------------------------------------------------------
stop_farm() {
  local any=0
  if is_running controller || [[ -n $(instance_pids) ]] || kiln_pg_status "$STATE/pg"; then
    any=1
  fi
  stop_daemon controller
  stop_instances
  kiln_pg_stop "$STATE/pg" || warn "PostgreSQL in $STATE/pg did not stop cleanly (log: $STATE/pg/server.log)"
  if ((any)); then echo "kiln farm in $STATE stopped"; else echo "no running kiln farm in $STATE"; fi
}

# ---- teardown -----------------------------------------------------------------
KEEP=0
STARTED=0     # set once this run owns the state dir
FARM_READY=0  # set once the worker is connected
TRY_READY=0   # set once the default project has an image (the "Try it" commands work)
cleanup() {
  local rc=$?
  set +e
  trap - EXIT INT TERM
  if ((KEEP && FARM_READY)); then
    ((rc == 0)) || show_logs
    print_timings
    print_keep_info
    exit "$rc"
  fi
  if ((STARTED)); then
    phase "stopping the farm"
    stop_daemon controller
    stop_instances
    kiln_pg_stop "$STATE/pg"
    phase_end
    ((rc == 0)) || show_logs
  fi
  print_timings
  exit "$rc"
}

# The commands printed here must work as pasted: tests/e2e/quickstart_test.sh
# runs every line under "Try it" and the "Stop it" line.
print_keep_info() {
  local kiln
  kiln="$(q "$BIN/kiln") --controller $ADDR --ca $(q "$STATE/tls/ca.crt") --token-file $(q "$STATE/admin.token")"
  cat <<EOF

kiln farm is running (state in $STATE):
  controller  $ADDR   log: $STATE/controller.log   (TLS, farm CA $STATE/tls/ca.crt)
  workers     the default cluster: 1 to 3 workers of 2 slots, started by the autoscaler
              logs: $STATE/instances/*/worker.log   (kiln clusters history default)
  database    $KILN_DATABASE_URL
  admin token $STATE/admin.token   (or: export KILN_CA=$STATE/tls/ca.crt KILN_TOKEN_FILE=$STATE/admin.token)
  metrics     http://$(metrics_of controller)/metrics (controller)$(worker_metrics)
EOF
  if ((TRY_READY)); then
    cat <<EOF

Try it (builds run in the default project's image, the toolchain image):
  $kiln workers
  $kiln clusters history default
  $kiln whoami
  $kiln tokens create --role read --project default --expires 1d
  $kiln submit --no-input -- sh -c 'echo hello'
  DEPLOY_TOKEN=s3cret-value $kiln submit --no-input --secret-env DEPLOY_TOKEN -- sh -c 'echo "token: \$DEPLOY_TOKEN"'   # prints token: ***
  cd $(q "$STATE/try") && $kiln submit --output hello -- make hello && ./hello
  $kiln audit --limit 5
  $kiln stats --since 1h
EOF
    [[ -z ${FLEET_JOB:-} ]] || echo "  $kiln status $FLEET_JOB   # the fleet build: where its units compiled"
    cat <<EOF
  curl -s http://$(metrics_of controller)/metrics | grep kiln_jobs_finished_total
EOF
  fi
  cat <<EOF

Stop it:
  KILN_STATE_DIR=$(q "$STATE") $(q "$REPO/deploy/quickstart.sh") --stop
EOF
}

# metrics_of NAME: the address the daemon serves /metrics on (it wrote it once serving).
metrics_of() { cat -- "$STATE/$1.metrics" 2>/dev/null || echo "(not serving)"; }

# The /metrics URL of each deployed worker that runs (each writes its
# address to metrics.addr in its instance directory).
worker_metrics() {
  local dir
  while read -r _ dir; do
    [[ -s $dir/metrics.addr ]] && printf '   http://%s/metrics (worker %s)' "$(<"$dir/metrics.addr")" "$(basename -- "$dir")"
  done < <(live_instances)
  return 0
}

# q WORD: WORD quoted for pasting into a shell (unchanged if it needs no quotes).
q() { printf '%q' "$1"; }

# ---- state dir ----------------------------------------------------------------
prepare_state() {
  if [[ -e $STATE ]]; then
    [[ -d $STATE ]] || die "$STATE is not a directory: set KILN_STATE_DIR to another path"
    if [[ -e $STATE/$MARKER ]]; then
      if is_running controller || [[ -n $(instance_pids) ]]; then
        die "a farm from an earlier --keep-running is still running in $STATE: stop it with 'KILN_STATE_DIR=$STATE $REPO/deploy/quickstart.sh --stop'"
      fi
      kiln_pg_stop "$STATE/pg" || die "cannot stop the old PostgreSQL in $STATE/pg: stop it by hand, then retry"
      # Never recurse into a mount (e.g. a sandbox bind mount left by a crashed worker).
      local real
      real=$(cd -- "$STATE" && pwd -P)
      if awk -v d="$real/" 'index($5, d) == 1 { found = 1 } END { exit !found }' /proc/self/mountinfo; then
        die "there are mounts below $real (left by a crashed worker?): unmount them (see 'findmnt -R $real'), then retry"
      fi
      rm -rf -- "$real"
    elif [[ -n $(ls -A -- "$STATE") ]]; then
      die "$STATE is not empty and was not created by quickstart: remove it or set KILN_STATE_DIR to a new directory"
    fi
  fi
  mkdir -p -- "$STATE"
  chmod 0755 "$STATE"  # PostgreSQL runs as user postgres in $STATE/pg
  STATE=$(cd -- "$STATE" && pwd -P)
  : >"$STATE/$MARKER"
  STARTED=1
}

# ---- main ---------------------------------------------------------------------
MODE=run
DO_DEPS=1
DO_BUILD=1
while (($#)); do
  case $1 in
    --keep-running) KEEP=1 ;;
    --stop) MODE=stop ;;
    --no-deps) DO_DEPS=0 ;;
    --no-build) DO_BUILD=0 ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown option: $1" ;;
  esac
  shift
done

if [[ $MODE == stop ]]; then
  [[ -d $STATE ]] || { echo "no kiln farm state in $STATE (set KILN_STATE_DIR if you used another one)"; exit 0; }
  STATE=$(cd -- "$STATE" && pwd -P)
  stop_farm
  exit 0
fi

((EUID == 0)) || die "run as root: it installs packages and the worker needs root for runc (sudo $0)"
[[ $PORT =~ ^[0-9]+$ ]] || die "KILN_PORT must be a port number (got: $PORT)"

trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if ((DO_DEPS)); then
  phase "installing dependencies"
  "$REPO/deploy/install-deps.sh"
fi
# What this script runs: the CLI and both daemons, and kiln-cc, which the
# worker copies into build containers for the compile cache.
BINARIES=(kiln kiln-controller kiln-worker kiln-cc)
if ((DO_BUILD)); then
  phase "building kiln"
  BUILD_DIR=$BUILD_DIR KILN_BUILD_TARGETS="${BINARIES[*]}" "$REPO/deploy/build.sh"
fi
for b in "${BINARIES[@]}"; do
  [[ -x $BIN/$b ]] || die "$BIN/$b not found: build it with 'BUILD_DIR=$BUILD_DIR KILN_BUILD_TARGETS=\"${BINARIES[*]}\" deploy/build.sh' (or drop --no-build)"
done

if ((10#$PORT != 0)) && [[ -n $(ss -Htln "sport = :$PORT" 2>/dev/null) ]]; then
  die "port $PORT is already in use: set KILN_PORT to a free port"
fi

phase "starting PostgreSQL"
prepare_state
kiln_pg_start "$STATE/pg"

phase "creating the farm's CA and an admin token"
# TLS everywhere: the farm's CA signs the controller's certificate and, at
# enrolment, each worker's. The admin token is the CLI's (shown once, kept
# in a 0600 file); each worker the controller deploys enrols once with a
# single-use join token of its own.
"$BIN/kiln-controller" certs init --dir "$STATE/tls" --host "$(hostname)" >/dev/null ||
  die "could not create the farm's certificates (kiln-controller certs init)"
"$BIN/kiln-controller" tokens create --database-url "$KILN_DATABASE_URL" --role admin \
  --description "quickstart admin" --out "$STATE/admin.token" || die "could not create the admin token"
export KILN_CA=$STATE/tls/ca.crt KILN_TOKEN_FILE=$STATE/admin.token
log "CA $STATE/tls/ca.crt, admin token $STATE/admin.token"

phase "starting controller"
# Prometheus /metrics on a port each daemon picks (docs/operations.md, "Metrics").
start_daemon controller --database-url "$KILN_DATABASE_URL" --listen "$ADDR" \
  --address-file "$STATE/controller.addr" --cas-dir "$STATE/cas" --set "tls_dir=$STATE/tls" \
  --set "metrics_address=127.0.0.1:0" --set "metrics_address_file=$STATE/controller.metrics" \
  --set "autoscale_interval=1s"
wait_for "the controller to listen (address file $STATE/controller.addr)" "$START_TIMEOUT" address_file_ready
ADDR=$(<"$STATE/controller.addr")  # the port it bound, when KILN_PORT=0
log "controller listening on $ADDR"

phase "deploying the default cluster"
# A managed cluster (docs/operations.md, "Cluster state"): 1 to 3 workers of
# 2 slots, kiln-worker processes the controller starts in $STATE/instances
# (the process provider). The autoscaler starts the first at once, adds
# workers while jobs queue and drains idle ones; short cooldowns here, for
# the demo.
"$BIN/kiln" --controller "$ADDR" clusters set default --min 1 --max 3 --slots 2 --provider process \
  --provider-settings "{\"root\": \"$STATE/instances\"}" \
  --worker-config '{"metrics_address": "127.0.0.1:0", "metrics_address_file": "metrics.addr"}' \
  --scale-up-cooldown 2s --scale-down-cooldown 5s --scale-in-delay 5s >/dev/null ||
  die "could not make the default cluster a managed one (kiln clusters set default)"
wait_for "the autoscaler's first worker to connect (kiln workers --json)" "$START_TIMEOUT" worker_connected
FARM_READY=1
"$BIN/kiln" --controller "$ADDR" workers || true

phase "preparing the toolchain image"
# Builds run in a container from an image pinned by digest: gcc, make and libc
# from Debian's packages (built once per machine, cached in /var/tmp/kiln-images).
TOOLCHAIN_TAR=$("$REPO/deploy/images/toolchain.sh") || die "could not build the toolchain image (deploy/images/toolchain.sh)"
IMAGE=$("$BIN/kiln" --controller "$ADDR" image import "$TOOLCHAIN_TAR" --name toolchain) ||
  die "could not import the toolchain image $TOOLCHAIN_TAR"
log "toolchain image $IMAGE"
# Jobs that name no image run in the project's: make it this one, so that
# `kiln submit` without --image works (workers run no jobs without an image).
# The database is new, so there is no other configuration to keep.
"$BIN/kiln" --controller "$ADDR" projects config set default "{\"image\": \"$IMAGE\"}" ||
  die "could not make $IMAGE the default project's image (kiln projects config set default)"
# A copy of the sample for the "Try it" commands (outputs land beside it).
cp -r -- "$REPO/deploy/sample" "$STATE/try"
TRY_READY=1

# run_build LABEL DIR OUTPUT CMD: submits DIR (the CLI sends it as the
# build's input tree, only what the farm lacks; the worker runs CMD with sh
# in the toolchain image under runc; the CLI downloads the declared OUTPUT
# into $STATE/out). Sets rc, SAMPLE_US (wall time), SAMPLE_CACHED (1 if
# served from the action cache) and SAMPLE_JOB (its id).
run_build() {
  local t0 out=$STATE/sample-$1.log
  t0=$(now_us)
  set +e
  timeout --foreground "$BUILD_TIMEOUT" \
    "$BIN/kiln" --controller "$ADDR" submit --project default --image "$IMAGE" --input "$2" \
    --output "$3" --outputs-dir "$STATE/out" -- sh -c "$4" 2>&1 | tee "$out"
  rc=${PIPESTATUS[0]}
  set -e
  SAMPLE_US=$(($(now_us) - t0))
  SAMPLE_CACHED=0
  grep -q 'from the action cache' "$out" && SAMPLE_CACHED=1
  SAMPLE_JOB=$(sed -n 's/^kiln: job \([0-9]*\) .*/\1/p' "$out" | tail -n 1)
  return 0
}

# run_sample LABEL [DIR]: builds DIR (default deploy/sample) with make and runs ./hello.
run_sample() { run_build "$1" "${2:-$REPO/deploy/sample}" hello "make && ./hello"; }

# make_fleet_sample DIR: a C program of 13 translation units (main.c and
# unit1.c .. unit12.c) with a Makefile, for the fleet build.
make_fleet_sample() {
  local dir=$1 i
  rm -rf -- "$dir"
  mkdir -p -- "$dir"
  {
    echo '#include <stdio.h>'
    for i in $(seq 1 12); do echo "int unit$i(int n);"; done
    echo 'int main(void) {'
    echo '  long sum = 0;'
    for i in $(seq 1 12); do echo "  sum += unit$i(1000);"; done
    echo '  printf("13 units built on the fleet, sum %ld\n", sum);'
    echo '  return 0;'
    echo '}'
  } >"$dir/main.c"
  for i in $(seq 1 12); do
    printf 'int unit%d(int n) {\n  long s = 0;\n  for (int k = 0; k < n; k++) s += (long)k * %d %% 7;\n  return (int)(s %% 100000);\n}\n' \
      "$i" "$i" >"$dir/unit$i.c"
  done
  {
    echo 'OBJS = main.o' "$(for i in $(seq 1 12); do printf 'unit%d.o ' "$i"; done)"
    echo 'app: $(OBJS)'
    printf '\t$(CC) -o $@ $(OBJS)\n'
    echo '%.o: %.c'
    printf '\t$(CC) -O2 -Wall -c -o $@ $<\n'
  } >"$dir/Makefile"
}

# compile_field JOB NAME: a number from the job's compile cache record (kiln why).
compile_field() {
  "$BIN/kiln" --controller "$ADDR" --json why "$1" 2>/dev/null |
    sed -n "/\"compile\": {/,/}/s/.*\"$2\": \([0-9]*\).*/\1/p" | head -n 1
}

phase "running the sample build"
run_sample first
FIRST_US=$SAMPLE_US
((rc == 0)) && log "the binary built on the farm is in $STATE/out/hello"
CACHED=0
if ((rc == 0)); then
  phase "running it again (cached)"
  # Nothing changed: the farm answers from its action cache, no worker runs it.
  rm -f -- "$STATE/out/hello"
  run_sample second
  CACHED=$SAMPLE_CACHED
  SECOND_US=$SAMPLE_US
  [[ -x $STATE/out/hello ]] || { warn "the second build did not bring back the binary"; ((rc != 0)) || rc=1; }
fi
EDITED=0
if ((rc == 0)); then
  phase "a one-file change"
  # A copy of the sample with hello.c changed: a new tree (no action cache
  # hit), so it runs; the compile cache serves util.c and compiles hello.c.
  rm -rf -- "$STATE/sample-edit"
  cp -r -- "$REPO/deploy/sample" "$STATE/sample-edit"
  printf '\nint kiln_quickstart_edit;\n' >>"$STATE/sample-edit/hello.c"
  run_sample edit "$STATE/sample-edit"
  EDIT_US=$SAMPLE_US
  if ((rc == 0)); then
    EDIT_MISSES=$(compile_field "$SAMPLE_JOB" misses)
    EDIT_HITS=$(compile_field "$SAMPLE_JOB" hits)
    [[ ${EDIT_MISSES:-0} == 1 && ${EDIT_HITS:-0} == 1 ]] && EDITED=1
  fi
fi
SCALED=0
if ((rc == 0)); then
  phase "a burst of jobs: the autoscaler at work"
  # 16 short jobs (distinct: identical ones would share one run) on one
  # worker of 2 slots: the autoscaler adds a worker every scale-up cooldown
  # up to 3, and drains the idle ones once the scale-in delay has passed.
  BURST=()
  for i in $(seq 1 16); do
    id=$("$BIN/kiln" --controller "$ADDR" submit --detach --no-input -- sh -c "sleep 3; echo burst $i") ||
      die "could not submit the burst's job $i"
    BURST+=("$id")
  done
  wait_for "the autoscaler to scale the default cluster up to 3 workers" 180 workers_are 3
  log "3 workers connected"
  wait_for "the burst's jobs to finish" 300 no_jobs_left
  for id in "${BURST[@]}"; do
    "$BIN/kiln" --controller "$ADDR" status "$id" | grep -q succeeded || { warn "burst job $id did not succeed"; rc=1; }
  done
  wait_for "the autoscaler to drain the idle workers (back to 1)" 180 back_to_one
  "$BIN/kiln" --controller "$ADDR" clusters history default || true
  ((rc == 0)) && SCALED=1
fi
FLEET=0
if ((rc == 0)); then
  phase "one build, the whole fleet: remote compiles"
  # Three workers (the cluster's minimum raised for a moment) and one build
  # of 13 translation units: its worker runs make -j$KILN_JOBS (the build's
  # share of the cluster's compile slots, in its environment) and kiln-cc
  # sends each cache miss to a free slot on another worker, where it runs in
  # a long-lived sandbox of the same image (docs/architecture.md, "Remote
  # actions"); the objects are those a local compile gives, byte for byte.
  "$BIN/kiln" --controller "$ADDR" clusters set default --min 3 >/dev/null ||
    die "could not raise the default cluster's minimum (kiln clusters set default --min 3)"
  wait_for "3 workers for the fleet build" 180 workers_are 3
  make_fleet_sample "$STATE/fleet"
  # shellcheck disable=SC2016 # $KILN_JOBS is the build's, expanded by its shell
  run_build fleet "$STATE/fleet" app 'make -j$KILN_JOBS app && ./app'
  FLEET_JOB=$SAMPLE_JOB
  if ((rc == 0)) && [[ -n $FLEET_JOB ]]; then
    "$BIN/kiln" --controller "$ADDR" status "$FLEET_JOB" | tee "$STATE/fleet-status.log" || true
    FLEET_REMOTE=$(sed -n 's/^remote: *\([0-9][0-9]*\) of the misses compiled on other workers.*/\1/p' \
      "$STATE/fleet-status.log" | head -n 1)
    ((${FLEET_REMOTE:-0} > 0)) && FLEET=1
  fi
  "$BIN/kiln" --controller "$ADDR" clusters set default --min 1 >/dev/null ||
    warn "could not set the default cluster's minimum back to 1"
  wait_for "the autoscaler to drain the idle workers (back to 1)" 180 back_to_one
fi
phase_end
if ((rc == 0)); then
  printf '\nfirst build (cold):   %8s  compiled on the worker\n' "$(fmt_us "$FIRST_US")"
  if ((CACHED)); then
    printf 'second build:         %8s  served from the action cache, nothing recompiled: saved %s\n' \
      "$(fmt_us "$SECOND_US")" "$(fmt_us $((FIRST_US > SECOND_US ? FIRST_US - SECOND_US : 0)))"
  else
    printf 'second build:         %8s  NOT served from the cache\n' "$(fmt_us "$SECOND_US")"
    rc=1
  fi
  if ((EDITED)); then
    printf 'hello.c changed:      %8s  1 of 2 translation units compiled, util.c served by the compile cache (kiln why %s)\n' \
      "$(fmt_us "$EDIT_US")" "$SAMPLE_JOB"
  else
    printf 'hello.c changed:      %8s  the compile cache did not serve util.c (misses=%s hits=%s; kiln why %s)\n' \
      "$(fmt_us "$EDIT_US")" "${EDIT_MISSES:-?}" "${EDIT_HITS:-?}" "${SAMPLE_JOB:-?}"
    rc=1
  fi
  if ((SCALED)); then
    printf 'a burst of 16 jobs:             the autoscaler went from 1 to 3 workers and back to 1 when idle (kiln clusters history default)\n'
  fi
  if ((FLEET)); then
    printf 'one build, 3 workers:           %s of its 13 units compiled on other workers (kiln status %s)\n' \
      "$FLEET_REMOTE" "$FLEET_JOB"
  else
    printf 'one build, 3 workers:           no unit compiled on another worker (kiln status %s, kiln why %s)\n' \
      "${FLEET_JOB:-?}" "${FLEET_JOB:-?}"
    rc=1
  fi
fi
if ((rc == 0)); then
  printf '\nRESULT: PASS - the sample built on the kiln farm; the second build came from its cache, the third recompiled only the changed file; the autoscaler scaled the cluster up for a burst and back down; one build compiled on three workers\n\n'
elif ((rc == 124)); then
  printf '\nRESULT: FAIL - a sample build did not finish within %ss\n\n' "$BUILD_TIMEOUT"
else
  printf '\nRESULT: FAIL - a sample build failed (exit code %d)\n\n' "$rc"
fi

exit "$rc"
