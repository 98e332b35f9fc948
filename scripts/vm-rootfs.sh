#!/usr/bin/env bash
# Makes an ext4 root filesystem image for the test VM (kernel and initramfs: scripts/vm-image.sh).
#
# Usage: scripts/vm-rootfs.sh IMG SIZE_MIB [MARKER_TEXT]
#
# The image holds busybox-static and an /sbin/init that prints, on the serial console:
#   rewind-vm: marker=<content of /marker, or none>
#   rewind-vm: boot-count=N      (after adding one to /var/boot-count and syncing: the disk is writable)
#   rewind-vm: healthy
# then stays up until killed; with `rewind.poweroff` on the kernel command line it powers off
# instead; with `rewind.shell` it runs a shell on the console (for drills' guest commands). If /var/boot-count cannot be written it prints `rewind-vm: cannot write /var/boot-count`
# and powers off without saying healthy. MARKER_TEXT, if given, is written to /marker.
# Built with mkfs.ext4 -d from a staging directory: no mount needed. IMG is replaced.
set -euo pipefail

if [ $# -lt 2 ] || [ $# -gt 3 ]; then
  echo "usage: $0 IMG SIZE_MIB [MARKER_TEXT]" >&2
  exit 2
fi
img=$1
size=$2
case $size in
  '' | *[!0-9]*) echo "vm-rootfs.sh: SIZE_MIB must be a number of MiB: $size" >&2; exit 2 ;;
esac

busybox=/bin/busybox
if [ ! -x "$busybox" ] || ldd "$busybox" >/dev/null 2>&1; then
  echo "vm-rootfs.sh: needs a static busybox at $busybox (package busybox-static)" >&2
  exit 1
fi

stage=$(mktemp -d "${TMPDIR:-/tmp}/rewind-vm-rootfs.XXXXXX")
trap 'rm -rf "$stage"' EXIT

mkdir -p "$stage"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,tmp,var,root,etc}
chmod 1777 "$stage/tmp"
cp "$busybox" "$stage/bin/busybox"
# A link for every applet (bin/sh, sbin/poweroff, ...), except init: ours is the script below.
"$busybox" --list-full | while read -r applet; do
  case $applet in
    sbin/init | linuxrc | bin/busybox) ;;
    *) [ -e "$stage/$applet" ] || ln -s /bin/busybox "$stage/$applet" ;;
  esac
done

cat >"$stage/sbin/init" <<'EOF'
#!/bin/sh
# Rewind test VM: report the marker and the boot count on the console, then stay up.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
# (The initramfs hands over /dev already mounted; this busybox has no mountpoint applet.)
[ -e /proc/self ] || mount -t proc proc /proc
grep -q '^[^ ]* /sys ' /proc/mounts || mount -t sysfs sysfs /sys
grep -q '^[^ ]* /dev ' /proc/mounts || mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1

marker=none
if [ -f /marker ]; then
  marker=$(cat /marker)
fi
echo "rewind-vm: marker=$marker"

n=$(cat /var/boot-count 2>/dev/null || true)
case $n in
  '' | *[!0-9]*) n=0 ;;
esac
n=$((n + 1))
if echo "$n" >/var/boot-count.tmp && sync && mv /var/boot-count.tmp /var/boot-count && sync; then
  echo "rewind-vm: boot-count=$n"
  echo "rewind-vm: healthy"
else
  echo "rewind-vm: cannot write /var/boot-count"
  poweroff -f
fi

if grep -qw rewind.poweroff /proc/cmdline; then
  sync
  poweroff -f
fi
if grep -qw rewind.shell /proc/cmdline; then
  # A shell on the console, restarted if it exits (init must never exit).
  while :; do
    sh
  done
fi
while :; do
  sleep 3600
done
EOF
chmod 755 "$stage/sbin/init"

if [ $# -eq 3 ]; then
  printf '%s\n' "$3" >"$stage/marker"
fi

rm -f "$img"
truncate -s "${size}M" "$img"
# Inode tables and journal initialised now, so the guest starts no background zeroing writes.
mkfs.ext4 -q -F -L rewind-root -E lazy_itable_init=0,lazy_journal_init=0 -d "$stage" "$img"
