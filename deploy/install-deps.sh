#!/usr/bin/env bash
# Install the Debian 12 packages that kiln needs to build, test and run.
# Idempotent: only missing packages are installed, and `apt-get update` runs
# only when something is missing. Run as root (or with sudo available).
set -euo pipefail

PACKAGES=(
  # toolchain
  cmake ninja-build g++ gcc make libc6-dev pkg-config ccache
  # libraries
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler grpc-proto
  libpqxx-dev libspdlog-dev nlohmann-json3-dev libssl-dev libsystemd-dev
  libcli11-dev libcpp-httplib-dev libarchive-dev
  # /metrics on the controller and the worker (registry and exposer)
  prometheus-cpp-dev
  # tests
  libgtest-dev libgmock-dev
  # the metrics test scrapes a farm with a real Prometheus; promtool checks
  # the scrapes and deploy/prometheus/kiln-alerts.yml (no daemon is left
  # running: see stop_packaged_daemons below)
  prometheus
  # fuzz targets (tests/fuzz/run.sh): clang 14 and its libFuzzer
  clang libfuzzer-14-dev
  # runtime: database, sandbox, network tooling
  postgresql-15 postgresql-contrib-15 runc busybox-static iproute2
  # the toolchain image (deploy/images/toolchain.sh)
  mmdebstrap
  # kiln submit takes a git checkout's file list (so .gitignore applies)
  git
  # the quick start's "Try it" reads the controller's /metrics with it
  curl
  # the systemd provider's test checks the shipped kiln-worker@.service with
  # systemd-analyze verify (systemd need not run as PID 1)
  systemd
  # deploy/provider-example.sh (the command provider's example, and its test)
  jq
)

log() { printf 'install-deps: %s\n' "$*"; }
die() { printf 'install-deps: error: %s\n' "$*" >&2; exit 1; }

if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
  die "dpkg-query/apt-get not found: this script supports Debian 12 (bookworm) only"
fi

# Names satisfied by installed packages, including virtual names they Provide
# (e.g. postgresql-15 provides postgresql-contrib-15 on bookworm).
declare -A PROVIDED=()
load_provided() {
  PROVIDED=()
  local status pkg provides p
  local -a list
  while IFS='|' read -r status pkg provides; do
    [[ $status == "install ok installed" ]] || continue
    PROVIDED[$pkg]=1
    IFS=',' read -ra list <<<"$provides"
    for p in "${list[@]}"; do
      p=${p%%(*}         # drop version constraint "(= 1.2)"
      p=${p//[[:space:]]/}
      [[ -n $p ]] && PROVIDED[$p]=1
    done
  done < <(dpkg-query -W -f='${Status}|${Package}|${Provides}\n' 2>/dev/null || true)
}

is_present() {
  local status
  status=$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)
  [[ $status == "install ok installed" ]] || [[ -n ${PROVIDED[$1]:-} ]]
}

missing_packages() {
  load_provided
  local p
  for p in "${PACKAGES[@]}"; do
    is_present "$p" || printf '%s\n' "$p"
  done
}

# Debian's prometheus package starts its daemon (:9090) wherever an init
# system lets it; kiln's tests start their own on loopback, so the packaged
# one is stopped and kept from starting at boot (also when everything was
# installed already: an earlier install may have left it running).
stop_packaged_daemons() {
  local unit
  for unit in prometheus; do
    if command -v systemctl >/dev/null 2>&1 && [[ -d /run/systemd/system ]]; then
      "${SUDO[@]}" systemctl disable --now "$unit" >/dev/null 2>&1 || true
    fi
    if [[ -x /etc/init.d/$unit ]]; then
      "${SUDO[@]}" /etc/init.d/"$unit" stop >/dev/null 2>&1 || true
      if command -v update-rc.d >/dev/null 2>&1; then
        "${SUDO[@]}" update-rc.d "$unit" disable >/dev/null 2>&1 || true
      fi
    fi
  done
  if command -v ss >/dev/null 2>&1 && ss -Hltnp 'sport = :9090' 2>/dev/null | grep -q prometheus; then
    die "a packaged prometheus still listens on :9090: stop it (kill its pid) and re-run"
  fi
}

mapfile -t MISSING < <(missing_packages)
if ((${#MISSING[@]} == 0)); then
  SUDO=()
  ((EUID == 0)) && stop_packaged_daemons
  log "all dependencies present"
  exit 0
fi

log "missing: ${MISSING[*]}"

SUDO=()
if ((EUID != 0)); then
  command -v sudo >/dev/null 2>&1 ||
    die "packages are missing and installing them needs root: re-run as root (e.g. 'su -c $0')"
  SUDO=(sudo)
fi

APT_OPTS=(-o DPkg::Lock::Timeout=300)
"${SUDO[@]}" apt-get "${APT_OPTS[@]}" update ||
  die "apt-get update failed: check network access and /etc/apt/sources.list.d/"
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
  apt-get "${APT_OPTS[@]}" install -y --no-install-recommends "${MISSING[@]}" ||
  die "apt-get install failed for: ${MISSING[*]} (see apt output above)"

# Verify: apt-get can succeed while a virtual name still resolves to nothing.
mapfile -t STILL < <(missing_packages)
((${#STILL[@]} == 0)) || die "still missing after install: ${STILL[*]}"

stop_packaged_daemons

log "installed: ${MISSING[*]}"
