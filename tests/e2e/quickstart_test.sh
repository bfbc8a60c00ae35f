#!/usr/bin/env bash
# The quick start as a user follows it: starts its farm with
# `deploy/quickstart.sh --keep-running --no-deps --no-build` (its own state
# directory, a free port, the binaries of the build directory under test),
# then runs every command it printed under "Try it", exactly as printed, each
# in a new shell from a scratch directory with a deadline, and checks its exit
# code and output; then runs the printed "Stop it" command and checks that the
# farm is gone. Stops the farm and removes its files on any exit.
#
#   tests/e2e/quickstart_test.sh BUILD_DIR     (ctest runs it: quickstart_try_it)
#
# Needs root, runc and PostgreSQL 15 (deploy/install-deps.sh), and the
# toolchain image (deploy/images/toolchain.sh builds it once per machine, then
# it is cached in /var/tmp/kiln-images). Exit status: 0 passed, 1 failed,
# 77 skipped (a prerequisite is missing; the reason is printed).
set -euo pipefail

REPO=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd -P)
QUICKSTART=$REPO/deploy/quickstart.sh
QUICKSTART_TIMEOUT=600  # seconds; includes building the toolchain image on a machine without it
COMMAND_TIMEOUT=120     # seconds for each printed command

fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }
skip() { printf 'SKIPPED: %s\n' "$*"; exit 77; }

(($# == 1)) || { echo "usage: $0 BUILD_DIR" >&2; exit 2; }
BUILD_DIR=$(cd -- "$1" && pwd -P) || fail "build directory $1 not found"

((EUID == 0)) || skip "needs root: the quick start's worker starts runc containers"
command -v runc >/dev/null || skip "runc not found: run deploy/install-deps.sh"
[[ -x /usr/lib/postgresql/15/bin/initdb ]] || skip "PostgreSQL 15 not found: run deploy/install-deps.sh"
for b in kiln kiln-controller kiln-worker kiln-cc; do
  [[ -x $BUILD_DIR/bin/$b ]] || fail "$BUILD_DIR/bin/$b not found: build it (deploy/build.sh) before running this test"
done
if grep -q '^KILN_SANITIZE:BOOL=ON$' "$BUILD_DIR/CMakeCache.txt" 2>/dev/null; then
  # As tests/run.sh --asan sets them, for a run of ctest by hand.
  export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:abort_on_error=1}
  export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
fi

# Short paths: the worker's socket paths and PostgreSQL's must stay short.
TMP=$(mktemp -d /tmp/kiln-qs.XXXXXX)
chmod 0755 "$TMP"  # PostgreSQL runs as user postgres below it
STATE=$TMP/state
LOG=$TMP/quickstart.log
mkdir -p -- "$TMP/cwd" "$TMP/home"

show() {  # show FILE: its last lines, for a failure
  [[ -s $1 ]] || return 0
  printf '\n----- last 40 lines of %s -----\n' "$1" >&2
  tail -n 40 -- "$1" >&2
}

cleanup() {
  local rc=$?
  set +e
  trap - EXIT
  if ((rc != 0 && rc != 77)); then
    show "$LOG"
    show "$STATE/controller.log"
    for f in "$STATE"/instances/*.log "$STATE"/instances/*/worker.log; do show "$f"; done
  fi
  # Whatever the printed Stop line did: stop anything still running.
  if [[ -e $STATE ]]; then
    KILN_STATE_DIR=$STATE "$QUICKSTART" --stop >/dev/null 2>&1 ||
      printf 'warning: quickstart.sh --stop failed for %s\n' "$STATE" >&2
  fi
  if awk -v d="$TMP/" 'index($5, d) == 1 { found = 1 } END { exit !found }' /proc/self/mountinfo; then
    printf 'error: mounts left below %s (see findmnt -R %s); not removing it\n' "$TMP" "$TMP" >&2
    ((rc != 0)) || rc=1
  else
    rm -rf -- "$TMP"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- the farm -------------------------------------------------------------------
echo "running deploy/quickstart.sh --keep-running (log: $LOG)"
rc=0
KILN_STATE_DIR=$STATE KILN_PORT=0 BUILD_DIR=$BUILD_DIR KILN_QUICKSTART_BUILD_TIMEOUT=$COMMAND_TIMEOUT \
  timeout --kill-after=10 "$QUICKSTART_TIMEOUT" "$QUICKSTART" --keep-running --no-deps --no-build \
  </dev/null >"$LOG" 2>&1 || rc=$?
((rc != 124)) || fail "deploy/quickstart.sh did not finish within ${QUICKSTART_TIMEOUT}s"
((rc == 0)) || fail "deploy/quickstart.sh exited with $rc"
grep -q '^RESULT: PASS' "$LOG" || fail "deploy/quickstart.sh printed no 'RESULT: PASS'"

# The indented lines of a section ("Try it..." or "Stop it:"), up to its blank line.
section() {
  awk -v h="$1" 'index($0, h) == 1 { on = 1; next } on && /^$/ { exit } on { sub(/^  /, ""); print }' "$LOG"
}
mapfile -t TRY < <(section 'Try it')
mapfile -t STOP < <(section 'Stop it:')
((${#TRY[@]} > 0)) || fail "deploy/quickstart.sh printed no commands under 'Try it'"
((${#STOP[@]} == 1)) || fail "expected one command under 'Stop it:', got ${#STOP[@]}"

# run_printed CMD: runs CMD as a user pasting it would (a new shell in a
# directory of no importance, no KILN_* settings of this test); sets OUT, RC.
run_printed() {
  OUT=$TMP/command.out
  RC=0
  (cd -- "$TMP/cwd" &&
    env -u KILN_CONTROLLER -u KILN_STATE_DIR -u KILN_PORT -u BUILD_DIR HOME="$TMP/home" XDG_CACHE_HOME="$TMP/home/.cache" \
      timeout --kill-after=5 "$COMMAND_TIMEOUT" bash -c "$1") </dev/null >"$OUT" 2>&1 || RC=$?
}

# expect CMD: the output each printed command must show (a pattern for grep -E).
# A command this test does not know fails it: add its expectation here.
expect() {
  case $1 in
    *' workers') echo '[[:space:]]connected[[:space:]]+healthy[[:space:]]' ;;
    *' clusters history default') echo '[[:space:]]scale_down[[:space:]]+[23] -> 1[[:space:]]' ;;
    *' whoami') echo '^token [0-9a-f]{12}: admin, projects \(all\), expires never$' ;;
    *' tokens create --role read --project default --expires 1d') echo '^kiln_[0-9a-f]{12}_[0-9a-f]{64}$' ;;
    *"submit --no-input -- sh -c 'echo hello'") echo '^hello$' ;;
    *" submit --no-input --secret-env DEPLOY_TOKEN "*) echo '^token: \*\*\*$' ;;
    *' submit --output hello -- make hello && ./hello') echo '^hello from kiln$' ;;
    *' audit --limit 5') echo '[[:space:]]job\.submit[[:space:]]' ;;
    *' stats --since 1h') echo '^  jobs +[1-9][0-9]* ended: [1-9][0-9]* succeeded, ' ;;
    *' status '[0-9]*'   # the fleet build: where its units compiled') echo '^remote: +[1-9][0-9]* of the misses compiled on other workers' ;;
    *'/metrics | grep kiln_jobs_finished_total') echo '^kiln_jobs_finished_total\{outcome="succeeded",project="default"\} [1-9]' ;;
    *) return 1 ;;
  esac
}

for cmd in "${TRY[@]}"; do
  want=$(expect "$cmd") || fail "no expectation for the printed command: $cmd (add one to expect() in $0)"
  printf 'running: %s\n' "$cmd"
  run_printed "$cmd"
  if ((RC != 0)); then
    cat -- "$OUT" >&2
    ((RC != 124)) || fail "did not finish within ${COMMAND_TIMEOUT}s: $cmd"
    fail "exit code $RC: $cmd"
  fi
  grep -Eq -- "$want" "$OUT" || { cat -- "$OUT" >&2; fail "output lacks /$want/: $cmd"; }
  echo "  ok: exit 0, output has /$want/"
done

# Both daemons' /metrics, as printed: Prometheus' text format (promtool
# lints it where Debian's prometheus is installed), with the worker's slots.
mapfile -t METRICS < <(grep -Eo 'http://[^ ]+/metrics' "$LOG" | sort -u)
((${#METRICS[@]} == 2)) || fail "expected the controller's and the worker's metrics URLs, got: ${METRICS[*]:-none}"
for url in "${METRICS[@]}"; do
  curl -sf --max-time 10 "$url" >"$TMP/scrape.txt" || fail "cannot scrape $url"
  if command -v promtool >/dev/null; then
    promtool check metrics <"$TMP/scrape.txt" || fail "promtool check metrics refuses $url"
  elif [[ -n ${KILN_REQUIRE_PROMETHEUS:-} ]]; then
    fail "promtool not found (KILN_REQUIRE_PROMETHEUS is set): run deploy/install-deps.sh"
  fi
  echo "  ok: $url"
done
# (to a file first: grep -q leaving early would fail curl with SIGPIPE, and the pipe under pipefail)
curl -sf --max-time 10 "${METRICS[@]}" >"$TMP/scrapes.txt" || fail "cannot scrape ${METRICS[*]}"
grep -q '^kiln_worker_slots 2$' "$TMP/scrapes.txt" || fail "no kiln_worker_slots 2 in the worker's metrics"

PIDS=()
[[ -s $STATE/controller.pid ]] || fail "no $STATE/controller.pid while the farm runs"
PIDS+=("$(<"$STATE/controller.pid")")
# The workers the controller deployed (the process provider's pid files).
for f in "$STATE"/instances/*/pid; do [[ -s $f ]] && PIDS+=("$(<"$f")"); done
((${#PIDS[@]} >= 2)) || fail "no deployed worker's pid file under $STATE/instances while the farm runs"
printf 'running: %s\n' "${STOP[0]}"
run_printed "${STOP[0]}"
((RC == 0)) || { cat -- "$OUT" >&2; fail "exit code $RC: ${STOP[0]}"; }
grep -q "kiln farm in $STATE stopped" "$OUT" || { cat -- "$OUT" >&2; fail "no 'kiln farm in $STATE stopped': ${STOP[0]}"; }
for pid in "${PIDS[@]}"; do
  # Exited, or a zombie that init has not reaped yet (state Z, after the ") ").
  state=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null) || state=gone
  [[ $state == gone || $state == Z* ]] || fail "the Stop command left process $pid running: $(tr '\0' ' ' <"/proc/$pid/cmdline")"
done
if "$REPO/deploy/pg.sh" status "$STATE/pg" >/dev/null 2>&1; then
  fail "the Stop command left PostgreSQL running in $STATE/pg"
fi
echo "  ok: the farm stopped"
# In a sanitizer build a report does not always change an exit code: look for one.
for f in "$STATE/controller.log" "$STATE"/instances/*.log "$STATE"/instances/*/worker.log "$LOG"; do
  if grep -Eq 'ERROR: (Address|Leak)Sanitizer|runtime error: ' "$f"; then
    grep -E -A20 'ERROR: (Address|Leak)Sanitizer|runtime error: ' "$f" >&2
    fail "sanitizer report in $f"
  fi
done
echo "PASS: ${#TRY[@]} Try-it commands and the Stop command work as printed"
