//! The agent's page rendered from real parts (queue, dirty-region map, sync progress, drain,
//! gate): a write waiting for its ACK shows as RPO and backlog, its ACK clears them.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use rewind_formats::{RecordKind, Seq};

use super::{group::Owed, registry, Sources};
use crate::config::Settings;
use crate::stream::queue::{Queue, Record};
use crate::stream::seq::LocalSeq;
use crate::sync::dirty::DirtyMap;

fn settings() -> Settings {
    toml::from_str(
        r#"
        agent = "a"
        group = "g1"
        target = "unix:/nonexistent/mtd.sock"
        state_dir = "/nonexistent"
        level = 1
        mount_dir = "/nonexistent/m"
        links_dir = "/nonexistent/l"
        max_queue_bytes = 1048576
        fuse_threads = 1
        rpo_target_secs = 60
        [[disks]]
        name = "d0"
        path = "/dev/null"
        "#,
    )
    .expect("settings")
}

/// The value of the sample line that starts with `series` (labels included).
fn value(page: &str, series: &str) -> f64 {
    page.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {series} in:\n{page}"))
        .parse()
        .expect("a number")
}

#[test]
fn a_write_shows_as_rpo_and_backlog_until_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let (dirty, _) = DirtyMap::open(&dir.path().join("g1.dirty"), &[64 << 20]).unwrap();
    // A new map owes a compare of every region; here the disk is in sync already.
    for p in dirty.pinned() {
        dirty.unpin(p, LocalSeq(0));
    }
    assert_eq!(dirty.pinned_count(), 0);
    let queue = Arc::new(Queue::new(1 << 20, None));
    let sources = Arc::new(Sources {
        settings: Arc::new(settings()),
        queue: Arc::clone(&queue),
        dirty,
        progress: vec![Default::default()].into(),
        sync: Default::default(),
        drain: Default::default(),
        gate: Default::default(),
        connected: Arc::new(AtomicBool::new(false)),
        owed: Owed::at_start(false),
    });
    let reg = registry(Arc::clone(&sources));
    let page = || rewind_linux::metrics::render(&reg).unwrap();

    let p = page();
    assert_eq!(
        value(&p, "rewind_rpo_seconds{group=\"g1\"}"),
        0.0,
        "nothing written"
    );
    assert_eq!(value(&p, "rewind_rpo_target_seconds{group=\"g1\"}"), 60.0);
    assert!(
        p.contains("rewind_build_info{component=\"agent\",version=\""),
        "{p}"
    );
    assert!(p.ends_with("# EOF\n"));

    queue
        .push(Record::new(0, RecordKind::Zero, 0, 4096, None))
        .unwrap();
    std::thread::sleep(Duration::from_millis(30));
    let p = page();
    assert!(value(&p, "rewind_rpo_seconds{group=\"g1\"}") >= 0.03, "{p}");
    let disk = "{group=\"g1\",disk=\"d0\"}";
    assert_eq!(
        value(&p, &format!("rewind_captured_bytes_total{disk}")),
        4096.0
    );
    assert_eq!(value(&p, &format!("rewind_backlog_bytes{disk}")), 4096.0);
    assert_eq!(value(&p, &format!("rewind_acked_bytes_total{disk}")), 0.0);
    assert_eq!(
        value(&p, "rewind_state{group=\"g1\",state=\"disconnected\"}"),
        1.0
    );
    assert_eq!(
        value(&p, "rewind_state{group=\"g1\",state=\"replicating\"}"),
        0.0
    );
    assert_eq!(
        value(&p, "rewind_sync_reason{group=\"g1\",reason=\"link_down\"}"),
        1.0
    );

    queue.set_base(Seq(0));
    assert_eq!(queue.next_batch(16, 1 << 20).len(), 1);
    assert!(queue.ack(LocalSeq(1)));
    let p = page();
    assert_eq!(
        value(&p, "rewind_rpo_seconds{group=\"g1\"}"),
        0.0,
        "caught up:\n{p}"
    );
    assert_eq!(value(&p, &format!("rewind_sent_bytes_total{disk}")), 4096.0);
    assert_eq!(
        value(&p, &format!("rewind_acked_bytes_total{disk}")),
        4096.0
    );
    assert_eq!(value(&p, &format!("rewind_backlog_bytes{disk}")), 0.0);
}
