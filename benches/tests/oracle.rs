//! Points are what they claim (the sector-header oracle, `rewind_benches::oracle`): a workload
//! writes self-describing blocks through a real agent; then views at many points (a sample of
//! seqs, every tag, wall-clock times) are read through NBD (the unix socket), the FUSE view
//! tree and a loop device (`rewind attach`), and each must be a prefix of the writes: every
//! block the newest write at or before the point, nothing newer.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

use rewind_benches::harness::*;
use rewind_benches::oracle::{check, workload::Workload};

const DISK: u64 = 16 << 20;

/// How a view is read.
#[derive(Clone, Copy, Debug)]
enum Via {
    Nbd,
    Fuse,
    Loop,
}

fn read_view(mtd: &Mtd, spec: &str, via: Via, scratch: &Path) -> Vec<u8> {
    let export = format!("or/d0@{spec}");
    match via {
        Via::Nbd => {
            let _ = fs::remove_file(scratch);
            run_ok(
                Command::new("nbdcopy")
                    .arg(mtd.nbd_uri(&export))
                    .arg(scratch),
            );
            let b = fs::read(scratch).expect("nbdcopy output");
            let _ = fs::remove_file(scratch);
            b
        }
        Via::Fuse => {
            let views = mtd.views.as_ref().expect("--views");
            let p = views.join(format!("or/d0/at/{spec}.img"));
            fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        }
        Via::Loop => {
            let out = run_ok(mtd.rewind_cmd().args(["attach", &export]));
            let dev = String::from_utf8_lossy(&out.stdout).trim().to_string();
            // Detached even if the read fails.
            let guard = Loop(dev.clone());
            let b = fs::read(&dev).unwrap_or_else(|e| panic!("{dev}: {e}"));
            run_ok(mtd.rewind_cmd().args(["detach", &dev]));
            std::mem::forget(guard);
            b
        }
    }
}

#[test]
fn every_point_is_a_prefix_of_the_writes() {
    if !can_run() || !have_tools("every_point_is_a_prefix_of_the_writes", &["nbdcopy"]) {
        return;
    }
    let work = tempdir();
    let w = work.path();
    let views = w.join("views");
    let mtd = Mtd::start_with(w, &["--views", views.to_str().unwrap()]);
    let img = w.join("disk.img");
    fs::File::create(&img).unwrap().set_len(DISK).unwrap();
    let agent = Agent::start(w, "or", &[("d0", &img)], &mtd.target(), &[]);
    agent.wait_caught_up(Duration::from_secs(60));
    let seed = u64::from(std::process::id());
    let mut wl = Workload::open(&agent.link("d0"), DISK, seed).expect("workload");
    // (tag, writes before it, time after it)
    let mut tags = Vec::new();
    // `scripts/bench.sh oracle ROUNDS` sets the length; the suite runs 6 rounds.
    let rounds: u64 = std::env::var("REWIND_ORACLE_ROUNDS")
        .ok()
        .map(|r| r.parse().expect("REWIND_ORACLE_ROUNDS is a number"))
        .unwrap_or(6);
    for round in 0..rounds {
        wl.write(150).expect("writes");
        let name = format!("t{round}");
        agent.tag(&name, &[]);
        // Every write so far is acknowledged before the time is taken, and the next write
        // starts well after it, so the point at that time holds exactly these writes.
        agent.wait_caught_up(Duration::from_secs(60));
        let t = SystemTime::now();
        std::thread::sleep(Duration::from_millis(30));
        tags.push((name, wl.history.writes.len() as u64, t));
    }
    let st = agent.wait_caught_up(Duration::from_secs(60));
    let scratch = w.join("view.img");
    let vias = [Via::Nbd, Via::Fuse, Via::Loop];
    let mut checked = 0;
    // Every point that is not what it claims, with why; reported together at the end.
    let mut bad: Vec<String> = Vec::new();
    let mut look = |spec: &str, via: Via, exact: bool, want: Option<u64>, bad: &mut Vec<String>| {
        checked += 1;
        let b = read_view(&mtd, spec, via, &scratch);
        assert_eq!(b.len() as u64, DISK, "{spec} via {via:?}");
        let v = check(&b, &wl.history, exact);
        if !v.ok() || want.is_some_and(|k| v.newest != k) {
            bad.push(format!(
                "point {spec} via {via:?}: {v} (want newest {want:?})"
            ));
        }
        v.newest
    };
    for (i, (name, k, t)) in tags.iter().enumerate() {
        for via in vias {
            look(&format!("tag:{name}"), via, true, Some(*k), &mut bad);
        }
        let spec = humantime::format_rfc3339_millis(*t).to_string();
        look(&spec, vias[i % 3], true, Some(*k), &mut bad);
    }
    // A sample of seqs, in order: each a prefix, never fewer writes than an earlier one, and
    // when each write became one record (seqs 1..=N are writes 1..=N, as with writes of at most
    // 32 KiB here) exactly the first s writes at seq s.
    let last = st.last_seq;
    let one_to_one = last == wl.history.writes.len() as u64;
    let mut prev = 0;
    let samples = 4 * rounds;
    for i in 0..=samples {
        let s = 1 + (last - 1) * i / samples;
        let want = one_to_one.then_some(s);
        let newest = look(
            &format!("seq:{s}"),
            vias[i as usize % 3],
            false,
            want,
            &mut bad,
        );
        if newest < prev {
            bad.push(format!(
                "seq {s} shows write {newest} after an earlier seq showed {prev}"
            ));
        }
        prev = newest;
    }
    if prev != wl.history.writes.len() as u64 {
        bad.push(format!(
            "the last seq {last} shows write {prev}, not every write"
        ));
    }
    println!(
        "oracle: {checked} views checked (NBD, FUSE, loop), {} writes, last seq {last}",
        wl.history.writes.len()
    );
    println!("bar oracle-bad-points: {} (want <= 0)", bad.len());
    assert!(
        bad.is_empty(),
        "points that are not what they claim:\n{}",
        bad.join("\n")
    );
}
