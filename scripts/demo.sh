#!/usr/bin/env bash
# Rewind demo: build, replicate a demo ext4 disk to a master target on this host, list the recovery
# points, mount an older point beside the latest to find a file that has since been deleted, and
# export the latest over NBD for qemu.
# Run as root (it loop-mounts images). Everything it makes is removed at the end, even on failure.
#
# Until the source agent lands, `rewind-loadgen image` plays the agent: it sends the disk image's
# blocks (then only the changed ones) over the real wire protocol and tags each state.
set -euo pipefail
cd "$(dirname "$0")/.."

[ "$(id -u)" = 0 ] || { echo "demo.sh: run as root (it loop-mounts images)" >&2; exit 1; }
for p in e2fsprogs util-linux qemu-utils; do
  dpkg -s "$p" >/dev/null 2>&1 || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$p" >/dev/null; }
done

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "build"
cargo build --release -q -p rewind-mtd -p rewind-benches
bin=$PWD/target/release
rewind() { "$bin/rewind" --control "$work/control.sock" "$@"; }

work=$(mktemp -d /var/tmp/rewind-demo.XXXXXX)
mtd_pid=
mounts=()
cleanup() {
  for m in "${mounts[@]}"; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
  # On SIGTERM the daemon unmounts what `rewind mount` mounted, detaches its loop devices and
  # unmounts its view tree.
  [ -n "$mtd_pid" ] && kill "$mtd_pid" 2>/dev/null && wait "$mtd_pid" 2>/dev/null
  mountpoint -q "$work/views" 2>/dev/null && umount -l "$work/views"
  rm -rf "$work"
}
trap cleanup EXIT

step "start the master target (rewind-mtd serve)"
"$bin/rewind-mtd" serve --data-dir "$work/data" --unix "$work/mtd.sock" --ready-file "$work/ready" \
  --views "$work/views" --nbd-unix "$work/nbd.sock" --nbd-listen none --control "$work/control.sock" \
  2> "$work/mtd.log" &
mtd_pid=$!
for _ in $(seq 100); do [ -e "$work/ready" ] && break; sleep 0.1; done
[ -e "$work/ready" ] || { cat "$work/mtd.log"; exit 1; }
sed 's/^/listening: /' "$work/ready"

mount_img() { # image dir [opts]
  mkdir -p "$2"; mount -o "loop${3:+,$3}" "$1" "$2"; mounts+=("$2")
}
umount_img() {
  umount "$1"; local keep=(); for m in "${mounts[@]}"; do [ "$m" != "$1" ] && keep+=("$m"); done; mounts=("${keep[@]}")
}

step "make a demo disk: 256 MiB ext4 with some files"
disk=$work/disk.img
truncate -s 256M "$disk"
mkfs.ext4 -q -F -L demo "$disk"
mount_img "$disk" "$work/src"
echo "quarterly numbers: 42" > "$work/src/report.txt"
echo "hello from the protected host" > "$work/src/hello.txt"
cp -r /usr/share/doc/util-linux "$work/src/docs" 2>/dev/null || mkdir "$work/src/docs"
umount_img "$work/src"

step "replicate it and tag the point v1"
"$bin/rewind-loadgen" image --connect "unix:$work/mtd.sock" --group demo --disk sda --file "$disk" --tag v1
cp --sparse=always "$disk" "$work/prev.img"

step "on the source: delete report.txt, write notes.txt; replicate the changes, tag v2"
mount_img "$disk" "$work/src"
rm "$work/src/report.txt"
echo "report.txt was deleted by mistake" > "$work/src/notes.txt"
umount_img "$work/src"
"$bin/rewind-loadgen" image --connect "unix:$work/mtd.sock" --group demo --disk sda --file "$disk" \
  --since "$work/prev.img" --tag v2

step "recovery points at the target (rewind groups, rewind points)"
rewind groups
rewind points demo

step "check point v1 through a read-only loop device (rewind attach, e2fsck -fn)"
dev=$(rewind attach demo/sda@tag:v1)
e2fsck -fn "$dev" >/dev/null && echo "e2fsck -fn $dev: point v1 is a clean ext4 file system"
rewind detach "$dev"

step "mount v1 beside latest (rewind mount: a throwaway overlay, the points never change)"
mkdir -p "$work/v1" "$work/latest"
rewind mount demo/sda@tag:v1 "$work/v1"
rewind mount demo/sda "$work/latest"
echo "latest: $(ls "$work/latest" | tr '\n' ' ')"
echo "v1:     $(ls "$work/v1" | tr '\n' ' ')"
echo "v1/report.txt (deleted since, still there at v1): $(cat "$work/v1/report.txt")"
[ ! -e "$work/latest/report.txt" ]
rewind umount "$work/v1"
rewind umount "$work/latest"

step "export the latest point over NBD and compare it with the source disk (qemu-img compare)"
qemu-img compare -f raw -F raw "nbd+unix:///demo/sda?socket=$work/nbd.sock" "$disk"

step "done: cleaning up"
