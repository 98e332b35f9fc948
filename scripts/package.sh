#!/usr/bin/env bash
# Build the Debian packages: rewind-mtd (rewind-mtd, rewind), rewind-agent and rewind-site, each
# with its systemd unit, man pages and shell completions, into target/debian/.
#   scripts/package.sh            # release build, then the three .deb files
# Needs cargo-deb (installed here if missing). Install with `apt install ./target/debian/*.deb`.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo deb --version >/dev/null 2>&1; then
  echo "installing: cargo-deb (cargo install cargo-deb)"
  cargo install --locked -q cargo-deb --version 3.8.0
fi
cargo build --release --workspace --bins
# The binaries write their own man pages and completions (linux/src/clidocs.rs), where the
# packages' metadata takes them from.
for b in rewind-mtd rewind rewind-agent rewind-site; do
  rm -rf "target/release/docs/$b"
  REWIND_GENERATE_DOCS="target/release/docs/$b" "target/release/$b"
done
mkdir -p target/debian
for p in rewind-mtd rewind-agent rewind-site; do
  cargo deb -p "$p" --no-build -o target/debian/
done
ls -l target/debian/*.deb
