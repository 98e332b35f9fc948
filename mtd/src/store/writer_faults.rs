//! The writer's failure policy with faults injected into its IO engine: a shortage at fdatasync
//! is retried only after the same bytes are written again, and publishes once it passes; an EIO
//! at fdatasync fails the store, and no later success publishes what it covered. The same for
//! the two steps around a segment's life: the sealed segment's footer write (a shortage rewrites
//! it whole and the segment reads back sealed; EIO fails the store with the segment unsealed)
//! and the directory fsync after a new segment's rename (a shortage builds the segment again
//! under the same id; EIO fails the store before anything is appended).

use std::fs::File;
use std::io;
use std::os::fd::RawFd;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rewind_formats::segment::{write_records_chunk_with, Encoding};

const RECORD_LEN: usize = 65536;
use rewind_formats::{RecordKind, RecordRef, Seq, BLOCK};
use tokio::sync::mpsc;

use super::engine::{IoEngine, SyncEngine, WriteOp};
use super::group::{journal_dir, test_group, Group};
use super::health::Health;
use super::reserve::SpaceReserve;
use super::segment_file::{load_segment, segment_file_name, LoadMode, LoadedSegment};
use super::shortage::Shortage;
use super::writer::{AppendReq, Writer, WriterConfig, WriterMsg};

/// Every call in order: `W` for write_all, `S` for sync_all (journal and footer fdatasyncs),
/// `F` for write_at (a footer), `D` for sync_dir.
type Calls = Arc<Mutex<String>>;

/// Which calls fail: the first calls of each kind fail with these errnos, in order; every
/// later call does its real IO.
#[derive(Default)]
struct Script {
    sync: Vec<i32>,
    footer: Vec<i32>,
    dir_sync: Vec<i32>,
}

/// The sync engine, with the scripted faults first.
struct FaultyEngine {
    inner: SyncEngine,
    script: Script,
    calls: Calls,
}

/// Log `letter`, then fail with the next errno of `errnos` if there is one.
fn scripted(calls: &Calls, letter: char, errnos: &mut Vec<i32>) -> io::Result<()> {
    calls.lock().unwrap().push(letter);
    if errnos.is_empty() {
        return Ok(());
    }
    Err(io::Error::from_raw_os_error(errnos.remove(0)))
}

impl IoEngine for FaultyEngine {
    fn write_all(&mut self, ops: &[WriteOp<'_>]) -> io::Result<()> {
        scripted(&self.calls, 'W', &mut Vec::new())?;
        self.inner.write_all(ops)
    }

    fn sync_all(&mut self, fds: &[RawFd]) -> io::Result<()> {
        scripted(&self.calls, 'S', &mut self.script.sync)?;
        self.inner.sync_all(fds)
    }

    fn write_at(&mut self, file: &File, bytes: &[u8], offset: u64) -> io::Result<()> {
        scripted(&self.calls, 'F', &mut self.script.footer)?;
        self.inner.write_at(file, bytes, offset)
    }

    fn sync_dir(&mut self, dir: &Path) -> io::Result<()> {
        scripted(&self.calls, 'D', &mut self.script.dir_sync)?;
        self.inner.sync_dir(dir)
    }

    fn name(&self) -> &'static str {
        "faulty"
    }
}

/// A writer thread over the faulty engine for a fresh one-disk group; returns its queue.
fn start(script: Script) -> (Arc<Group>, Arc<Health>, Calls, mpsc::Sender<WriterMsg>) {
    start_with(script, WriterConfig::default())
}

/// `start` with `cfg` (a tiny `segment_size` seals a segment after its first chunk).
fn start_with(
    script: Script,
    cfg: WriterConfig,
) -> (Arc<Group>, Arc<Health>, Calls, mpsc::Sender<WriterMsg>) {
    let (dir, g) = test_group();
    // The group's files live as long as the test process (the writer thread outlives the test).
    std::mem::forget(dir);
    let calls = Calls::default();
    let engine = FaultyEngine {
        inner: SyncEngine,
        script,
        calls: calls.clone(),
    };
    let health = Arc::new(Health::default());
    let reserve = Arc::new(SpaceReserve::none(&g.dir));
    let writer = Writer::new(Box::new(engine), cfg, health.clone(), reserve);
    let (tx, rx) = mpsc::channel(8);
    std::thread::spawn(move || writer.run(rx));
    (g, health, calls, tx)
}

/// One 64 KiB record at seq `seq`, zstd-encoded as sessions store it (into one BLOCK).
fn record(g: &Arc<Group>, seq: u64) -> WriterMsg {
    let data = vec![seq as u8; RECORD_LEN];
    let refs = [RecordRef {
        disk: 0,
        kind: RecordKind::Data,
        offset: 0,
        len: RECORD_LEN as u32,
        data: &data,
    }];
    let mut c = crate::store::compression::JournalCompression::default()
        .compressor()
        .unwrap();
    let encoded = c.encode(&refs);
    assert!(encoded[0].is_some(), "a run of one byte compresses");
    let len = rewind_formats::segment::records_chunk_len_with(&refs, &encoded);
    let mut buf = crate::aligned::pooled(len);
    let header = write_records_chunk_with(&mut buf[..len], Seq(seq), 1, 1, &refs, &encoded);
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
    let (g, health, calls, tx) = start(Script {
        sync: vec![libc::ENOSPC, libc::EDQUOT],
        ..Script::default()
    });
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
    let (g, health, calls, tx) = start(Script {
        sync: vec![libc::EIO],
        ..Script::default()
    });
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

/// Seals a segment after its first chunk (the header block fills it).
fn seal_each_chunk() -> WriterConfig {
    WriterConfig {
        segment_size: BLOCK as u64,
        ..WriterConfig::default()
    }
}

/// The journal directory's file names, sorted.
fn journal_files(g: &Group) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(journal_dir(&g.dir))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Whether the group has segment `id` marked sealed (the writer's word that its footer is
/// durable).
fn marked_sealed(g: &Group, id: u64) -> bool {
    g.state
        .read()
        .unwrap()
        .segments
        .get(&id)
        .is_some_and(|m| m.sealed)
}

/// Segment `id` as start-up reads it (read-only): sealed or not, and holding seq 1's record
/// (64 KiB of 1s at disk offset 0, encoded) either way.
fn read_back(g: &Group, id: u64) -> LoadedSegment {
    let path = journal_dir(&g.dir).join(segment_file_name(id));
    let seg = load_segment(&path, LoadMode::ReadOnly).unwrap();
    assert_eq!(seg.last_seq(), Some(Seq(1)), "{seg:?}");
    assert_eq!(seg.footer.extents.len(), 1, "{seg:?}");
    let e = &seg.footer.extents[0];
    assert_eq!(
        (e.disk, e.offset, e.len, e.seq, e.encoding),
        (0, 0, RECORD_LEN as u32, Seq(1), Encoding::Zstd)
    );
    let mut data = vec![0u8; RECORD_LEN];
    crate::store::frames::read_whole(&File::open(&path).unwrap(), e.data_pos, e.len, &mut data)
        .unwrap();
    assert!(data.iter().all(|&b| b == 1), "seq 1's data");
    seg
}

#[test]
fn enospc_at_footer_write_rewrites_it_and_seals() {
    let (g, health, calls, tx) = start_with(
        Script {
            footer: vec![libc::ENOSPC],
            ..Script::default()
        },
        seal_each_chunk(),
    );
    tx.blocking_send(record(&g, 1)).unwrap();
    wait_until("segment 1 sealed", || marked_sealed(&g, 1));
    // Create (dir fsync), append and fdatasync, then the footer: failed, written again whole,
    // and only then fdatasynced.
    assert_eq!(*calls.lock().unwrap(), "DWSFFS");
    assert_eq!(g.durable(), Seq(1));
    assert_eq!(health.state_name(), "ok");
    assert_eq!(health.pauses_total(Shortage::Space), 1);
    assert!(health.failed().is_none());
    assert!(read_back(&g, 1).sealed, "the footer verifies");
    // The writer goes on: the next record opens segment 2.
    tx.blocking_send(record(&g, 2)).unwrap();
    wait_until("seq 2 durable", || g.durable() == Seq(2));
    assert_eq!(journal_files(&g), ["seg-00000001.rwj", "seg-00000002.rwj"]);
}

#[test]
fn eio_at_footer_write_fails_the_store_unsealed() {
    let (g, health, calls, tx) = start_with(
        Script {
            footer: vec![libc::EIO],
            ..Script::default()
        },
        seal_each_chunk(),
    );
    tx.blocking_send(record(&g, 1)).unwrap();
    wait_until("the store failed", || health.failed().is_some());
    let why = health.failed().unwrap();
    assert!(why.contains("write footer"), "{why}");
    // Seq 1 was fdatasynced before the seal, so it stays acknowledged; the seal is never
    // retried nor reported done.
    assert_eq!(g.durable(), Seq(1));
    assert!(!marked_sealed(&g, 1));
    tx.blocking_send(record(&g, 2)).unwrap();
    tx.blocking_send(WriterMsg::Tick).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(*calls.lock().unwrap(), "DWSF");
    assert_eq!(g.durable(), Seq(1));
    assert_eq!(health.state_name(), "failed");
    // On disk: no footer, and seq 1 found by the scan start-up falls back to.
    assert!(!read_back(&g, 1).sealed);
}

#[test]
fn enospc_at_directory_fsync_creates_the_segment_again() {
    let (g, health, calls, tx) = start_with(
        Script {
            dir_sync: vec![libc::ENOSPC],
            ..Script::default()
        },
        seal_each_chunk(),
    );
    tx.blocking_send(record(&g, 1)).unwrap();
    wait_until("segment 1 sealed", || marked_sealed(&g, 1));
    // The failed try had renamed its segment into place; the retry builds it again under the
    // same id and replaces it.
    assert_eq!(*calls.lock().unwrap(), "DDWSFS");
    assert_eq!(journal_files(&g), ["seg-00000001.rwj"]);
    assert_eq!(g.durable(), Seq(1));
    assert_eq!(health.state_name(), "ok");
    assert_eq!(health.pauses_total(Shortage::Space), 1);
    assert!(health.failed().is_none());
    assert!(read_back(&g, 1).sealed);
}

#[test]
fn eio_at_directory_fsync_fails_the_store_before_any_append() {
    let (g, health, calls, tx) = start(Script {
        dir_sync: vec![libc::EIO],
        ..Script::default()
    });
    tx.blocking_send(record(&g, 1)).unwrap();
    wait_until("the store failed", || health.failed().is_some());
    let why = health.failed().unwrap();
    assert!(why.contains("fsync directory"), "{why}");
    tx.blocking_send(record(&g, 2)).unwrap();
    tx.blocking_send(WriterMsg::Tick).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    // Never retried, nothing appended, nothing acknowledged, no segment registered.
    assert_eq!(*calls.lock().unwrap(), "D");
    assert_eq!(g.durable(), Seq(0));
    assert_eq!(health.state_name(), "failed");
    assert!(g.state.read().unwrap().segments.is_empty());
}
