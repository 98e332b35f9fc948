#!/usr/bin/env bash
# Rewind demo: build, replicate a demo ext4 disk to a master target on this host, list the recovery
# points, mount an older point beside the latest to find a file that has since been deleted, and
# export the latest over NBD for qemu; the configuration server (rewind-site, embedded SQLite)
# manages the target, and its web console's address and a login are printed at the end.
# Run as root (it loop-mounts images). Everything it makes is removed at the end, even on failure.
#
# The source agent (rewind-agent) protects a disk image on this host: the workload (mkfs, files)
# uses the protected device /dev/loopN it serves, and every write streams to the target over
# mutual TLS (a site CA made here for the demo).
set -euo pipefail
cd "$(dirname "$0")/.."

[ "$(id -u)" = 0 ] || { echo "demo.sh: run as root (it loop-mounts images)" >&2; exit 1; }
for p in e2fsprogs util-linux qemu-utils; do
  dpkg -s "$p" >/dev/null 2>&1 || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$p" >/dev/null; }
done

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "build"
cargo build --release -q -p rewind-mtd -p rewind-agent -p rewind-site
bin=$PWD/target/release
rewind() { "$bin/rewind" --control "$work/control.sock" "$@"; }

work=$(mktemp -d /var/tmp/rewind-demo.XXXXXX)
mtd_pid=
agent_pid=
site_pid=
mounts=()
cleanup() {
  for m in "${mounts[@]}"; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
  # On SIGTERM the agent detaches its loop device and unmounts its capture files (run directly,
  # not through a function: $! must be the agent itself).
  if [ -n "$agent_pid" ]; then kill "$agent_pid" 2>/dev/null; wait "$agent_pid" 2>/dev/null || true; fi
  mountpoint -q "$work/agent-mnt" 2>/dev/null && umount -l "$work/agent-mnt"
  if [ -n "$site_pid" ]; then kill "$site_pid" 2>/dev/null; wait "$site_pid" 2>/dev/null || true; fi
  # On SIGTERM the daemon unmounts what `rewind mount` mounted, detaches its loop devices and
  # unmounts its view tree.
  if [ -n "$mtd_pid" ]; then kill "$mtd_pid" 2>/dev/null; wait "$mtd_pid" 2>/dev/null || true; fi
  mountpoint -q "$work/views" 2>/dev/null && umount -l "$work/views"
  rm -rf "$work"
}
trap cleanup EXIT

step "the site (rewind-site init): its CA signs the demo agent's and the target's certificates"
site_url=
site() { "$bin/rewind-site" --state "$work/site" ${site_url:+--site "$site_url"} "$@"; }
site init --host 127.0.0.1 >/dev/null
ca=$work/site/ca
"$bin/rewind-mtd" ca issue --dir "$ca" --agent demo-host
"$bin/rewind-mtd" ca issue --dir "$ca" --server t1 --host 127.0.0.1 --out "$work/tls-t1"

step "start the master target (rewind-mtd serve), agents over mutual TLS"
"$bin/rewind-mtd" serve --data-dir "$work/data" --listen 127.0.0.1:0 --tls-dir "$work/tls-t1" --ready-file "$work/ready" \
  --views "$work/views" --nbd-unix "$work/nbd.sock" --nbd-listen none --control "$work/control.sock" \
  --control-listen 127.0.0.1:0 2> "$work/mtd.log" &
mtd_pid=$!
for _ in $(seq 100); do [ -e "$work/ready" ] && break; sleep 0.1; done
[ -e "$work/ready" ] || { cat "$work/mtd.log"; exit 1; }
sed 's/^/listening: /' "$work/ready"
target=tcp:$(head -n 1 "$work/ready")

step "start the configuration server (rewind-site serve) and register the target with it"
# Run directly, not through the `site` function: $! must be rewind-site itself.
"$bin/rewind-site" --state "$work/site" serve --listen 127.0.0.1:0 --ready-file "$work/site-ready" \
  2> "$work/site.log" &
site_pid=$!
for _ in $(seq 100); do [ -e "$work/site-ready" ] && break; sleep 0.1; done
[ -e "$work/site-ready" ] || { cat "$work/site.log"; exit 1; }
site_url=https://$(head -n 1 "$work/site-ready")
site target add t1 --url "https://$(sed -n 's/^control-tcp //p' "$work/ready")" --agents "$(head -n 1 "$work/ready")"
console_password=$(head -c 18 /dev/urandom | base64 | tr '+/' 'xy')
printf '%s\n' "$console_password" > "$work/console.password"
site user add demo --role operator --password-from "$work/console.password"

agent() { "$bin/rewind-agent" "$@"; }
mount_dev() { # device dir
  mkdir -p "$2"; mount "$1" "$2"; mounts+=("$2")
}
umount_dev() {
  umount "$1"; local keep=(); for m in "${mounts[@]}"; do [ "$m" != "$1" ] && keep+=("$m"); done; mounts=("${keep[@]}")
}

step "protect a demo disk (a 256 MiB image) with the agent (rewind-agent run)"
disk=$work/disk.img
truncate -s 256M "$disk"
mkdir -p "$work/agent"
"$bin/rewind-agent" run --group demo --disk "sda=$disk" --target "$target" --tls-dir "$ca" \
  --agent-name demo-host --state-dir "$work/agent" --mount-dir "$work/agent-mnt" --links-dir "$work/dev" \
  2> "$work/agent.log" &
agent_pid=$!
for _ in $(seq 100); do [ -e "$work/dev/demo/sda" ] && break; sleep 0.1; done
[ -e "$work/dev/demo/sda" ] || { cat "$work/agent.log"; exit 1; }
dev=$(readlink -f "$work/dev/demo/sda")
echo "protected device: $work/dev/demo/sda -> $dev"
for _ in $(seq 100); do site groups | grep -q '^demo' && break; sleep 0.1; done
site policy create demo --rpo 30s --retention 1d >/dev/null
site policy assign demo --group demo

step "on the protected device: mkfs.ext4, write files, tag v1 (fsfreeze around the tag)"
mkfs.ext4 -q -F -L demo "$dev"
mount_dev "$dev" "$work/src"
echo "quarterly numbers: 42" > "$work/src/report.txt"
echo "hello from the protected host" > "$work/src/hello.txt"
cp -r /usr/share/doc/util-linux "$work/src/docs" 2>/dev/null || mkdir "$work/src/docs"
agent tag --state-dir "$work/agent" --name v1 --freeze "$work/src"

step "delete report.txt, write notes.txt, tag v2"
rm "$work/src/report.txt"
echo "report.txt was deleted by mistake" > "$work/src/notes.txt"
agent tag --state-dir "$work/agent" --name v2 --freeze "$work/src"
umount_dev "$work/src"
for _ in $(seq 300); do
  agent status --state-dir "$work/agent" --json | grep -q '"caught_up": *true' && break; sleep 0.1
done
agent status --state-dir "$work/agent"

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

step "test failover at v1 (writable copies over NBD and loop devices; replication goes on), cleanup"
rewind failover test demo --point tag:v1
rewind failover cleanup demo

step "planned failover: the agent drains and is fenced; demo/sda@live equals the source disk"
rewind failover planned demo
qemu-img compare -f raw -F raw "nbd+unix:///demo/sda@live?socket=$work/nbd.sock" "$disk"
for _ in $(seq 100); do
  agent status --state-dir "$work/agent" --json | grep -q '"fenced": *"' && break; sleep 0.1
done
agent status --state-dir "$work/agent" | grep -e "fenced:" -e "drained:"

step "the configuration server: the target and its group, seen through the site"
site target list
site groups
echo
echo "web console: $site_url/console/ (certificate from the demo's site CA: $ca/ca.crt)"
echo "login:       user demo, password $console_password"
if [ -t 0 ]; then
  read -r -p "press Enter to stop the demo and remove everything it made " _
fi

step "done: cleaning up"
