//! Network faults between a real `rewind-agent` and a real `rewind-mtd`: the agent reaches the
//! target through the fault proxy (`rewind_benches::faultproxy`) over plain TCP (`--insecure`
//! on loopback: through TLS a corrupted byte fails the record's MAC, which is a cut, so the
//! protocol's own crc32c is tested on plain TCP). Under every fault kind, alone and mixed,
//! replication converges, every corruption that reached the target is rejected and counted
//! (`rewind_frames_rejected_total` on its `/metrics`, checked against its `closing session: bad
//! frame` log lines), and latest equals the source byte for byte.
//!
//! `netfault_campaign` is what `scripts/bench.sh netfault MINUTES` runs at length
//! (REWIND_NETFAULT_MINUTES; the suite runs it for a few rounds).

use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rewind_benches::faultproxy::{Counts, FaultKind, FaultProxy, Plan};
use rewind_benches::harness::*;
use rewind_formats::agent_status::SyncState;

const DISK: u64 = 64 << 20;

/// Target, proxy and agent, dropped in that field order: the agent drains through the proxy.
struct Rig {
    agent: Agent,
    proxy: FaultProxy,
    mtd: Mtd,
    metrics: String,
    img: PathBuf,
    scratch: PathBuf,
    group: String,
    _work: tempfile::TempDir,
}

impl Rig {
    fn start(group: &str, seed: u64) -> Rig {
        let work = tempdir();
        let w = work.path();
        let img = w.join("disk.img");
        fs::File::create(&img).unwrap().set_len(DISK).unwrap();
        let metrics = format!("127.0.0.1:{}", http::free_port());
        let mtd = Mtd::start_with(
            w,
            &[
                "--listen",
                "127.0.0.1:0",
                "--insecure",
                "--metrics-listen",
                &metrics,
            ],
        );
        let upstream = mtd.agent_tcp().parse().expect("agent address");
        let plan = Plan::new(FaultKind::ALL.to_vec(), Duration::from_millis(400), seed);
        let proxy = FaultProxy::start(upstream, plan).expect("fault proxy");
        proxy.set_faults(false);
        let target = format!("tcp:{}", proxy.addr());
        let agent = Agent::start(w, group, &[("d0", &img)], &target, &["--insecure"]);
        agent.wait_caught_up(Duration::from_secs(60));
        Rig {
            agent,
            proxy,
            mtd,
            metrics,
            img,
            scratch: w.join("latest.img"),
            group: group.into(),
            _work: work,
        }
    }

    /// Frames the target rejected so far (bad checksum, bad magic, ...: a session ends on each):
    /// `rewind_frames_rejected_total` of reasons `bad_checksum` and `protocol`, which must count
    /// at least every `closing session: bad frame` the log shows.
    fn rejected(&self) -> u64 {
        let logged = self
            .mtd
            .log_text()
            .lines()
            .filter(|l| l.contains("closing session: bad frame"))
            .count() as u64;
        let (status, text) = http::get(&self.metrics, "/metrics");
        assert_eq!(status, 200, "{text}");
        let counted: f64 = text
            .lines()
            .filter(|l| {
                l.starts_with("rewind_frames_rejected_total{reason=\"bad_checksum\"}")
                    || l.starts_with("rewind_frames_rejected_total{reason=\"protocol\"}")
            })
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum();
        assert!(
            counted >= logged as f64,
            "bad frames counted {counted}, logged {logged}:\n{text}"
        );
        counted as u64
    }

    /// Faults of `kinds` for at least `min` (and until `want` of them were injected, or 30 s)
    /// while the workload writes; then the faults stop. Returns what was injected.
    fn faults(
        &self,
        kinds: &[FaultKind],
        both: bool,
        min: Duration,
        want: u64,
        seed: u64,
    ) -> Counts {
        let before = self.proxy.counts();
        let writer = Writer::start(&self.agent.link("d0"), DISK, seed, Duration::from_millis(3));
        self.proxy.set_kinds(kinds, both);
        self.proxy.set_faults(true);
        let t0 = Instant::now();
        while t0.elapsed() < min
            || (injected(&self.proxy.counts(), &before, kinds) < want
                && t0.elapsed() < Duration::from_secs(30))
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        self.proxy.set_faults(false);
        writer.stop();
        delta(&self.proxy.counts(), &before)
    }

    /// Waits for the agent to catch up (false if it does not within `limit`).
    fn converged(&self, limit: Duration) -> bool {
        let t0 = Instant::now();
        while t0.elapsed() < limit {
            if let Ok(st) = read_status(&self.agent.state) {
                let settled = !matches!(
                    st.sync,
                    SyncState::Pending | SyncState::Running | SyncState::Acking | SyncState::Bitmap
                );
                if st.connected && st.caught_up && st.acked_seq == st.last_seq && settled {
                    return true;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    /// Copies the agent's and the target's logs and the agent's status to a directory that
    /// outlives the test (a divergence in a long run must be debuggable); returns it.
    fn keep_evidence(&self, round: u64) -> PathBuf {
        let dir = PathBuf::from(format!(
            "/var/tmp/rewind-netfault-diverged-{}-{round}",
            std::process::id()
        ));
        let _ = fs::create_dir_all(&dir);
        let _ = fs::copy(&self.agent.log, dir.join("agent.log"));
        let _ = fs::copy(&self.mtd.log, dir.join("mtd.log"));
        let _ = fs::write(
            dir.join("status.txt"),
            format!(
                "{:?}\n{}",
                read_status(&self.agent.state),
                self.proxy.counts()
            ),
        );
        dir
    }

    fn latest_equals_source(&self) -> bool {
        self.mtd
            .latest_equals(&self.group, "d0", &self.img, &self.scratch)
    }
}

/// Faults of `kinds` injected between `before` and `now`.
fn injected(now: &Counts, before: &Counts, kinds: &[FaultKind]) -> u64 {
    kinds.iter().map(|k| now.of(*k) - before.of(*k)).sum()
}

fn delta(now: &Counts, before: &Counts) -> Counts {
    let mut d = now.clone();
    for (a, b) in d.injected.iter_mut().zip(before.injected) {
        *a -= b;
    }
    d.corrupt_delivered_up -= before.corrupt_delivered_up;
    d.connections -= before.connections;
    d.bytes_up -= before.bytes_up;
    d.bytes_down -= before.bytes_down;
    d
}

/// Each fault kind alone, one after another on one agent: after each, the agent catches up and
/// latest equals the source; every corruption that reached the target was rejected, exactly
/// one rejection per corrupted connection (the session ends on the first bad frame).
#[test]
fn each_fault_kind_alone_converges() {
    if !can_run() || !have_tools("each_fault_kind_alone_converges", &["nbdcopy", "cmp"]) {
        return;
    }
    let rig = Rig::start("nf1", 11);
    for (i, kind) in FaultKind::ALL.into_iter().enumerate() {
        // Corruption and duplication only towards the target: there the count must be exact.
        let both = !kind.breaks_stream();
        let rejected0 = rig.rejected();
        let c = rig.faults(&[kind], both, Duration::from_secs(3), 3, 100 + i as u64);
        eprintln!("netfault: {kind}: {c}");
        assert!(c.of(kind) >= 1, "no {kind} fault injected: {c}");
        assert!(
            rig.converged(Duration::from_secs(120)),
            "no convergence after {kind} faults ({c}): {:?}\n{}",
            read_status(&rig.agent.state),
            rig.agent.log_text()
        );
        assert!(
            rig.latest_equals_source(),
            "latest differs after {kind} ({c})"
        );
        let rejected = rig.rejected() - rejected0;
        match kind {
            FaultKind::Corrupt => {
                assert!(
                    c.corrupt_delivered_up >= 1,
                    "no corruption reached the target: {c}"
                );
                assert_eq!(
                    rejected,
                    c.corrupt_delivered_up,
                    "every corrupted connection ends in one rejected frame ({c})\n{}",
                    rig.mtd.log_tail(40)
                );
            }
            FaultKind::Duplicate => assert!(rejected >= 1, "duplicates rejected: {c}"),
            _ => {}
        }
    }
    let Rig {
        mut agent,
        proxy,
        mut mtd,
        img,
        group,
        ..
    } = rig;
    agent.stop();
    drop(proxy);
    mtd.stop_and_check_latest(&group, "d0", &img);
}

/// Rounds of random faults of every kind in both directions for REWIND_NETFAULT_MINUTES
/// (default: 3 rounds); after each round the agent must catch up and latest must equal the
/// source, else the round counts as diverged. Prints the bar line and the faults by kind.
#[test]
fn netfault_campaign() {
    if !can_run() || !have_tools("netfault_campaign", &["nbdcopy", "cmp"]) {
        return;
    }
    let minutes: Option<f64> = std::env::var("REWIND_NETFAULT_MINUTES").ok().map(|m| {
        m.parse()
            .expect("REWIND_NETFAULT_MINUTES is a number of minutes")
    });
    let seed = std::env::var("REWIND_NETFAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| std::process::id() as u64);
    let rig = Rig::start("nfc", seed);
    let t0 = Instant::now();
    let (mut rounds, mut diverged, mut total) = (0u64, 0u64, Counts::default());
    let rejected0 = rig.rejected();
    loop {
        let done = match minutes {
            Some(m) => t0.elapsed().as_secs_f64() >= m * 60.0,
            None => rounds >= 3,
        };
        if done {
            break;
        }
        let window = Duration::from_secs(2 + (seed + rounds) % 7);
        let c = rig.faults(&FaultKind::ALL, true, window, 4, seed ^ rounds);
        total.add(&c);
        rounds += 1;
        let ok = rig.converged(Duration::from_secs(180)) && rig.latest_equals_source();
        if !ok {
            diverged += 1;
            let kept = rig.keep_evidence(rounds);
            eprintln!(
                "netfault: round {rounds} DIVERGED after {c} (logs kept in {})\nagent: {:?}\n{}",
                kept.display(),
                read_status(&rig.agent.state),
                tail(&rig.agent.log_text(), 30)
            );
        }
        eprintln!(
            "netfault [{:.0}s]: round {rounds}: {c}",
            t0.elapsed().as_secs_f64()
        );
    }
    let rejected = rig.rejected() - rejected0;
    println!(
        "netfault: {rounds} rounds in {:.1} min (seed {seed}), {} faults injected, {rejected} frames rejected by the target",
        t0.elapsed().as_secs_f64() / 60.0,
        total.total()
    );
    println!("netfault: faults injected by kind: {total}");
    println!("bar netfault-diverged: {diverged} (want <= 0)");
    assert_eq!(diverged, 0, "rounds diverged");
    assert!(total.total() > 0, "no fault injected");
    let Rig {
        mut agent,
        proxy,
        mut mtd,
        img,
        group,
        ..
    } = rig;
    agent.stop();
    drop(proxy);
    mtd.stop_and_check_latest(&group, "d0", &img);
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The proxy alone, on an echo server: without faults bytes pass unchanged; each stream-breaking
/// kind changes or ends the stream, and is counted.
#[test]
fn the_proxy_breaks_streams_as_told() {
    use std::io::{Read, Write};
    let echo = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let upstream = echo.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in echo.incoming() {
            let Ok(mut s) = s else { return };
            std::thread::spawn(move || {
                let mut r = s.try_clone().unwrap();
                let _ = std::io::copy(&mut r, &mut s);
            });
        }
    });
    let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let roundtrip = |p: &FaultProxy| -> Vec<u8> {
        let mut s = std::net::TcpStream::connect(p.addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut w = s.try_clone().unwrap();
        let d = data.clone();
        let t = std::thread::spawn(move || {
            for c in d.chunks(1000) {
                if w.write_all(c).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            let _ = w.shutdown(std::net::Shutdown::Write);
        });
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got);
        let _ = t.join();
        got
    };
    let plan = Plan::new(vec![FaultKind::Corrupt], Duration::from_millis(20), 1);
    let p = FaultProxy::start(upstream, plan).unwrap();
    p.set_faults(false);
    assert!(roundtrip(&p) == data, "no faults: bytes unchanged");
    p.set_faults(true);
    let got = roundtrip(&p);
    assert_eq!(got.len(), data.len());
    assert!(got != data, "corrupted: {}", p.counts());
    assert!(p.counts().of(FaultKind::Corrupt) >= 1);
    p.set_kinds(&[FaultKind::Duplicate], true);
    let got = roundtrip(&p);
    assert!(got.len() > data.len(), "duplicated bytes: {}", p.counts());
    p.set_kinds(&[FaultKind::Truncate], true);
    let got = roundtrip(&p);
    assert!(got.len() < data.len(), "truncated: {}", p.counts());
    p.set_kinds(&[FaultKind::Cut], true);
    let got = roundtrip(&p);
    assert!(got.len() < data.len() && p.counts().of(FaultKind::Cut) >= 1);
    drop(p);
    let slow = vec![FaultKind::Latency, FaultKind::Bandwidth, FaultKind::Stall];
    let mut plan = Plan::new(slow, Duration::from_millis(40), 2);
    plan.max_stall = Duration::from_millis(300);
    let p = FaultProxy::start(upstream, plan).unwrap();
    let got = roundtrip(&p);
    assert!(
        got == data,
        "slow faults keep the bytes: got {} of {}",
        got.len(),
        data.len()
    );
    assert!(p.counts().total() >= 1, "{}", p.counts());
}
