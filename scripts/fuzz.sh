#!/usr/bin/env bash
# Fuzz with cargo fuzz (libFuzzer), on the stable toolchain: the rewind-formats decoders
# (formats/fuzz: frame, batch, segment, and the CONTROL arguments policy and agent_report), what
# the target daemon parses from clients and operators (mtd/fuzz: nbd_handshake, nbd_request,
# control_body, plan_toml) and the agent's settings file (agent/fuzz: agent_config).
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]     default: 30 seconds each for every target
#   FUZZ_CMIN=1 scripts/fuzz.sh 60            ... then minimise each corpus (cargo fuzz cmin)
#   FUZZ_CMIN=1 scripts/fuzz.sh 0             only minimise (0 seconds: no fuzzing)
#   FUZZ_SANITIZER=address scripts/fuzz.sh    build with AddressSanitizer instead (see below)
#
# Targets run one after another (the machines have 2 cores, shared with builds). Each keeps its
# corpus in <crate>/fuzz/corpus/<target>/ (committed, replayed by `cargo test` through
# formats/tests/fuzz_corpus.rs and mtd/tests/fuzz_corpus.rs); an empty formats corpus is seeded
# from formats/tests/vectors/ (the binary decoders) or from the handcrafted
# <crate>/fuzz/seeds/<target>/ (the rest). A crash
# leaves its input in <crate>/fuzz/artifacts/<target>/: fix the bug, keep the file (the replay
# test runs it from then on).
#
# The NBD targets run the real handshake and request code against a small store (one group
# `g`, one 1 MiB disk `d`) made in a temporary directory, removed after each target.
#
# Stable toolchain: `cargo fuzz` defaults to AddressSanitizer, which it turns on with
# `-Zsanitizer=address`, a nightly-only flag, so on stable it fails with "the option `Z` is only
# accepted on the nightly compiler". With `--sanitizer none` it passes only stable `-C` flags
# (sancov instrumentation, debug assertions) and builds and runs on plain stable: that is the
# default here. This crate forbids unsafe code, so ASan would add little; when wanted,
# FUZZ_SANITIZER=address builds with it by setting RUSTC_BOOTSTRAP=1, which lets the stable
# rustc accept the -Z flag (the toolchain ships the ASan runtime for x86_64 Linux).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
vectors="$root/formats/tests/vectors"

secs="${1:-30}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(frame batch segment policy agent_report nbd_handshake nbd_request control_body plan_toml
        agent_config)
fi

# The cargo-fuzz project that holds a target.
project() {
    case "$1" in
        frame|batch|segment|policy|agent_report) echo "$root/formats/fuzz" ;;
        nbd_handshake|nbd_request|control_body|plan_toml) echo "$root/mtd/fuzz" ;;
        agent_config) echo "$root/agent/fuzz" ;;
        *) echo "fuzz.sh: unknown target $1" >&2; exit 2 ;;
    esac
}
for t in "${targets[@]}"; do
    project "$t" >/dev/null
done
case "$secs" in
    ''|*[!0-9]*) echo "usage: $0 [SECONDS] [TARGET...]" >&2; exit 2 ;;
esac

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: installing cargo-fuzz from crates.io" >&2
    cargo install --locked cargo-fuzz
fi

sanitizer="${FUZZ_SANITIZER:-none}"
if [ "$sanitizer" != none ]; then
    export RUSTC_BOOTSTRAP=1
fi
# Leave a core for the other builds on the machine.
nice_cmd=(nice -n 10)

# Seeds: the golden vectors, cut to what each target reads.
seed() {
    local t="$1" dir="$(project "$1")/corpus/$1"
    mkdir -p "$dir"
    if [ -n "$(ls -A "$dir")" ]; then
        return
    fi
    echo "fuzz.sh: seeding corpus/$t" >&2
    case "$t" in
        frame)
            cp "$vectors"/frame-*.bin "$dir"/ ;;
        batch)
            # A BATCH payload (the frame minus its 24-byte header) ...
            tail -c +25 "$vectors/frame-batch.bin" >"$dir/seed-batch-payload.bin"
            # ... and a record count (u32 LE) followed by an uncompressed record payload.
            { printf '\003\000\000\000'; cat "$vectors/records.bin"; } >"$dir/seed-records.bin" ;;
        segment)
            cp "$vectors"/segment-header.bin "$vectors"/chunk-*.bin "$vectors"/footer.bin "$dir"/ ;;
        nbd_handshake|nbd_request|control_body|plan_toml|policy|agent_report|agent_config)
            # Handcrafted, kept apart from the corpus (which cmin renames and prunes).
            cp "$(project "$t")/seeds/$t"/* "$dir"/ ;;
        *)
            echo "fuzz.sh: no seeds for target $t" >&2 ;;
    esac
}

max_len() {
    case "$1" in
        segment) echo 32768 ;;
        nbd_handshake) echo 16384 ;;
        nbd_request) echo 1793 ;;  # the mode byte and 64 request headers
        *) echo 8192 ;;
    esac
}

for t in "${targets[@]}"; do
    cd "$(project "$t")"
    seed "$t"
    # The mtd targets make their store under $TMPDIR: one per target, removed afterwards.
    scratch="$(mktemp -d "${TMPDIR:-/tmp}/rewind-fuzz-XXXXXX")"
    trap 'rm -rf "$scratch"' EXIT
    mkdir -p "artifacts/$t"
    if [ "$secs" -gt 0 ]; then
        echo "fuzz.sh: fuzzing $t for ${secs}s" >&2
        TMPDIR="$scratch" "${nice_cmd[@]}" cargo fuzz run --sanitizer "$sanitizer" "$t" "corpus/$t" -- \
            -max_total_time="$secs" -max_len="$(max_len "$t")" -timeout=10 -rss_limit_mb=2048 \
            -print_final_stats=1
    fi
    if [ "${FUZZ_CMIN:-0}" = 1 ]; then
        echo "fuzz.sh: minimising corpus/$t" >&2
        # Edges only (-use_counters=0): keeping one input per covered edge, rather than one per
        # hit-count bucket, keeps the committed corpus small (a few hundred KB per target).
        TMPDIR="$scratch" "${nice_cmd[@]}" cargo fuzz cmin --sanitizer "$sanitizer" "$t" "corpus/$t" -- \
            -max_len="$(max_len "$t")" -use_counters=0
    fi
    rm -rf "$scratch"
    echo "fuzz.sh: corpus/$t holds $(ls "corpus/$t" | wc -l) inputs" >&2
done
