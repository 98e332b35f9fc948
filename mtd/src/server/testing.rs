//! What the server's unit tests share: a store in a temporary directory, HELLOs, sessions
//! admitted without a connection, and batches.

use std::sync::Arc;
use std::time::Duration;

use rewind_formats::message::{BatchRef, DiskInfo, Hello, HelloGroup};
use rewind_formats::{Batch, RecordKind, RecordRef, Seq};
use tokio::sync::{mpsc, watch};

use super::admission::{admit, Admitted};
use super::refusal::Refusal;
use super::registry::{SessionEnd, SessionLink, StopSignal};
use crate::store::engine::EngineKind;
use crate::store::quota::Quotas;
use crate::store::{Store, StoreOptions};

/// The size of every test disk.
pub(crate) const DISK: u64 = 1 << 20;

pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

pub(crate) fn store() -> (tempfile::TempDir, Arc<Store>) {
    let dir = tempfile::tempdir().unwrap();
    let opts = StoreOptions {
        engine: EngineKind::Sync,
        merge_interval: Duration::from_secs(3600),
        ..StoreOptions::default()
    };
    let store = Store::open(dir.path(), opts).unwrap();
    (dir, store)
}

/// A HELLO group at `generation` with disks of [`DISK`] bytes.
pub(crate) fn group(name: &str, generation: u64, disks: &[&str]) -> HelloGroup {
    HelloGroup {
        group: name.into(),
        generation,
        last_acked: Seq(0),
        epoch: 0,
        disks: disks
            .iter()
            .map(|d| DiskInfo {
                disk: d.to_string(),
                size_bytes: DISK,
            })
            .collect(),
    }
}

pub(crate) fn hello(agent: &str, groups: Vec<HelloGroup>) -> Hello {
    Hello {
        agent: agent.into(),
        software: None,
        dedup_window: 0,
        framed_records: false,
        groups,
    }
}

/// A session admitted without a connection: what it was given, how to stop it, and its
/// outgoing frames (kept so that sends succeed).
pub(crate) struct Session {
    pub(crate) admitted: Admitted,
    pub(crate) stop: Arc<StopSignal>,
    _out: mpsc::Receiver<Vec<u8>>,
    _ended: watch::Sender<Option<SessionEnd>>,
}

pub(crate) async fn session(store: &Arc<Store>, hello: &Hello) -> Result<Session, Refusal> {
    let (out, rx) = mpsc::channel(16);
    let (ended_tx, ended) = watch::channel(None);
    let stop = Arc::new(StopSignal::default());
    let link = SessionLink { out, ended };
    let admitted = admit(store, &Quotas::default(), hello, "test", &stop, &link).await?;
    Ok(Session {
        admitted,
        stop,
        _out: rx,
        _ended: ended_tx,
    })
}

/// A batch of `n` one-sector records for group `g` from `first_seq`.
pub(crate) fn batch(generation: u64, first_seq: u64, n: usize) -> Batch {
    let data = vec![7u8; 512];
    let refs: Vec<RecordRef<'_>> = (0..n)
        .map(|i| RecordRef {
            disk: 0,
            kind: RecordKind::Data,
            offset: 512 * i as u64,
            len: 512,
            data: &data,
        })
        .collect();
    Batch::build("g", generation, Seq(first_seq), 1_000, &refs, 1)
}

pub(crate) fn batch_ref(b: &Batch) -> BatchRef<'_> {
    BatchRef {
        group: b.group.clone(),
        generation: b.generation,
        first_seq: b.first_seq,
        record_count: b.record_count,
        timestamp_ms: b.timestamp_ms,
        uncompressed_len: b.uncompressed_len,
        compressed: &b.compressed,
    }
}
