//! What a WELCOME starts: the resync window it calls for, and the word to the sync thread, in
//! the one order that cannot leave a window open at the target.

use rewind_formats::Seq;

use crate::stream::link::SyncEvent;
use crate::stream::loss::Repair;
use crate::stream::queue::Queue;
use crate::sync::pass::{RESYNC_TAG, SYNC_TAG};

/// What one WELCOME told the sender.
pub(super) struct Welcomed {
    /// The first WELCOME of this run (the queue's base was set by it).
    pub first: bool,
    pub durable: Seq,
    /// Every block must be compared (an adopted replica: "resync needed" with nothing durable).
    pub compare_all: bool,
    /// The target lost what it acknowledged, and how it is repaired.
    pub loss: Option<Repair>,
}

/// Opens the window the WELCOME calls for, then tells the sync thread (`tell`).
///
/// The window comes first. The sync thread may run a whole pass and close its window the
/// moment it hears: the initial sync of a sparse disk sends nothing and ends within
/// microseconds. A window the sender opened after that stayed open: the next write carried its
/// SyncBegin, no pass was left to send the SyncEnd, and the target reported the group's newest
/// point not recoverable (and a resync running) for good, while the agent said it was done.
pub(super) fn open_window_then_tell(queue: &Queue, w: &Welcomed, mut tell: impl FnMut(SyncEvent)) {
    if w.loss.is_some() {
        // Everything queued goes out again inside the window; the sync thread runs the compare
        // and records the window.
        queue.open_window_at_unacked(RESYNC_TAG);
    } else if w.first && w.durable == Seq(0) {
        // An empty target: what was captured before this first contact is part of the initial
        // sync's window too.
        queue.open_window_at_unacked(SYNC_TAG);
    }
    if w.first {
        tell(SyncEvent::Welcomed {
            durable: w.durable,
            compare_all: w.compare_all,
        });
    }
    if let Some(repair) = w.loss {
        tell(SyncEvent::TargetLost(repair));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rewind_formats::RecordKind;
    use rewind_formats::TagKind;
    use rewind_linux::aligned::AlignedBuf;

    use crate::stream::queue::{Entry, Record};

    fn rec() -> Record {
        Record::new(0, RecordKind::Data, 0, 4096, Some(AlignedBuf::new(4096)))
    }

    /// Whether a user tag would be taken now: no resync window is open or about to open.
    fn no_window(queue: &Queue) -> bool {
        queue.push_tag("probe", TagKind::User, 0).is_ok()
    }

    fn first_contact() -> Welcomed {
        Welcomed {
            first: true,
            durable: Seq(0),
            compare_all: false,
            loss: None,
        }
    }

    /// The sync tags in the stream, in order, with their seqs.
    fn sync_tags(queue: &Queue) -> Vec<(u64, TagKind)> {
        let mut out = Vec::new();
        loop {
            let batch = queue.next_batch(100, 1 << 20);
            if batch.is_empty() {
                return out;
            }
            for e in batch {
                if let Entry::Tag { seq, tag } = e {
                    if matches!(tag.kind, TagKind::SyncBegin | TagKind::SyncEnd) {
                        out.push((seq.0, tag.kind));
                    }
                }
            }
        }
    }

    #[test]
    fn a_sync_that_ends_at_once_leaves_no_window_open() {
        let q = Queue::new(1 << 20, None);
        q.set_base(Seq(0));
        // The sync thread at its fastest: a pass over a sparse disk sends nothing, so it opens
        // and closes its window before the sender does anything more.
        open_window_then_tell(&q, &first_contact(), |e| {
            if let SyncEvent::Welcomed { .. } = e {
                q.open_window(SYNC_TAG);
                assert_eq!(q.close_window(SYNC_TAG), None, "nothing was recorded");
            }
        });
        // A write after the sync: an ordinary record, inside no window.
        q.push(rec()).unwrap();
        assert!(
            no_window(&q),
            "a window is open with no sync left to close it"
        );
        assert_eq!(sync_tags(&q), vec![]);
    }

    #[test]
    fn writes_before_the_first_contact_are_inside_the_initial_sync() {
        let q = Queue::new(1 << 20, None);
        q.push(rec()).unwrap(); // captured before the WELCOME
        q.set_base(Seq(0));
        open_window_then_tell(&q, &first_contact(), |e| {
            if let SyncEvent::Welcomed { .. } = e {
                q.open_window(SYNC_TAG);
                q.push_copy(rec()).unwrap();
                assert!(q.close_window(SYNC_TAG).is_some());
            }
        });
        q.push(rec()).unwrap();
        assert!(no_window(&q));
        assert_eq!(
            sync_tags(&q),
            vec![(1, TagKind::SyncBegin), (2, TagKind::SyncEnd)]
        );
    }

    #[test]
    fn a_loss_opens_the_window_before_the_sync_thread_hears_of_it() {
        let q = Queue::new(1 << 20, None);
        q.set_base(Seq(0));
        let w = Welcomed {
            first: false,
            durable: Seq(0),
            compare_all: false,
            loss: Some(Repair::Compare),
        };
        let mut heard = Vec::new();
        open_window_then_tell(&q, &w, |e| {
            assert!(!no_window(&q), "{e:?} before the window");
            heard.push(e);
        });
        assert_eq!(heard, vec![SyncEvent::TargetLost(Repair::Compare)]);
    }
}
