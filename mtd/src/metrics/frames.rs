//! `rewind_frames_rejected_total{reason}`: sessions the target ended with an ERROR frame, by
//! its code. A bad checksum (`bad_checksum`) means corruption on the way; `fenced` means an
//! agent fenced by a failover is still trying to feed its old group; `stale_epoch` that a relay
//! the agent has left came back with what it cached (refused, not applied).

use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use rewind_formats::message::ErrorCode;
use rewind_linux::metrics::Family;

/// Every reason, in wire-code order (1..=15), then `other`.
const REASONS: [&str; 16] = [
    "protocol",
    "bad_checksum",
    "unknown_group",
    "unknown_disk",
    "stale_generation",
    "wrong_disk_size",
    "out_of_range",
    "seq_gap",
    "busy",
    "no_space",
    "store_failed",
    "internal",
    "forbidden",
    "fenced",
    "stale_epoch",
    "other",
];

static REJECTED: [AtomicU64; 16] = [const { AtomicU64::new(0) }; 16];

fn slot(code: ErrorCode) -> usize {
    match code {
        ErrorCode::Other(_) => REASONS.len() - 1,
        c => usize::from(c.as_u16())
            .saturating_sub(1)
            .min(REASONS.len() - 1),
    }
}

/// Counts one refusal sent to an agent.
pub(crate) fn rejected(code: ErrorCode) {
    REJECTED[slot(code)].fetch_add(1, Ordering::Relaxed);
}

/// The collector.
#[derive(Debug)]
pub struct Frames;

impl Collector for Frames {
    fn encode(&self, mut enc: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let mut f = Family::counter(
            &mut enc,
            "rewind_frames_rejected",
            "Agent sessions ended with an ERROR frame, by the error's code.",
        )?;
        for (i, reason) in REASONS.iter().enumerate() {
            f.counter_at(&[("reason", reason)], REJECTED[i].load(Ordering::Relaxed))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_their_reason() {
        assert_eq!(REASONS[slot(ErrorCode::BadChecksum)], "bad_checksum");
        assert_eq!(REASONS[slot(ErrorCode::Fenced)], "fenced");
        assert_eq!(REASONS[slot(ErrorCode::StaleEpoch)], "stale_epoch");
        assert_eq!(REASONS[slot(ErrorCode::Protocol)], "protocol");
        assert_eq!(REASONS[slot(ErrorCode::Other(999))], "other");
    }
}
