#!/usr/bin/env bash
# Set up a fresh machine of this kind and run the whole Rewind test suite.
# Run as root: some tests loop-mount small file systems. Everything the tests need is installed here.
set -euo pipefail
cd "$(dirname "$0")/.."

# Setup that fails says at which step and with how much disk left (CI keeps little of its output).
step() { echo "test.sh: $(date -u +%H:%M:%S) $*; $(df -h --output=avail . | tail -n 1 | tr -d ' ') free here"; }
trap 'echo "test.sh: failed at line $LINENO (exit $?)" >&2' ERR
step "setting up"

if [ "$(id -u)" != 0 ]; then
  echo "scripts/test.sh: run as root (tests loop-mount file systems); root-only tests will skip" >&2
fi

# Packages the tests use: fio (baselines, and its nbd engine), e2fsprogs (mkfs.ext4, e2fsck),
# util-linux (losetup, mount, fallocate), fdisk (sfdisk), fuse3, qemu-utils (qemu-img, qemu-io, qemu-nbd),
# libnbd-bin (nbdinfo, nbdcopy) and python3-libnbd (nbdsh), jq, iproute2 (ip netns, tc), prometheus
# (the server and promtool, for the metrics and alert-rule tests); for the test VM
# (scripts/vm-image.sh, scripts/vm-rootfs.sh) qemu-system-x86 and busybox-static; postgresql (the
# site's tests start throwaway clusters with its initdb and postgres); python3-aiosmtpd (the SMTP
# sink the site's alert-mail test sends to); xfsprogs (mkfs.xfs, xfs_repair: flush-point replay on xfs).
pkgs=(fio e2fsprogs util-linux fdisk fuse3 qemu-utils libnbd-bin python3-libnbd jq iproute2 busybox-static qemu-system-x86)
pkgs+=(prometheus postgresql)
pkgs+=(python3-aiosmtpd)
pkgs+=(xfsprogs)
# openssh-server: push-install's test runs its own sshd (its key, a loopback port), not the service.
# sudo: the same test installs as a user other than root, through `sudo -n`.
pkgs+=(openssh-server sudo)
# The web console's browser tests drive a headless Chromium and Firefox over WebDriver
# (Firefox's driver, geckodriver, is not packaged by Debian: installed from crates.io below).
pkgs+=(chromium chromium-driver firefox-esr)
# Packaging: systemd-analyze verify looks up each unit's man pages (man-db); cargo-deb (below)
# builds the Debian packages, checked with dpkg-deb.
pkgs+=(man-db systemd)
# The packages under a real systemd: a Debian root (debootstrap, scripts/systemd-root.sh) booted
# with systemd-nspawn (systemd-container), since this machine's PID 1 is not systemd.
pkgs+=(debootstrap systemd-container)
step "Debian packages"
missing=()
for p in "${pkgs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ] && [ "$(id -u)" = 0 ]; then
  install=()
  for p in "${missing[@]}"; do
    [ "$p" = qemu-utils ] || install+=("$p")
  done
  # Debian 12's qemu-system-x86 (7.2) cannot sit beside a newer backported qemu-utils: installed
  # alone it removes it. Install both from bookworm in one call (downgrading qemu-utils if need be),
  # so qemu-img, qemu-io and qemu-nbd stay installed, at the version of the emulator.
  apt_opts=()
  if [[ " ${missing[*]} " == *" qemu-"* ]]; then
    install+=(qemu-utils/bookworm)
    apt_opts=(--allow-downgrades)
  fi
  echo "installing: ${install[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${apt_opts[@]}" "${install[@]}" >/dev/null
fi
step "tools from crates.io and PyPI"
command -v cargo >/dev/null || { echo "cargo not found: install the Rust toolchain (rustup)" >&2; exit 1; }
# fsx (file system exerciser) runs on overlay files of the view tree.
if ! command -v fsx >/dev/null && [ ! -x "${CARGO_HOME:-$HOME/.cargo}/bin/fsx" ]; then
  echo "installing: fsx (cargo install fsx)"
  cargo install --locked -q fsx --version 0.3.2
fi
if ! cargo deb --version >/dev/null 2>&1; then
  echo "installing: cargo-deb (cargo install cargo-deb)"
  cargo install --locked -q cargo-deb --version 3.8.0
fi
if ! command -v geckodriver >/dev/null && [ ! -x "${CARGO_HOME:-$HOME/.cargo}/bin/geckodriver" ]; then
  echo "installing: geckodriver (cargo install geckodriver)"
  cargo install --locked -q geckodriver --version 0.37.1
fi
# moto's S3 server: the long-term retention tests store points in a real S3-compatible server.
if ! command -v moto_server >/dev/null; then
  echo "installing: moto[server] (pip)"
  pip install -q 'moto[server]==5.2.1'
fi
# s3s-fs checks SigV4 signatures (moto does not): ltr_s3_sigv4_verified sends Object Lock's
# signed requests to it. About 4 minutes to build.
if ! command -v s3s-fs >/dev/null; then
  echo "installing: s3s-fs (cargo install s3s-fs)"
  cargo install --locked -q s3s-fs --version 0.14.1 --features binary
fi
# In the suite a missing tool fails its test rather than skipping it.
export REWIND_REQUIRE_TOOLS=1

# The test VM's kernel and initramfs (cached in /var/cache/rewind-vm): built once here, so tests
# that boot VMs do not all wait on the first one to download the kernel package.
step "test VM images"
scripts/vm-image.sh
# The root file system the packages' test boots with systemd (cached in /var/cache/rewind-systemd-root).
scripts/systemd-root.sh

# Habits the suite holds every change to: formatted, clippy-clean and rustdoc-clean with warnings
# denied.
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
  rustup component add rustfmt clippy
fi
step "format, lints, docs"
cargo fmt --all --check
cargo clippy --workspace --all-targets -q -- -D warnings
# API docs build without warnings (broken intra-doc links are how moved code shows up).
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps -q

# One build profile for everything: the dev profile (opt-level 1), shared by all crates' tests.
# --workspace builds every binary (rewind-mtd, rewind-loadgen) that the process-level tests run.
step "build"
cargo build --workspace --all-targets
step "tests"
log=$(mktemp /tmp/rewind-test.XXXXXX.log)
trap 'rm -f "$log"' EXIT
status=0
# A hung test must fail the suite, not outlive CI's limit with nothing said: the tests bound
# every command they run (REWIND_CMD_TIMEOUT_SECS), and the whole run is bounded here.
timeout -k 30 "${SUITE_TIMEOUT_SECS:-4200}" \
  cargo test --workspace --no-fail-fast -- --test-threads="${TEST_THREADS:-2}" 2>&1 | tee "$log" || status=$?
# One closing line for the whole suite (cargo prints one per test binary, the last often a doc-test
# binary with nothing in it).
passed=$(grep -Eo '^test result: .* ([0-9]+) passed' "$log" | grep -Eo '[0-9]+ passed' | awk '{s+=$1} END {print s+0}')
failed=$(grep -Eo '[0-9]+ failed;' "$log" | awk '{s+=$1} END {print s+0}')
echo "suite: $passed passed, $failed failed"
exit "$status"
