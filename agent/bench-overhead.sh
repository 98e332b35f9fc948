#!/usr/bin/env bash
# Write overhead of the agent: fio on the protected device (loop over the agent's FUSE file,
# replicating to a local rewind-mtd) against the same fio on a plain loop device in direct-io
# mode over a file on the same filesystem. Each job runs RUNS times; prints medians and ratios.
# Runs `scripts/bench.sh overhead` (the Rust bench driver, benches/src/driver/overhead.rs).
#
#   sudo agent/bench-overhead.sh            (root only; cleans up after itself)
#
# Environment: AGENT, MTD (binaries; default: target/release, built if missing), WORK_BASE
# (default /var/tmp), RUNS (default 3), RUNTIME (seconds per fio run, default 10), SIZE (default
# 2G), AGENT_ARGS (extra `rewind-agent run` flags, e.g. "--io-engine sync"), JOBS (default
# "rand seq"), PLAIN=0 (skip the plain loop runs when comparing agent settings).
set -euo pipefail

exec "$(cd "$(dirname "$0")/.." && pwd)/scripts/bench.sh" overhead "$@"
