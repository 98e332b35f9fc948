//! Overlays against a model: random unaligned writes, zeroed ranges, flushes and reopenings of an
//! overlay over a real replicated point must read back exactly as a `Vec<u8>` says, the extents it
//! reports must never call data zero, and the point under it must never change.

mod common;

use std::sync::Arc;

use common::*;
use proptest::prelude::*;
use rewind_mtd::store::Store;
use rewind_mtd::views::overlay::Overlays;
use rewind_mtd::views::view::{Allocation, View};

#[derive(Clone, Debug)]
enum Op {
    Write { offset: u64, len: usize, byte: u8 },
    Zero { offset: u64, len: u64 },
    Flush,
    Reopen,
}

const DISK: u64 = 1 << 20;

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..DISK, 1usize..20_000, any::<u8>()).prop_map(|(o, l, b)| Op::Write {
            offset: o,
            len: l.min((DISK - o) as usize),
            byte: b
        }),
        2 => (0..DISK, 1u64..40_000).prop_map(|(o, l)| Op::Zero {
            offset: o,
            len: l.min(DISK - o)
        }),
        1 => Just(Op::Flush),
        1 => Just(Op::Reopen),
    ]
}

/// A replicated 1 MiB disk with a tag half way, served once and stopped: the store the model
/// runs against (opened read-only in this process, as `dump` does).
fn replicated() -> (tempfile::TempDir, Vec<u8>) {
    let work = tempdir();
    let mut d = Mtd::start_engine(work.path(), "sync", &[]);
    let wl = Workload {
        group: "m".into(),
        disks: vec!["sda:1MiB".into()],
        seed: 3,
        pattern: "random",
        record_size: "4KiB",
        payload: "random",
    };
    run_ok(&mut wl.run_cmd(&d.target(), "2MiB"));
    d.terminate();
    let img = work.path().join("point.img");
    assert_ok(&dump(&d.data_dir, "m", "sda", "seq:300", &img), "dump");
    let bytes = std::fs::read(&img).unwrap();
    (work, bytes)
}

fn check(overlays: &Overlays, model: &[u8]) {
    let o = overlays.get("x").unwrap();
    let mut buf = vec![0u8; DISK as usize];
    o.read_at(&mut buf, 0).unwrap();
    assert!(buf == model, "overlay differs from the model");
    for e in o.extents(0, DISK).unwrap() {
        if e.allocation == Allocation::Zero {
            let r = &model[e.offset as usize..(e.offset + e.len) as usize];
            assert!(
                r.iter().all(|&b| b == 0),
                "extent {e:?} reported zero but holds data"
            );
        }
    }
}

#[test]
fn overlay_matches_model() {
    let (work, point) = replicated();
    let data_dir = work.path().join("data");
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 24,
        ..ProptestConfig::default()
    });
    runner
        .run(&proptest::collection::vec(op(), 1..40), |ops| {
            let store = Arc::new(Store::open_readonly(&data_dir).unwrap());
            let mut overlays = Overlays::load(store.clone()).unwrap();
            let _ = overlays.delete("x");
            overlays.create("x", "m", "sda", "seq:300", false).unwrap();
            let mut model = point.clone();
            for op in &ops {
                match *op {
                    Op::Write { offset, len, byte } => {
                        let buf = vec![byte; len];
                        overlays.get("x").unwrap().write_at(&buf, offset).unwrap();
                        model[offset as usize..offset as usize + len].fill(byte);
                    }
                    Op::Zero { offset, len } => {
                        overlays
                            .get("x")
                            .unwrap()
                            .write_zeroes(offset, len)
                            .unwrap();
                        model[offset as usize..(offset + len) as usize].fill(0);
                    }
                    Op::Flush => {
                        overlays.get("x").unwrap().flush().unwrap();
                    }
                    Op::Reopen => {
                        // A clean reopen after a flush keeps everything.
                        overlays.get("x").unwrap().flush().unwrap();
                        drop(overlays);
                        overlays = Overlays::load(store.clone()).unwrap();
                    }
                }
                check(&overlays, &model);
            }
            // Past the end is an error that changes nothing.
            let o = overlays.get("x").unwrap();
            assert!(o.write_at(&[1], DISK).is_err());
            assert!(o.read_at(&mut [0u8; 2], DISK - 1).is_err());
            drop(o);
            check(&overlays, &model);
            // The point under the overlay never changed.
            let v = View::open(
                &store,
                "m",
                "sda",
                &rewind_mtd::store::points::PointSpec::parse("seq:300").unwrap(),
            )
            .unwrap();
            let mut buf = vec![0u8; DISK as usize];
            v.read_at(&mut buf, 0).unwrap();
            assert!(buf == point, "the point under the overlay changed");
            drop(v);
            overlays.delete("x").unwrap();
            Ok(())
        })
        .unwrap();
}

/// An overlay in use cannot be deleted; a throwaway one does not survive a reopen.
#[test]
fn delete_in_use_and_throwaway() {
    let (work, _) = replicated();
    let store = Arc::new(Store::open_readonly(&work.path().join("data")).unwrap());
    let overlays = Overlays::load(store.clone()).unwrap();
    let o = overlays
        .create("busy", "m", "sda", "latest", false)
        .unwrap();
    let e = overlays.delete("busy").unwrap_err().to_string();
    assert!(e.contains("in use"), "{e}");
    drop(o);
    overlays.delete("busy").unwrap();
    overlays.create("tmp", "m", "sda", "latest", true).unwrap();
    drop(overlays);
    let overlays = Overlays::load(store).unwrap();
    assert!(overlays.list().is_empty());
    assert!(!work.path().join("data/overlays/tmp").exists());
}
