//! Power-cut campaigns' common parts: a power-cut file system under a test's work directory,
//! the number of rounds, and the result line `scripts/bench.sh powercut` reads.

use std::path::Path;

use crate::powercut::PowercutMount;

/// A power-cut file system mounted at `work/NAME`, its bytes in `work/NAME.backing`; `None`
/// (said loudly) without root or /dev/fuse, a failure instead when REWIND_REQUIRE_TOOLS is set.
pub fn powercut_mount(work: &Path, name: &str) -> Option<PowercutMount> {
    let ok = nix::unistd::geteuid().is_root() && Path::new("/dev/fuse").exists();
    if !ok {
        assert!(
            std::env::var_os("REWIND_REQUIRE_TOOLS").is_none(),
            "power-cut tests need root and /dev/fuse"
        );
        eprintln!("SKIPPED: power-cut tests need root and /dev/fuse");
        return None;
    }
    let backing = work.join(format!("{name}.backing"));
    std::fs::create_dir_all(&backing).expect("backing dir");
    Some(PowercutMount::mount(&backing, &work.join(name)).expect("mount the power-cut fs"))
}

/// Rounds of a campaign: `REWIND_POWERCUT_ROUNDS` (what `scripts/bench.sh powercut` sets), else
/// `default` (the suite's short version).
pub fn powercut_rounds(default: usize) -> usize {
    std::env::var("REWIND_POWERCUT_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The line `scripts/bench.sh powercut` adds up: printed on stdout before the test asserts, so
/// a failing campaign still reports what it lost.
pub fn print_powercut_result(side: &str, rounds: usize, lost_acked: u64) {
    println!("powercut-result {side} rounds={rounds} lost_acked={lost_acked}");
}

/// Parses a [`print_powercut_result`] line: `(side, rounds, lost_acked)`.
pub fn parse_powercut_result(line: &str) -> Option<(String, usize, u64)> {
    let mut w = line.strip_prefix("powercut-result ")?.split_whitespace();
    let side = w.next()?.to_string();
    let rounds = w.next()?.strip_prefix("rounds=")?.parse().ok()?;
    let lost = w.next()?.strip_prefix("lost_acked=")?.parse().ok()?;
    Some((side, rounds, lost))
}

#[cfg(test)]
mod tests {
    #[test]
    fn result_lines_parse_back() {
        assert_eq!(
            super::parse_powercut_result("powercut-result mtd-uring rounds=12 lost_acked=3"),
            Some(("mtd-uring".into(), 12, 3))
        );
        assert_eq!(
            super::parse_powercut_result("powercut-result x rounds=a"),
            None
        );
    }
}
