#!/usr/bin/env bash
# Install dependencies, build with warnings as errors, and run the test suite.
#   tests/run.sh [--asan] [-- extra ctest args]
#     (default)  build into build/ with -DKILN_WERROR=ON and run ctest there,
#                then a smoke of the fuzz targets (tests/fuzz/run.sh)
#     --asan     build into build-asan/ with ASan+UBSan and run ctest there instead
# Env: KILN_TEST_ASAN=1 also runs the ASan pass after the normal one;
#      KILN_TEST_FUZZ_SECONDS: seconds per fuzz target (default 5, 0 skips).
# Exit status: non-zero if a build, any ctest pass or a fuzz target failed.
set -euo pipefail

REPO=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd -P)
cd "$REPO"

die() { printf 'tests/run.sh: error: %s\n' "$*" >&2; exit 2; }

ASAN_ONLY=0
CTEST_EXTRA=()
while (($#)); do
  case $1 in
    --asan) ASAN_ONLY=1 ;;
    --) shift; CTEST_EXTRA=("$@"); break ;;
    -h | --help) sed -n '2,9s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) die "unknown option: $1 (see tests/run.sh --help)" ;;
  esac
  shift
done

START=$SECONDS
PASSES=()    # "name|build dir|extra cmake args"
if ((ASAN_ONLY)); then
  PASSES=("asan|build-asan|-DKILN_SANITIZE=ON")
else
  PASSES=("normal|build|")
  [[ ${KILN_TEST_ASAN:-0} == 1 ]] && PASSES+=("asan|build-asan|-DKILN_SANITIZE=ON")
fi

deploy/install-deps.sh
# It installed Prometheus: the tests that need it fail rather than skip.
export KILN_REQUIRE_PROMETHEUS=1

# run_pass NAME DIR [CMAKE_ARG]: build into DIR and run ctest there; the ctest
# summary line is saved to DIR/ctest-summary.txt.
run_pass() {
  local name=$1 dir=$2 extra=${3:-} rc
  local -a cmake_args=(-DKILN_WERROR=ON)
  [[ -n $extra ]] && cmake_args+=("$extra")
  printf '\n=== %s pass: build (%s) ===\n' "$name" "$dir"
  BUILD_DIR=$dir deploy/build.sh "${cmake_args[@]}" || return 3
  printf '\n=== %s pass: ctest (%s) ===\n' "$name" "$dir"
  set +e
  ctest --test-dir "$dir" --output-on-failure -j1 --timeout 600 --no-tests=error "${CTEST_EXTRA[@]}" 2>&1 |
    tee "$dir/ctest.log"
  rc=${PIPESTATUS[0]}
  set -e
  grep -E '^[0-9]+% tests passed' "$dir/ctest.log" | tail -n 1 >"$dir/ctest-summary.txt" || true
  return "$rc"
}

STATUS=0
RESULTS=()
for pass in "${PASSES[@]}"; do
  IFS='|' read -r name dir extra <<<"$pass"
  if [[ $name == asan ]]; then
    export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:abort_on_error=1}
    export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
  fi
  rc=0
  run_pass "$name" "$dir" "$extra" || rc=$?
  if ((rc == 3)); then
    # A build failure would repeat in the next pass: stop here.
    printf '\n%s pass: BUILD FAILED\n' "$name"
    printf 'tests/run.sh: total elapsed %ds\n' "$((SECONDS - START))"
    exit 1
  fi
  ((rc == 0)) || STATUS=1
  RESULTS+=("$name pass ($dir): $(cat "$dir/ctest-summary.txt" 2>/dev/null || true) [ctest exit $rc]")
done

# Each fuzz target a few seconds on its seed corpus (clang, build-fuzz/):
# with the normal pass only, as the fuzz build is sanitized itself.
FUZZ_SECONDS=${KILN_TEST_FUZZ_SECONDS:-5}
if ((!ASAN_ONLY && FUZZ_SECONDS > 0)); then
  printf '\n=== fuzz smoke: %ss per target (build-fuzz) ===\n' "$FUZZ_SECONDS"
  fuzz_start=$SECONDS
  rc=0
  tests/fuzz/run.sh "$FUZZ_SECONDS" || rc=$?
  ((rc == 0)) || STATUS=1
  RESULTS+=("fuzz smoke (build-fuzz): $( ((rc == 0)) && echo "no crash" || echo FAILED) in $((SECONDS - fuzz_start))s [exit $rc]")
fi

# With several passes, repeat each pass's ctest summary so none scrolls away.
if ((${#RESULTS[@]} > 1)); then
  printf '\n'
  printf '%s\n' "${RESULTS[@]}"
fi
printf 'tests/run.sh: total elapsed %ds\n' "$((SECONDS - START))"
exit "$STATUS"
