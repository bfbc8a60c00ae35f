#!/usr/bin/env bash
# Builds a C and C++ toolchain image root (gcc, g++, make, cmake, ninja,
# libc6-dev; no bison or flex: tests rely on generators being absent) from
# Debian 12's packages with mmdebstrap, as a tarball for `kiln image import`.
# Cached: a second call on the same machine prints the existing tarball at
# once (delete it, or pass --rebuild, to build it again). The default file
# name carries a stamp of what goes into the image (the package list and
# mmdebstrap's options), so a change to this script builds a new tarball once
# per machine; an explicit OUT is rebuilt when its sidecar OUT.stamp differs.
# Needs Debian's apt repositories (deb.debian.org) and about two minutes.
# Usage: deploy/images/toolchain.sh [--rebuild] [OUT.tar]
#   (default /var/tmp/kiln-images/toolchain-STAMP.tar)
set -euo pipefail
rebuild=0
if [[ ${1:-} == --rebuild ]]; then rebuild=1; shift; fi

packages=gcc,g++,make,cmake,ninja-build,libc6-dev
options=(--variant=minbase --skip=output/dev
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*'
  --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*')
stamp=$(printf '%s\n' "$packages" "${options[@]}" | sha256sum | cut -c1-12)

out=${1:-/var/tmp/kiln-images/toolchain-$stamp.tar}
fresh() { [[ -s $out && $(cat "$out.stamp" 2>/dev/null) == "$stamp" ]]; }
if fresh && [[ $rebuild == 0 ]]; then printf '%s\n' "$out"; exit 0; fi
mkdir -p "$(dirname "$out")"
# One build at a time per output: a concurrent caller waits, then finds it built.
exec 9>"$out.lock"
flock 9
if fresh && [[ $rebuild == 0 ]]; then printf '%s\n' "$out"; exit 0; fi
if ! command -v mmdebstrap >/dev/null; then
  echo "toolchain.sh: installing mmdebstrap" >&2
  apt-get install -y -q mmdebstrap >&2
fi
# mmdebstrap keeps its scratch space in TMPDIR: next to the output, not in /tmp.
export TMPDIR
TMPDIR=$(mktemp -d "$(dirname "$out")/toolchain-build.XXXXXX")
trap 'rm -rf "$TMPDIR"' EXIT
mirror=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n 1)
# --skip=output/dev: no device nodes in the tarball (kiln refuses them; runc makes /dev).
mmdebstrap --quiet "${options[@]}" --include="$packages" \
  bookworm "$TMPDIR/rootfs.tar" "${mirror:-http://deb.debian.org/debian}" >&2
rm -f "$out.stamp"
mv "$TMPDIR/rootfs.tar" "$out"
printf '%s\n' "$stamp" >"$out.stamp"
printf '%s\n' "$out"
