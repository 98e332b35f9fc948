#!/usr/bin/env bash
# Rewind benchmarks: measure rewind-mtd and rewind-agent against baselines taken in the same run,
# on the same filesystem (fio, qemu-nbd, a plain loop device, zstd, plain VM boots), and print one
# "bar NAME: VALUE (want OP BAR)" line per target. The work is done by the Rust bench driver
# (benches/src/driver/, binary rewind-bench); this wrapper builds it in release and runs it.
#
#   scripts/bench.sh apply [SIZE]    durable-apply throughput (SIZE default 256MiB) and p99 of
#                                    random 4 KiB reads of a point in the journal
#   scripts/bench.sh crash [ROUNDS]  the kill -9 crash test at length (default 100 rounds)
#   scripts/bench.sh crash-agent [ROUNDS]    kill -9 of the agent at length (default 100 rounds)
#   scripts/bench.sh netfault MINUTES        random network faults between agent and target
#   scripts/bench.sh oracle ROUNDS           views at many points checked by sector headers
#   scripts/bench.sh soak MINUTES            the whole flow, memory/descriptors/journal sampled
#   scripts/bench.sh powercut [ROUNDS]  power cuts of the target and the agent (default 20 rounds)
#   scripts/bench.sh views [SIZE] [RECORDS]  reading points: NBD, FUSE + loop, dump of a point
#                                            with SIZE of random 4 KiB writes in its journal
#                                            (dump-rand-journal, against cp), first block
#   scripts/bench.sh agent [SIZE]            the agent: write overhead, lag, initial sync
#   scripts/bench.sh failover [RUNS]         test failover to readable exports, two-VM plan RTO
#   scripts/bench.sh overhead                the agent's write overhead alone (agent/bench-overhead.sh)
#   scripts/bench.sh console [DISKS]         the target's /metrics scrape time with DISKS disks (1000),
#                                            agent killed until the site's alert at a webhook,
#                                            the web console's overview with DISKS groups
#   scripts/bench.sh ltr [SIZE]              long-term retention: archive MB/s, cold open of a
#                                            long-term point, dedup of 30 daily points (256MiB)
#   scripts/bench.sh wan [SIZE]              the relay over a 100 Mbit/s, 40 ms WAN: bytes on the
#                                            link, lag, a burst, 8-agent fan-in (256MiB; root)
#   scripts/bench.sh wan --fanin-only [SIZE] the 8-agent fan-in alone, on loopback
#   scripts/bench.sh site [GROUPS]           the configuration server with GROUPS groups (1000)
#   scripts/bench.sh --help                  every command, argument and environment variable
#
# Environment: BENCH_RUNS (default 3, 5 for apply and views: median reported), BENCH_TMP (default /var/tmp),
# BENCH_RAND_SECONDS (random-write time cap for fio and the daemon, default 20), CARGO_TARGET_DIR
# (default target/); AGENT_FIO_SECONDS and AGENT_LAG_SECONDS for `agent`; REWIND_VM_DIR for
# `failover`.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}

(cd "$ROOT" && cargo build --release -q -p rewind-benches --bin rewind-bench) >&2 ||
    { echo "bench: building rewind-bench failed" >&2; exit 1; }
REWIND_ROOT=$ROOT exec "$TARGET_DIR/release/rewind-bench" "$@"
