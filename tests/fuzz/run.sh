#!/usr/bin/env bash
# Build the libFuzzer targets (tests/fuzz/*.cc) with clang into their own
# build directory and run each on a copy of its seed corpus.
#   tests/fuzz/run.sh [SECONDS] [TARGET...]
#     SECONDS  how long each target runs (default 10)
#     TARGET   digest path tree oci unpack cc_command cc_deps project_config
#              requests (default: all, one after another)
# Env: KILN_FUZZ_BUILD_DIR (default build-fuzz), KILN_FUZZ_RUNS (also stop a
#      target after this many executions), KILN_BUILD_JOBS (see deploy/build.sh).
# Prints one line per target:
#   target=<name> execs=<n> seconds=<s> result=ok|crash [input=<path>]
# where input is the input that crashed, hung or ran out of memory (its log
# is beside it). Installs nothing: deploy/install-deps.sh brings clang and
# libfuzzer-14-dev. Exit status: 1 if any target crashed, 2 on a usage or
# build error.
set -euo pipefail

REPO=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd -P)
cd "$REPO"

die() { printf 'tests/fuzz/run.sh: error: %s\n' "$*" >&2; exit 2; }

ALL=(digest path tree oci unpack cc_command cc_deps project_config requests)
SECONDS_EACH=10
if (($#)) && [[ $1 =~ ^[0-9]+$ ]]; then
  SECONDS_EACH=$1
  shift
fi
case ${1:-} in -h | --help) sed -n '2,16s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; exit 0 ;; esac
TARGETS=("$@")
((${#TARGETS[@]})) || TARGETS=("${ALL[@]}")
for t in "${TARGETS[@]}"; do
  [[ " ${ALL[*]} " == *" $t "* ]] || die "unknown target '$t' (known: ${ALL[*]})"
done
((SECONDS_EACH > 0)) || die "SECONDS must be positive"

# Inputs larger than a target's parser would see are not worth the time;
# archives and JSON documents need room.
declare -A MAX_LEN=([unpack]=65536 [oci]=16384 [project_config]=16384 [tree]=8192 [requests]=8192)

command -v clang++ >/dev/null 2>&1 || die "clang++ not found: run deploy/install-deps.sh first"
[[ -f $(clang++ --print-runtime-dir)/libclang_rt.fuzzer-x86_64.a ]] ||
  die "libFuzzer not found: run deploy/install-deps.sh first (libfuzzer-14-dev)"

DIR=${KILN_FUZZ_BUILD_DIR:-build-fuzz}
[[ $DIR == /* ]] || DIR=$REPO/$DIR
mkdir -p "$DIR"
start=$SECONDS
KILN_BUILD_TARGETS=kiln_fuzz BUILD_DIR=$DIR deploy/build.sh \
  -DCMAKE_CXX_COMPILER=clang++ -DKILN_FUZZ=ON -DKILN_TESTS=OFF >"$DIR/fuzz-build.log" 2>&1 || {
  tail -n 40 "$DIR/fuzz-build.log" >&2
  die "building the fuzz targets failed (log: $DIR/fuzz-build.log)"
}
printf 'fuzz: targets built in %s in %ds\n' "$DIR" "$((SECONDS - start))"

STATUS=0
for t in "${TARGETS[@]}"; do
  # A fresh copy of the seed corpus: what a run adds stays out of the tree.
  work=$DIR/fuzz-run/$t
  rm -rf "$work"
  mkdir -p "$work/corpus" "$work/tmp"
  cp tests/fuzz/corpus/"$t"/* "$work/corpus/"
  args=(-max_total_time="$SECONDS_EACH" -print_final_stats=1 -rss_limit_mb=2048 -timeout=10
        -max_len="${MAX_LEN[$t]:-4096}" -artifact_prefix="$work/")
  [[ -n ${KILN_FUZZ_RUNS:-} ]] && args+=(-runs="$KILN_FUZZ_RUNS")
  t0=$SECONDS
  rc=0
  TMPDIR=$work/tmp "$DIR/fuzz/fuzz_$t" "${args[@]}" "$work/corpus" >"$work/log" 2>&1 || rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/log" | tail -n 1)
  line="target=$t execs=${execs:-0} seconds=$((SECONDS - t0))"
  if ((rc == 0)); then
    printf '%s result=ok\n' "$line"
  else
    STATUS=1
    input=$(sed -n 's/.*Test unit written to //p' "$work/log" | tail -n 1)
    printf '%s result=crash input=%s\n' "$line" "${input:-none}"
    grep -E 'fuzz property broken|ERROR: |SUMMARY: |runtime error' "$work/log" | head -n 5 | sed 's/^/  /' >&2
    printf '  log: %s\n' "$work/log" >&2
  fi
done
exit "$STATUS"
