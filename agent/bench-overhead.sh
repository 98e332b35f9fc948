#!/usr/bin/env bash
# Write overhead of the agent: fio on the protected device (loop over the agent's FUSE file,
# replicating to a local rewind-mtd) against the same fio on a plain loop device in direct-io
# mode over a file on the same filesystem. Each job runs RUNS times; prints medians and ratios.
#
#   sudo agent/bench-overhead.sh            (root only; cleans up after itself)
#
# Environment: AGENT, MTD (binaries; default: target/release, built if missing), WORK_BASE
# (default /var/tmp), RUNS (default 3), RUNTIME (seconds per fio run, default 10), SIZE (default
# 2G), AGENT_ARGS (extra `rewind-agent run` flags, e.g. "--io-engine sync"), JOBS (default
# "rand seq"), PLAIN=0 (skip the plain loop runs when comparing agent settings).
set -euo pipefail

[ "$(id -u)" = 0 ] || { echo "bench-overhead.sh: needs root (loop devices, FUSE)" >&2; exit 1; }
for t in fio losetup python3; do
    command -v "$t" >/dev/null || { echo "bench-overhead.sh: needs $t" >&2; exit 1; }
done

ROOT=$(cd "$(dirname "$0")/.." && pwd)
RUNS=${RUNS:-3}
RUNTIME=${RUNTIME:-10}
SIZE=${SIZE:-2G}
AGENT_ARGS=${AGENT_ARGS:-}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
if [ -z "${AGENT:-}" ] || [ -z "${MTD:-}" ]; then
    (cd "$ROOT" && cargo build --release -p rewind-agent -p rewind-mtd) >&2
    AGENT=${AGENT:-$TARGET_DIR/release/rewind-agent}
    MTD=${MTD:-$TARGET_DIR/release/rewind-mtd}
fi

WORK=$(mktemp -d "${WORK_BASE:-/var/tmp}/rewind-overhead.XXXXXX")
LOOP=""
AGENT_PID=""
MTD_PID=""
cleanup() {
    set +e
    [ -n "$LOOP" ] && losetup -d "$LOOP"
    if [ -n "$AGENT_PID" ]; then
        kill -TERM "$AGENT_PID" 2>/dev/null
        for _ in $(seq 600); do kill -0 "$AGENT_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$AGENT_PID" 2>/dev/null
        wait "$AGENT_PID" 2>/dev/null
    fi
    # A killed agent leaves its loop device and mount behind.
    for l in $(losetup -j "$WORK/agent-mnt/d0" -O NAME -n 2>/dev/null); do losetup -d "$l"; done
    umount -l "$WORK/agent-mnt" 2>/dev/null
    if [ -n "$MTD_PID" ]; then
        kill -TERM "$MTD_PID" 2>/dev/null
        for _ in $(seq 300); do kill -0 "$MTD_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$MTD_PID" 2>/dev/null
        wait "$MTD_PID" 2>/dev/null
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "# $*" >&2; }

# Real blocks in both files (writes into holes or unwritten extents measure ext4's allocator).
log "writing two $SIZE images in $WORK"
for f in plain.img protected.img; do
    fallocate -l "$SIZE" "$WORK/$f"
    dd if=/dev/zero of="$WORK/$f" bs=1M count="$(($(stat -c %s "$WORK/$f") >> 20))" \
        oflag=direct conv=notrunc status=none
done

LOOP=$(losetup --find --show --direct-io=on "$WORK/plain.img")

"$MTD" serve --data-dir "$WORK/mtd-data" --unix "$WORK/mtd.sock" --ready-file "$WORK/mtd.ready" \
    --nbd-listen none --nbd-unix "$WORK/mtd-nbd.sock" --control "$WORK/mtd-control.sock" \
    </dev/null >/dev/null 2>"$WORK/mtd.log" &
MTD_PID=$!
for _ in $(seq 600); do [ -e "$WORK/mtd.ready" ] && break; sleep 0.1; done
[ -e "$WORK/mtd.ready" ] || { cat "$WORK/mtd.log" >&2; exit 1; }

mkdir -p "$WORK/state"
# shellcheck disable=SC2086
"$AGENT" run --group bench --disk "d0=$WORK/protected.img" --target "unix:$WORK/mtd.sock" \
    --agent-name bench --state-dir "$WORK/state" --mount-dir "$WORK/agent-mnt" \
    --links-dir "$WORK/links" $AGENT_ARGS </dev/null >/dev/null 2>"$WORK/agent.log" &
AGENT_PID=$!

status_field() {
    python3 -c 'import json,sys
try: s=json.load(open(sys.argv[1]))
except Exception: sys.exit(0)
print(eval(sys.argv[2], {}, {"s": s}))' "$WORK/state/status.json" "$1"
}
# Ready once the initial sync (it reads the zeros and sends nothing) is done.
for _ in $(seq 1200); do
    kill -0 "$AGENT_PID" 2>/dev/null || { cat "$WORK/agent.log" >&2; exit 1; }
    [ "$(status_field 's["sync"]')" = done ] && break
    sleep 0.1
done
[ "$(status_field 's["sync"]')" = done ] || { echo "agent not ready" >&2; cat "$WORK/agent.log" >&2; exit 1; }
DEV=$(status_field 's["disks"][0]["device"]')
log "plain loop $LOOP, protected $DEV (agent pid $AGENT_PID, rewind-mtd pid $MTD_PID)"

# fio_run DEV RW BS DEPTH -> IOPS (random) or MB/s (sequential) on stdout
fio_run() {
    fio --name=r --filename="$1" --rw="$2" --bs="$3" --ioengine=libaio --iodepth="$4" \
        --direct=1 --time_based --runtime="$RUNTIME" --size="$SIZE" --output-format=json |
        python3 -c 'import json,sys
w=json.load(sys.stdin)["jobs"][0]["write"]
print(round(w["iops"]) if sys.argv[1]=="randwrite" else round(w["bw_bytes"]/1e6))' "$2"
}

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

declare -A RESULT
declare -A JOB=([rand]="randwrite 4k 64 IOPS" [seq]="write 1M 32 MB/s")
for j in ${JOBS:-rand seq}; do
    # shellcheck disable=SC2086
    set -- ${JOB[$j]}
    for which in plain protected; do
        if [ "$which" = plain ] && [ "${PLAIN:-1}" = 0 ]; then
            RESULT[$1.plain]=1
            continue
        fi
        dev=$LOOP
        [ "$which" = protected ] && dev=$DEV
        vals=()
        for i in $(seq "$RUNS"); do
            v=$(fio_run "$dev" "$1" "$2" "$3")
            log "$1 bs=$2 QD$3 $which run $i: $v $4"
            vals+=("$v")
        done
        RESULT[$1.$which]=$(median "${vals[@]}")
    done
    ratio=$(python3 -c "print(round(${RESULT[$1.protected]} / ${RESULT[$1.plain]}, 2))")
    echo "$1 bs=$2 QD$3: plain loop ${RESULT[$1.plain]} $4, protected ${RESULT[$1.protected]} $4, ratio $ratio (median of $RUNS)"
done
