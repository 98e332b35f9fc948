//! The cache writer of one group: a thread that appends the frames an agent sent to the group's
//! log and makes them durable with one fdatasync per round (group commit: every frame that came
//! in while the previous sync ran goes into the next one). Only then does the relay acknowledge
//! them to the agent and let the forwarder read them.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Arc;

use anyhow::{Context, Result};
use rewind_formats::Seq;

use super::group::RelayGroup;
use super::log::{segment_path, Entry, Segment};

/// One frame to append.
pub(crate) struct Append {
    pub(crate) frame: Vec<u8>,
    pub(crate) entry: Entry,
}

/// At most this many bytes go into one round before its sync.
const ROUND_BYTES: usize = 32 << 20;

/// Runs until every sender is gone. An IO error stops the relay's acknowledgements for the group
/// for good (the error is logged and kept in the group): what was not synced was never
/// acknowledged, and the agent keeps it.
pub(crate) fn run(g: Arc<RelayGroup>, rx: Receiver<Append>) {
    if let Err(e) = rounds(&g, &rx) {
        tracing::error!(group = %g.name, error = format!("{e:#}"), "cache writer stopped: the relay acknowledges nothing more for this group");
        g.writer_failed(format!("{e:#}"));
    }
}

fn rounds(g: &RelayGroup, rx: &Receiver<Append>) -> Result<()> {
    let mut file: Option<File> = None;
    while let Ok(first) = rx.recv() {
        let mut round = vec![first];
        let mut bytes = round[0].frame.len();
        while bytes < ROUND_BYTES {
            match rx.try_recv() {
                Ok(a) => {
                    bytes += a.frame.len();
                    round.push(a);
                }
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        let mut last_batch = None;
        for a in &round {
            let f = current(g, &mut file, &a.entry)?;
            f.write_all(&a.frame)
                .with_context(|| format!("appending to the cache of group {}", g.name))?;
            let mut log = g.log.lock().expect("log lock");
            let seg = log.segments.last_mut().expect("a segment is open");
            seg.len += a.frame.len() as u64;
            if let Entry::Batch { last, .. } = a.entry {
                seg.last_seq = last;
                last_batch = Some(last);
            }
            log.end += a.frame.len() as u64;
        }
        file.as_ref()
            .expect("a segment is open")
            .sync_data()
            .with_context(|| format!("syncing the cache of group {}", g.name))?;
        let end = g.log.lock().expect("log lock").end;
        g.synced.send_replace(end);
        if let Some(s) = last_batch {
            g.relay_synced(s);
        }
    }
    Ok(())
}

/// The segment to append `entry` to: the last one, or a new one when there is none or a batch
/// would go into a full one (the full one is synced first, so a sealed segment is whole on disk).
fn current<'a>(g: &RelayGroup, file: &'a mut Option<File>, entry: &Entry) -> Result<&'a mut File> {
    let (last, full, next_seq, end) = {
        let log = g.log.lock().expect("log lock");
        let last = log.segments.last().cloned();
        let full = last
            .as_ref()
            .is_some_and(|s| s.len >= g.segment_bytes && matches!(entry, Entry::Batch { .. }));
        (last, full, log.next_seq(), log.end)
    };
    match (&last, full) {
        (Some(seg), false) => {
            if file.is_none() {
                let f = OpenOptions::new()
                    .append(true)
                    .open(&seg.path)
                    .with_context(|| format!("opening {}", seg.path.display()))?;
                *file = Some(f);
            }
        }
        _ => {
            if let Some(f) = file.take() {
                f.sync_data()?;
            }
            let first = match entry {
                Entry::Batch { first, .. } => *first,
                Entry::Tag { .. } => next_seq,
            };
            let path = segment_path(&g.dir, first);
            let f = OpenOptions::new()
                .create_new(true)
                .append(true)
                .mode(0o600)
                .open(&path)
                .with_context(|| format!("creating cache segment {}", path.display()))?;
            File::open(&g.dir)?.sync_all()?;
            g.log.lock().expect("log lock").segments.push(Segment {
                path,
                base: end,
                len: 0,
                last_seq: Seq(0),
            });
            *file = Some(f);
        }
    }
    Ok(file.as_mut().expect("opened"))
}
