//! `wan [SIZE]`: the relay over a WAN. The agent (the load generator) and the master target run
//! in network namespaces of their own, the relay in the bench's; the relay-to-target link is
//! limited to 100 Mbit/s by `tc tbf` and delayed 20 ms each way (40 ms round trip) by a
//! userspace [`DelayProxy`] (`tc netem` does not work here). The workload is file-system-like
//! data (the load generator's `fs` payload), sent at zstd -1 as the agent sends it.
//!
//! Per run, on a fresh relay and target:
//! - at 60% of the link (in zstd -1 bytes: what the agent alone would send over it): the WAN
//!   bytes per agent byte (relay bytes out / relay bytes in; tc's count of the link printed
//!   too) and the replication lag end to end, sampled every 50 ms: the age of the oldest write
//!   the relay acknowledged (as the load generator's state file shows it) that the target does
//!   not hold (so a lag under the sampling step may read 0);
//! - at 120% of the link, counted in what the relay sends (the agent's rate is 1.2 x link /
//!   the ratio just measured, so the cache must grow): whether the relay's cache absorbs the
//!   burst without ever making an agent wait for room, and the target catches up after it;
//! - fan-in: 8 load generators (random data, stored zstd frames: cheap for them) through one
//!   relay to a target on loopback, against the same straight to the target, interleaved: MB/s
//!   of data durable at the target; also through a relay without dedup (printed, no bar).
//!
//! SIZE (default 256MiB) is the record bytes of each WAN phase and of each fan-in run.
//! `--fanin-only` runs the fan-in alone (loopback only: no namespaces, no root needed for it).

use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::mtd::{self, Daemon};
use super::progress;
use super::report::{print_bars, Bar};
use super::settings::{to_bytes, Settings};
use super::stats::{fmt, ratio, Series};
use super::tools::{self, Bins};
use super::wan_net::WanNet;
use super::wan_procs::{self, acked, control_socket, target_durable, Agent, Relay};
use crate::delayproxy::DelayProxy;
use crate::pool::{DataPool, Payload};

/// The link: 100 Mbit/s.
const LINK_BYTES_PER_S: f64 = 100e6 / 8.0;
const LINK_RATE: &str = "100mbit";
/// Half the WAN round trip.
const ONE_WAY: Duration = Duration::from_millis(20);
/// Load generators of the fan-in.
const FANIN_AGENTS: usize = 8;
/// How often lag and cache are sampled.
const SAMPLE: Duration = Duration::from_millis(50);

/// The figures of the runs.
struct Figures {
    bytes_ratio: Series,
    tc_ratio: Series,
    lag_p99: Series,
    lag_p50: Series,
    converges: Series,
    catch_up: Series,
    cache_peak_mib: Series,
    burst_lag_p99: Series,
    dedup_pct: Series,
    relay_mbs: Series,
    passthrough_mbs: Series,
    direct_mbs: Series,
    fanin_ratio: Series,
    relay_cores: Series,
}

pub fn run(settings: &Settings, size: &str, fanin_only: bool) -> Result<()> {
    let bytes = to_bytes(size)?;
    if bytes < 16 << 20 {
        bail!("SIZE must be at least 16MiB");
    }
    if !fanin_only {
        super::wan_net::check()?;
    }
    progress::log("building rewind-mtd and rewind-loadgen (release)");
    let bins = tools::build_target_side(settings)?;
    let work = settings.make_workdir()?;
    let raw_per_wire = zstd1_ratio()?;
    if !fanin_only {
        progress::log(format!(
            "fs payload: {raw_per_wire:.2} record bytes per zstd -1 byte (1 MiB batches)"
        ));
    }
    let mut f = Figures {
        bytes_ratio: Series::fixed(3),
        tc_ratio: Series::fixed(3),
        lag_p99: Series::fixed(3),
        lag_p50: Series::fixed(3),
        converges: Series::fixed(0),
        catch_up: Series::fixed(1),
        cache_peak_mib: Series::fixed(1),
        burst_lag_p99: Series::fixed(3),
        dedup_pct: Series::fixed(1),
        relay_mbs: Series::fixed(1),
        passthrough_mbs: Series::fixed(1),
        direct_mbs: Series::fixed(1),
        fanin_ratio: Series::fixed(2),
        relay_cores: Series::fixed(2),
    };
    let net = if fanin_only {
        None
    } else {
        Some(WanNet::new(LINK_RATE)?)
    };
    for r in 0..settings.runs {
        if let Some(net) = &net {
            let dir = work.join(format!("wan{r}"));
            wan_run(&bins, net, &dir, r as u64, bytes, raw_per_wire, &mut f)?;
            let _ = std::fs::remove_dir_all(&dir);
        }
        // Interleaved: the relay first on even runs, straight to the target first on odd ones.
        let order = if r % 2 == 0 {
            [Fanin::Relay, Fanin::Direct, Fanin::PassThrough]
        } else {
            [Fanin::Direct, Fanin::Relay, Fanin::PassThrough]
        };
        let mut got = [0.0; 2];
        for mode in order {
            let dir = work.join(format!("fanin{r}-{mode:?}"));
            let (mbs, cores) = fanin_run(&bins, &dir, bytes, mode)?;
            let _ = std::fs::remove_dir_all(&dir);
            match mode {
                Fanin::Relay => {
                    got[0] = mbs;
                    f.relay_mbs.push(mbs);
                    f.relay_cores.push(cores);
                }
                Fanin::Direct => {
                    got[1] = mbs;
                    f.direct_mbs.push(mbs);
                }
                Fanin::PassThrough => {
                    f.passthrough_mbs.push(mbs);
                }
            }
        }
        f.fanin_ratio.push_some(ratio(Some(got[0]), Some(got[1])));
    }
    drop(net);
    report(settings.runs, raw_per_wire, &f, fanin_only);
    Ok(())
}

/// Record bytes per byte of zstd -1 frames of the `fs` payload in 1 MiB batches (the load
/// generator's batches in this bench): what sets its rate for a share of the link.
fn zstd1_ratio() -> Result<f64> {
    // (Its first 64 MiB: the mix is the same, and the driver need not fill 512 MiB.)
    let pool = DataPool::with_len(1, Payload::Fs, 64 << 20);
    let (mut raw, mut packed) = (0usize, 0usize);
    let mut batch = Vec::with_capacity(1 << 20);
    for seq in 1..=8192u64 {
        batch.extend_from_slice(pool.record_data(seq, 4096));
        if batch.len() == 1 << 20 {
            raw += batch.len();
            packed += zstd::bulk::compress(&batch, 1).context("zstd")?.len();
            batch.clear();
        }
    }
    Ok(raw as f64 / packed.max(1) as f64)
}

/// One WAN run: a fresh target in its namespace, the relay, the 60% phase and the 120% burst.
fn wan_run(
    bins: &Bins,
    net: &WanNet,
    dir: &Path,
    run: u64,
    bytes: u64,
    raw_per_wire: f64,
    f: &mut Figures,
) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let data = dir.join("target");
    let target = mtd::start_tcp_as(
        net.target.command(&bins.mtd),
        &data,
        &dir.join("target.log"),
        &[],
    )?;
    let control = control_socket(&data);
    // The target listens on its namespace's loopback: a forwarder there lets the link in.
    let target_addr = target.addr.parse().context("the target's address")?;
    let into_target = DelayProxy::start(
        Some(&net.target.name),
        format!("{}:0", net.target.inner_ip).parse()?,
        target_addr,
        Duration::ZERO,
    )
    .context("the forwarder in the target's namespace")?;
    let wan = DelayProxy::start(None, "127.0.0.1:0".parse()?, into_target.addr(), ONE_WAY)
        .context("the WAN delay proxy")?;
    let cache = 2 * bytes + (256 << 20);
    let relay = Relay::start(
        bins,
        &dir.join("cache"),
        &wan.addr().to_string(),
        cache,
        &dir.join("relay.log"),
        &[],
    )?;
    // The relay listens on loopback; the agent reaches it over its own veth pair.
    let into_relay = DelayProxy::start(
        None,
        format!("{}:0", net.agent.outer_ip).parse()?,
        relay.daemon.addr.parse().context("the relay's address")?,
        Duration::ZERO,
    )
    .context("the forwarder for the agent")?;
    let connect = into_relay.addr().to_string();

    let steady_rate = (0.6 * LINK_BYTES_PER_S * raw_per_wire) as u64;
    progress::log(format!(
        "run {}: 60% of the link ({:.1} MB/s of records) for {} MiB",
        run + 1,
        steady_rate as f64 / 1e6,
        bytes >> 20
    ));
    let before = Counters::read(&relay, net)?;
    let phase = Phase {
        bins,
        net,
        relay: &relay,
        control: &control,
        connect: &connect,
        dir,
        seed: 100 + run,
    };
    let steady = phase.run("steady", bytes, steady_rate)?;
    let after = Counters::read(&relay, net)?;
    let (d_in, d_out) = (
        after.bytes_in - before.bytes_in,
        after.bytes_out - before.bytes_out,
    );
    f.bytes_ratio.push_some(per(d_out as f64, d_in as f64));
    f.tc_ratio
        .push_some(per((after.tc - before.tc) as f64, d_in as f64));
    f.dedup_pct.push(
        100.0 * (after.dedup - before.dedup) as f64 * 4096.0 / steady.record_bytes.max(1) as f64,
    );
    let mut lags = steady.lags.clone();
    f.lag_p99.push(crate::stats::percentile(&mut lags, 99.0));
    f.lag_p50.push(crate::stats::percentile(&mut lags, 50.0));
    progress::log(format!(
        "run {}: agent sent {} B, relay sent {} B (tc {} B), lag p99 {:.3} s over {} samples",
        run + 1,
        d_in,
        d_out,
        after.tc - before.tc,
        crate::stats::percentile(&mut lags, 99.0),
        lags.len()
    ));

    // 120% of the link in what the relay sends (its steady ratio just measured): the cache has
    // to grow, whatever the relay saves.
    let wan_per_agent = per(d_out as f64, d_in as f64).unwrap_or(1.0).max(0.05);
    let burst_rate = (1.2 * LINK_BYTES_PER_S * raw_per_wire / wan_per_agent) as u64;
    progress::log(format!(
        "run {}: 120% of the link after the relay's {wan_per_agent:.2} ({:.1} MB/s of records, \
         {:.0}% of the link at zstd -1) for {} MiB, then catching up",
        run + 1,
        burst_rate as f64 / 1e6,
        120.0 / wan_per_agent,
        bytes >> 20
    ));
    let before = Counters::read(&relay, net)?;
    let burst = phase.run("burst", bytes, burst_rate)?;
    let after = Counters::read(&relay, net)?;
    let waits = after.full - before.full;
    let ok = burst.caught_up.is_some() && waits == 0;
    f.converges.push(if ok { 1.0 } else { 0.0 });
    if let Some(s) = burst.caught_up {
        f.catch_up.push(s);
    }
    f.cache_peak_mib
        .push(burst.cache_peak as f64 / f64::from(1 << 20));
    let mut lags = burst.lags.clone();
    f.burst_lag_p99
        .push(crate::stats::percentile(&mut lags, 99.0));
    progress::log(format!(
        "run {}: burst caught up {} after the agent stopped; cache peak {:.1} MiB of {} MiB; \
         {waits} waits for cache room",
        run + 1,
        burst
            .caught_up
            .map_or("never (time limit)".to_string(), |s| format!("{s:.1} s")),
        burst.cache_peak as f64 / f64::from(1 << 20),
        cache >> 20
    ));
    drop(into_relay);
    relay.daemon.stop();
    drop(wan);
    drop(into_target);
    target.stop();
    Ok(())
}

/// `a / b`, `None` for a zero `b`.
fn per(a: f64, b: f64) -> Option<f64> {
    (b > 0.0).then(|| a / b)
}

/// The relay's counters and tc's byte count of the link at one moment.
struct Counters {
    bytes_in: u64,
    bytes_out: u64,
    dedup: u64,
    full: u64,
    tc: u64,
}

impl Counters {
    fn read(relay: &Relay, net: &WanNet) -> Result<Counters> {
        Ok(Counters {
            bytes_in: relay.metric("rewind_relay_bytes_in_total")?,
            bytes_out: relay.metric("rewind_relay_bytes_out_total")?,
            dedup: relay.metric("rewind_relay_dedup_blocks_total")?,
            full: relay.metric("rewind_relay_cache_full_total")?,
            tc: net.wan_bytes_sent()?,
        })
    }
}

/// What one phase of a WAN run needs.
struct Phase<'a> {
    bins: &'a Bins,
    net: &'a WanNet,
    relay: &'a Relay,
    control: &'a Path,
    connect: &'a str,
    dir: &'a Path,
    seed: u64,
}

/// What a phase saw.
struct PhaseResult {
    /// Lag samples while the agent sent (seconds).
    lags: Vec<f64>,
    /// Seconds from the agent's end to the target holding all it had acknowledged (None: not
    /// within the time limit).
    caught_up: Option<f64>,
    /// The most the relay's cache held.
    cache_peak: u64,
    record_bytes: u64,
}

impl Phase<'_> {
    /// Sends `bytes` of records at `rate` to group `group` through the relay, sampling the
    /// lag, then waits for the target to catch up.
    fn run(&self, group: &str, bytes: u64, rate: u64) -> Result<PhaseResult> {
        let state = self.dir.join(format!("{group}.state"));
        let log = self.dir.join(format!("{group}.loadgen.log"));
        let child = Agent {
            program: self.net.agent.command(&self.bins.loadgen),
            connect: self.connect,
            group,
            seed: self.seed,
            payload: "fs",
            total: bytes,
            rate: Some(rate),
            extra: &[],
            state: &state,
            log: &log,
        }
        .spawn()?;
        let (lags, cache_peak, child) = self.sample(child, group, &state)?;
        let summary = wan_procs::finish(child, &log)?;
        let end = Instant::now();
        let last = summary["acked_seq"]
            .as_u64()
            .context("acked_seq in the summary")?;
        let record_bytes = summary["bytes"].as_u64().unwrap_or(0);
        // Time enough for the whole phase's zstd -1 bytes over the bare link, and a minute.
        let limit = Duration::from_secs_f64(60.0 + 2.0 * bytes as f64 / LINK_BYTES_PER_S);
        let mut peak = cache_peak;
        let caught = tools::poll(
            (limit.as_millis() / SAMPLE.as_millis()) as u32,
            SAMPLE,
            || {
                if let Ok(c) = self.relay.metric("rewind_relay_cache_bytes") {
                    peak = peak.max(c);
                }
                target_durable(self.control, group).is_ok_and(|d| d >= last)
            },
        );
        Ok(PhaseResult {
            lags,
            caught_up: caught.then(|| tools::since(end)),
            cache_peak: peak,
            record_bytes,
        })
    }

    /// Samples, while the agent runs, the lag (the age of the oldest write acknowledged by the
    /// relay that the target does not hold) and the relay's cache use.
    fn sample(
        &self,
        mut child: Child,
        group: &str,
        state: &Path,
    ) -> Result<(Vec<f64>, u64, Child)> {
        let t0 = Instant::now();
        // (When each acked seq was first seen: ascending in both.)
        let mut acks: Vec<(f64, u64)> = Vec::new();
        let (mut lags, mut peak) = (Vec::new(), 0);
        while child.try_wait()?.is_none() {
            let now = tools::since(t0);
            let a = acked(state);
            if acks.last().is_none_or(|&(_, s)| s < a) {
                acks.push((now, a));
            }
            let held = target_durable(self.control, group)?;
            let oldest_missing = acks.iter().find(|&&(_, s)| s > held);
            lags.push(oldest_missing.map_or(0.0, |&(t, _)| now - t));
            peak = peak.max(self.relay.metric("rewind_relay_cache_bytes")?);
            std::thread::sleep(SAMPLE);
        }
        if acks.is_empty() {
            bail!("the agent of group {group} saw nothing acknowledged");
        }
        Ok((lags, peak, child))
    }
}

/// How the fan-in's agents reach the target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fanin {
    /// Through a relay with its defaults (dedup on, so every batch is compressed again).
    Relay,
    /// Through a relay with `--dedup-window 0` and no recompression: what the cache and the
    /// forwarding cost alone (printed, not a bar).
    PassThrough,
    Direct,
}

/// One fan-in run: a fresh target on loopback, 8 load generators through a fresh relay or
/// straight to the target; MB/s of record bytes durable at the target (from their start to the
/// target holding everything acknowledged), and the relay's CPU in cores over that time.
fn fanin_run(bins: &Bins, dir: &Path, bytes: u64, mode: Fanin) -> Result<(f64, f64)> {
    let how = match mode {
        Fanin::Relay => "through the relay",
        Fanin::PassThrough => "through the relay without dedup",
        Fanin::Direct => "straight to the target",
    };
    let via_relay = mode != Fanin::Direct;
    progress::log(format!(
        "fan-in: {FANIN_AGENTS} agents {how}, {} MiB",
        bytes >> 20
    ));
    std::fs::create_dir_all(dir)?;
    let data = dir.join("target");
    let target: Daemon = mtd::start_tcp_with(bins, &data, &dir.join("target.log"), &[])?;
    let control = control_socket(&data);
    let relay = if via_relay {
        Some(Relay::start(
            bins,
            &dir.join("cache"),
            &target.addr,
            bytes + (512 << 20),
            &dir.join("relay.log"),
            if mode == Fanin::PassThrough {
                &["--dedup-window", "0"][..]
            } else {
                &[]
            },
        )?)
    } else {
        None
    };
    let connect = relay
        .as_ref()
        .map_or(&target.addr, |r| &r.daemon.addr)
        .clone();
    let each = (bytes / FANIN_AGENTS as u64).max(1 << 20);
    let t0 = Instant::now();
    let relay_ticks0 = match &relay {
        Some(r) => mtd::cpu_ticks(r.daemon.pid())?,
        None => 0,
    };
    let mut agents = Vec::new();
    for i in 0..FANIN_AGENTS {
        let state = dir.join(format!("f{i}.state"));
        let log = dir.join(format!("f{i}.loadgen.log"));
        let group = format!("f{i}");
        let child = Agent {
            program: std::process::Command::new(&bins.loadgen),
            connect: &connect,
            group: &group,
            seed: 200 + i as u64,
            payload: "random",
            total: each,
            rate: None,
            extra: &["--compression", "store"],
            state: &state,
            log: &log,
        }
        .spawn()?;
        agents.push((group, child, log));
    }
    let mut done = Vec::new();
    for (group, child, log) in agents {
        let s = wan_procs::finish(child, &log)?;
        let last = s["acked_seq"]
            .as_u64()
            .context("acked_seq in the summary")?;
        done.push((group, last, s["bytes"].as_u64().unwrap_or(0)));
    }
    let caught = tools::poll(6000, Duration::from_millis(10), || {
        done.iter()
            .all(|(g, last, _)| target_durable(&control, g).is_ok_and(|d| d >= *last))
    });
    if !caught {
        bail!("fan-in {how}: the target did not catch up within 60 s");
    }
    let secs = tools::since(t0);
    let cores = match &relay {
        Some(r) => {
            (mtd::cpu_ticks(r.daemon.pid())? - relay_ticks0) as f64
                / mtd::clock_ticks_per_second()
                / secs
        }
        None => 0.0,
    };
    let total: u64 = done.iter().map(|(_, _, b)| b).sum();
    let mbs = total as f64 / 1e6 / secs;
    progress::log(format!(
        "fan-in {how}: {:.1} MB/s ({} B in {secs:.2} s){}",
        mbs,
        total,
        if via_relay {
            format!(", relay {cores:.2} cores")
        } else {
            String::new()
        }
    ));
    if let Some(r) = relay {
        r.daemon.stop();
    }
    target.stop();
    Ok((mbs, cores))
}

fn report(runs: usize, raw_per_wire: f64, f: &Figures, fanin_only: bool) {
    println!();
    if fanin_only {
        report_fanin(f);
        let s = &f.relay_mbs;
        print_bars(
            runs,
            &[Bar {
                name: "relay-fanin-mbps",
                value: s.median_text(),
                want: ">= 800",
                spread: (!s.is_empty()).then(|| s.spread_text()),
            }],
        );
        return;
    }
    println!(
        "wan: 100 Mbit/s tbf, 40 ms round trip; fs payload ({raw_per_wire:.2}:1 at zstd -1), \
         medians of {runs} runs"
    );
    println!(
        "  60% of the link: WAN bytes per agent byte {} (relay count; tc's count of the link \
         {}), {}% of record bytes deduplicated; lag p50 {} s, p99 {} s",
        f.bytes_ratio.median_text(),
        f.tc_ratio.median_text(),
        f.dedup_pct.median_text(),
        f.lag_p50.median_text(),
        f.lag_p99.median_text()
    );
    println!(
        "  120% of the link (after the relay's savings): caught up {} s after the burst, cache \
         peak {} MiB, lag p99 during the burst {} s",
        f.catch_up.median_text(),
        f.cache_peak_mib.median_text(),
        f.burst_lag_p99.median_text()
    );
    report_fanin(f);
    let bar = |name, s: &Series, want| Bar {
        name,
        value: s.median_text(),
        want,
        spread: (!s.is_empty()).then(|| s.spread_text()),
    };
    print_bars(
        runs,
        &[
            bar("wan-bytes-ratio", &f.bytes_ratio, "<= 0.8"),
            bar("wan-lag-p99-s", &f.lag_p99, "< 2"),
            Bar {
                name: "wan-converges",
                // Every run must converge: the worst run is the bar.
                value: fmt(f.converges.spread().map(|(lo, _)| lo), 0),
                want: ">= 1",
                spread: Some(f.converges.spread_text()),
            },
            bar("relay-fanin-mbps", &f.relay_mbs, ">= 800"),
        ],
    );
}

fn report_fanin(f: &Figures) {
    println!(
        "  fan-in of {FANIN_AGENTS}: {} MB/s through the relay (spread {}; relay {} cores; {} \
         MB/s without dedup and recompression, spread {}), {} MB/s straight to the target \
         (spread {}), ratio {} (spread {})",
        f.relay_mbs.median_text(),
        f.relay_mbs.spread_text(),
        f.relay_cores.median_text(),
        f.passthrough_mbs.median_text(),
        f.passthrough_mbs.spread_text(),
        f.direct_mbs.median_text(),
        f.direct_mbs.spread_text(),
        f.fanin_ratio.median_text(),
        f.fanin_ratio.spread_text()
    );
}
