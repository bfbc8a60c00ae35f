#!/usr/bin/env bash
# Builds the tiny image root the tests and the quick start use, from Debian's
# busybox-static, as a reproducible tarball (same bytes, same digest, on
# every machine with the same busybox): import it with
#   kiln image import "$(deploy/images/busybox.sh)"
# Usage: deploy/images/busybox.sh [OUT.tar]   (default /var/tmp/kiln-images/busybox.tar)
set -euo pipefail
out=${1:-/var/tmp/kiln-images/busybox.tar}
bb=/bin/busybox
[[ -x $bb ]] || { echo "busybox.sh: $bb not found (apt install busybox-static)" >&2; exit 1; }
mkdir -p "$(dirname "$out")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
root=$tmp/rootfs
mkdir -p "$root"/{bin,etc,tmp,src,proc,dev,sys,usr/bin}
cp "$bb" "$root/bin/busybox"
for applet in $("$bb" --list); do
  [[ $applet == busybox ]] || ln -s busybox "$root/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nbuild:x:100000:100000:build:/tmp:/bin/sh\n' >"$root/etc/passwd"
printf 'root:x:0:\nbuild:x:100000:\n' >"$root/etc/group"
chmod 1777 "$root/tmp"
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$root" -cf "$out.tmp" .
mv "$out.tmp" "$out"
printf '%s\n' "$out"
