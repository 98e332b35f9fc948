//! The `run` command: send the workload, pipelined, and measure durable-ack throughput.
//!
//! Records are counted from seq 1, so the run sends seqs `durable + 1 ..= total` where `durable`
//! is what the target's WELCOME says: a second run (or a reconnect after the target restarted)
//! continues where the target is. Batches are built and compressed on producer threads while the
//! calling thread writes them to the socket, never waiting for an ack unless the in-flight window
//! is full.

use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rewind_formats::batch::{BatchBuilder, Compression, PartsBuilder, PartsFrame};
use rewind_formats::framed::FramedRecord;
use rewind_formats::segment::encoding::encode_record;
use rewind_formats::{
    DiskInfo, Hello, HelloGroup, RecordRef, ResumeStatus, Seq, Tag, TagInfo, TagKind, BLOCK,
    RECORD_HEADER_LEN,
};

use crate::error::{Error, Result};
use crate::model::{Model, Workload};
use crate::pace::Pacer;
use crate::pool::FramePool;
use crate::session::{Session, SessionLimits, SessionStats};
use crate::state::{read_state, StateWriter};
use crate::stats::percentile;
use crate::units::Addr;
use crate::wire::{connect, hello, Conn};

/// Keeps a batch's uncompressed payload safely under the formats' 64 MiB caps.
const MAX_BATCH_RAW: u64 = 60 << 20;
/// Frames queued per producer thread.
const QUEUE_DEPTH: usize = 2;
/// Frame buffers kept for reuse.
const FREE_BUFFERS: usize = 16;

/// Everything the `run` command needs.
#[derive(Clone, Debug)]
pub struct RunConfig {
    pub addr: Addr,
    pub agent: String,
    pub group: String,
    pub generation: u64,
    pub workload: Workload,
    /// Bytes of records in the whole run, counted from seq 1.
    pub total_bytes: u64,
    /// Records per batch up to this many bytes (at least one record).
    pub batch_bytes: u64,
    /// Send a user TAG `t<seq>` at every multiple of this seq (0: never).
    pub tag_every: u64,
    pub compression: Compression,
    /// Ask for framed records ([`rewind_formats::framed`]); when the target grants them,
    /// records go journal-encoded (at the `Zstd` level of `compression`, 1 for `Store`),
    /// in stored zstd blocks.
    pub framed: bool,
    pub state: Option<PathBuf>,
    pub reconnect: bool,
    pub reconnect_timeout: Duration,
    pub max_inflight_bytes: u64,
    /// Producer (compression) threads.
    pub threads: usize,
    /// Give up when acks stop advancing for this long.
    pub ack_timeout: Duration,
    /// Stop sending this long after the first send (then wait for the acks), even if `total`
    /// is not reached.
    pub duration: Option<Duration>,
    /// Send at most this many record bytes per second, over the whole run (None: as fast as
    /// the target takes them).
    pub rate: Option<u64>,
}

/// The run's result (the `--json` line).
#[derive(Clone, Debug, serde::Serialize)]
pub struct RunSummary {
    /// Records acked in this run (from the first seq sent to the last acked).
    pub records: u64,
    /// Record bytes acked in this run.
    pub bytes: u64,
    /// From the first send to the last ack.
    pub seconds: f64,
    /// `bytes` / `seconds`, in 10^6 bytes per second.
    pub mb_per_s: f64,
    pub records_per_s: f64,
    /// Highest acked (durable) seq.
    pub acked_seq: u64,
    pub ack_latency_p50_ms: f64,
    pub ack_latency_p99_ms: f64,
    /// First seq this run had to send (the target's durable seq + 1 at the first WELCOME).
    pub first_seq: u64,
    /// Frame bytes written (compressed), including anything resent after reconnects.
    pub wire_bytes: u64,
    pub batches: u64,
    pub tags: u64,
    pub reconnects: u64,
    pub record_size: u32,
    pub pattern: String,
    pub payload: String,
    pub compression: String,
    /// The target granted framed records (in the last session).
    pub framed: bool,
}

/// Records per batch for this record size and batch size.
pub fn records_per_batch(record_size: u32, batch_bytes: u64) -> u64 {
    let per = u64::from(record_size) + RECORD_HEADER_LEN as u64;
    (batch_bytes / u64::from(record_size))
        .min(MAX_BATCH_RAW / per)
        .min(u64::from(rewind_formats::MAX_BATCH_RECORDS))
        .max(1)
}

/// The HELLO for a single-group session.
pub fn build_hello(
    agent: &str,
    group: &str,
    generation: u64,
    last_acked: u64,
    disks: &[(String, u64)],
) -> Hello {
    Hello {
        agent: agent.to_string(),
        software: Some(env!("CARGO_PKG_VERSION").to_string()),
        dedup_window: 0,
        framed_records: false,
        groups: vec![HelloGroup {
            group: group.to_string(),
            generation,
            last_acked: Seq(last_acked),
            epoch: 0,
            disks: disks
                .iter()
                .map(|(d, size)| DiskInfo {
                    disk: d.clone(),
                    size_bytes: *size,
                })
                .collect(),
        }],
    }
}

/// Connects, says HELLO and returns the connection with the group's durable seq and whether
/// the WELCOME granted framed records.
pub fn open(addr: &Addr, hello_msg: &Hello) -> Result<(Conn, u64, bool)> {
    let group = &hello_msg.groups[0].group;
    let mut conn = connect(addr)?;
    // A target that never answers HELLO must not hang us.
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(Error::io("set read timeout"))?;
    let welcome = hello(&mut conn, hello_msg)?;
    conn.set_read_timeout(None)
        .map_err(Error::io("clear read timeout"))?;
    let wg = welcome
        .groups
        .iter()
        .find(|g| &g.group == group)
        .ok_or_else(|| Error::Protocol(format!("WELCOME does not mention group {group}")))?;
    if wg.status == ResumeStatus::ResyncNeeded {
        return Err(Error::Protocol(format!(
            "group {group}: the target asks for a resync, which the load generator cannot do"
        )));
    }
    Ok((conn, wg.durable.0, welcome.framed_records))
}

#[derive(Default)]
struct Totals {
    latencies_ms: Vec<f64>,
    first_send: Option<Instant>,
    last_ack_at: Option<Instant>,
    wire_bytes: u64,
    batches: u64,
}

impl Totals {
    fn add(&mut self, s: SessionStats) {
        self.latencies_ms.extend(s.latencies_ms);
        if self.first_send.is_none() {
            self.first_send = s.first_send;
        }
        if s.last_ack_at.is_some() {
            self.last_ack_at = s.last_ack_at;
        }
        self.wire_bytes += s.wire_bytes;
        self.batches += s.batches;
    }
}

/// Runs the workload to the end (reconnecting on loss if asked) and returns the summary.
pub fn run(cfg: &RunConfig) -> Result<RunSummary> {
    let model = Model::new(cfg.workload.clone())?;
    run_with_model(cfg, &model)
}

/// [`run`] with a prepared model (tests use small data pools).
pub fn run_with_model(cfg: &RunConfig, model: &Model) -> Result<RunSummary> {
    let w = model.workload();
    let total = w.records_in(cfg.total_bytes);
    if total == 0 {
        return Err(Error::Invalid(format!(
            "--total {} is less than one record of {} bytes",
            cfg.total_bytes, w.record_size
        )));
    }
    let rpb = records_per_batch(w.record_size, cfg.batch_bytes);
    let disks: Vec<(String, u64)> = w
        .disks
        .iter()
        .map(|d| (d.name.clone(), d.size_bytes))
        .collect();
    let mut acked = match &cfg.state {
        Some(p) => read_state(p)?.unwrap_or(0),
        None => 0,
    };
    let state_writer = cfg.state.clone().map(StateWriter::spawn).transpose()?;
    let limits = SessionLimits {
        max_inflight_bytes: cfg.max_inflight_bytes,
        stall_timeout: cfg.ack_timeout,
    };

    let mut totals = Totals::default();
    let mut first_seq = None;
    let mut reconnects = 0;
    let mut tags = 0;
    let mut lost_at: Option<Instant> = None;
    let mut backoff = Duration::from_millis(50);
    let mut deadline = None;
    let mut pacer = Pacer::new(cfg.rate);
    // Whether the last session's WELCOME granted framed records (set at every HELLO).
    let mut framed;
    // Every span of the pool encoded once, before the clock starts.
    let frames = cfg
        .framed
        .then(|| FramePool::new(model.pool(), framed_level(cfg.compression)))
        .transpose()
        .map_err(Error::io("encoding the data pool's frames"))?;
    loop {
        let mut hello_msg = build_hello(&cfg.agent, &cfg.group, cfg.generation, acked, &disks);
        hello_msg.framed_records = cfg.framed;
        let (conn, durable, granted) = match open(&cfg.addr, &hello_msg) {
            Ok(x) => x,
            Err(e) if cfg.reconnect && e.is_connection_lost() => {
                let since = *lost_at.get_or_insert_with(Instant::now);
                if since.elapsed() >= cfg.reconnect_timeout {
                    return Err(Error::Timeout(format!(
                        "reconnecting to {} for {:?}: {e}",
                        cfg.addr, cfg.reconnect_timeout
                    )));
                }
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
            Err(e) => return Err(e),
        };
        if let Some(since) = lost_at.take() {
            eprintln!(
                "rewind-loadgen: reconnected to {} after {:.1}s; target durable at seq {durable}",
                cfg.addr,
                since.elapsed().as_secs_f64()
            );
        }
        backoff = Duration::from_millis(50);
        framed = granted && cfg.framed;
        if durable < acked {
            return Err(Error::LostAck {
                group: cfg.group.clone(),
                durable,
                acked,
            });
        }
        acked = durable;
        first_seq.get_or_insert(durable + 1);
        if durable >= total {
            let _ = conn.shutdown(std::net::Shutdown::Both);
            break;
        }
        let hook = state_writer.as_ref().map(StateWriter::hook);
        let mut session = Session::start(
            conn,
            &cfg.group,
            cfg.generation,
            durable,
            limits.clone(),
            hook,
        )?;
        let res = pump(
            cfg,
            Source {
                model,
                frames: frames.as_ref().filter(|_| granted),
            },
            &mut session,
            Span {
                start: durable + 1,
                total,
                rpb,
            },
            &mut deadline,
            &mut tags,
            &mut pacer,
        );
        let stats = if res.is_ok() {
            session.finish()
        } else {
            session.abandon()
        };
        acked = acked.max(stats.durable);
        totals.add(stats);
        match res {
            Ok(()) => break,
            Err(e) if cfg.reconnect && e.is_connection_lost() => {
                reconnects += 1;
                lost_at = Some(Instant::now());
                eprintln!("rewind-loadgen: {e}; acked seq {acked}; reconnecting");
            }
            Err(e) => return Err(e),
        }
    }
    if let Some(sw) = state_writer {
        sw.finish()?;
    }

    let first_seq = first_seq.unwrap_or(1);
    let records = (acked + 1).saturating_sub(first_seq);
    let bytes = records * u64::from(w.record_size);
    let seconds = match (totals.first_send, totals.last_ack_at) {
        (Some(a), Some(b)) if records > 0 => b.duration_since(a).as_secs_f64(),
        _ => 0.0,
    };
    let rate = |x: f64| if seconds > 0.0 { x / seconds } else { 0.0 };
    Ok(RunSummary {
        records,
        bytes,
        seconds,
        mb_per_s: rate(bytes as f64 / 1e6),
        records_per_s: rate(records as f64),
        acked_seq: acked,
        ack_latency_p50_ms: percentile(&mut totals.latencies_ms, 50.0),
        ack_latency_p99_ms: percentile(&mut totals.latencies_ms, 99.0),
        first_seq,
        wire_bytes: totals.wire_bytes,
        batches: totals.batches,
        tags,
        reconnects,
        record_size: w.record_size,
        pattern: w.pattern.to_string(),
        payload: w.payload.to_string(),
        compression: if cfg.framed {
            format!("framed-{}", cfg.compression)
        } else {
            cfg.compression.to_string()
        },
        framed,
    })
}

/// A batch ready to send.
struct Built<'a> {
    frame: Wire<'a>,
    first_seq: u64,
    last_seq: u64,
}

/// A frame in one buffer, or (stored mode) in parts that reference the data pool.
enum Wire<'a> {
    Buf(Vec<u8>),
    Parts(PartsFrame<'a>),
}

/// Either builder, per the configured compression (framed: when the target granted it).
enum Builder<'a> {
    Zstd(BatchBuilder),
    Parts(PartsBuilder<'a>),
    Framed(Framed<'a>),
}

/// Where records come from: the model, and the pool's frames when the session takes framed
/// records.
#[derive(Clone, Copy)]
struct Source<'a> {
    model: &'a Model,
    frames: Option<&'a FramePool>,
}

/// The zstd level of framed records: the configured one (1 when batches are stored).
fn framed_level(c: Compression) -> i32 {
    match c {
        Compression::Zstd(level) => level,
        Compression::Store => 1,
    }
}

/// Builds batches of framed records: a record of whole pool frames is copied from the
/// [`FramePool`]; any other is encoded here (with one reused context), or sent plain when
/// encoding saves no block, as an agent does. The payload goes as stored zstd blocks.
struct Framed<'a> {
    batch: BatchBuilder,
    frames: &'a FramePool,
    zstd: zstd::bulk::Compressor<'static>,
    encoded: Vec<u8>,
}

impl<'a> Framed<'a> {
    fn new(cfg: &RunConfig, frames: &'a FramePool) -> std::io::Result<Framed<'a>> {
        let mut zstd = zstd::bulk::Compressor::new(framed_level(cfg.compression))?;
        zstd.include_checksum(true)?;
        Ok(Framed {
            batch: BatchBuilder::new(&cfg.group, cfg.generation, Compression::Store)?,
            frames,
            zstd,
            encoded: Vec::new(),
        })
    }

    fn push(&mut self, model: &Model, seq: u64) {
        let rec = model.record(seq);
        self.encoded.clear();
        let done = self
            .frames
            .encode(model.data_pos(seq), rec.data.len(), &mut self.encoded)
            || (rec.data.len() > BLOCK
                && encode_record(&mut self.zstd, rec.data, &mut self.encoded));
        if !done {
            self.batch.push_framed(&FramedRecord {
                record: rec,
                encoded: None,
            });
            return;
        }
        let crc = crc32c::crc32c(&self.encoded);
        self.batch.push_framed(&FramedRecord {
            record: RecordRef { data: &[], ..rec },
            encoded: Some((&self.encoded, crc)),
        });
    }
}

/// The seqs one session sends: `start..=total`, `rpb` records per batch.
#[derive(Clone, Copy)]
struct Span {
    start: u64,
    total: u64,
    rpb: u64,
}

/// Sends seqs `start..=total` over `session` (or until the deadline, which the first send
/// sets if the run has a duration) and waits for the last ack.
fn pump(
    cfg: &RunConfig,
    src: Source<'_>,
    session: &mut Session,
    span: Span,
    deadline: &mut Option<Instant>,
    tags: &mut u64,
    pacer: &mut Pacer,
) -> Result<()> {
    let Span { start, total, rpb } = span;
    let threads = cfg.threads.max(1);
    let nbatches = (total - start + 1).div_ceil(rpb);
    let record_size = u64::from(src.model.workload().record_size);
    let free: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        let mut queues: Vec<Receiver<Result<Built<'_>>>> = Vec::with_capacity(threads);
        for worker in 0..threads {
            let (tx, rx) = sync_channel(QUEUE_DEPTH);
            queues.push(rx);
            let free = &free;
            std::thread::Builder::new()
                .name(format!("batch-{worker}"))
                .spawn_scoped(s, move || {
                    produce(
                        cfg,
                        src,
                        tx,
                        free,
                        start,
                        total,
                        rpb,
                        worker as u64,
                        threads as u64,
                    )
                })
                .map_err(Error::io("spawn a batch producer thread"))?;
        }
        let mut last_sent = start - 1;
        for k in 0..nbatches {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                break;
            }
            let built = queues[(k % threads as u64) as usize]
                .recv()
                .map_err(|_| Error::Invalid("a batch producer thread stopped".into()))??;
            let n = built.last_seq - built.first_seq + 1;
            pacer.wait(n * record_size);
            match built.frame {
                Wire::Buf(frame) => {
                    session.send_batch(&frame, built.last_seq, n * record_size)?;
                    let mut f = free.lock().unwrap_or_else(|e| e.into_inner());
                    if f.len() < FREE_BUFFERS {
                        f.push(frame);
                    }
                }
                Wire::Parts(frame) => {
                    session.send_batch_parts(&frame.parts(), built.last_seq, n * record_size)?;
                }
            }
            last_sent = built.last_seq;
            if deadline.is_none() {
                *deadline = cfg.duration.map(|d| Instant::now() + d);
            }
            if cfg.tag_every > 0 {
                let mut t = built.first_seq.div_ceil(cfg.tag_every) * cfg.tag_every;
                while t <= built.last_seq {
                    session.send_tag(&Tag {
                        group: cfg.group.clone(),
                        generation: cfg.generation,
                        tag: TagInfo {
                            seq: Seq(t),
                            kind: TagKind::User,
                            timestamp_ms: rewind_linux::clock::now_ms(),
                            name: format!("t{t}"),
                        },
                    })?;
                    *tags += 1;
                    t += cfg.tag_every;
                }
            }
        }
        // Dropping the queues stops the producers if we leave early.
        drop(queues);
        session.wait_durable(last_sent)
    })
}

/// Builds batches `worker, worker + threads, ...` and queues them in that order.
#[allow(clippy::too_many_arguments)]
fn produce<'a>(
    cfg: &RunConfig,
    src: Source<'a>,
    tx: SyncSender<Result<Built<'a>>>,
    free: &Mutex<Vec<Vec<u8>>>,
    start: u64,
    total: u64,
    rpb: u64,
    worker: u64,
    threads: u64,
) {
    let model = src.model;
    let mut builder = match (src.frames, cfg.compression) {
        (Some(frames), _) => match Framed::new(cfg, frames) {
            Ok(b) => Builder::Framed(b),
            Err(e) => {
                let _ = tx.send(Err(Error::io("a framed batch builder")(e)));
                return;
            }
        },
        (None, Compression::Store) => Builder::Parts(PartsBuilder::new(&cfg.group, cfg.generation)),
        (None, c) => match BatchBuilder::new(&cfg.group, cfg.generation, c) {
            Ok(b) => Builder::Zstd(b),
            Err(e) => {
                let _ = tx.send(Err(Error::io(format!("zstd level {c}"))(e)));
                return;
            }
        },
    };
    let mut k = worker;
    loop {
        let first = start + k * rpb;
        if first > total {
            return;
        }
        let last = (first + rpb - 1).min(total);
        let frame = match &mut builder {
            Builder::Parts(b) => {
                for seq in first..=last {
                    b.push(&model.record(seq));
                }
                Ok(Wire::Parts(
                    b.finish(Seq(first), rewind_linux::clock::now_ms()),
                ))
            }
            Builder::Framed(f) => {
                for seq in first..=last {
                    f.push(model, seq);
                }
                let buf = free
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .pop()
                    .unwrap_or_default();
                f.batch
                    .finish(buf, Seq(first), rewind_linux::clock::now_ms())
                    .map(Wire::Buf)
                    .map_err(Error::io("a framed batch"))
            }
            Builder::Zstd(b) => {
                for seq in first..=last {
                    b.push(&model.record(seq));
                }
                let buf = free
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .pop()
                    .unwrap_or_default();
                b.finish(buf, Seq(first), rewind_linux::clock::now_ms())
                    .map(Wire::Buf)
                    .map_err(Error::io("zstd compression of a batch"))
            }
        };
        let built = frame.map(|frame| Built {
            frame,
            first_seq: first,
            last_seq: last,
        });
        let failed = built.is_err();
        if tx.send(built).is_err() || failed {
            return;
        }
        k += threads;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_sizing() {
        assert_eq!(records_per_batch(4096, 4 << 20), 1024);
        assert_eq!(records_per_batch(1 << 20, 4 << 20), 4);
        assert_eq!(records_per_batch(1 << 20, 1), 1);
        assert_eq!(records_per_batch(8 << 20, 1 << 30), 7);
        let n = records_per_batch(512, 1 << 30);
        assert!(n <= u64::from(rewind_formats::MAX_BATCH_RECORDS));
        assert!(n * (512 + 16) <= MAX_BATCH_RAW && (n + 1) * (512 + 16) > MAX_BATCH_RAW);
    }
}
