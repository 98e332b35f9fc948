//! `rewind-loadgen`: a wire-protocol load generator with a deterministic workload model.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use rewind_benches::batch::Compression;
use rewind_benches::image::{send_image, ImageConfig};
use rewind_benches::run::{run, RunConfig};
use rewind_benches::verify::verify_image;
use rewind_benches::{parse_size, Addr, DiskSpec, Model, Pattern, Payload, Workload};

#[derive(Parser)]
#[command(name = "rewind-loadgen", version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Send the model workload to a target like an agent would, and measure it.
    Run(RunArgs),
    /// Compare a dumped disk image with the model image of a disk as of a seq.
    Verify(VerifyArgs),
    /// Replicate a real disk image (every non-zero block, or the changes since an older image).
    Image(ImageArgs),
}

/// The flags that define the records (shared by `run` and `verify`).
#[derive(Args)]
struct WorkloadArgs {
    /// A disk of the group, NAME:SIZE (repeat for several; the order is the disk index).
    #[arg(long = "disk", value_name = "NAME:SIZE", required = true)]
    disks: Vec<DiskSpec>,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// seq | random
    #[arg(long, default_value = "seq")]
    pattern: Pattern,
    #[arg(long, default_value = "4KiB", value_parser = parse_size)]
    record_size: u64,
    /// random | compressible | fs
    #[arg(long, default_value = "random")]
    payload: Payload,
}

impl SendArgs {
    fn compression(&self) -> Compression {
        match self.compression.as_str() {
            "store" => Compression::Store,
            // framed: records at this level, when the target takes them.
            _ => Compression::Zstd(self.level),
        }
    }
}

impl WorkloadArgs {
    fn workload(&self) -> anyhow::Result<Workload> {
        let record_size = u32::try_from(self.record_size).context("--record-size too large")?;
        Ok(Workload {
            seed: self.seed,
            pattern: self.pattern,
            record_size,
            disks: self.disks.clone(),
            payload: self.payload,
        })
    }
}

/// Connection and batching flags (shared by `run` and `image`).
#[derive(Args)]
struct SendArgs {
    /// tcp:HOST:PORT or unix:PATH
    #[arg(long)]
    connect: Addr,
    #[arg(long)]
    group: String,
    #[arg(long, default_value_t = 1)]
    generation: u64,
    /// Agent name in HELLO.
    #[arg(long, default_value = "rewind-loadgen")]
    agent: String,
    /// Records per batch up to this many bytes.
    #[arg(long, default_value = "4MiB", value_parser = parse_size)]
    batch_bytes: u64,
    /// zstd level.
    #[arg(long, default_value_t = 1, allow_negative_numbers = true)]
    level: i32,
    /// zstd | store (stored zstd blocks: what zstd makes of incompressible data, at a fraction
    /// of the load generator's CPU) | framed (records compressed as the target's journal stores
    /// them, at --level, when its WELCOME grants it, else zstd; with --payload
    /// compressible-frames every 32 KiB of the data pool is compressed once, before the run).
    #[arg(long, default_value = "zstd", value_parser = ["zstd", "store", "framed"])]
    compression: String,
    /// Most record bytes sent but not acked.
    #[arg(long, default_value = "64MiB", value_parser = parse_size)]
    max_inflight: u64,
    /// Fail when acks stop advancing for this long.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    ack_timeout: Duration,
    /// Print the summary as one JSON line.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    send: SendArgs,
    #[command(flatten)]
    workload: WorkloadArgs,
    /// Bytes of records in the run, counted from seq 1.
    #[arg(long, default_value = "1GiB", value_parser = parse_size)]
    total: u64,
    /// Send a user TAG `t<seq>` after every N records (0: never).
    #[arg(long, default_value_t = 0)]
    tag_every: u64,
    /// Keep the highest acked seq in this file (atomically replaced after acks).
    #[arg(long)]
    state: Option<PathBuf>,
    /// On connection loss, reconnect and resume from the target's durable seq.
    #[arg(long)]
    reconnect: bool,
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    reconnect_timeout: Duration,
    /// Stop sending this long after the first send, even before --total (e.g. 5s).
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// Send at most this many record bytes per second over the run (e.g. 20MiB): a steady
    /// churn, and a journal that long campaigns can keep on disk.
    #[arg(long, value_parser = parse_size)]
    rate: Option<u64>,
    /// Threads that build and compress batches.
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

#[derive(Args)]
struct VerifyArgs {
    /// The dumped view to check.
    #[arg(long)]
    image: PathBuf,
    /// Which disk of the workload (0-based, in --disk order).
    #[arg(long)]
    disk_index: usize,
    /// The seq the image should be as of.
    #[arg(long)]
    seq: u64,
    #[command(flatten)]
    workload: WorkloadArgs,
}

#[derive(Args)]
struct ImageArgs {
    #[command(flatten)]
    send: SendArgs,
    /// Disk name in HELLO (its size is the image's).
    #[arg(long)]
    disk: String,
    /// The image to replicate.
    #[arg(long)]
    file: PathBuf,
    /// Send only the 4 KiB blocks that differ from this older image.
    #[arg(long)]
    since: Option<PathBuf>,
    /// Name of the app-consistent tag (default `image-<seq>`).
    #[arg(long)]
    tag: Option<String>,
}

fn main() -> ExitCode {
    match real_main() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("rewind-loadgen: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn real_main() -> anyhow::Result<ExitCode> {
    match Cli::parse().cmd {
        Cmd::Run(a) => {
            let compression = a.send.compression();
            let cfg = RunConfig {
                addr: a.send.connect,
                agent: a.send.agent,
                group: a.send.group,
                generation: a.send.generation,
                workload: a.workload.workload()?,
                total_bytes: a.total,
                batch_bytes: a.send.batch_bytes,
                tag_every: a.tag_every,
                compression,
                framed: a.send.compression == "framed",
                state: a.state,
                reconnect: a.reconnect,
                reconnect_timeout: a.reconnect_timeout,
                max_inflight_bytes: a.send.max_inflight,
                threads: a.threads,
                ack_timeout: a.send.ack_timeout,
                duration: a.duration,
                rate: a.rate,
            };
            let s = run(&cfg).with_context(|| format!("run against {}", cfg.addr))?;
            if a.send.json {
                println!("{}", serde_json::to_string(&s)?);
            } else {
                println!(
                    "acked seqs {}..={}: {} records, {} bytes in {:.3}s: {:.1} MB/s, {:.0} records/s; \
                     ack latency p50 {:.2} ms, p99 {:.2} ms; {} batches, {} tags, {} reconnects",
                    s.first_seq,
                    s.acked_seq,
                    s.records,
                    s.bytes,
                    s.seconds,
                    s.mb_per_s,
                    s.records_per_s,
                    s.ack_latency_p50_ms,
                    s.ack_latency_p99_ms,
                    s.batches,
                    s.tags,
                    s.reconnects
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Verify(a) => {
            let model = Model::new(a.workload.workload()?)?;
            let outcome = verify_image(&model, a.disk_index, a.seq, &a.image)
                .with_context(|| format!("verify {}", a.image.display()))?;
            if outcome.is_match() {
                println!("{}: {outcome}", a.image.display());
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!(
                    "{}: disk index {} as of seq {}: {outcome}",
                    a.image.display(),
                    a.disk_index,
                    a.seq
                );
                Ok(ExitCode::from(1))
            }
        }
        Cmd::Image(a) => {
            if a.send.compression == "framed" {
                anyhow::bail!("--compression framed is for `run`; `image` sends zstd or store");
            }
            let compression = a.send.compression();
            let cfg = ImageConfig {
                addr: a.send.connect,
                agent: a.send.agent,
                group: a.send.group,
                disk: a.disk,
                file: a.file,
                since: a.since,
                tag: a.tag,
                generation: a.send.generation,
                compression,
                batch_bytes: a.send.batch_bytes,
                max_inflight_bytes: a.send.max_inflight,
                ack_timeout: a.send.ack_timeout,
            };
            let s = send_image(&cfg)
                .with_context(|| format!("send {} to {}", cfg.file.display(), cfg.addr))?;
            if a.send.json {
                println!("{}", serde_json::to_string(&s)?);
            } else {
                println!("{s}");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
