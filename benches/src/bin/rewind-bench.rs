//! `rewind-bench`: the bench driver behind `scripts/bench.sh` (see `rewind_benches::driver`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use rewind_benches::driver::{
    agent, apply, cleanup, console, crash, failover, ltr, netfault, overhead, powercut, site, soak,
    views, wan,
};
use rewind_benches::driver::{progress, Settings};

#[derive(Parser)]
#[command(
    name = "scripts/bench.sh",
    about = "Rewind benchmarks: rewind-mtd and rewind-agent against fio, qemu-nbd and plain loop \
             baselines taken in the same run, on the same filesystem, with one \"bar\" line per \
             target ratio",
    disable_help_subcommand = true
)]
struct Cli {
    #[command(flatten)]
    env: EnvArgs,
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

/// The environment every bench reads.
#[derive(Args)]
struct EnvArgs {
    /// Runs of each measurement (the median is reported) [default: 3; 5 for apply and views]
    #[arg(long = "runs", env = "BENCH_RUNS", global = true)]
    bench_runs: Option<usize>,
    /// Where the scratch directory goes.
    #[arg(long, env = "BENCH_TMP", default_value = "/var/tmp", global = true)]
    tmp: PathBuf,
    /// Time cap of random-write runs, fio and the daemon alike (seconds).
    #[arg(long, env = "BENCH_RAND_SECONDS", default_value_t = 20, global = true)]
    rand_seconds: u64,
    /// The source tree (scripts/bench.sh sets it).
    #[arg(long, env = "REWIND_ROOT", default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/.."), global = true)]
    root: PathBuf,
    /// Where cargo puts the binaries (default ROOT/target).
    #[arg(long, env = "CARGO_TARGET_DIR", global = true)]
    target_dir: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Cmd {
    /// rewind-mtd durable-apply throughput against fio on the same filesystem (SIZE default
    /// 256MiB, the quick CI-sized run; use 4GiB for real measurements)
    Apply {
        #[arg(default_value = "256MiB")]
        size: String,
    },
    /// kill -9 the daemon under load ROUNDS times (default 100) per io engine and check that
    /// every acknowledged write survived
    Crash {
        #[arg(default_value = "100")]
        rounds: String,
    },
    /// kill -9 the agent at random moments ROUNDS times (default 100) while a workload writes
    /// through its protected device; after the last start the target must equal the source
    CrashAgent {
        #[arg(default_value = "100")]
        rounds: String,
    },
    /// random network faults (cut, stall, latency, bandwidth, truncate, duplicate, corrupt)
    /// between agent and target for MINUTES; replication must converge after each round
    Netfault { minutes: String },
    /// the sector-header oracle: ROUNDS rounds of self-describing writes, then every tag, time
    /// and a sample of seqs read through NBD, FUSE and loop must be a prefix of the writes
    Oracle { rounds: String },
    /// the whole flow (ext4 workload, tags, merging, point reads, test failovers) for MINUTES,
    /// with memory, descriptors and journal size sampled: none may keep growing
    Soak { minutes: String },
    /// power cuts (the power-cut FUSE fs) of the target's data dir under load, ROUNDS times
    /// per io engine, and of the agent's state dir and disk, ROUNDS times (default 20): no
    /// acknowledged write may be lost
    Powercut {
        #[arg(default_value = "20")]
        rounds: String,
    },
    /// rewind-agent: fio write overhead against a plain loop device, replication lag at 50 MB/s,
    /// initial sync of a half-full ext4 image against zstd -1 -T1 (SIZE default 1GiB; the
    /// issue's measuring size for the sync is 4GiB)
    Agent {
        #[arg(default_value = "1GiB")]
        size: String,
        /// Seconds of each write-overhead fio run.
        #[arg(long, env = "AGENT_FIO_SECONDS", default_value_t = 10)]
        fio_seconds: u64,
        /// Seconds of each replication-lag run.
        #[arg(long, env = "AGENT_LAG_SECONDS", default_value_t = 15)]
        lag_seconds: u64,
    },
    /// nbdcopy of a view against qemu-nbd on the same bytes (merged, 10% and 50% in the
    /// journal), FUSE+loop sequential read against a plain loop device, and the time to open a
    /// point and read its first block with RECORDS (default 1000000) in the journal
    Views {
        #[arg(default_value = "256MiB")]
        size: String,
        #[arg(default_value_t = 1_000_000)]
        records: u64,
    },
    /// time from `rewind failover test` to a readable NBD export (against qemu-nbd on the
    /// source image), and the RTO of a two-VM recovery plan in test mode (against the same
    /// boots from plain image files)
    Failover { runs: Option<String> },
    /// Long-term retention: archive throughput, opening a long-term point cold, dedup of 30
    /// daily points.
    Ltr {
        #[arg(default_value = "256MiB")]
        size: String,
    },
    /// what monitoring costs: for now the target's /metrics scrape time with DISKS disks
    /// (default 1000), median of at least 5 scrapes
    Console {
        #[arg(default_value = "1000")]
        disks: String,
    },
    /// the configuration server at scale: GROUPS groups (default 1000) over three targets,
    /// on SQLite and PostgreSQL: listing p99, policy propagation, leader takeover
    Site {
        #[arg(default_value = "1000")]
        groups: String,
    },
    /// the relay over a WAN (100 Mbit/s tbf, 40 ms round trip, agent and target in network
    /// namespaces; root only): WAN bytes per agent byte and lag at 60% of the link, a burst at
    /// 120%, and 8 agents through one relay against straight to the target (SIZE default
    /// 256MiB per phase)
    Wan {
        #[arg(default_value = "256MiB")]
        size: String,
        /// only the 8-agent fan-in on loopback (no WAN phases, no network namespaces)
        #[arg(long)]
        fanin_only: bool,
    },
    /// the agent's write overhead alone (agent/bench-overhead.sh; root only): fio on the
    /// protected device against a plain loop device, medians and ratios
    Overhead(OverheadArgs),
}

/// agent/bench-overhead.sh's environment.
#[derive(Args)]
struct OverheadArgs {
    #[arg(long, env = "AGENT")]
    agent: Option<PathBuf>,
    #[arg(long, env = "MTD")]
    mtd: Option<PathBuf>,
    #[arg(long, env = "WORK_BASE", default_value = "/var/tmp")]
    work_base: PathBuf,
    #[arg(long = "overhead-runs", env = "RUNS", default_value_t = 3)]
    overhead_runs: usize,
    /// Seconds per fio run.
    #[arg(long, env = "RUNTIME", default_value_t = 10)]
    runtime: u64,
    #[arg(long, env = "SIZE", default_value = "2G")]
    size: String,
    /// Extra `rewind-agent run` flags, e.g. "--io-engine sync".
    #[arg(
        long,
        env = "AGENT_ARGS",
        default_value = "",
        allow_hyphen_values = true
    )]
    agent_args: String,
    /// "rand", "seq" or "rand seq".
    #[arg(long, env = "JOBS", default_value = "rand seq")]
    jobs: String,
    /// 0 skips the plain loop runs.
    #[arg(long, env = "PLAIN", default_value = "1")]
    plain: String,
}

fn main() -> ExitCode {
    cleanup::handle_signals();
    let cli = Cli::parse();
    let Some(cmd) = cli.cmd else {
        use clap::CommandFactory;
        let _ = Cli::command().print_help();
        return ExitCode::SUCCESS;
    };
    let env = cli.env;
    let settings = Settings {
        target_dir: env.target_dir.unwrap_or_else(|| env.root.join("target")),
        root: env.root,
        runs: env.bench_runs.unwrap_or(3),
        runs_given: env.bench_runs.is_some(),
        tmp_base: env.tmp,
        rand_seconds: env.rand_seconds,
    };
    progress::start();
    let result = match cmd {
        Cmd::Apply { size } => apply::run(&settings, &size).map(|()| ExitCode::SUCCESS),
        Cmd::Crash { rounds } => crash::run(&settings, &rounds),
        Cmd::CrashAgent { rounds } => crash::run_agent(&settings, &rounds),
        Cmd::Netfault { minutes } => netfault::run(&settings, &minutes),
        Cmd::Oracle { rounds } => netfault::oracle(&settings, &rounds),
        Cmd::Soak { minutes } => soak::run(&settings, &minutes),
        Cmd::Powercut { rounds } => powercut::run(&settings, &rounds),
        Cmd::Agent {
            size,
            fio_seconds,
            lag_seconds,
        } => {
            let d = agent::Durations {
                fio_seconds,
                lag_seconds,
            };
            agent::run(&settings, &size, &d).map(|()| ExitCode::SUCCESS)
        }
        Cmd::Views { size, records } => {
            views::run(&settings, &size, records).map(|()| ExitCode::SUCCESS)
        }
        Cmd::Failover { runs } => {
            failover::run(&settings, runs.as_deref()).map(|()| ExitCode::SUCCESS)
        }
        Cmd::Ltr { size } => ltr::run(&settings, &size).map(|()| ExitCode::SUCCESS),
        Cmd::Console { disks } => console::run(&settings, &disks).map(|()| ExitCode::SUCCESS),
        Cmd::Wan { size, fanin_only } => {
            wan::run(&settings, &size, fanin_only).map(|()| ExitCode::SUCCESS)
        }
        Cmd::Site { groups } => site::run(&settings, &groups).map(|()| ExitCode::SUCCESS),
        Cmd::Overhead(o) => {
            let o = overhead::Options {
                agent: o.agent,
                mtd: o.mtd,
                work_base: o.work_base,
                runs: o.overhead_runs,
                runtime: o.runtime,
                size: o.size,
                agent_args: o.agent_args,
                jobs: o.jobs,
                plain: o.plain != "0",
            };
            overhead::run(&settings, &o).map(|()| ExitCode::SUCCESS)
        }
    };
    progress::finish();
    cleanup::run();
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
