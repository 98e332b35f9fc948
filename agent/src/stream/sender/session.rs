//! One session with the target: HELLO and WELCOME (where the target stands, and whether it lost
//! what it acknowledged), then the stream of frames until the connection ends.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use rewind_formats::{stale_epoch_held, ErrorCode, Hello, HelloGroup, Message, ResumeStatus, Seq};

use super::frame::Framer;
use super::welcomed::{open_window_then_tell, Welcomed};
use super::{
    Sender, BATCH_MAX_BYTES, BATCH_MAX_RECORDS, IDLE_WAIT, LINGER, LINGER_RECORDS, MAX_COMPRESSORS,
    WELCOME_TIMEOUT,
};
use crate::error::{Error, Result};
use crate::stream::link::LinkEvent;
use crate::stream::loss::{judge, Known, Repair};
use crate::stream::queue::Entry;
use crate::stream::seq::SeqBase;
use crate::stream::wire::{read_message, Conn};

impl Sender {
    pub(super) fn session(&self) -> Result<()> {
        let s = &self.settings;
        // An answer meant for an earlier session is not this one's business.
        self.answers.try_iter().for_each(drop);
        let target = self.targets.current().clone();
        let addr = target.to_string();
        self.link_event(LinkEvent::Target(addr.clone()));
        let mut conn = Conn::connect(&target, s.tls_client.as_ref())?;
        // Another address than the last session's: a new epoch, durable before the HELLO.
        let epoch = self.state.epoch_for(&addr)?;
        let io_err = |e: std::io::Error| Error::Connection {
            addr: addr.clone(),
            why: e.to_string(),
        };
        conn.set_read_timeout(Some(WELCOME_TIMEOUT))
            .map_err(io_err)?;
        let st = self.queue.stats();
        let hello = Hello {
            agent: s.agent.clone(),
            // Our version, for the target's and the site's inventory (the same as build_info's).
            software: Some(env!("CARGO_PKG_VERSION").to_string()),
            dedup_window: 0,
            // Records compressed as the target's journal stores them, when it takes them.
            framed_records: true,
            groups: vec![HelloGroup {
                group: s.group.to_string(),
                generation: s.generation,
                last_acked: st.base.map_or(Seq(0), |b| b.wire(st.acked_seq)),
                epoch,
                disks: self.disks.clone(),
            }],
        };
        conn.write_all(&Message::Hello(hello).to_frame())
            .map_err(io_err)?;
        let welcome = match read_message(&mut conn, &addr)? {
            Some(Message::Welcome(w)) => w,
            Some(Message::Error(e)) => {
                // Our epoch is older than the group's: our state went back (the path we
                // left would not be this agent). Move past it; the retry is the current path.
                if e.code == ErrorCode::StaleEpoch {
                    if let Some(held) = stale_epoch_held(&e.message) {
                        self.state.move_past_epoch(&addr, held)?;
                    }
                }
                return Err(Error::Remote {
                    code: e.code,
                    message: e.message,
                });
            }
            Some(other) => {
                return Err(Error::Protocol(format!(
                    "expected WELCOME, got {}",
                    other.kind().name()
                )))
            }
            None => {
                return Err(Error::Connection {
                    addr,
                    why: "closed before WELCOME".into(),
                })
            }
        };
        let Some(wg) = welcome.groups.iter().find(|g| g.group == *s.group) else {
            return Err(Error::Protocol(format!(
                "WELCOME does not mention group {}",
                s.group
            )));
        };
        let generation = wg.generation;
        let durable = wg.durable;
        let st = self.queue.stats();
        // The base is set at the first WELCOME of this run, and only then.
        let first = st.base.is_none();
        // Has the target lost records it acknowledged? In this run (its durable seq is below
        // what the last peer acknowledged, or it says so), or since the last run (below the
        // seq kept in the state dir). Behind a relay, what the master target held decides
        // whether the dirty regions are enough (see `stream::loss`).
        let loss = judge(
            durable,
            Known {
                resync_needed: wg.status == ResumeStatus::ResyncNeeded,
                this_run: st
                    .base
                    .map(|b| (b.wire(st.acked_seq), b.wire(st.target_acked))),
                acked_before: first.then_some(self.acked_before).flatten(),
            },
        );
        if let Some(l) = &loss {
            // Before anything is renumbered or cleared: if this fails, the next session finds
            // the loss again.
            match l.repair {
                Repair::Compare => {
                    tracing::error!(group = %s.group, %durable, repair = l.repair.name(), why = %l.why,
                        "the target lost acknowledged data: every region will be compared with it");
                    self.dirty.pin_all()?;
                }
                Repair::Resend => {
                    let regions = self.dirty.pin_dirty_for_resend();
                    tracing::warn!(group = %s.group, %durable, repair = l.repair.name(), why = %l.why,
                        regions, "the last path lost what it acknowledged: the dirty regions will \
                        be resent, no compare needed");
                }
            }
        }
        let base = if loss.is_some() && st.base.is_some() {
            // Renumber so that what is queued follows the target's durable seq.
            self.queue.rebase(durable)
        } else {
            self.queue.set_base(durable)
        };
        let welcomed = Welcomed {
            first,
            durable,
            compare_all: durable == Seq(0) && wg.status == ResumeStatus::ResyncNeeded,
            loss: loss.as_ref().map(|l| l.repair),
        };
        // The sync thread decides what to do once the base is set.
        open_window_then_tell(&self.queue, &welcomed, |e| {
            let _ = self.sync_events.send(e);
        });
        if !self.queue.ack(base.local(durable)) {
            return Err(Error::Protocol(format!(
                "the target's durable seq {durable} is beyond the last seq {} recorded",
                base.wire(st.last_seq)
            )));
        }
        self.queue.rewind_cursor();
        self.queue.session_began();
        conn.set_read_timeout(None).map_err(io_err)?;
        self.targets.welcomed();
        tracing::info!(group = %s.group, target = %addr, epoch, %durable, %base,
            framed = welcome.framed_records, "session started");

        let dead = Arc::new(AtomicBool::new(false));
        let reader = self.spawn_reader(&conn, base, Arc::clone(&dead))?;
        self.link_event(LinkEvent::Connected);
        self.reports.session_started();
        let r = self.stream(&mut conn, base, generation, welcome.framed_records, &dead);
        conn.shutdown();
        let reader_err = reader.join().unwrap_or(None);
        self.hashes.session_ended();
        match (r, reader_err) {
            // The reader usually knows better why the session died (an ERROR from the target).
            (Err(_), Some(e)) | (Ok(()), Some(e)) => Err(e),
            (r, None) => r,
        }
    }

    pub(super) fn stream(
        &self,
        conn: &mut Conn,
        base: SeqBase,
        generation: u64,
        framed: bool,
        dead: &AtomicBool,
    ) -> Result<()> {
        let s = &self.settings;
        // Compression is the sender's main cost (one core does a few hundred MB/s at level 1):
        // when several batches are ready, they are compressed in parallel, then sent in order.
        let parallel = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, MAX_COMPRESSORS);
        let framer = Framer {
            group: &s.group,
            generation,
            base,
            queue: &self.queue,
            levels: &self.levels,
            framed,
        };
        loop {
            if self.stopping() {
                return Ok(());
            }
            if dead.load(Ordering::SeqCst) {
                return Err(Error::Connection {
                    addr: self.targets.current().to_string(),
                    why: "the connection closed".into(),
                });
            }
            self.send_hash_requests(conn)?;
            self.send_outbox(conn)?;
            self.send_report(conn)?;
            let unsent = self.queue.wait_unsent(IDLE_WAIT);
            if unsent == 0 {
                continue;
            }
            if unsent < LINGER_RECORDS {
                std::thread::sleep(LINGER);
            }
            let first = self.queue.next_batch(BATCH_MAX_RECORDS, BATCH_MAX_BYTES);
            if first.is_empty() {
                continue;
            }
            let mut groups = vec![first];
            while groups.len() < parallel {
                let more = self.queue.next_batch(BATCH_MAX_RECORDS, BATCH_MAX_BYTES);
                if more.is_empty() {
                    break;
                }
                groups.push(more);
            }
            let frames: Vec<(Vec<u8>, usize)> = if groups.len() == 1 {
                vec![framer.frame(&groups[0])?]
            } else {
                std::thread::scope(|scope| {
                    let handles: Vec<_> = groups
                        .iter()
                        .map(|g| scope.spawn(|| framer.frame(g)))
                        .collect();
                    handles
                        .into_iter()
                        .map(|h| h.join().expect("a compression thread panicked"))
                        .collect::<Result<Vec<_>>>()
                })?
            };
            for (group, (frame, raw)) in groups.iter().zip(&frames) {
                // The time spent waiting on the link tells the level chooser whether
                // compression would pay (see levels).
                let t = Instant::now();
                self.limit.take(frame.len() as u64);
                self.send(conn, frame)?;
                self.levels.sent(*raw, frame.len(), t.elapsed());
                crate::metrics::wire::sent(*raw, frame.len());
                if matches!(group.first(), Some(Entry::Tag { .. })) {
                    self.queue.collect_sent_tags();
                }
            }
        }
    }
}
