#!/usr/bin/env bash
# Prints the unpacked upstream tree of a Debian 12 source package, fetching it
# the first time with `apt-get source --download-only PACKAGE/bookworm` into
# CACHE_DIR and unpacking its orig tarball (upstream's tree, without Debian's
# patches) into CACHE_DIR/PACKAGE_VERSION. Nothing is committed; later calls
# print the cached tree at once. Adds a deb-src entry
# (/etc/apt/sources.list.d/zz-kiln-src.sources) when apt has none.
# Exit status: 0 with the tree's path on stdout; 1 when it cannot be had
# (no network, no such package), with apt's words on stderr.
# Usage: tests/debian-source.sh PACKAGE CACHE_DIR
set -euo pipefail
pkg=$1 cache=$2
mkdir -p "$cache"
exec 9>"$cache/.lock.$pkg"
flock 9  # one fetch per package at a time, whoever else uses the cache

orig() { find "$cache" -maxdepth 1 -name "${pkg}_*.orig.tar.*" ! -name '*.asc' | sort -V | tail -n 1; }
tarball=$(orig)
if [[ -z $tarball ]]; then
  if ! grep -qs '^Types:.*deb-src' /etc/apt/sources.list.d/*.sources &&
     ! grep -qs '^deb-src ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list; then
    sed 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources >/etc/apt/sources.list.d/zz-kiln-src.sources
    apt-get update >&2
  fi
  # The bookworm suite: a security pocket's newer version may lack its orig tarball.
  (cd "$cache" && apt-get source --download-only "$pkg/bookworm") >&2 ||
    { apt-get update >&2 && (cd "$cache" && apt-get source --download-only "$pkg/bookworm") >&2; }
  tarball=$(orig)
  [[ -n $tarball ]] || { echo "debian-source.sh: apt-get source gave no $pkg orig tarball in $cache" >&2; exit 1; }
fi
name=$(basename "$tarball")
tree="$cache/${name%.orig.tar.*}"  # e.g. zlib_1.2.13.dfsg
if [[ ! -e $tree.unpacked ]]; then
  rm -rf "$tree" "$tree.tmp"
  mkdir "$tree.tmp"
  tar -xf "$tarball" -C "$tree.tmp" --strip-components=1
  mv "$tree.tmp" "$tree"
  : >"$tree.unpacked"
fi
printf '%s\n' "$tree"
