#!/usr/bin/env bash
# Builds the Debian root file system that the packaging test boots with systemd as PID 1
# (systemd-nspawn --boot), so that the packages' units are started, restarted and stopped by a
# real systemd with their hardening in force (this machine's PID 1 is not systemd):
#   OUT_DIR/root      Debian 12 (bookworm), minbase, with systemd, dbus and what the packages
#                     depend on (adduser, fuse3, util-linux, e2fsprogs)
#
# Usage: scripts/systemd-root.sh [OUT_DIR]   (default /var/cache/rewind-systemd-root)
#
# Cached: does nothing when OUT_DIR/complete (written last) exists. Safe to run concurrently
# (flock on OUT_DIR/.lock). Needs root and debootstrap (scripts/test.sh installs it). Tests copy
# the root before booting it, so this one stays clean. Delete OUT_DIR to rebuild.
set -euo pipefail

out=${1:-/var/cache/rewind-systemd-root}
mkdir -p "$out"
out=$(cd "$out" && pwd)

exec 9>"$out/.lock"
flock 9
# (A build killed before its cleanup ran leaves its work dir: no build runs while we hold the lock.)
rm -rf "$out"/.build.*
if [ -e "$out/complete" ]; then
  exit 0
fi
command -v debootstrap >/dev/null || { echo "systemd-root.sh: needs debootstrap" >&2; exit 1; }

work=$(mktemp -d "$out/.build.XXXXXX")
trap 'rm -rf "$work"' EXIT

mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
echo "systemd-root.sh: debootstrap bookworm into $out/root (about 90 s)"
debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,adduser,fuse3,util-linux,e2fsprogs \
  bookworm "$work/root" "$mirror" >"$work/debootstrap.log" 2>&1 || {
  tail -n 30 "$work/debootstrap.log" >&2
  exit 1
}
# Units that need what a container lacks only add noise to `systemctl --failed`.
for unit in systemd-networkd-wait-online.service getty@tty1.service; do
  ln -sf /dev/null "$work/root/etc/systemd/system/$unit"
done
rm -rf "$out/root"
mv "$work/root" "$out/root"
touch "$out/complete"
