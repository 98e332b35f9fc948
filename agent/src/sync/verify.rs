//! Online verify: a report-only compare of the disks with the replica while the workload keeps
//! writing (CONTROL verify request from the target; the results go back as verify reports).
//!
//! Why no false alarm. The target answers a HASHES request with its state at some seq `p` (its
//! durable seq when it reads the range). `p` is not known exactly, but it is at least every
//! seq the target had acknowledged before the request was asked for: an ACK(d) is sent only once
//! `d` is durable, and durable never goes back. So each request takes `t` = the acknowledged seq
//! (in the first round, the `--point` when it is older) *before* it is asked for, and `p >= t`.
//!
//! The local region is read under the range lock held exclusively ([`crate::sync::rangelock`]).
//! A captured write holds that lock shared from before it marks the dirty map until after its
//! seq is recorded there, so while the verify holds it no write to the region is in flight: the
//! bytes read are exactly the region after every write recorded so far (never half of a write
//! whose seq is not yet known, which is what would give a false difference). Under the lock the
//! dirty map tells whether any write recorded for the region has a seq after `t`
//! ([`crate::sync::dirty::DirtyMap::written_since`]; a pin, a write dropped in bitmap mode,
//! counts as one). If none has, the region's bytes at the source equal its bytes after the
//! writes up to `t`, and the records in `(t, p]` do not touch it, so a correct replica's state
//! at `p` holds the same bytes: any hash that differs is a real difference, reported with seq
//! `t`. If one has, the region is compared again in a later round, at a later `t`, until the
//! deadline.
//!
//! The agent's seqs restart at each run; a region with no write this run was clean at start
//! (else it is pinned), so its last write is at or before the run's first seq. A `--point`
//! older than that is taken as the run's first seq (the report says which seq was used).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use rewind_formats::hash::block_hash;
use rewind_formats::verify::{VerifyRange, VerifyReport, VerifyRequest, MAX_RANGES_PER_REPORT};
use rewind_formats::{Control, ControlOp, Message, Seq, SECTOR};

use crate::capture::Capture;
use crate::error::{Error, Result};
use crate::now_ms;
use crate::stream::link::Outbox;
use crate::stream::seq::{LocalSeq, SeqBase};
use crate::sync::dirty::REGION;
use crate::sync::hashclient::{HashRequest, HashRequests, Lane};

/// HASHES requests in flight ahead of the region being compared.
const PIPELINE: usize = 16;
/// How often a wait checks for stop and the deadline.
const POLL: Duration = Duration::from_millis(100);
/// Progress reports at most this often (and whenever a report's ranges are full).
const REPORT_EVERY: Duration = Duration::from_secs(1);
/// Between rounds: lets the ACKs of what was written meanwhile come back.
const ROUND_PAUSE: Duration = Duration::from_millis(100);

/// Where the session's reader leaves a verify request for the verify thread.
#[derive(Default)]
pub struct VerifyCtl {
    next: Mutex<Option<VerifyRequest>>,
    posted: Condvar,
}

impl VerifyCtl {
    /// A request from the target; a newer one replaces one not yet started.
    pub fn post(&self, r: VerifyRequest) {
        *self.next.lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
        self.posted.notify_all();
    }

    /// A newer request waits: the running verify gives way (its job at the target has ended).
    fn superseded(&self) -> bool {
        self.next
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    fn take(&self, timeout: Duration) -> Option<VerifyRequest> {
        let mut g = self.next.lock().unwrap_or_else(|e| e.into_inner());
        if g.is_none() {
            g = self
                .posted
                .wait_timeout(g, timeout)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        g.take()
    }
}

/// The verify thread and what it works with.
pub struct VerifyThread {
    pub group: String,
    pub capture: Arc<Capture>,
    pub hashes: Arc<HashRequests>,
    pub ctl: Arc<VerifyCtl>,
    pub outbox: Outbox,
    pub stop: Arc<AtomicBool>,
}

/// One region of one disk.
#[derive(Clone, Copy)]
struct Region {
    disk: u16,
    index: u64,
}

/// A running verify's counters and the ranges not yet reported.
struct Tally {
    job: u64,
    total: u64,
    compared: u64,
    /// Bytes compared in a round after the first.
    recompared: u64,
    /// The round running (0: the first).
    round: u32,
    unsent: Vec<VerifyRange>,
    /// Every differing region, for the repair.
    differing: Vec<Region>,
    last_report: Instant,
}

impl VerifyThread {
    pub fn run(self) {
        while !self.stop.load(Ordering::SeqCst) {
            let Some(req) = self.ctl.take(POLL) else {
                continue;
            };
            tracing::info!(group = %self.group, job = req.job, point = ?req.point,
                repair = req.repair, "online verify started");
            let mut tally = Tally {
                job: req.job,
                total: self.capture.disks.iter().map(|d| d.size_bytes).sum(),
                compared: 0,
                recompared: 0,
                round: 0,
                unsent: Vec::new(),
                differing: Vec::new(),
                last_report: Instant::now(),
            };
            let last = match self.verify(&req, &mut tally) {
                Ok(last) => last,
                Err(Error::Stopping) => return,
                Err(e) => {
                    tracing::warn!(group = %self.group, job = req.job, error = %e,
                        "online verify failed");
                    VerifyReport {
                        error: Some(e.to_string()),
                        ..VerifyReport::default()
                    }
                }
            };
            self.finish(&mut tally, last);
        }
    }

    /// Stopping, or a newer verify asked for (the target gave up the running one's job: a
    /// broken session, say).
    fn stopping(&self) -> Result<()> {
        if self.stop.load(Ordering::SeqCst) {
            return Err(Error::Stopping);
        }
        if self.ctl.superseded() {
            return Err(Error::Protocol("a newer verify request replaced it".into()));
        }
        Ok(())
    }

    fn region_len(&self, r: Region) -> u64 {
        let size = self.capture.disks[r.disk as usize].size_bytes;
        (size - r.index * REGION).min(REGION)
    }

    /// 4 KiB blocks, or sectors where the disk's end is not 4 KiB-aligned (as the resync).
    fn block_size(&self, r: Region) -> u32 {
        if self.region_len(r).is_multiple_of(4096) {
            4096
        } else {
            SECTOR as u32
        }
    }

    fn request(&self, r: Region) {
        let bs = self.block_size(r);
        self.hashes.request_in(
            Lane::Verify,
            HashRequest {
                disk: r.disk,
                offset: r.index * REGION,
                block_size: bs,
                blocks: (self.region_len(r) / u64::from(bs)) as u32,
            },
        );
    }

    /// Rounds until every region is compared or the deadline passes; the last report (its
    /// ranges and counters are filled in by [`VerifyThread::finish`]).
    fn verify(&self, req: &VerifyRequest, tally: &mut Tally) -> Result<VerifyReport> {
        let queue = &self.capture.queue;
        let deadline = Instant::now() + Duration::from_secs(req.deadline_secs);
        let base = loop {
            if let Some(b) = queue.base() {
                break b;
            }
            self.stopping()?;
            if Instant::now() >= deadline {
                return Err(Error::Protocol(
                    "the target has not welcomed this agent yet: nothing to compare".into(),
                ));
            }
            std::thread::sleep(POLL);
        };
        let point = req.point.map(|p| local_of(base, Seq(p)));
        let mut todo: Vec<Region> = Vec::new();
        for (d, disk) in self.capture.disks.iter().enumerate() {
            for index in 0..disk.size_bytes.div_ceil(REGION) {
                todo.push(Region {
                    disk: d as u16,
                    index,
                });
            }
        }
        self.hashes.new_pass_in(Lane::Verify);
        let mut first = true;
        loop {
            let point = if first { point } else { None };
            first = false;
            let later = self.round(&todo, point, base, deadline, tally)?;
            if later.is_empty() {
                break;
            }
            if Instant::now() >= deadline {
                let not_compared = later.iter().map(|r| self.region_len(*r)).sum();
                tracing::warn!(group = %self.group, job = tally.job, regions = later.len(),
                    "online verify: regions kept being written until the deadline");
                return Ok(VerifyReport {
                    not_compared_bytes: not_compared,
                    ..VerifyReport::default()
                });
            }
            std::thread::sleep(ROUND_PAUSE);
            tally.round += 1;
            todo = later;
        }
        let mut last = VerifyReport::default();
        if req.repair && !tally.differing.is_empty() {
            self.repair(tally, deadline)?;
            last.repaired = true;
        }
        Ok(last)
    }

    /// Compares `regions`, each at the seq acknowledged when its hashes were asked for (or at
    /// `point` if that is older); returns those written since (for a later round).
    fn round(
        &self,
        regions: &[Region],
        point: Option<LocalSeq>,
        base: SeqBase,
        deadline: Instant,
        tally: &mut Tally,
    ) -> Result<Vec<Region>> {
        let mut later = Vec::new();
        let mut asked = 0;
        // Per request, the seq its answer is known to include: taken before it is asked for
        // (see the module's comment).
        let mut seqs = std::collections::VecDeque::new();
        for (i, r) in regions.iter().enumerate() {
            while asked < regions.len() && asked < i + PIPELINE {
                let acked = self.capture.queue.acked();
                seqs.push_back(point.map_or(acked, |p| p.min(acked)));
                self.request(regions[asked]);
                asked += 1;
            }
            let t = seqs.pop_front().expect("asked above");
            self.stopping()?;
            self.capture.queue.poke();
            let theirs = loop {
                match self
                    .hashes
                    .wait_in(Lane::Verify, r.disk, r.index * REGION, POLL)
                {
                    Some(Ok(h)) => break h,
                    Some(Err(why)) => return Err(Error::Protocol(why)),
                    None => {}
                }
                self.stopping()?;
                if Instant::now() >= deadline + Duration::from_secs(60) {
                    return Err(Error::Protocol(format!(
                        "no HASHES answer for disk {} offset {} from the target",
                        r.disk,
                        r.index * REGION
                    )));
                }
            };
            if self.compare(*r, &theirs, t, base, tally)? {
                tally.compared += self.region_len(*r);
                if tally.round > 0 {
                    tally.recompared += self.region_len(*r);
                }
            } else {
                later.push(*r);
            }
            if tally.unsent.len() >= MAX_RANGES_PER_REPORT
                || tally.last_report.elapsed() >= REPORT_EVERY
            {
                self.report(tally, VerifyReport::default());
            }
        }
        Ok(later)
    }

    /// Compares one region with the target's hashes, if no write since `t` touched it (false
    /// otherwise: nothing compared).
    fn compare(
        &self,
        r: Region,
        theirs: &[u64],
        t: LocalSeq,
        base: SeqBase,
        tally: &mut Tally,
    ) -> Result<bool> {
        let d = &self.capture.disks[r.disk as usize];
        let start = r.index * REGION;
        let len = self.region_len(r);
        let bs = self.block_size(r) as usize;
        let mut buf = self.capture.pool.get(len as usize);
        {
            // The region's lock, exclusively: no captured write to it is in flight while the
            // dirty map is asked and the bytes are read (see the module's comment).
            let _lock = self.capture.locks.chunk(r.disk, r.index);
            if self.capture.dirty.written_since(r.disk, r.index, t) {
                return Ok(false);
            }
            d.read_at(&mut buf, start)?;
        }
        let (seq, time_ms) = (base.wire(t).0, now_ms());
        let mut found = false;
        for (i, block) in buf.chunks(bs).enumerate() {
            if theirs.get(i) == Some(&block_hash(block)) {
                continue;
            }
            found = true;
            let offset = start + (i * bs) as u64;
            match tally.unsent.last_mut() {
                Some(g) if g.disk == r.disk && g.seq == seq && g.offset + g.len == offset => {
                    g.len += block.len() as u64;
                }
                _ => tally.unsent.push(VerifyRange {
                    disk: r.disk,
                    offset,
                    len: block.len() as u64,
                    seq,
                    time_ms,
                }),
            }
            if tally.unsent.len() >= MAX_RANGES_PER_REPORT {
                self.report(tally, VerifyReport::default());
            }
        }
        if found {
            tracing::warn!(group = %self.group, job = tally.job, disk = r.disk, region = r.index,
                seq, "online verify: the replica differs from the source");
            tally.differing.push(r);
        }
        Ok(true)
    }

    /// Pins the differing regions for the resync (which compares them again and sends what
    /// differs inside a resync window) and waits until what it sent is acknowledged.
    fn repair(&self, tally: &mut Tally, deadline: Instant) -> Result<()> {
        let queue = &self.capture.queue;
        let dirty = &self.capture.dirty;
        for r in &tally.differing {
            dirty.pin_region(r.disk, r.index)?;
        }
        tracing::info!(group = %self.group, job = tally.job, regions = tally.differing.len(),
            "online verify: resyncing the regions that differ");
        let give_up = deadline + Duration::from_secs(600);
        while dirty.pinned_count() > 0 {
            self.stopping()?;
            if Instant::now() >= give_up {
                return Err(Error::Protocol(
                    "the resync of the differing regions did not finish".into(),
                ));
            }
            std::thread::sleep(POLL);
        }
        let sent = queue.last_seq();
        while queue.acked() < sent {
            self.stopping()?;
            if Instant::now() >= give_up {
                return Err(Error::Protocol(
                    "the target did not acknowledge the repair".into(),
                ));
            }
            std::thread::sleep(POLL);
        }
        Ok(())
    }

    /// Sends a report with the ranges found since the last one (and the counters).
    fn report(&self, tally: &mut Tally, mut r: VerifyReport) {
        r.job = tally.job;
        r.total_bytes = tally.total;
        r.compared_bytes = tally.compared.min(tally.total);
        let n = tally.unsent.len().min(MAX_RANGES_PER_REPORT);
        r.ranges = tally.unsent.drain(..n).collect();
        tally.last_report = Instant::now();
        self.outbox.send(Message::Control(Control {
            group: self.group.clone(),
            op: ControlOp::VerifyReport,
            arg: r.to_arg(),
        }));
    }

    /// Sends what is left, then the last report.
    fn finish(&self, tally: &mut Tally, mut last: VerifyReport) {
        while tally.unsent.len() > MAX_RANGES_PER_REPORT {
            self.report(tally, VerifyReport::default());
        }
        last.done = true;
        last.recompared_bytes = tally.recompared;
        tracing::info!(group = %self.group, job = tally.job, compared_bytes = tally.compared,
            differing_regions = tally.differing.len(), error = ?last.error, "online verify done");
        self.report(tally, last);
    }
}

/// The local seq of wire seq `wire`, or local seq 0 when `wire` precedes this run's numbering
/// (the run knows nothing of writes before its first seq: see the module's comment).
fn local_of(base: SeqBase, wire: Seq) -> LocalSeq {
    if wire.0 < base.0 {
        LocalSeq(0)
    } else {
        base.local(wire)
    }
}
