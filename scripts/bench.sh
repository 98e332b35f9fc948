#!/usr/bin/env bash
# Rewind benchmarks: measure rewind-mtd against fio baselines taken in the same run, on the same
# filesystem, and print one "bar" line per target ratio.
#
#   scripts/bench.sh apply [SIZE]    durable-apply throughput (SIZE default 256MiB)
#   scripts/bench.sh crash [ROUNDS]  the kill -9 crash test at length (default 100 rounds)
#   scripts/bench.sh views [SIZE] [RECORDS]  reading points: NBD, FUSE + loop, first block
#   scripts/bench.sh agent [SIZE]            the agent: write overhead, lag, initial sync
#   scripts/bench.sh failover [RUNS]         test failover to readable exports, two-VM plan RTO
#
# Environment: BENCH_RUNS (default 3: median reported), BENCH_TMP (default /var/tmp),
# BENCH_RAND_SECONDS (random-write time cap for fio and the daemon, default 20), CARGO_TARGET_DIR (default target/).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUNS=${BENCH_RUNS:-3}
TMP_BASE=${BENCH_TMP:-/var/tmp}
# Random 4 KiB runs last up to this long. Short bursts overstate this virtual disk's random IOPS
# (118k+ for a second or two, about 57k sustained, see shared/PLATFORM.md), so real measurements use
# SIZE >= 4GiB, which lets both fio and the daemon run for several seconds.
RAND_SECONDS=${BENCH_RAND_SECONDS:-20}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}

usage() {
    cat <<USAGE
usage: scripts/bench.sh COMMAND [ARGS]

commands:
  apply [SIZE]   rewind-mtd durable-apply throughput against fio on the same filesystem
                 (SIZE default 256MiB, the quick CI-sized run; use 4GiB for real measurements)
  crash [ROUNDS] kill -9 the daemon under load ROUNDS times (default 100) per io engine and check
                 that every acknowledged write survived
  agent [SIZE]   rewind-agent: fio write overhead against a plain loop device, replication lag
                 at 50 MB/s, initial sync of a half-full ext4 image against zstd -1 -T1
                 (SIZE default 1GiB; the issue's measuring size for the sync is 4GiB)
  views [SIZE] [RECORDS]
                 nbdcopy of a view against qemu-nbd on the same bytes (merged, 10% and 50% in the
                 journal), FUSE+loop sequential read against a plain loop device, and the time to
                 open a point and read its first block with RECORDS (default 1000000) in the journal
  failover [RUNS]
                 time from \`rewind failover test\` to a readable NBD export (against qemu-nbd
                 on the source image), and the RTO of a two-VM recovery plan in test mode
                 (against the same boots from plain image files)

environment: BENCH_RUNS=$RUNS BENCH_TMP=$TMP_BASE BENCH_RAND_SECONDS=$RAND_SECONDS
USAGE
}

die() { echo "bench: $*" >&2; exit 1; }
log() { echo "bench [+${SECONDS}s]: $*" >&2; }

# ---------------------------------------------------------------------------------------------
# Scratch directory and processes, cleaned up on any exit.

WORK=""
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]+"${PIDS[@]}"}"; do
        if kill -0 "$pid" 2>/dev/null; then
            kill -KILL "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
    if [[ -n "$WORK" && -d "$WORK" ]]; then
        rm -rf -- "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

make_workdir() {
    mkdir -p "$TMP_BASE"
    WORK=$(mktemp -d "$TMP_BASE/rewind-bench.XXXXXX")
}

# ---------------------------------------------------------------------------------------------
# Tools and binaries.

need_tool() { # need_tool COMMAND PACKAGE
    command -v "$1" >/dev/null 2>&1 && return 0
    log "installing $2"
    if [[ $(id -u) -eq 0 ]]; then
        { apt-get install -y "$2" >/dev/null 2>&1 ||
            { apt-get update >/dev/null 2>&1 && apt-get install -y "$2" >/dev/null 2>&1; }; } ||
            die "could not install $2"
    else
        die "$1 is missing; install the $2 package"
    fi
    command -v "$1" >/dev/null 2>&1 || die "$1 still missing after installing $2"
}

build() {
    log "building release binaries (cargo build --release -p rewind-mtd -p rewind-benches)"
    (cd "$ROOT" && cargo build --release -p rewind-mtd -p rewind-benches &&
        cargo build --release -p rewind-benches --example null-target) >&2 ||
        die "release build failed"
    MTD=$TARGET_DIR/release/rewind-mtd
    LOADGEN=$TARGET_DIR/release/rewind-loadgen
    NULL_TARGET=$TARGET_DIR/release/examples/null-target
    [[ -x "$MTD" ]] || die "$MTD not found after the build"
    [[ -x "$LOADGEN" ]] || die "$LOADGEN not found after the build"
    [[ -x "$NULL_TARGET" ]] || die "$NULL_TARGET not found after the build"
}

# ---------------------------------------------------------------------------------------------
# Small numeric helpers (awk, so fractions work).

to_bytes() { # 256MiB -> 268435456
    local s=$1 n u
    n=$(echo "$s" | sed -E 's/^([0-9]+).*/\1/')
    u=$(echo "$s" | sed -E 's/^[0-9]+//' | tr '[:upper:]' '[:lower:]')
    [[ "$n" =~ ^[0-9]+$ ]] || die "bad size $s"
    case "$u" in
        "" | b) echo "$n" ;;
        k | kib) echo $((n << 10)) ;;
        m | mib) echo $((n << 20)) ;;
        g | gib) echo $((n << 30)) ;;
        t | tib) echo $((n << 40)) ;;
        *) die "bad size unit in $s (use KiB, MiB, GiB)" ;;
    esac
}

med() { # med FILE: median of the numbers in FILE, one a line (lower middle for even counts)
    if [[ ! -s "$1" ]]; then
        echo "n/a"
        return
    fi
    sort -g "$1" | awk '{ v[NR] = $1 } END { if (NR == 0) print "n/a"; else print v[int((NR + 1) / 2)] }'
}

fmt() { # fmt NUMBER [DECIMALS]
    awk -v x="$1" -v d="${2:-0}" 'BEGIN { if (x == "n/a" || x == "") print "n/a"; else printf "%.*f\n", d, x }'
}

ratio() { # ratio A B -> A/B with two decimals
    awk -v a="$1" -v b="$2" 'BEGIN { if (a == "n/a" || b == "n/a" || b + 0 == 0) print "n/a"; else printf "%.2f\n", a / b }'
}

# ---------------------------------------------------------------------------------------------
# fio baselines.

fio_json() { # fio_json OUTFILE fio-args...
    local out=$1
    shift
    fio --output-format=json --output="$out" "$@" >/dev/null 2>"$out.err" ||
        die "fio failed: $(cat "$out.err")"
}

# fio_run RUN: sequential 1 MiB QD32 writes of SIZE, then random 4 KiB QD64 writes over the same
# (now fully written) file, capped at RAND_SECONDS. Appends to $WORK/fio-seq.mbs, fio-rand.mbs,
# fio-rand.iops.
fio_run() {
    local r=$1 file=$WORK/fio.dat
    rm -f "$file"
    fio_json "$WORK/fio-seq-$r.json" --name=seq1m --filename="$file" --ioengine=io_uring \
        --direct=1 --rw=write --bs=1M --iodepth=32 --size="$SIZE_BYTES" --end_fsync=1
    jq '.jobs[0].write.bw_bytes / 1e6' "$WORK/fio-seq-$r.json" >>"$WORK/fio-seq.mbs"
    fio_json "$WORK/fio-rand-$r.json" --name=rand4k --filename="$file" --ioengine=io_uring \
        --direct=1 --rw=randwrite --bs=4k --iodepth=64 --size="$SIZE_BYTES" \
        --runtime="$RAND_SECONDS" --randrepeat=0 --end_fsync=1
    jq '.jobs[0].write.bw_bytes / 1e6' "$WORK/fio-rand-$r.json" >>"$WORK/fio-rand.mbs"
    jq '.jobs[0].write.iops' "$WORK/fio-rand-$r.json" >>"$WORK/fio-rand.iops"
    rm -f "$file"
}

# ---------------------------------------------------------------------------------------------
# The daemon, fed by rewind-loadgen.

MTD_PID=""
MTD_ADDR=""

start_mtd() { # start_mtd DATA_DIR LOG
    local dir=$1 logf=$2 ready=$1.ready i
    mkdir -p "$dir"
    rm -f "$ready"
    "$MTD" serve --data-dir "$dir" --listen 127.0.0.1:0 --insecure --io-engine uring \
        --nbd-listen none --nbd-unix none --control "$dir.control.sock" \
        --ready-file "$ready" >"$logf" 2>&1 &
    MTD_PID=$!
    PIDS+=("$MTD_PID")
    for i in $(seq 1 300); do
        if [[ -s "$ready" ]]; then
            MTD_ADDR=$(head -n1 "$ready" | tr -d '[:space:]')
            [[ -n "$MTD_ADDR" ]] && return 0
        fi
        kill -0 "$MTD_PID" 2>/dev/null || die "rewind-mtd exited during start-up: $(tail -n 20 "$logf")"
        sleep 0.1
    done
    die "rewind-mtd did not become ready within 30s: $(tail -n 20 "$logf")"
}

stop_mtd() {
    local i
    [[ -n "$MTD_PID" ]] || return 0
    kill -TERM "$MTD_PID" 2>/dev/null || true
    for i in $(seq 1 100); do
        kill -0 "$MTD_PID" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$MTD_PID" 2>/dev/null; then
        log "rewind-mtd (pid $MTD_PID) ignored SIGTERM for 10s; killing it"
        kill -KILL "$MTD_PID" 2>/dev/null || true
    fi
    wait "$MTD_PID" 2>/dev/null || true
    MTD_PID=""
}

cpu_ticks() { # utime + stime of a pid, in clock ticks
    awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"
}

# mtd_run NAME RUN loadgen-workload-args...: one fresh daemon, one loadgen run. Appends the
# MB/s, CPU s/GiB, ack latencies and index figures to $WORK/NAME.*.
mtd_run() {
    local name=$1 r=$2
    shift 2
    local dir=$WORK/mtd-$name-$r out=$WORK/loadgen-$name-$r.json cpu0 cpu1 hz bytes
    start_mtd "$dir" "$WORK/mtd-$name-$r.log"
    cpu0=$(cpu_ticks "$MTD_PID")
    if ! "$LOADGEN" run --connect "tcp:$MTD_ADDR" --group bench --seed "$r" --json "$@" \
        >"$out" 2>"$out.err"; then
        die "rewind-loadgen ($name run $r) failed: $(tail -n 5 "$out.err"); daemon log: $(tail -n 10 "$WORK/mtd-$name-$r.log")"
    fi
    cpu1=$(cpu_ticks "$MTD_PID")
    stop_mtd
    hz=$(getconf CLK_TCK)
    bytes=$(jq '.bytes' "$out")
    jq '.mb_per_s' "$out" >>"$WORK/$name.mbs"
    jq '.ack_latency_p50_ms' "$out" >>"$WORK/$name.p50"
    jq '.ack_latency_p99_ms' "$out" >>"$WORK/$name.p99"
    awk -v c=$((cpu1 - cpu0)) -v hz="$hz" -v b="$bytes" \
        'BEGIN { printf "%.3f\n", (c / hz) / (b / 1073741824) }' >>"$WORK/$name.cpu"
    # Index memory per extent, if the daemon's inspector reports it.
    local inspect=$WORK/inspect-$name-$r.json ib ex
    if "$MTD" inspect --data-dir "$dir" --json >"$inspect" 2>/dev/null; then
        ib=$(jq '[.. | objects | .index_bytes? // empty | numbers] | add // empty' "$inspect" 2>/dev/null || true)
        ex=$(jq '[.. | objects | .extents? // empty | numbers] | add // empty' "$inspect" 2>/dev/null || true)
        if [[ -n "$ib" && -n "$ex" && "$ex" != 0 ]]; then
            awk -v a="$ib" -v b="$ex" 'BEGIN { printf "%.1f\n", a / b }' >>"$WORK/$name.idx"
        fi
    fi
    rm -rf -- "$dir"
}

# null_run NAME loadgen-workload-args...: the load generator against a target that acks without
# storing anything: its own ceiling on this machine (one run).
null_run() {
    local name=$1
    shift
    local ready=$WORK/null.ready out=$WORK/null-$name.json pid i addr=""
    rm -f "$ready"
    "$NULL_TARGET" 127.0.0.1:0 "$ready" >/dev/null 2>&1 &
    pid=$!
    PIDS+=("$pid")
    for i in $(seq 1 100); do
        [[ -s "$ready" ]] && addr=$(head -n1 "$ready") && break
        sleep 0.05
    done
    [[ -n "$addr" ]] || die "null-target did not start"
    "$LOADGEN" run --connect "tcp:$addr" --group null --seed 1 --json "$@" >"$out" 2>"$out.err" ||
        die "rewind-loadgen against null-target failed: $(tail -n 5 "$out.err")"
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    jq '.mb_per_s' "$out" >"$WORK/null-$name.mbs"
}

cmd_apply() {
    local size=${1:-256MiB} r
    SIZE_BYTES=$(to_bytes "$size")
    ((SIZE_BYTES >= 16 << 20)) || die "SIZE must be at least 16MiB"
    ((SIZE_BYTES % (1 << 20) == 0)) || die "SIZE must be a multiple of 1MiB"
    need_tool fio fio
    need_tool jq jq
    build
    make_workdir
    log "scratch dir $WORK ($(df -h --output=source,fstype "$WORK" | tail -n1 | tr -s ' '))"

    # Random payloads travel as stored zstd blocks (what zstd -1 makes of incompressible data)
    # so the load generator, which shares the two cores, costs the daemon as little as possible.
    local seq_args=(--disk "sda:$SIZE_BYTES" --pattern seq --record-size 1MiB --total "$SIZE_BYTES"
        --payload random --compression store)
    # Random 4 KiB: like fio, SIZE bytes or RAND_SECONDS, whichever comes first.
    local rand_args=(--disk "sda:$SIZE_BYTES" --pattern random --record-size 4KiB
        --total "$SIZE_BYTES" --duration "${RAND_SECONDS}s" --payload random --compression store)
    local comp_args=(--disk "sda:$SIZE_BYTES" --pattern seq --record-size 1MiB
        --total "$SIZE_BYTES" --payload compressible --threads 2)

    log "load generator ceiling (null target)"
    null_run seq1m "${seq_args[@]}"
    null_run rand4k "${rand_args[@]}"
    null_run comp1m "${comp_args[@]}"
    for r in $(seq 1 "$RUNS"); do
        log "run $r/$RUNS: fio"
        fio_run "$r"
        log "run $r/$RUNS: rewind-mtd seq 1MiB"
        mtd_run seq1m "$r" "${seq_args[@]}"
        log "run $r/$RUNS: rewind-mtd random 4KiB"
        mtd_run rand4k "$r" "${rand_args[@]}"
        log "run $r/$RUNS: rewind-mtd seq 1MiB compressible"
        mtd_run comp1m "$r" "${comp_args[@]}"
    done

    local fio_seq fio_rand fio_iops seq rand comp
    fio_seq=$(med "$WORK/fio-seq.mbs")
    fio_rand=$(med "$WORK/fio-rand.mbs")
    fio_iops=$(med "$WORK/fio-rand.iops")
    seq=$(med "$WORK/seq1m.mbs")
    rand=$(med "$WORK/rand4k.mbs")
    comp=$(med "$WORK/comp1m.mbs")
    local idx="n/a"
    if [[ -s "$WORK/seq1m.idx" || -s "$WORK/rand4k.idx" ]]; then
        idx="$(med "$WORK/seq1m.idx") (seq 1MiB), $(med "$WORK/rand4k.idx") (rand 4KiB)"
    fi

    echo
    echo "apply benchmark: SIZE=$size, $RUNS runs each (median), scratch on $(df --output=fstype "$WORK" | tail -n1)"
    printf '%-44s %12s %12s %8s\n' "measurement" "MB/s" "fio MB/s" "ratio"
    printf '%-44s %12s %12s %8s\n' "fio seq write 1MiB QD32 (io_uring, direct)" "$(fmt "$fio_seq")" "" ""
    printf '%-44s %12s %12s %8s\n' "fio rand write 4KiB QD64 ($(fmt "$fio_iops") IOPS)" "$(fmt "$fio_rand")" "" ""
    printf '%-44s %12s %12s %8s\n' "mtd apply seq 1MiB, random (stored)" "$(fmt "$seq")" "$(fmt "$fio_seq")" "$(ratio "$seq" "$fio_seq")x"
    printf '%-44s %12s %12s %8s\n' "mtd apply rand 4KiB, random (stored)" "$(fmt "$rand")" "$(fmt "$fio_rand")" "$(ratio "$rand" "$fio_rand")x"
    printf '%-44s %12s %12s %8s\n' "mtd apply seq 1MiB, compressible (zstd -1)" "$(fmt "$comp")" "$(fmt "$fio_seq")" "$(ratio "$comp" "$fio_seq")x"
    echo
    printf '%-44s %12s %12s %12s\n' "daemon" "seq 1MiB" "rand 4KiB" "compressible"
    printf '%-44s %12s %12s %12s\n' "load generator ceiling, null target (MB/s)" \
        "$(fmt "$(med "$WORK/null-seq1m.mbs")")" "$(fmt "$(med "$WORK/null-rand4k.mbs")")" "$(fmt "$(med "$WORK/null-comp1m.mbs")")"
    printf '%-44s %12s %12s %12s\n' "CPU seconds per GiB applied" \
        "$(med "$WORK/seq1m.cpu")" "$(med "$WORK/rand4k.cpu")" "$(med "$WORK/comp1m.cpu")"
    printf '%-44s %12s %12s %12s\n' "ack latency p50 (ms)" \
        "$(fmt "$(med "$WORK/seq1m.p50")" 2)" "$(fmt "$(med "$WORK/rand4k.p50")" 2)" "$(fmt "$(med "$WORK/comp1m.p50")" 2)"
    printf '%-44s %12s %12s %12s\n' "ack latency p99 (ms)" \
        "$(fmt "$(med "$WORK/seq1m.p99")" 2)" "$(fmt "$(med "$WORK/rand4k.p99")" 2)" "$(fmt "$(med "$WORK/comp1m.p99")" 2)"
    echo "index memory per extent (bytes): $idx"
    echo
    echo "bar apply-seq-1m: $(ratio "$seq" "$fio_seq")x (want >= 0.8)"
    echo "bar apply-rand-4k: $(ratio "$rand" "$fio_rand")x (want >= 2)"
}

# ---------------------------------------------------------------------------------------------
# Views: reading recovery points through NBD and through the FUSE tree + loop, against qemu-nbd and
# a plain loop device serving the same bytes from a raw file.

VIEWS_PID=""
VIEWS_DIR=""
VLOOPS=()

views_cleanup() {
    local d
    for d in "${VLOOPS[@]+"${VLOOPS[@]}"}"; do
        losetup -d "$d" 2>/dev/null || true
    done
    VLOOPS=()
    if [[ -n "$VIEWS_PID" ]] && kill -0 "$VIEWS_PID" 2>/dev/null; then
        kill -TERM "$VIEWS_PID" 2>/dev/null || true
        wait "$VIEWS_PID" 2>/dev/null || true
    fi
    if [[ -n "$VIEWS_DIR" ]] && mountpoint -q "$VIEWS_DIR" 2>/dev/null; then
        umount -l "$VIEWS_DIR" 2>/dev/null || true
    fi
    cleanup
}

rw() { "$REWIND" --control "$WORK/control.sock" "$@"; }

now_s() { date +%s.%N; }

# Every read run starts cold, ours and the baseline alike: both read through the page cache, and
# a file read just before (the dump, the previous run) would otherwise be served from memory.
drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches; }

# nbdcopy_mbs URI: read a whole export into null:, MB/s.
nbdcopy_mbs() {
    local t0 t1
    t0=$(now_s)
    nbdcopy "$1" null: || die "nbdcopy $1 failed"
    t1=$(now_s)
    awk -v b="$SIZE_BYTES" -v a="$t0" -v z="$t1" 'BEGIN { printf "%.1f\n", b / (z - a) / 1e6 }'
}

# fio_read_mbs DEVICE: sequential 1 MiB direct reads of a block device, MB/s.
fio_read_mbs() {
    fio --output-format=json --name=seqread --filename="$1" --ioengine=io_uring --direct=1 \
        --rw=read --bs=1M --iodepth=16 --size="$SIZE_BYTES" --readonly 2>"$WORK/fio-read.err" |
        jq '.jobs[0].read.bw_bytes / 1e6' || die "fio read of $1 failed: $(cat "$WORK/fio-read.err")"
}

# nbd_vs_qemu LABEL: nbdcopy of bench/sda (latest) against qemu-nbd serving a dump of the same
# point, RUNS times each, alternating. Appends to $WORK/LABEL.ratio.
nbd_vs_qemu() {
    local label=$1 r qpid raw=$WORK/raw.img qsock=$WORK/qemu-nbd.sock ours theirs
    "$MTD" dump --data-dir "$WORK/data" --group bench --disk sda --at latest -o "$raw" 2>/dev/null ||
        die "dump failed"
    rm -f "$qsock"
    qemu-nbd --read-only --format=raw --persistent --shared=16 --aio=io_uring \
        --socket="$qsock" "$raw" &
    qpid=$!
    PIDS+=("$qpid")
    for r in $(seq 1 100); do [[ -S "$qsock" ]] && break; sleep 0.05; done
    [[ -S "$qsock" ]] || die "qemu-nbd did not start"
    for r in $(seq 1 "$RUNS"); do
        drop_caches
        ours=$(nbdcopy_mbs "nbd+unix:///bench/sda?socket=$WORK/nbd.sock")
        drop_caches
        theirs=$(nbdcopy_mbs "nbd+unix:///?socket=$qsock")
        echo "$ours" >>"$WORK/$label.ours"
        echo "$theirs" >>"$WORK/$label.theirs"
        ratio "$ours" "$theirs" >>"$WORK/$label.ratio"
        log "$label run $r: rewind $ours MB/s, qemu-nbd $theirs MB/s"
    done
    kill -TERM "$qpid" 2>/dev/null || true
    wait "$qpid" 2>/dev/null || true
    rm -f "$raw"
}

# views_start RETENTION: (re)start the daemon with NBD, the view tree and the control API.
views_start() {
    local r
    if [[ -n "$VIEWS_PID" ]]; then
        kill -TERM "$VIEWS_PID" 2>/dev/null || true
        wait "$VIEWS_PID" 2>/dev/null || true
    fi
    rm -f "$WORK/ready"
    "$MTD" serve --data-dir "$WORK/data" --unix "$WORK/agents.sock" --nbd-listen none \
        --nbd-unix "$WORK/nbd.sock" --views "$VIEWS_DIR" --control "$WORK/control.sock" \
        --retention "$1" --seal-after 1s --merge-interval 200ms --ready-file "$WORK/ready" \
        >>"$WORK/mtd.log" 2>&1 &
    VIEWS_PID=$!
    for r in $(seq 1 600); do [[ -s "$WORK/ready" ]] && break; sleep 0.1; done
    [[ -s "$WORK/ready" ]] || die "rewind-mtd did not start: $(tail -n 20 "$WORK/mtd.log")"
}

journal_bytes() { rw --json groups | jq '[.groups[] | select(.name == "bench") | .journal_bytes] | add'; }

cmd_views() {
    local size=${1:-256MiB} records=${2:-1000000} r dev base_dev t0 t1
    SIZE_BYTES=$(to_bytes "$size")
    ((SIZE_BYTES >= 16 << 20)) || die "SIZE must be at least 16MiB"
    ((SIZE_BYTES % (1 << 20) == 0)) || die "SIZE must be a multiple of 1MiB"
    need_tool fio fio
    need_tool jq jq
    need_tool nbdcopy libnbd-bin
    need_tool qemu-nbd qemu-utils
    build
    REWIND=$TARGET_DIR/release/rewind
    make_workdir
    trap views_cleanup EXIT
    VIEWS_DIR=$WORK/views
    log "scratch dir $WORK"

    # A daemon whose new groups keep 1 s of history, so the first full write merges into the base.
    views_start 1s

    local lg=("$LOADGEN" run --connect "unix:$WORK/agents.sock" --group bench --disk "sda:$SIZE_BYTES"
        --pattern seq --record-size 1MiB --payload random --compression store)
    log "writing $size and waiting for it to merge into the base image"
    "${lg[@]}" --total "$SIZE_BYTES" >/dev/null 2>"$WORK/lg.err" || die "loadgen: $(tail -n 5 "$WORK/lg.err")"
    for r in $(seq 1 600); do [[ $(journal_bytes) == 0 ]] && break; sleep 0.2; done
    [[ $(journal_bytes) == 0 ]] || die "the journal did not merge"
    rw retention bench 24h >/dev/null

    log "nbdcopy, latest right after merge"
    nbd_vs_qemu merged

    log "sequential read through FUSE + loop against a loop device over the same raw file"
    "$MTD" dump --data-dir "$WORK/data" --group bench --disk sda --at latest -o "$WORK/raw.img" 2>/dev/null
    dev=$(rw attach bench/sda | head -n1)
    VLOOPS+=("$dev")
    base_dev=$(losetup --find --show --read-only --direct-io=on "$WORK/raw.img")
    VLOOPS+=("$base_dev")
    for r in $(seq 1 "$RUNS"); do
        local ours theirs
        drop_caches
        ours=$(fio_read_mbs "$dev")
        drop_caches
        theirs=$(fio_read_mbs "$base_dev")
        ratio "$ours" "$theirs" >>"$WORK/loop.ratio"
        echo "$ours" >>"$WORK/loop.ours"
        echo "$theirs" >>"$WORK/loop.theirs"
        log "loop run $r: FUSE+loop $ours MB/s, plain loop $theirs MB/s"
    done
    rw detach "$dev" >/dev/null
    losetup -d "$base_dev"
    VLOOPS=()
    rm -f "$WORK/raw.img"

    log "10% of the disk in the journal"
    "${lg[@]}" --total $((SIZE_BYTES + SIZE_BYTES / 10)) >/dev/null 2>"$WORK/lg.err" || die "loadgen: $(tail -n 5 "$WORK/lg.err")"
    nbd_vs_qemu journal10
    log "50% of the disk in the journal"
    "${lg[@]}" --total $((SIZE_BYTES + SIZE_BYTES / 2)) >/dev/null 2>"$WORK/lg.err" || die "loadgen: $(tail -n 5 "$WORK/lg.err")"
    nbd_vs_qemu journal50

    log "first block of a point with $records records in the journal"
    views_start 24h
    local fb_size=$((records * 4096 / 8))
    "$LOADGEN" run --connect "unix:$WORK/agents.sock" --group fb --disk "sda:$fb_size" \
        --pattern random --record-size 4KiB --payload random --compression store \
        --total $((records * 4096)) >/dev/null 2>"$WORK/lg.err" || die "loadgen: $(tail -n 5 "$WORK/lg.err")"
    for r in $(seq 1 $((RUNS * 3))); do
        local s=$(((RANDOM * 32768 + RANDOM) % records + 1))
        drop_caches
        t0=$(now_s)
        dd if="$VIEWS_DIR/fb/sda/at/seq:$s.img" of=/dev/null bs=4096 count=1 iflag=direct status=none ||
            die "reading the first block of fb/sda at seq:$s failed"
        t1=$(now_s)
        awk -v a="$t0" -v z="$t1" 'BEGIN { printf "%.2f\n", (z - a) * 1000 }' >>"$WORK/first.ms"
    done
    local extents
    extents=$(rw --json groups | jq '[.groups[] | select(.name == "fb") | .extents] | add')

    echo
    echo "views benchmark: SIZE=$size, $RUNS runs each (median)"
    printf '%-52s %12s %12s %8s\n' "measurement" "rewind" "baseline" "ratio"
    printf '%-52s %12s %12s %8s\n' "nbdcopy latest after merge (MB/s) vs qemu-nbd" "$(med "$WORK/merged.ours")" "$(med "$WORK/merged.theirs")" "$(med "$WORK/merged.ratio")x"
    printf '%-52s %12s %12s %8s\n' "nbdcopy latest, 10% in journal (MB/s) vs qemu-nbd" "$(med "$WORK/journal10.ours")" "$(med "$WORK/journal10.theirs")" "$(med "$WORK/journal10.ratio")x"
    printf '%-52s %12s %12s %8s\n' "nbdcopy latest, 50% in journal (MB/s) vs qemu-nbd" "$(med "$WORK/journal50.ours")" "$(med "$WORK/journal50.theirs")" "$(med "$WORK/journal50.ratio")x"
    printf '%-52s %12s %12s %8s\n' "seq read 1MiB, FUSE+loop vs loop over raw (MB/s)" "$(fmt "$(med "$WORK/loop.ours")" 1)" "$(fmt "$(med "$WORK/loop.theirs")" 1)" "$(med "$WORK/loop.ratio")x"
    echo "first block of a random point, $extents extents in the journal: $(med "$WORK/first.ms") ms (median of $((RUNS * 3)))"
    echo
    echo "bar nbdcopy-merged: $(med "$WORK/merged.ratio")x (want >= 1.0)"
    echo "bar fuse-loop-seq-read: $(med "$WORK/loop.ratio")x (want >= 0.8)"
    echo "bar first-block-ms: $(med "$WORK/first.ms") (want < 50)"
}

# ---------------------------------------------------------------------------------------------
# The source agent: write overhead against a plain loop device, replication lag, initial sync rate.

AGENT_PIDS=()
AGENT_MOUNTS=()

agent_cleanup() {
    agent_stop_all
    cleanup
}

agent_stop_all() {
    local p m
    for p in "${AGENT_PIDS[@]+"${AGENT_PIDS[@]}"}"; do
        kill -TERM "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    for m in "${AGENT_MOUNTS[@]+"${AGENT_MOUNTS[@]}"}"; do
        mountpoint -q "$m" 2>/dev/null && umount -l "$m" 2>/dev/null
    done
    for d in "${VLOOPS[@]+"${VLOOPS[@]}"}"; do losetup -d "$d" 2>/dev/null || true; done
}

AGENT_PID=""
# agent_start NAME IMAGE [ARGS...]: protect IMAGE as group NAME disk sda; sets AGENT_PID,
# AGENT_STATE, AGENT_DEV.
agent_start() {
    local name=$1 img=$2 i
    shift 2
    AGENT_STATE=$WORK/agent-$name
    mkdir -p "$AGENT_STATE"
    "$AGENT" run --group "$name" --disk "sda=$img" --target "unix:$WORK/agents.sock" \
        --state-dir "$AGENT_STATE" --mount-dir "$WORK/agent-mnt-$name" --links-dir "$WORK/dev" "$@" \
        >"$WORK/agent-$name.out" 2>"$WORK/agent-$name.log" &
    AGENT_PID=$!
    AGENT_PIDS+=("$AGENT_PID")
    AGENT_MOUNTS+=("$WORK/agent-mnt-$name")
    for i in $(seq 1 300); do [[ -e "$WORK/dev/$name/sda" ]] && break; sleep 0.05; done
    [[ -e "$WORK/dev/$name/sda" ]] || die "rewind-agent did not start: $(tail -n 5 "$WORK/agent-$name.log")"
    AGENT_DEV=$(readlink -f "$WORK/dev/$name/sda")
}

agent_stop() {
    kill -TERM "$AGENT_PID" 2>/dev/null || true
    wait "$AGENT_PID" 2>/dev/null || true
}

agent_status() { jq -r "$1" "$AGENT_STATE/status.json" 2>/dev/null || echo ""; }

# wait_synced LIMIT_S: until the initial sync is done (or not needed) and everything is acked.
wait_synced() {
    local i s
    for i in $(seq 1 $(($1 * 20))); do
        s=$(agent_status '.sync + " " + (.caught_up | tostring)')
        [[ "$s" == "done true" || "$s" == "not-needed true" ]] && return 0
        sleep 0.05
    done
    die "the agent did not finish its sync within $1 s (status: $s)"
}

# fio_write_mbs DEVICE MODE: 10 s of direct writes (seq: 1 MiB QD32, rand: 4 KiB QD64), MB/s.
fio_write_mbs() {
    local args=(--rw=write --bs=1M --iodepth=32)
    [[ $2 == rand ]] && args=(--rw=randwrite --bs=4k --iodepth=64)
    fio --output-format=json --name=w --filename="$1" --ioengine=libaio --direct=1 "${args[@]}" \
        --time_based --runtime="${AGENT_FIO_SECONDS:-10}" --size="$SIZE_BYTES" 2>"$WORK/fio.err" |
        jq '.jobs[0].write.bw_bytes / 1e6' || die "fio on $1 failed: $(cat "$WORK/fio.err")"
}

cmd_agent() {
    local size=${1:-1GiB} r t0 t1 plain_dev
    SIZE_BYTES=$(to_bytes "$size")
    ((SIZE_BYTES >= 64 << 20)) || die "SIZE must be at least 64MiB"
    # Images, spool, the target's bases and a journal that keeps every overhead run (a short
    # retention would have the target merging during the runs): about 12 times SIZE.
    local free_kb
    free_kb=$(df -Pk "$TMP_BASE" | awk 'NR == 2 { print $4 }')
    ((free_kb * 1024 >= 12 * SIZE_BYTES)) ||
        die "bench agent $size needs about $((12 * SIZE_BYTES >> 30)) GiB free in $TMP_BASE; $((free_kb >> 20)) GiB are"
    need_tool fio fio
    need_tool jq jq
    need_tool zstd zstd
    log "building release binaries (cargo build --release -p rewind-mtd -p rewind-agent)"
    (cd "$ROOT" && cargo build --release -p rewind-mtd -p rewind-agent) >&2 || die "build failed"
    MTD=$TARGET_DIR/release/rewind-mtd
    AGENT=$TARGET_DIR/release/rewind-agent
    make_workdir
    trap agent_cleanup EXIT
    "$MTD" serve --data-dir "$WORK/data" --unix "$WORK/agents.sock" --nbd-listen none --nbd-unix none \
        --control "$WORK/control.sock" --ready-file "$WORK/ready" >"$WORK/mtd.log" 2>&1 &
    PIDS+=($!)
    for r in $(seq 1 300); do [[ -s "$WORK/ready" ]] && break; sleep 0.1; done
    [[ -s "$WORK/ready" ]] || die "rewind-mtd did not start: $(tail -n 20 "$WORK/mtd.log")"

    log "initial sync of a $size ext4 image, half full, against zstd -1 -T1 on the same bytes"
    local img=$WORK/sync.img mnt=$WORK/fill
    truncate -s "$SIZE_BYTES" "$img"
    mkfs.ext4 -q -F "$img"
    mkdir -p "$mnt"
    mount -o loop "$img" "$mnt"
    AGENT_MOUNTS+=("$mnt")
    # Real file bytes (a tar of /usr/lib, cut at half the disk), as compressible as a system disk.
    tar -cf - -C /usr/lib . 2>/dev/null | head -c $((SIZE_BYTES / 2)) >"$mnt/usr-lib.tar" || true
    log "filled to $(df --output=pcent "$mnt" | tail -n1 | tr -d ' ')"
    umount "$mnt"
    drop_caches
    t0=$(now_s)
    zstd -1 -T1 -c "$img" >/dev/null
    t1=$(now_s)
    local zstd_mbs
    zstd_mbs=$(awk -v b="$SIZE_BYTES" -v a="$t0" -v z="$t1" 'BEGIN { printf "%.1f\n", b / (z - a) / 1e6 }')
    # The bar compares like with like: every batch at level 1 (--fixed-level). By default the
    # agent compresses only while the link is the bottleneck, which a local target never is.
    local sync_mbs sync_default_mbs
    drop_caches
    t0=$(now_s)
    agent_start sync "$img" --fixed-level
    wait_synced 600
    t1=$(now_s)
    agent_stop
    sync_mbs=$(awk -v b="$SIZE_BYTES" -v a="$t0" -v z="$t1" 'BEGIN { printf "%.1f\n", b / (z - a) / 1e6 }')
    drop_caches
    t0=$(now_s)
    agent_start syncdefault "$img"
    wait_synced 600
    t1=$(now_s)
    agent_stop
    sync_default_mbs=$(awk -v b="$SIZE_BYTES" -v a="$t0" -v z="$t1" 'BEGIN { printf "%.1f\n", b / (z - a) / 1e6 }')
    log "initial sync $sync_mbs MB/s of disk at level 1 ($sync_default_mbs MB/s with the default adaptive level), zstd -1 -T1 $zstd_mbs MB/s"
    rm -f "$img"

    log "write overhead: fio on the protected device against a plain loop device (direct-io)"
    truncate -s "$SIZE_BYTES" "$WORK/prot.img" "$WORK/plain.img"
    agent_start prot "$WORK/prot.img"
    wait_synced 120
    plain_dev=$(losetup --find --show --direct-io=on "$WORK/plain.img")
    VLOOPS+=("$plain_dev")
    for r in $(seq 1 "$RUNS"); do
        for mode in seq rand; do
            local ours theirs
            # Each run starts on a quiet machine: the agent caught up (a resync after bitmap
            # mode would otherwise slow the baseline down).
            wait_synced 600
            theirs=$(fio_write_mbs "$plain_dev" "$mode")
            wait_synced 600
            ours=$(fio_write_mbs "$AGENT_DEV" "$mode")
            echo "$ours" >>"$WORK/w-$mode.ours"
            echo "$theirs" >>"$WORK/w-$mode.theirs"
            ratio "$ours" "$theirs" >>"$WORK/w-$mode.ratio"
            log "$mode run $r: protected $ours MB/s, plain loop $theirs MB/s"
        done
    done

    local dropped
    dropped=$(agent_status '.dropped_writes')
    log "writes the overhead runs left to bitmap mode (memory and spool full): $dropped"

    log "replication lag under 50 MB/s of writes (the agent's own figures: each ack's oldest record, last 10 s)"
    for r in $(seq 1 "$RUNS"); do
        wait_synced 300
        fio --name=lag --filename="$AGENT_DEV" --ioengine=libaio --direct=1 --rw=randwrite --bs=64k \
            --iodepth=8 --rate=50m --time_based --runtime="${AGENT_LAG_SECONDS:-15}" \
            --size="$SIZE_BYTES" >/dev/null 2>"$WORK/fio.err" || die "fio failed: $(cat "$WORK/fio.err")"
        # The status is rewritten every 200 ms; read one written after fio ended.
        sleep 0.3
        agent_status '.lag_ms_p50' >>"$WORK/lag.p50"
        agent_status '.lag_ms_p99' >>"$WORK/lag.p99"
        log "lag run $r: p50 $(tail -n1 "$WORK/lag.p50") ms, p99 $(tail -n1 "$WORK/lag.p99") ms, bitmap mode: $(agent_status '.bitmap_mode')"
    done
    local p50 p99
    p50=$(med "$WORK/lag.p50")
    p99=$(med "$WORK/lag.p99")
    agent_stop

    echo
    echo "agent benchmark: SIZE=$size, $RUNS runs each (median)"
    printf '%-52s %12s %12s %8s\n' "measurement" "agent" "baseline" "ratio"
    printf '%-52s %12s %12s %8s\n' "seq write 1MiB QD32 (MB/s) vs plain loop" "$(fmt "$(med "$WORK/w-seq.ours")" 1)" "$(fmt "$(med "$WORK/w-seq.theirs")" 1)" "$(med "$WORK/w-seq.ratio")x"
    printf '%-52s %12s %12s %8s\n' "rand write 4KiB QD64 (MB/s) vs plain loop" "$(fmt "$(med "$WORK/w-rand.ours")" 1)" "$(fmt "$(med "$WORK/w-rand.theirs")" 1)" "$(med "$WORK/w-rand.ratio")x"
    printf '%-52s %12s %12s %8s\n' "initial sync at level 1, half-full ext4 (MB/s) vs zstd -1 -T1" "$sync_mbs" "$zstd_mbs" "$(ratio "$sync_mbs" "$zstd_mbs")x"
    printf '%-52s %12s %12s %8s\n' "initial sync, default adaptive level (MB/s) vs zstd -1 -T1" "$sync_default_mbs" "$zstd_mbs" "$(ratio "$sync_default_mbs" "$zstd_mbs")x"
    echo "replication lag at 50 MB/s: p50 ${p50} ms, p99 ${p99} ms (median of $RUNS runs; the agent measures each ack's oldest record)"
    echo "writes dropped to bitmap mode during the overhead runs: $dropped"
    echo
    echo "bar agent-seq-write: $(med "$WORK/w-seq.ratio")x (want >= 0.8)"
    echo "bar agent-rand-write-4k: $(med "$WORK/w-rand.ratio")x (want >= 0.5)"
    echo "bar agent-lag-p99-ms: $p99 (want < 1000)"
    echo "bar agent-initial-sync: $(ratio "$sync_mbs" "$zstd_mbs")x (want >= 0.7)"
}

# The crash test, at length: mtd/tests/crash.rs (rewind-loadgen run --reconnect --state FILE
# against a daemon that is kill -9'd and restarted ROUNDS times, then rewind-mtd dump and
# rewind-loadgen verify at several acked points), with both io engines.
cmd_crash() {
    local rounds=${1:-100}
    [[ "$rounds" =~ ^[0-9]+$ && "$rounds" -gt 0 ]] || die "crash: ROUNDS must be a positive number"
    log "crash test: $rounds kill -9 rounds per io engine"
    cd "$ROOT"
    # The test runs the rewind-loadgen binary from the same target directory.
    cargo build -p rewind-benches >&2 || die "build failed"
    REWIND_CRASH_ROUNDS=$rounds cargo test -p rewind-mtd --test crash crash_kill9 -- \
        --nocapture --test-threads=1
}

# shellcheck source=scripts/bench-failover.sh
source "$ROOT/scripts/bench-failover.sh"

main() {
    local cmd=${1:-}
    [[ $# -gt 0 ]] && shift
    case "$cmd" in
        apply) cmd_apply "$@" ;;
        crash) cmd_crash "$@" ;;
        views) cmd_views "$@" ;;
        agent) cmd_agent "$@" ;;
        failover) cmd_failover "$@" ;;
        "" | -h | --help | help) usage ;;
        *)
            usage >&2
            exit 2
            ;;
    esac
}

main "$@"
