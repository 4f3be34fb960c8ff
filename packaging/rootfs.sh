#!/usr/bin/env bash
# Prints the path of a cached Debian bookworm root filesystem tarball (minbase + systemd + curl),
# building it with debootstrap the first time. The packaging check unpacks a fresh copy of it for
# every scenario, so the tarball itself is never modified.
set -euo pipefail

CACHE=${CM_CACHE:-/var/cache/container-manager}
TARBALL=$CACHE/rootfs-bookworm.tar
# The Debian mirror this machine's apt already uses (deb.debian.org unless configured otherwise).
MIRROR=${DEBIAN_MIRROR:-$( (grep -rhoE 'https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d 2>/dev/null || true) | head -n1 | tr -d ' ')}
MIRROR=${MIRROR:-http://deb.debian.org/debian}

if [[ -s $TARBALL ]]; then
    echo "$TARBALL"
    exit 0
fi

command -v debootstrap >/dev/null || { apt-get update -qq >&2 && apt-get install -y -qq debootstrap >&2; }
mkdir -p "$CACHE"
work=$(mktemp -d "$CACHE/rootfs.XXXXXX")
# debootstrap can leave /proc (and more) mounted inside the target: unmount before deleting.
unmount_all() {
    awk -v r="$work/root/" 'index($2, r) == 1 {print $2}' /proc/mounts | sort -r | while read -r m; do
        umount -l "$m" || true
    done
}
trap 'unmount_all; rm -rf --one-file-system "$work"' EXIT
echo "rootfs: debootstrap bookworm (minbase + systemd, curl) from $MIRROR" >&2
debootstrap --variant=minbase --include=systemd,curl,ca-certificates bookworm "$work/root" "$MIRROR" >"$work/debootstrap.log" 2>&1 \
    || { tail -n 30 "$work/debootstrap.log" >&2; exit 1; }
unmount_all
# Keep the tarball small and deterministic enough: no apt caches.
rm -rf "$work/root/var/cache/apt/archives/"*.deb "$work/root/var/lib/apt/lists/"*
tar -C "$work/root" --one-file-system --numeric-owner -cf "$work/rootfs.tar" .
mv "$work/rootfs.tar" "$TARBALL"
echo "$TARBALL"
