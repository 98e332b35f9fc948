# Sourced by scripts/bench.sh: `scripts/bench.sh failover [RUNS]`.
#
# Two protected VM root disks (the test VM of agent/tests/common/vm.rs: Debian kernel, busybox
# initramfs, ext4 root), each replicated by its own rewind-agent to one rewind-mtd. Measured, RUNS
# times each (default BENCH_RUNS), medians reported:
# - test-failover-exports-readable: from `rewind failover test` to the first 4 KiB read of the
#   test export over NBD, against the same read from qemu-nbd started on the source image;
# - rto-test-plan: the measured RTO of a two-VM recovery plan in test mode (the second VM boots
#   only once the first is healthy), against booting the same two VMs one after the other
#   straight from copies of their image files.

# since T0: seconds from T0 (a now_s reading) until now, to the millisecond.
since() { awk -v a="$1" -v z="$(now_s)" 'BEGIN { printf "%.3f\n", z - a }'; }

# qemu_cmd DRIVE: the test VM's qemu command line (as agent/tests/common/vm.rs runs it).
qemu_cmd() {
    printf "qemu-system-x86_64 -accel tcg -M q35 -m 512 -smp 1 -nographic -no-reboot -kernel %s -initrd %s -append 'console=ttyS0 panic=-1 quiet' -drive 'file=%s,format=raw,if=virtio,cache=none'" \
        "$VM_DIR/vmlinuz" "$VM_DIR/initrd.cpio.gz" "$1"
}

# boot_to_healthy IMAGE: seconds from qemu's start to the VM's healthy line (the VM is killed).
boot_to_healthy() {
    local out=$WORK/boot.out pid t0 took i
    : >"$out"
    t0=$(now_s)
    setsid sh -c "exec $(qemu_cmd "$1")" </dev/null >"$out" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    for i in $(seq 1 1200); do
        grep -q "rewind-vm: healthy" "$out" && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    took=$(since "$t0")
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    grep -q "rewind-vm: healthy" "$out" || die "the VM on $1 did not boot: $(tail -n 5 "$out")"
    echo "$took"
}

# read_first_block URI: until a 4 KiB read of the export succeeds (up to 10 s).
read_first_block() {
    local i
    for i in $(seq 1 1000); do
        qemu-io -f raw -r -c "read 0 4k" "$1" >/dev/null 2>&1 && return 0
        sleep 0.01
    done
    die "no read from $1 within 10 s"
}

failover_cleanup() {
    [[ -n "${WORK:-}" && -S "$WORK/control.sock" ]] && rw plan cleanup >/dev/null 2>&1 || true
    [[ -n "${WORK:-}" && -S "$WORK/control.sock" ]] && rw failover cleanup vm1 >/dev/null 2>&1 || true
    agent_stop_all
    views_cleanup
}

cmd_failover() {
    local runs=${1:-$RUNS} r t0 vm uri qpid qsock
    [[ "$runs" =~ ^[0-9]+$ && "$runs" -gt 0 ]] || die "failover: RUNS must be a positive number"
    need_tool jq jq
    need_tool qemu-io qemu-utils
    command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 is missing: run scripts/test.sh once (it installs qemu-system-x86)"
    VM_DIR=${REWIND_VM_DIR:-/var/cache/rewind-vm}
    "$ROOT/scripts/vm-image.sh" "$VM_DIR" >&2 || die "building the test VM's kernel and initramfs failed"
    log "building release binaries (cargo build --release -p rewind-mtd -p rewind-agent)"
    (cd "$ROOT" && cargo build --release -p rewind-mtd -p rewind-agent) >&2 || die "build failed"
    MTD=$TARGET_DIR/release/rewind-mtd
    AGENT=$TARGET_DIR/release/rewind-agent
    REWIND=$TARGET_DIR/release/rewind
    make_workdir
    trap failover_cleanup EXIT
    VIEWS_DIR=$WORK/views
    views_start 24h

    for vm in vm1 vm2; do
        "$ROOT/scripts/vm-rootfs.sh" "$WORK/$vm.img" 64 "marker of $vm" >&2 || die "vm-rootfs.sh failed"
        agent_start "$vm" "$WORK/$vm.img"
        wait_synced 120
    done

    log "test failover to readable exports, $runs runs (baseline: qemu-nbd on the source image)"
    qsock=$WORK/qemu-nbd.sock
    for r in $(seq 1 "$runs"); do
        t0=$(now_s)
        uri=$(rw --json failover test vm1 | jq -r '.test.disks[0].nbd_uri')
        read_first_block "$uri"
        since "$t0" >>"$WORK/ft.ours"
        rw failover cleanup vm1 >/dev/null
        rm -f "$qsock"
        t0=$(now_s)
        qemu-nbd --read-only --format=raw --socket="$qsock" "$WORK/vm1.img" &
        qpid=$!
        PIDS+=("$qpid")
        read_first_block "nbd+unix:///?socket=$qsock"
        since "$t0" >>"$WORK/ft.theirs"
        kill -TERM "$qpid" 2>/dev/null || true
        wait "$qpid" 2>/dev/null || true
        log "run $r: rewind $(tail -n1 "$WORK/ft.ours") s, qemu-nbd $(tail -n1 "$WORK/ft.theirs") s"
    done

    log "recovery plan of two VMs in test mode, $runs runs (baseline: the same two boots from files)"
    local cmd
    cmd=$(qemu_cmd "{nbd:sda}" | sed 's/\\/\\\\/g; s/"/\\"/g')
    cat >"$WORK/plan.toml" <<PLAN
name = "bench-two-vms"

[[boot_group]]
name = "first"

[[boot_group.machine]]
name = "m1"
group = "vm1"
boot = "$cmd"
health = { console = "rewind-vm: healthy" }
timeout_secs = 120

[[boot_group]]
name = "second"

[[boot_group.machine]]
name = "m2"
group = "vm2"
boot = "$cmd"
health = { console = "rewind-vm: healthy" }
timeout_secs = 120
PLAN
    local st rto base
    for r in $(seq 1 "$runs"); do
        st=$(rw --json plan run "$WORK/plan.toml" --mode test) || die "the plan failed: $st"
        rto=$(jq -r '.rto_ms / 1000' <<<"$st")
        echo "$rto" >>"$WORK/rto.ours"
        rw plan cleanup >/dev/null
        cp --sparse=always "$WORK/vm1.img" "$WORK/copy1.img"
        cp --sparse=always "$WORK/vm2.img" "$WORK/copy2.img"
        base=$(awk -v a="$(boot_to_healthy "$WORK/copy1.img")" -v b="$(boot_to_healthy "$WORK/copy2.img")" \
            'BEGIN { printf "%.2f\n", a + b }')
        echo "$base" >>"$WORK/rto.theirs"
        log "run $r: plan RTO $rto s, two plain boots $base s"
    done

    local ft ftq rt rtq
    ft=$(med "$WORK/ft.ours")
    ftq=$(med "$WORK/ft.theirs")
    rt=$(med "$WORK/rto.ours")
    rtq=$(med "$WORK/rto.theirs")
    echo "test failover to a readable NBD export: $ft s; qemu-nbd on the source image: $ftq s (median of $runs)"
    echo "two-VM plan in test mode: RTO $rt s; the same boots from plain files: $rtq s, ratio $(ratio "$rt" "$rtq")x (median of $runs)"
    echo
    echo "bar rto-test-plan: $rt (want < 30)"
    echo "bar test-failover-exports-readable: $ft s (want < 1)"
}
