//! `rewind_nbd_requests_total{kind,op}` and `rewind_nbd_bytes_total{kind,direction}`: NBD
//! traffic by what the export is (a point, an overlay, a test failover's or a live disk).

use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use rewind_linux::metrics::Family;

use crate::nbd::proto::{CMD_FLUSH, CMD_READ, CMD_WRITE};

const KINDS: [&str; 4] = ["point", "overlay", "test", "live"];
const OPS: [&str; 4] = ["read", "write", "flush", "other"];

static REQUESTS: [[AtomicU64; 4]; 4] = [const { [const { AtomicU64::new(0) }; 4] }; 4];
/// Bytes read, bytes written, per kind.
static BYTES: [[AtomicU64; 2]; 4] = [const { [const { AtomicU64::new(0) }; 2] }; 4];

/// The kind of an export, from its name (`GROUP/DISK@test`, `@live`, `@overlay:NAME`, else a
/// read-only point).
fn kind_of(export: &str) -> usize {
    match export.rsplit_once('@').map(|(_, at)| at) {
        Some("test") => 2,
        Some("live") => 3,
        Some(at) if at.starts_with("overlay:") => 1,
        _ => 0,
    }
}

/// Counts one request on `export` (a READ or WRITE of `len` bytes counts its bytes too).
pub(crate) fn request(export: &str, cmd: u16, len: u32) {
    let k = kind_of(export);
    let op = match cmd {
        CMD_READ => 0,
        CMD_WRITE => 1,
        CMD_FLUSH => 2,
        _ => 3,
    };
    REQUESTS[k][op].fetch_add(1, Ordering::Relaxed);
    if op < 2 {
        BYTES[k][op].fetch_add(u64::from(len), Ordering::Relaxed);
    }
}

/// The collector.
#[derive(Debug)]
pub struct NbdMetrics;

impl Collector for NbdMetrics {
    fn encode(&self, mut enc: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let mut f = Family::counter(
            &mut enc,
            "rewind_nbd_requests",
            "NBD requests served, by export kind and operation.",
        )?;
        for (k, kind) in KINDS.iter().enumerate() {
            for (o, op) in OPS.iter().enumerate() {
                f.counter_at(
                    &[("kind", kind), ("op", op)],
                    REQUESTS[k][o].load(Ordering::Relaxed),
                )?;
            }
        }
        let mut f = Family::counter(
            &mut enc,
            "rewind_nbd_bytes",
            "Bytes NBD clients read and wrote, by export kind.",
        )?;
        for (k, kind) in KINDS.iter().enumerate() {
            for (d, dir) in ["read", "write"].iter().enumerate() {
                f.counter_at(
                    &[("kind", kind), ("direction", dir)],
                    BYTES[k][d].load(Ordering::Relaxed),
                )?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_names_give_their_kind() {
        assert_eq!(KINDS[kind_of("web/sda")], "point");
        assert_eq!(KINDS[kind_of("web/sda@tag:x")], "point");
        assert_eq!(KINDS[kind_of("web/sda@overlay:o1")], "overlay");
        assert_eq!(KINDS[kind_of("web/sda@test")], "test");
        assert_eq!(KINDS[kind_of("web/sda@live")], "live");
    }
}
