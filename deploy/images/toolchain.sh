#!/usr/bin/env bash
# Builds a C toolchain image root (gcc, make, libc6-dev) from Debian 12's
# packages with mmdebstrap, as a tarball for `kiln image import`. Cached: a
# second call on the same machine prints the existing tarball at once
# (delete it, or pass --rebuild, to build it again). Needs Debian's apt
# repositories (deb.debian.org) and about a minute.
# Usage: deploy/images/toolchain.sh [--rebuild] [OUT.tar]   (default /var/tmp/kiln-images/toolchain.tar)
set -euo pipefail
rebuild=0
if [[ ${1:-} == --rebuild ]]; then rebuild=1; shift; fi
out=${1:-/var/tmp/kiln-images/toolchain.tar}
if [[ -s $out && $rebuild == 0 ]]; then printf '%s\n' "$out"; exit 0; fi
if ! command -v mmdebstrap >/dev/null; then
  echo "toolchain.sh: installing mmdebstrap" >&2
  apt-get install -y -q mmdebstrap >&2
fi
mkdir -p "$(dirname "$out")"
# mmdebstrap keeps its scratch space in TMPDIR: next to the output, not in /tmp.
export TMPDIR
TMPDIR=$(mktemp -d "$(dirname "$out")/toolchain-build.XXXXXX")
trap 'rm -rf "$TMPDIR"' EXIT
mirror=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n 1)
# --skip=output/dev: no device nodes in the tarball (kiln refuses them; runc makes /dev).
mmdebstrap --quiet --variant=minbase --include=gcc,make,libc6-dev --skip=output/dev \
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*' \
  bookworm "$TMPDIR/rootfs.tar" "${mirror:-http://deb.debian.org/debian}" >&2
mv "$TMPDIR/rootfs.tar" "$out"
printf '%s\n' "$out"
