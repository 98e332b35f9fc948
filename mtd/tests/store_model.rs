//! Model-based test of the store: random writes, zeroes, tags, restarts, merges and pinned views,
//! driven through the same ingest and writer path as agent sessions, with every view compared to a
//! plain `Vec<u8>` model of each disk at each seq.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use rewind_formats::message::{BatchRef, DiskInfo, HelloGroup, Tag, TagInfo, TagKind};
use rewind_formats::{Batch, RecordKind, RecordRef, Seq};
use rewind_mtd::server::admission::hello_group;
use rewind_mtd::server::ingest::Feed;
use rewind_mtd::store::compression::JournalCompression;
use rewind_mtd::store::engine::EngineKind;
use rewind_mtd::store::points::PointSpec;
use rewind_mtd::store::writer::WriterConfig;
use rewind_mtd::store::{merger, Store, StoreError, StoreOptions};
use rewind_mtd::views::view::View;

const SECTOR: usize = 512;
const DISK_SECTORS: usize = 128; // 64 KiB disks
const DISKS: [&str; 2] = ["sda", "sdb"];

#[derive(Clone, Debug)]
enum Op {
    /// One batch of records: (disk, first sector, sectors, zero?, fill byte).
    Write(Vec<(u16, usize, usize, bool, u8)>),
    Tag,
    Restart,
    /// Merge everything sealed, optionally with a view pinned at a fraction of the durable seq.
    Merge(Option<f64>),
}

fn op() -> impl Strategy<Value = Op> {
    let rec = (
        0u16..2,
        0usize..DISK_SECTORS,
        1usize..17,
        prop::bool::weighted(0.15),
        any::<u8>(),
    )
        .prop_map(|(d, s, n, z, b)| (d, s.min(DISK_SECTORS - n.min(DISK_SECTORS)), n, z, b));
    prop_oneof![
        6 => prop::collection::vec(rec, 1..4).prop_map(Op::Write),
        1 => Just(Op::Tag),
        1 => Just(Op::Restart),
        1 => prop::option::of(0.0f64..1.0).prop_map(Op::Merge),
    ]
}

struct Harness {
    rt: tokio::runtime::Runtime,
    dir: std::path::PathBuf,
    engine: EngineKind,
    store: Option<Arc<Store>>,
    feed: Option<Feed>,
    /// model[seq] = both disks as of seq (model[0]: all zero).
    model: Vec<[Vec<u8>; 2]>,
    tags: Vec<(String, u64)>,
}

impl Harness {
    fn open(dir: &Path, engine: EngineKind) -> Harness {
        let mut h = Harness {
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            dir: dir.to_path_buf(),
            engine,
            store: None,
            feed: None,
            model: vec![[
                vec![0; DISK_SECTORS * SECTOR],
                vec![0; DISK_SECTORS * SECTOR],
            ]],
            tags: Vec::new(),
        };
        h.start();
        h
    }

    fn start(&mut self) {
        let opts = StoreOptions {
            engine: self.engine,
            writer: WriterConfig {
                segment_size: 16 << 10,
                seal_after: Duration::from_secs(3600),
                prealloc_step: 64 << 10,
                ..WriterConfig::default()
            },
            default_retention: Duration::from_secs(3600),
            merge_interval: Duration::from_secs(3600),
            space_reserve: 0,
            journal_compression: JournalCompression::default(),
        };
        let store = Store::open(&self.dir, opts).expect("open store");
        let hg = HelloGroup {
            group: "g".into(),
            generation: 1,
            last_acked: Seq(0),
            epoch: 0,
            disks: DISKS
                .iter()
                .map(|d| DiskInfo {
                    disk: d.to_string(),
                    size_bytes: (DISK_SECTORS * SECTOR) as u64,
                })
                .collect(),
        };
        let (group, generation) = hello_group(&store, &hg, "model").expect("hello");
        let durable = self.rt.block_on(group.drained());
        assert_eq!(
            durable.0 as usize,
            self.model.len() - 1,
            "every acknowledged write survives a restart"
        );
        self.feed = Some(Feed {
            group,
            generation,
            next_seq: Seq(durable.0 + 1),
            disk_sizes: vec![(DISK_SECTORS * SECTOR) as u64; 2],
            dedup: None,
            // Records of one repeated byte: those over a block are stored zstd-encoded.
            compressor: JournalCompression::default().compressor(),
        });
        self.store = Some(store);
    }

    fn durable(&self) -> u64 {
        (self.model.len() - 1) as u64
    }

    fn append_and_wait(&mut self, req: rewind_mtd::store::writer::AppendReq) {
        let store = self.store.as_ref().unwrap().clone();
        let group = self.feed.as_ref().unwrap().group.clone();
        group.note_queued();
        self.rt.block_on(async {
            store.append(req).await.expect("append");
            group.drained().await;
        });
    }

    fn apply(&mut self, op: &Op) {
        match op {
            Op::Write(recs) => {
                let datas: Vec<Vec<u8>> = recs
                    .iter()
                    .map(|&(_, _, n, _, b)| vec![b; n * SECTOR])
                    .collect();
                let refs: Vec<RecordRef<'_>> = recs
                    .iter()
                    .zip(&datas)
                    .map(|(&(disk, s, n, zero, _), data)| RecordRef {
                        disk,
                        kind: if zero {
                            RecordKind::Zero
                        } else {
                            RecordKind::Data
                        },
                        offset: (s * SECTOR) as u64,
                        len: (n * SECTOR) as u32,
                        data: if zero { &[] } else { data },
                    })
                    .collect();
                let feed = self.feed.as_mut().unwrap();
                let b = Batch::build("g", 1, feed.next_seq, 1_000 + feed.next_seq.0, &refs, 1);
                let br = BatchRef {
                    group: b.group.clone(),
                    generation: b.generation,
                    first_seq: b.first_seq,
                    record_count: b.record_count,
                    timestamp_ms: b.timestamp_ms,
                    uncompressed_len: b.uncompressed_len,
                    compressed: &b.compressed,
                };
                let req = feed.batch_chunk(&br).expect("valid batch");
                feed.next_seq = Seq(b.last_seq().0 + 1);
                self.append_and_wait(req);
                for r in &refs {
                    let mut next = self.model.last().unwrap().clone();
                    let disk = &mut next[usize::from(r.disk)];
                    let (a, z) = (r.offset as usize, r.offset as usize + r.len as usize);
                    match r.kind {
                        RecordKind::Data => disk[a..z].copy_from_slice(r.data),
                        _ => disk[a..z].fill(0),
                    }
                    self.model.push(next);
                }
            }
            Op::Tag => {
                if self.durable() == 0 {
                    return;
                }
                let name = format!("t{}", self.tags.len());
                let t = Tag {
                    group: "g".into(),
                    generation: 1,
                    tag: TagInfo {
                        seq: Seq(self.durable()),
                        kind: TagKind::User,
                        timestamp_ms: 5,
                        name: name.clone(),
                    },
                };
                let req = self
                    .feed
                    .as_ref()
                    .unwrap()
                    .tag_chunk(&t)
                    .expect("valid tag");
                self.append_and_wait(req);
                self.tags.push((name, self.durable()));
            }
            Op::Restart => {
                self.feed = None;
                self.store = None; // drops the writer's channel: the writer thread ends
                std::thread::sleep(Duration::from_millis(20));
                self.start();
            }
            Op::Merge(pin) => {
                let store = self.store.as_ref().unwrap();
                let view = pin.map(|f| {
                    let durable = self.durable();
                    let horizon = horizon(store);
                    let seq = horizon + ((durable - horizon) as f64 * f) as u64;
                    (
                        seq,
                        View::open(store, "g", "sda", &PointSpec::Seq(Seq(seq)))
                            .expect("view within the window"),
                    )
                });
                let group = store.group("g").unwrap();
                merger::merge_expired(&group, u64::MAX).expect("merge");
                if let Some((seq, v)) = view {
                    assert!(horizon(store) <= seq, "merge passed a pinned view at {seq}");
                    self.check_view(&v, 0, seq);
                }
            }
        }
    }

    fn check_view(&self, v: &View, disk: usize, seq: u64) {
        let mut buf = vec![0u8; DISK_SECTORS * SECTOR];
        v.read_at(&mut buf, 0).expect("read view");
        assert!(
            buf == self.model[seq as usize][disk],
            "disk {disk} differs from the model at seq {seq}"
        );
    }

    /// Every seq from the horizon to durable reads as the model; older ones are refused; tags resolve.
    fn check_all(&self) {
        let store = self.store.as_ref().unwrap();
        let h = horizon(store);
        for seq in h..=self.durable() {
            for (i, d) in DISKS.iter().enumerate() {
                let v = View::open(store, "g", d, &PointSpec::Seq(Seq(seq))).expect("view");
                self.check_view(&v, i, seq);
            }
        }
        if h > 0 {
            let err = View::open(store, "g", "sda", &PointSpec::Seq(Seq(h - 1)))
                .err()
                .expect("older than the horizon");
            assert!(matches!(err, StoreError::PointTooOld { .. }), "{err}");
        }
        for (name, seq) in &self.tags {
            match View::open(store, "g", "sdb", &PointSpec::Tag(name.clone())) {
                Ok(v) => {
                    assert_eq!(v.seq().0, *seq);
                    self.check_view(&v, 1, *seq);
                }
                Err(e) => assert!(
                    *seq < h,
                    "tag {name} at {seq} lost inside the window (horizon {h}): {e}"
                ),
            }
        }
    }
}

fn horizon(store: &Store) -> u64 {
    store.group("g").unwrap().horizon().0
}

fn run(ops: &[Op], engine: EngineKind) {
    let dir = tempfile::Builder::new()
        .prefix("rewind-model-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let mut h = Harness::open(dir.path(), engine);
    for op in ops {
        h.apply(op);
    }
    h.check_all();
    h.apply(&Op::Restart);
    h.check_all();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn store_matches_model_uring(ops in prop::collection::vec(op(), 1..40)) {
        run(&ops, EngineKind::Uring);
    }

    #[test]
    fn store_matches_model_sync(ops in prop::collection::vec(op(), 1..40)) {
        run(&ops, EngineKind::Sync);
    }
}
