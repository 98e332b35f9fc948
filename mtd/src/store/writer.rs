//! The journal writer: one thread per store that owns the IO engine.
//!
//! Sessions send it encoded chunks over a bounded channel. It takes everything queued (group commit),
//! places each chunk at the end of its group's open segment, writes them all, fdatasyncs each touched
//! segment once, and only then publishes the chunks to readers and advances the durable seq that
//! sessions acknowledge. Segments are sealed when full or old.
//!
//! Failure policy: a shortage (ENOSPC, EDQUOT, EMFILE, ENFILE; `shortage.rs`) at any step (segment
//! create, header, rename, directory fsync, preallocation, append, fdatasync, seal) pauses: the
//! step is retried from its start until the resource comes back, and nothing is acknowledged
//! meanwhile. Any other write or fsync error fails the store for good.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rewind_formats::segment::{ChunkHeader, SegmentFooter, SegmentHeader};
use rewind_formats::BLOCK;
use tokio::sync::mpsc;

use super::engine::{IoEngine, WriteOp};
use super::group::{journal_dir, Group, SegmentMeta};
use super::health::{Component, Health};
use super::reserve::SpaceReserve;
use super::segment_file::{self, add_chunk_to_footer};
use super::shortage::retry_while_short;
use super::{Result, StoreError};
use rewind_linux::aligned::AlignedBuf;
use rewind_linux::clock::now_ms;

pub(crate) enum WriterMsg {
    Append(AppendReq),
    /// Periodic wake-up: seal segments that have been open too long.
    Tick,
    /// A group is being deleted: seal its open segment (after every chunk queued before this
    /// message) and forget it; then answer. Nothing is queued for it afterwards.
    Forget {
        group: String,
        done: std::sync::mpsc::Sender<Result<()>>,
    },
}

/// One encoded chunk (records or tag) for a group, ready to append.
pub struct AppendReq {
    pub(crate) group: Arc<Group>,
    pub(crate) buf: AlignedBuf,
    pub(crate) header: ChunkHeader,
}

/// The first preallocation step of a segment (later ones grow, see `place`).
const MIN_PREALLOC_STEP: u64 = 1 << 20;

#[derive(Clone, Debug)]
pub struct WriterConfig {
    pub segment_size: u64,
    pub seal_after: Duration,
    /// Preallocate segments in steps of up to this many bytes (writes into a sized file are
    /// faster, and ENOSPC then shows up at allocation, before any chunk is half written).
    pub prealloc_step: u64,
    /// Most bytes taken into one group commit.
    pub max_commit_bytes: usize,
}

impl Default for WriterConfig {
    fn default() -> Self {
        WriterConfig {
            segment_size: 256 << 20,
            seal_after: Duration::from_secs(60),
            prealloc_step: 64 << 20,
            max_commit_bytes: 64 << 20,
        }
    }
}

/// The group's segment currently being appended to.
struct OpenSegment {
    id: u64,
    path: PathBuf,
    /// O_DIRECT (where the file system allows it) read-write handle for chunk appends.
    direct: File,
    end: u64,
    allocated: u64,
    opened: Instant,
    footer: SegmentFooter,
}

pub(crate) struct Writer {
    engine: Box<dyn IoEngine>,
    cfg: WriterConfig,
    health: Arc<Health>,
    /// While a merge spends it, the writer makes no tries (they would eat its space).
    reserve: Arc<SpaceReserve>,
    open: HashMap<String, OpenSegment>,
    groups: HashMap<String, Arc<Group>>,
}

/// Where one request goes.
struct Placed {
    req: AppendReq,
    segment_id: u64,
    path: PathBuf,
    pos: u64,
    fd: RawFd,
}

impl Writer {
    pub(crate) fn new(
        engine: Box<dyn IoEngine>,
        cfg: WriterConfig,
        health: Arc<Health>,
        reserve: Arc<SpaceReserve>,
    ) -> Writer {
        Writer {
            engine,
            cfg,
            health,
            reserve,
            open: HashMap::new(),
            groups: HashMap::new(),
        }
    }

    /// The thread body: runs until every sender is gone.
    pub(crate) fn run(mut self, mut rx: mpsc::Receiver<WriterMsg>) {
        tracing::info!(engine = self.engine.name(), "journal writer started");
        while let Some(first) = rx.blocking_recv() {
            let mut reqs = Vec::new();
            let mut bytes = 0usize;
            let mut tick = false;
            let mut forgets = Vec::new();
            let mut next = Some(first);
            while let Some(msg) = next.take() {
                match msg {
                    WriterMsg::Append(r) => {
                        bytes += r.buf.len();
                        reqs.push(r);
                    }
                    WriterMsg::Tick => tick = true,
                    WriterMsg::Forget { group, done } => forgets.push((group, done)),
                }
                if bytes < self.cfg.max_commit_bytes {
                    next = rx.try_recv().ok();
                }
            }
            if let Some(why) = self.health.failed() {
                tracing::debug!(
                    dropped = reqs.len(),
                    "store failed ({why}); dropping writes"
                );
                for (_, done) in forgets {
                    let _ = done.send(Err(StoreError::Failed(why.clone())));
                }
                continue;
            }
            if !reqs.is_empty() {
                if let Err(e) = self.commit(reqs) {
                    self.health.fail(e.to_string());
                    for (_, done) in forgets {
                        let _ = done.send(Err(StoreError::Failed(e.to_string())));
                    }
                    continue;
                }
            }
            for (group, done) in forgets {
                let r = self.seal(&group);
                self.groups.remove(&group);
                if let Err(e) = &r {
                    self.health.fail(e.to_string());
                }
                let _ = done.send(r);
            }
            if tick {
                if let Err(e) = self.seal_old() {
                    self.health.fail(e.to_string());
                }
            }
        }
        tracing::info!("journal writer stopped");
    }

    /// Group commit: place, write, fdatasync, publish, then seal what is full.
    ///
    /// A commit is cut into rounds at segment boundaries: once a group's open segment is full,
    /// what is placed so far is written, synced and published, the segment sealed, and the rest
    /// goes to the next one. So a segment holds at most `segment_size` plus one chunk, whatever
    /// the queue held (one merge step, and so the space reserve, stays bounded), and on a
    /// nearly full disk each round needs one preallocation step, not the whole queue's.
    fn commit(&mut self, reqs: Vec<AppendReq>) -> Result<()> {
        let mut rest = reqs.into_iter().peekable();
        while rest.peek().is_some() {
            let mut placed = Vec::new();
            while let Some(req) = rest.peek() {
                let full = self
                    .open
                    .get(&req.group.name)
                    .is_some_and(|og| og.end >= self.cfg.segment_size);
                if full && !placed.is_empty() {
                    break;
                }
                let req = rest.next().expect("peeked");
                placed.push(self.place(req)?);
            }
            self.commit_round(placed)?;
        }
        Ok(())
    }

    fn commit_round(&mut self, mut placed: Vec<Placed>) -> Result<()> {
        let started = Instant::now();
        let mut fds: Vec<RawFd> = placed.iter().map(|p| p.fd).collect();
        fds.sort_unstable();
        fds.dedup();

        // Write and fdatasync as one step: if either reports a shortage, both are redone
        // (rewriting the same bytes at the same positions is harmless), so a retried fsync never
        // vouches for data that an earlier failed one may have dropped.
        let where_ = placed.first().map(|p| p.path.clone()).unwrap_or_default();
        let engine = &mut self.engine;
        retry(&self.health, &self.reserve, || {
            let ops: Vec<WriteOp<'_>> = placed
                .iter()
                .map(|p| WriteOp {
                    fd: p.fd,
                    buf: &p.req.buf,
                    offset: p.pos,
                })
                .collect();
            engine
                .write_all(&ops)
                .map_err(StoreError::io("append to journal", &where_))?;
            let synced = Instant::now();
            engine
                .sync_all(&fds)
                .map_err(StoreError::io("fdatasync journal", &where_))?;
            crate::metrics::store::FSYNC.observe(synced.elapsed());
            Ok(())
        })
        .inspect_err(|_| leak(&mut placed))?;

        let mut touched: Vec<String> = Vec::new();
        for p in &placed {
            let og = self
                .open
                .get_mut(&p.req.group.name)
                .expect("placed group has an open segment");
            add_chunk_to_footer(&mut og.footer, &p.req.header, p.pos);
            p.req.group.publish(p.segment_id, p.pos, &p.req.header);
            p.req
                .group
                .frames
                .remember_tables(p.segment_id, p.pos, &p.req.header, &p.req.buf);
            if !touched.contains(&p.req.group.name) {
                touched.push(p.req.group.name.clone());
            }
        }
        for name in touched {
            let full = self
                .open
                .get(&name)
                .is_some_and(|og| og.end >= self.cfg.segment_size);
            if full {
                self.seal(&name)?;
            }
        }
        crate::metrics::store::APPLY.observe(started.elapsed());
        Ok(())
    }

    /// Reserve space for a request at the end of its group's open segment.
    fn place(&mut self, req: AppendReq) -> Result<Placed> {
        let name = req.group.name.clone();
        if self
            .groups
            .get(&name)
            .is_some_and(|g| !Arc::ptr_eq(g, &req.group))
        {
            // The group was replaced (adopted anew): its open segment belongs to a deleted
            // directory and is forgotten, not sealed.
            self.open.remove(&name);
            self.groups.remove(&name);
        }
        if !self.open.contains_key(&name) {
            // Safe to retry whole: see `create_segment`.
            let engine = &mut self.engine;
            let og = retry(&self.health, &self.reserve, || {
                create_segment(&mut **engine, &req.group, &req.header)
            })?;
            self.open.insert(name.clone(), og);
            self.groups.insert(name.clone(), req.group.clone());
        }
        let len = req.buf.len() as u64;
        let need = self.open[&name].end + len;
        if need > self.open[&name].allocated {
            let (fd, from, path) = {
                let og = &self.open[&name];
                (og.direct.as_raw_fd(), og.allocated, og.path.clone())
            };
            // Steps grow with the segment: 1 MiB first, then as much as it already holds, up
            // to `prealloc_step`. A busy group soon allocates in big steps; an idle one (a site
            // may put thousands on a target) holds 1 MiB ahead, not 64.
            let step = from
                .clamp(
                    MIN_PREALLOC_STEP,
                    self.cfg.prealloc_step.max(MIN_PREALLOC_STEP),
                )
                .max(len);
            let new_alloc = need.max(from + step).div_ceil(BLOCK as u64) * BLOCK as u64;
            retry(&self.health, &self.reserve, || {
                nix::fcntl::fallocate(
                    fd,
                    nix::fcntl::FallocateFlags::empty(),
                    from as i64,
                    (new_alloc - from) as i64,
                )
                .map_err(|e| StoreError::io("preallocate journal segment", &path)(e.into()))
            })?;
            self.open.get_mut(&name).expect("open").allocated = new_alloc;
        }
        let og = self.open.get_mut(&name).expect("open");
        let pos = og.end;
        og.end += len;
        Ok(Placed {
            segment_id: og.id,
            path: og.path.clone(),
            pos,
            fd: og.direct.as_raw_fd(),
            req,
        })
    }

    /// Seal a group's open segment: footer written and durable; the next chunk opens a new one.
    /// Retried whole on a shortage: the footer is written again at the same offset, the file cut
    /// at the same length and fdatasynced, so a retried sync vouches only for bytes written
    /// after the failed one (the chunks before the footer were synced by their commits).
    fn seal(&mut self, name: &str) -> Result<()> {
        let Some(og) = self.open.get_mut(name) else {
            return Ok(());
        };
        let engine = &mut self.engine;
        let len = retry(&self.health, &self.reserve, || {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&og.path)
                .map_err(StoreError::io("open segment to seal", &og.path))?;
            segment_file::seal(&mut **engine, &file, &og.path, og.end, &mut og.footer)
        })?;
        let og = self.open.remove(name).expect("open");
        if let Some(g) = self.groups.get(name) {
            g.mark_sealed(og.id, len);
        }
        tracing::debug!(group = name, segment = og.id, len, "sealed journal segment");
        Ok(())
    }

    fn seal_old(&mut self) -> Result<()> {
        let old: Vec<String> = self
            .open
            .iter()
            .filter(|(_, og)| {
                og.opened.elapsed() >= self.cfg.seal_after && !og.footer.chunks.is_empty()
            })
            .map(|(n, _)| n.clone())
            .collect();
        for name in old {
            self.seal(&name)?;
        }
        Ok(())
    }
}

/// Create the next segment of a group: header written and durable, directory entry durable.
///
/// Safe to run again from its start after any failure (the writer retries it on a shortage):
/// the id is the same until the segment is registered (last), a temporary file left by a failed
/// try is removed and built anew (so a failed fsync of it vouches for nothing kept), and the
/// rename replaces a header-only segment that a try published before failing.
fn create_segment(
    engine: &mut dyn IoEngine,
    group: &Arc<Group>,
    first: &ChunkHeader,
) -> Result<OpenSegment> {
    let id = group.next_segment_id();
    let dir = journal_dir(&group.dir);
    let path = dir.join(segment_file::segment_file_name(id));
    let generation = first.generation;
    let header = SegmentHeader {
        segment_id: id,
        group: group.name.clone(),
        generation,
        first_seq: first.first_seq,
        created_ms: now_ms(),
    };
    // Written under a temporary name and renamed once its header is durable: a kill -9 between
    // create and header write must not leave a headerless segment that start-up rejects. A
    // temporary file left by such a kill has this same id (ids come from the named segments),
    // so it is replaced here.
    let tmp = path.with_extension("rwj.tmp");
    match std::fs::remove_file(&tmp) {
        Ok(()) => {
            // (Also every retry after a shortage, hence debug.)
            tracing::debug!(path = %tmp.display(), "removed a segment left half-created by a crash or a failed try")
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(StoreError::io("remove stale segment", &tmp)(e)),
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(StoreError::io("create segment", &tmp))?;
    let hdr = header.encode();
    file.write_all_at(&hdr, 0)
        .map_err(StoreError::io("write segment header", &tmp))?;
    file.sync_all().map_err(StoreError::io("fsync", &tmp))?;
    std::fs::rename(&tmp, &path).map_err(StoreError::io("rename segment into place", &path))?;
    engine
        .sync_dir(&dir)
        .map_err(StoreError::io("fsync directory", &dir))?;
    let direct = open_direct(&path)?;
    let read = File::open(&path).map_err(StoreError::io("open segment", &path))?;
    group.add_open_segment(SegmentMeta {
        id,
        path: path.clone(),
        file: Arc::new(read),
        first_seq: first.first_seq,
        last_seq: rewind_formats::Seq(0),
        max_seq: rewind_formats::Seq(0),
        len_bytes: BLOCK as u64,
        sealed: false,
        newest_ms: 0,
        chunks: 0,
        padding_bytes: 0,
        plain_bytes: 0,
    });
    tracing::debug!(group = %group.name, segment = id, "opened journal segment");
    Ok(OpenSegment {
        id,
        path,
        direct,
        end: BLOCK as u64,
        allocated: BLOCK as u64,
        opened: Instant::now(),
        footer: SegmentFooter::default(),
    })
}

/// Retry a writer step while it meets a shortage (and never while a merge spends the reserve).
fn retry<T>(health: &Health, reserve: &SpaceReserve, step: impl FnMut() -> Result<T>) -> Result<T> {
    retry_while_short(health, Component::Writer, &|| reserve.may_write(), step)
}

/// After a failed engine call, writes may still be in flight in the kernel: never free their buffers.
fn leak(placed: &mut Vec<Placed>) {
    for p in placed.drain(..) {
        std::mem::forget(p.req.buf);
    }
}

/// Open for O_DIRECT appends; file systems without O_DIRECT (tmpfs) get a buffered handle, which
/// is still correct because every commit ends in fdatasync.
fn open_direct(path: &std::path::Path) -> Result<File> {
    match OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
    {
        Ok(f) => Ok(f),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            tracing::warn!(path = %path.display(), "O_DIRECT not supported here; using buffered writes");
            OpenOptions::new()
                .read(true)
                .write(true)
                .open(path)
                .map_err(StoreError::io("open segment", path))
        }
        Err(e) => Err(StoreError::Io {
            op: "open segment",
            path: path.to_path_buf(),
            source: e,
        }),
    }
}
