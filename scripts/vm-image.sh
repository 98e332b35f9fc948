#!/usr/bin/env bash
# Builds the kernel and initramfs that failover tests boot under qemu TCG:
#   OUT_DIR/vmlinuz         the newest Debian 6.1.0-*-amd64 kernel apt offers
#   OUT_DIR/initrd.cpio.gz  busybox-static, the virtio-blk and ext4 modules of that kernel, and an
#                           /init that loads them, mounts /dev/vda (ext4) and switch_roots into its
#                           /sbin/init (see scripts/vm-rootfs.sh for a root filesystem to boot)
#
# Usage: scripts/vm-image.sh [OUT_DIR]   (default /var/cache/rewind-vm)
#
# Cached: does nothing when both outputs and OUT_DIR/kernel (written last) exist. Safe to run
# concurrently (flock on OUT_DIR/.lock). Needs root for `apt-get download`, and the packages
# busybox-static and e2fsprogs (scripts/test.sh installs them). Delete OUT_DIR to rebuild.
set -euo pipefail

out=${1:-/var/cache/rewind-vm}
mkdir -p "$out"
out=$(cd "$out" && pwd)

complete() { [ -s "$out/vmlinuz" ] && [ -s "$out/initrd.cpio.gz" ] && [ -s "$out/kernel" ]; }

exec 9>"$out/.lock"
flock 9
# (A build killed before its cleanup ran leaves its work dir: no build runs while we hold the lock.)
rm -rf "$out"/.build.*
if complete; then
  exit 0
fi

busybox=/bin/busybox
if [ ! -x "$busybox" ] || ldd "$busybox" >/dev/null 2>&1; then
  echo "vm-image.sh: needs a static busybox at $busybox (package busybox-static)" >&2
  exit 1
fi

work=$(mktemp -d "$out/.build.XXXXXX")
trap 'rm -rf "$work"' EXIT

# The newest 6.1.0-N-amd64 image (not cloud, not rt), -unsigned if offered (it sorts last): the
# same kernel and modules as the signed package, without the Secure Boot signature. An old package
# list may name a version the mirror no longer has: refresh the lists once and try again.
pick_kernel() {
  apt-cache search --names-only '^linux-image-6\.1\.0-[0-9]+-amd64(-unsigned)?$' | awk '{print $1}' | sort -V | tail -n 1
}
pkg=$(pick_kernel)
if [ -z "$pkg" ] || ! (cd "$work" && apt-get download -q "$pkg" >/dev/null 2>&1); then
  apt-get update -qq
  pkg=$(pick_kernel)
  [ -n "$pkg" ] || { echo "vm-image.sh: apt offers no linux-image-6.1.0-*-amd64" >&2; exit 1; }
  (cd "$work" && apt-get download -q "$pkg" >/dev/null)
fi
deb=$(ls "$work"/"$pkg"_*.deb)
dpkg-deb -x "$deb" "$work/pkg"
rm -f "$deb"
kver=$(ls "$work/pkg/lib/modules")
[ "$(echo "$kver" | wc -l)" = 1 ] || { echo "vm-image.sh: $pkg holds several module trees: $kver" >&2; exit 1; }
moddir=$work/pkg/lib/modules/$kver
# The package ships no modules.dep (its postinst runs depmod): make one with busybox's depmod.
[ -s "$moddir/modules.dep" ] || "$busybox" depmod -b "$work/pkg" "$kver"

# Each module's path and its dependencies (modules.dep lists every module it needs, directly or not).
declare -A path_of deps_of
while IFS= read -r line; do
  path=${line%%:*}
  name=$(basename "$path")
  name=${name%%.ko*}
  name=${name//-/_}
  path_of[$name]=$path
  deps_of[$name]=${line#*: }
  [ "$line" = "$path:" ] && deps_of[$name]=""
done <"$moddir/modules.dep"

# Load order: every module after the ones it depends on.
declare -A placed
order=()
place() {
  local name=${1//-/_} dep d
  [ -n "${placed[$name]:-}" ] && return
  [ -n "${path_of[$name]:-}" ] || { echo "vm-image.sh: no module $name in $pkg" >&2; exit 1; }
  placed[$name]=1
  for dep in ${deps_of[$name]}; do
    d=$(basename "$dep")
    place "${d%%.ko*}"
  done
  order+=("$name")
}
# virtio_pci and virtio_blk for the disk; ext4 for its filesystem, which also needs a crc32c
# implementation through the crypto API (a soft dependency, absent from modules.dep). crc32c-intel
# is no use: TCG's default CPU has no SSE4.2.
for m in virtio_pci virtio_blk crc32c_generic ext4; do
  place "$m"
done

root=$work/initramfs
mkdir -p "$root"/{bin,dev,proc,sys,newroot,lib/modules}
cp "$busybox" "$root/bin/busybox"
ln -s busybox "$root/bin/sh"
for m in "${order[@]}"; do
  src=$moddir/${path_of[$m]}
  case $src in
    *.ko) cp "$src" "$root/lib/modules/$m.ko" ;;
    *.ko.xz) xz -dc "$src" >"$root/lib/modules/$m.ko" ;;
    *.ko.zst) zstd -qdc "$src" >"$root/lib/modules/$m.ko" ;;
    *.ko.gz) gzip -dc "$src" >"$root/lib/modules/$m.ko" ;;
    *) echo "vm-image.sh: unknown module format: $src" >&2; exit 1 ;;
  esac
done
printf '%s\n' "${order[@]}" >"$root/lib/modules/order"

cat >"$root/init" <<'EOF'
#!/bin/busybox sh
# Rewind VM initramfs: load the disk and ext4 modules, mount /dev/vda, switch to its /sbin/init.
/bin/busybox mount -t proc proc /proc
/bin/busybox mkdir -p /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1

fail() {
  echo "rewind-vm: $*"
  sync
  poweroff -f
}

while read -r m; do
  insmod "/lib/modules/$m.ko" || echo "rewind-vm: insmod $m failed"
done </lib/modules/order

i=0
while [ ! -b /dev/vda ]; do
  i=$((i + 1))
  [ "$i" -le 200 ] || fail "cannot mount root: no /dev/vda after 20 s"
  usleep 100000
done
mount -t ext4 -o rw /dev/vda /newroot || fail "cannot mount root: mount -t ext4 /dev/vda failed"
[ -x /newroot/sbin/init ] || fail "cannot mount root: /dev/vda has no /sbin/init"

umount /proc /sys
if [ -d /newroot/dev ]; then
  mount --move /dev /newroot/dev
fi
exec switch_root /newroot /sbin/init
fail "cannot mount root: switch_root failed"
EOF
chmod 755 "$root/init"

(cd "$root" && find . | LC_ALL=C sort | "$busybox" cpio -o -H newc --quiet) | gzip -9n >"$work/initrd.cpio.gz"
cp "$work/pkg/boot/vmlinuz-$kver" "$work/vmlinuz"

# Publish: the two images first, then the stamp that marks the set complete.
rm -f "$out/kernel"
mv "$work/vmlinuz" "$out/vmlinuz"
mv "$work/initrd.cpio.gz" "$out/initrd.cpio.gz"
echo "$pkg $kver modules: ${order[*]}" >"$out/kernel.tmp"
sync -f "$out/kernel.tmp"
mv "$out/kernel.tmp" "$out/kernel"
echo "vm-image.sh: built $out/vmlinuz and $out/initrd.cpio.gz from $pkg"
