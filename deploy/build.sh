#!/usr/bin/env bash
# Configure and build kiln with CMake + Ninja + ccache.
#   deploy/build.sh [extra cmake -D options...]
# Env: BUILD_DIR (default: build, relative to the repo root),
#      CCACHE_DIR (default: ~/.cache/kiln/ccache, shared by every clone on this
#      machine, so a fresh clone builds from the cache), KILN_BUILD_JOBS (default: 2),
#      KILN_BUILD_TARGETS (space-separated CMake targets to build, e.g.
#      "kiln kiln-controller kiln-worker kiln-cc" as deploy/quickstart.sh does;
#      default: empty, every target, tests included, as tests/run.sh needs).
set -euo pipefail

REPO=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd -P)
cd "$REPO"

die() { printf 'build: error: %s\n' "$*" >&2; exit 1; }

BUILD_DIR=${BUILD_DIR:-build}
JOBS=${KILN_BUILD_JOBS:-2}
read -r -a TARGETS <<<"${KILN_BUILD_TARGETS:-}"
export CCACHE_DIR=${CCACHE_DIR:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/kiln/ccache}
# Paths relative to the repo in the cache key, and not the build directory:
# clones in other directories hit (their debug info may then name the first
# clone's source paths).
export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$REPO}
export CCACHE_NOHASHDIR=${CCACHE_NOHASHDIR:-1}

for tool in cmake ninja ccache; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool not found: run deploy/install-deps.sh first"
done

# A build dir configured with another generator makes cmake fail obscurely.
cache=$BUILD_DIR/CMakeCache.txt
if [[ -f $cache ]] && ! grep -q '^CMAKE_GENERATOR:INTERNAL=Ninja$' "$cache"; then
  die "$BUILD_DIR was configured with a different generator: remove it (rm -rf $BUILD_DIR) and re-run"
fi

start=$SECONDS
cmake -S . -B "$BUILD_DIR" -G Ninja \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_COMPILER_LAUNCHER=ccache \
  "$@"
if ((${#TARGETS[@]})); then
  cmake --build "$BUILD_DIR" -j "$JOBS" --target "${TARGETS[@]}" ||
    die "building ${TARGETS[*]} in $BUILD_DIR failed (see above; on \"unknown target\", fix KILN_BUILD_TARGETS: CMake target names such as kiln kiln-worker)"
  what="${TARGETS[*]}"
else
  cmake --build "$BUILD_DIR" -j "$JOBS"
  what="every target"
fi
printf 'build: %s built in %s in %ds (ccache: %s)\n' "$what" "$BUILD_DIR" "$((SECONDS - start))" "$CCACHE_DIR"
