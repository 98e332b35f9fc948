//! The queue's unit tests.
use super::*;
use rewind_formats::RecordKind;
use rewind_linux::aligned::AlignedBuf;

fn rec(len: usize) -> Record {
    Record::new(
        0,
        RecordKind::Data,
        0,
        len as u32,
        Some(AlignedBuf::new(len)),
    )
}

fn seq(p: Result<Pushed>) -> u64 {
    p.unwrap().seq().expect("recorded").0
}

#[test]
fn seqs_batches_tags_and_acks() {
    let q = Queue::new(1 << 20, None);
    assert!(q.push_tag("early", TagKind::User, 0).is_err());
    assert_eq!(seq(q.push(rec(4096))), 1);
    assert_eq!(seq(q.push(rec(4096))), 2);
    let (id, s) = q.push_tag("t", TagKind::User, 0).unwrap();
    assert_eq!(s, None, "no base yet");
    assert_eq!(q.set_base(Seq(10)), SeqBase(10));
    assert_eq!(
        q.set_base(Seq(20)),
        SeqBase(10),
        "only the first base counts"
    );
    assert_eq!(seq(q.push(rec(4096))), 3);
    let b = q.next_batch(100, 1 << 20);
    assert_eq!(b.len(), 2, "records up to the tag");
    let t = q.next_batch(100, 1 << 20);
    assert!(matches!(
        t.as_slice(),
        [Entry::Tag {
            seq: LocalSeq(2),
            ..
        }]
    ));
    assert!(q.ack(LocalSeq(2)));
    assert!(!q.wait_tag(id, Duration::ZERO) || q.stats().entries == 1);
    q.collect_sent_tags();
    assert!(q.wait_tag(id, Duration::ZERO));
    // A reconnect resends what is not acked.
    let b = q.next_batch(100, 1 << 20);
    assert_eq!(b.len(), 1);
    q.rewind_cursor();
    let b = q.next_batch(100, 1 << 20);
    assert!(matches!(
        b.as_slice(),
        [Entry::Record {
            seq: LocalSeq(3),
            ..
        }]
    ));
    assert!(!q.ack(LocalSeq(4)), "ack beyond the last seq");
    assert!(q.ack(LocalSeq(3)));
    assert_eq!(q.stats().queued_bytes, 0);
    assert!(q.wait_drained(Duration::ZERO));
}

#[test]
fn a_window_opens_at_the_next_record_and_closes_after_the_last() {
    let q = Queue::new(1 << 20, None);
    q.set_base(Seq(0));
    assert_eq!(seq(q.push(rec(4096))), 1);
    q.open_window("resync");
    q.open_window("resync"); // once
    assert_eq!(q.push_copy(rec(4096)).unwrap(), Some(LocalSeq(2)));
    assert_eq!(seq(q.push(rec(4096))), 3);
    let e = q.push_tag("u", TagKind::User, 0).unwrap_err().to_string();
    assert!(e.contains("sync is running"), "{e}");
    assert!(q.close_window("resync").is_some());
    assert!(q.close_window("resync").is_none(), "closed already");
    let b = q.next_batch(100, 1 << 20);
    assert_eq!(b.len(), 2, "records up to the begin tag");
    let t = q.next_batch(100, 1 << 20);
    assert!(
        matches!(t.as_slice(), [Entry::Tag { seq: LocalSeq(2), tag }] if tag.kind == TagKind::SyncBegin)
    );
    let b = q.next_batch(100, 1 << 20);
    assert!(matches!(
        b.as_slice(),
        [Entry::Record {
            seq: LocalSeq(3),
            ..
        }]
    ));
    let t = q.next_batch(100, 1 << 20);
    assert!(
        matches!(t.as_slice(), [Entry::Tag { seq: LocalSeq(3), tag }] if tag.kind == TagKind::SyncEnd)
    );
    assert!(q.ack(LocalSeq(3)));
    q.collect_sent_tags();
    assert!(q.wait_drained(Duration::ZERO));
    // A window with no record in it leaves no tags.
    q.open_window("resync");
    assert!(q.close_window("resync").is_none());
}

#[test]
fn full_memory_spills_to_the_spool_then_bitmap_mode() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::create(&dir.path().join("g.spool"), 8192).unwrap();
    let q = Arc::new(Queue::new(2 * (4096 + ENTRY_OVERHEAD), Some(spool)));
    q.set_base(Seq(0));
    let mut r = rec(4096);
    r.data.as_mut().unwrap()[0] = 7;
    assert_eq!(seq(q.push(rec(4096))), 1);
    assert_eq!(seq(q.push(rec(4096))), 2);
    assert_eq!(seq(q.push(r)), 3, "spooled");
    assert_eq!(seq(q.push(rec(4096))), 4, "spooled");
    let st = q.stats();
    assert_eq!(
        (st.queued_bytes, st.spooled_bytes),
        (2 * (4096 + ENTRY_OVERHEAD) + 2 * ENTRY_OVERHEAD, 8192)
    );
    assert_eq!(q.push(rec(4096)).unwrap(), Pushed::Dropped, "both full");
    assert!(q.overflowing());
    let e = q.push_tag("t", TagKind::User, 0).unwrap_err().to_string();
    assert!(e.contains("bitmap mode"), "{e}");
    // The sync waits for memory; in bitmap mode it is turned away at once.
    assert!(!q.wait_for_space(4096).unwrap());
    assert_eq!(q.push_copy(rec(4096)).unwrap(), None);
    let b = q.next_batch(100, 1 << 20);
    assert_eq!(b.len(), 4);
    let Entry::Record { record, .. } = &b[2] else {
        panic!("a record")
    };
    assert!(record.data.is_none());
    assert_eq!(q.read_spooled(record).unwrap()[0], 7);
    assert!(!q.end_overflow(), "not drained yet");
    assert!(q.ack(LocalSeq(4)));
    assert_eq!(q.stats().spooled_bytes, 0);
    assert_eq!(
        q.push(rec(4096)).unwrap(),
        Pushed::Dropped,
        "bitmap mode lasts until the resync takes over"
    );
    let captured = |q: &Queue| q.tallies()[0].captured;
    let before = captured(&q);
    assert!(
        q.drop_if_overflowing(0, 4096),
        "bitmap mode: a write is counted as dropped without its bytes"
    );
    assert_eq!(captured(&q), before + 4096);
    assert!(q.end_overflow());
    assert!(!q.drop_if_overflowing(0, 4096), "out of bitmap mode");
    assert_eq!(seq(q.push(rec(4096))), 5);
    assert_eq!(q.stats().dropped, 3);
}

#[test]
fn the_sync_waits_for_memory_and_gives_up_in_bitmap_mode() {
    let one = 4096 + ENTRY_OVERHEAD;
    let q = Arc::new(Queue::new(2 * one, None));
    q.push_copy(rec(4096)).unwrap();
    q.push_copy(rec(4096)).unwrap();
    let q2 = Arc::clone(&q);
    let t = std::thread::spawn(move || q2.wait_for_space(one).unwrap());
    std::thread::sleep(Duration::from_millis(50));
    assert!(!t.is_finished(), "the third copy waits for space");
    q.next_batch(10, 1 << 20);
    q.ack(LocalSeq(1));
    assert!(t.join().unwrap());
    assert_eq!(q.push_copy(rec(4096)).unwrap(), Some(LocalSeq(3)));
    // A wait for space ends when bitmap mode begins (no spool: the next capture overflows).
    let q2 = Arc::clone(&q);
    let t = std::thread::spawn(move || q2.wait_for_space(one).unwrap());
    std::thread::sleep(Duration::from_millis(50));
    assert!(!t.is_finished());
    assert_eq!(q.push(rec(4096)).unwrap(), Pushed::Dropped);
    assert!(!t.join().unwrap(), "bitmap mode: the copy is not wanted");
}

#[test]
fn a_rebase_renumbers_and_the_window_starts_at_the_first_unacknowledged_record() {
    let q = Queue::new(1 << 20, None);
    q.set_base(Seq(10));
    assert_eq!(seq(q.push(rec(4096))), 1);
    q.next_batch(100, 1 << 20);
    assert!(q.ack(LocalSeq(1)));
    // A tag of seq 1, not sent yet.
    let (lost_tag, _) = q.push_tag("t", TagKind::User, 0).unwrap();
    assert_eq!(seq(q.push(rec(4096))), 2);
    assert_eq!(seq(q.push(rec(4096))), 3);
    // The target is back at wire seq 5: local 2 must go out as 6.
    let base = q.rebase(Seq(5));
    assert_eq!(base.wire(LocalSeq(2)), Seq(6));
    assert!(
        !q.wait_tag(lost_tag, Duration::ZERO),
        "a tag of a lost state is dropped"
    );
    q.open_window_at_unacked("resync");
    q.open_window_at_unacked("resync"); // once
    q.rewind_cursor();
    let b = q.next_batch(100, 1 << 20);
    assert!(matches!(
        b.as_slice(),
        [Entry::Record {
            seq: LocalSeq(2),
            ..
        }]
    ));
    let t = q.next_batch(100, 1 << 20);
    assert!(
        matches!(t.as_slice(), [Entry::Tag { seq: LocalSeq(2), tag }] if tag.kind == TagKind::SyncBegin)
    );
    let b = q.next_batch(100, 1 << 20);
    assert!(matches!(
        b.as_slice(),
        [Entry::Record {
            seq: LocalSeq(3),
            ..
        }]
    ));
    assert!(q.next_batch(100, 1 << 20).is_empty());
    // A wrapped base works too (a target far behind this run's numbering).
    let q = Queue::new(1 << 20, None);
    q.set_base(Seq(0));
    for _ in 0..5 {
        q.push(rec(4096)).unwrap();
    }
    while !q.next_batch(100, 1 << 20).is_empty() {}
    assert!(q.ack(LocalSeq(4)));
    let base = q.rebase(Seq(1));
    assert_eq!(base.wire(LocalSeq(5)), Seq(2));
    assert!(q.ack(base.local(Seq(2))));
    assert!(q.wait_drained(Duration::ZERO));
}

#[test]
fn behind_a_relay_the_rpo_runs_until_the_target_holds_what_the_relay_acknowledged() {
    let q = Queue::new(1 << 20, None);
    q.set_base(Seq(100));
    // Without a relay, an ACK is the target's: nothing waits for the target.
    seq(q.push(rec(4096)));
    assert!(q.ack(LocalSeq(1)));
    assert_eq!(q.stats().oldest_not_at_target, None);
    assert_eq!(q.stats().target_durable, None);
    // A relay says what the target holds; what the relay acknowledges after that waits for it.
    q.target_durable(Seq(101));
    seq(q.push(rec(4096)));
    seq(q.push(rec(4096)));
    assert!(q.ack(LocalSeq(3)));
    let st = q.stats();
    assert_eq!(st.oldest_unacked, None, "the relay holds everything");
    assert!(st.oldest_not_at_target.is_some(), "the target does not");
    q.target_durable(Seq(102));
    assert!(
        q.stats().oldest_not_at_target.is_some(),
        "seq 103 is not there yet"
    );
    q.target_durable(Seq(103));
    assert_eq!(q.stats().oldest_not_at_target, None);
    assert_eq!(q.stats().target_durable, Some(Seq(103)));
}

#[test]
fn behind_a_relay_only_what_the_target_holds_counts_for_the_dirty_map() {
    let q = Queue::new(1 << 20, None);
    q.set_base(Seq(100));
    for _ in 0..3 {
        seq(q.push(rec(4096)));
    }
    // A relay session: it says what the target holds before it acknowledges anything.
    q.session_began();
    q.target_durable(Seq(101));
    q.peer_acked();
    assert!(q.ack(LocalSeq(3)));
    let st = q.stats();
    assert_eq!(st.acked_seq, LocalSeq(3), "the relay holds all three");
    assert_eq!(st.target_acked, LocalSeq(1), "the target only the first");
    // The next session's peer acknowledges without a word about the target: it is the target.
    q.session_began();
    assert_eq!(q.stats().target_acked, LocalSeq(1), "not before it says so");
    q.peer_acked();
    assert!(q.ack(LocalSeq(3)));
    let st = q.stats();
    assert_eq!(st.target_acked, LocalSeq(3));
    assert_eq!(st.target_durable, None);
}

#[test]
fn a_target_durable_seq_before_this_run_covers_nothing_of_it() {
    let q = Queue::new(1 << 20, None);
    // The relay held up to 200 at the first WELCOME; the target only 150.
    q.set_base(Seq(200));
    seq(q.push(rec(4096)));
    q.session_began();
    q.target_durable(Seq(150));
    assert!(q.ack(LocalSeq(1)));
    assert_eq!(q.stats().target_acked, LocalSeq(0));
}
