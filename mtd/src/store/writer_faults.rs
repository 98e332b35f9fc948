//! The writer's failure policy with faults injected into its IO engine: a shortage at fdatasync
//! is retried only after the same bytes are written again, and publishes once it passes; an EIO
//! at fdatasync fails the store, and no later success publishes what it covered.

use std::io;
use std::os::fd::RawFd;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rewind_formats::segment::write_records_chunk;
use rewind_formats::{RecordKind, RecordRef, Seq};
use tokio::sync::mpsc;

use super::engine::{IoEngine, SyncEngine, WriteOp};
use super::group::{test_group, Group};
use super::health::Health;
use super::reserve::SpaceReserve;
use super::shortage::Shortage;
use super::writer::{AppendReq, Writer, WriterConfig, WriterMsg};

/// Every call in order: `W` for write_all, `S` for sync_all.
type Calls = Arc<Mutex<String>>;

/// The sync engine, whose fdatasyncs fail with the scripted errnos first.
struct FaultyEngine {
    inner: SyncEngine,
    sync_errnos: Vec<i32>,
    calls: Calls,
}

impl IoEngine for FaultyEngine {
    fn write_all(&mut self, ops: &[WriteOp<'_>]) -> io::Result<()> {
        self.calls.lock().unwrap().push('W');
        self.inner.write_all(ops)
    }

    fn sync_all(&mut self, fds: &[RawFd]) -> io::Result<()> {
        self.calls.lock().unwrap().push('S');
        if !self.sync_errnos.is_empty() {
            return Err(io::Error::from_raw_os_error(self.sync_errnos.remove(0)));
        }
        self.inner.sync_all(fds)
    }

    fn name(&self) -> &'static str {
        "faulty"
    }
}

/// A writer thread over `engine` for a fresh one-disk group; returns its queue.
fn start(sync_errnos: Vec<i32>) -> (Arc<Group>, Arc<Health>, Calls, mpsc::Sender<WriterMsg>) {
    let (dir, g) = test_group();
    // The group's files live as long as the test process (the writer thread outlives the test).
    std::mem::forget(dir);
    let calls = Calls::default();
    let engine = FaultyEngine {
        inner: SyncEngine,
        sync_errnos,
        calls: calls.clone(),
    };
    let health = Arc::new(Health::default());
    let reserve = Arc::new(SpaceReserve::none(&g.dir));
    let writer = Writer::new(
        Box::new(engine),
        WriterConfig::default(),
        health.clone(),
        reserve,
    );
    let (tx, rx) = mpsc::channel(8);
    std::thread::spawn(move || writer.run(rx));
    (g, health, calls, tx)
}

/// One 4 KiB record at seq `seq`.
fn record(g: &Arc<Group>, seq: u64) -> WriterMsg {
    let data = vec![seq as u8; 4096];
    let refs = [RecordRef {
        disk: 0,
        kind: RecordKind::Data,
        offset: 0,
        len: 4096,
        data: &data,
    }];
    let len = rewind_formats::segment::records_chunk_len(&refs);
    let mut buf = crate::aligned::pooled(len);
    let header = write_records_chunk(&mut buf[..len], Seq(seq), 1, 1, &refs);
    WriterMsg::Append(AppendReq {
        group: g.clone(),
        buf,
        header,
    })
}

fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let t0 = Instant::now();
    while !cond() {
        assert!(t0.elapsed() < Duration::from_secs(20), "{what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn enospc_at_fdatasync_rewrites_then_publishes() {
    let (g, health, calls, tx) = start(vec![libc::ENOSPC, libc::EDQUOT]);
    tx.blocking_send(record(&g, 1)).unwrap();
    wait_until("seq 1 durable", || g.durable() == Seq(1));
    // The chunk is written again before each retried fdatasync: a sync that passes after a
    // failed one vouches only for bytes written after the failure.
    let c = calls.lock().unwrap().clone();
    assert!(c.ends_with("WSWSWS"), "{c}");
    assert_eq!(health.state_name(), "ok");
    assert_eq!(health.pauses_total(Shortage::Space), 1);
    assert!(health.failed().is_none());
}

#[test]
fn eio_at_fdatasync_fails_the_store_for_good() {
    let (g, health, calls, tx) = start(vec![libc::EIO]);
    tx.blocking_send(record(&g, 1)).unwrap();
    wait_until("the store failed", || health.failed().is_some());
    // Later writes would sync fine, but nothing is published after the failure.
    tx.blocking_send(record(&g, 2)).unwrap();
    tx.blocking_send(WriterMsg::Tick).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(g.durable(), Seq(0));
    assert_eq!(health.state_name(), "failed");
    assert_eq!(
        calls.lock().unwrap().matches('S').count(),
        1,
        "never retried"
    );
}
