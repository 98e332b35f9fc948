//! The bench driver behind `scripts/bench.sh` (binary `rewind-bench`): it builds what a bench
//! needs, runs Rewind and its baselines (fio, qemu-nbd, a plain loop device, zstd, plain VM
//! boots) interleaved run by run in one scratch directory, takes medians and their spread, and
//! ends each bench with one `bar NAME: VALUE (want OP BAR)` line per target.
//!
//! - [`settings`]: the environment every bench reads (`BENCH_RUNS`, `BENCH_TMP`, ...).
//! - [`cleanup`]: processes, loop devices, mounts and the scratch directory, undone on any exit.
//! - [`progress`]: the `bench [+Ns]: ...` log lines under an indicatif spinner.
//! - [`tools`]: external tools, cargo builds and running commands.
//! - [`stats`]: series of run results, medians, spreads and ratios as the reports print them.
//! - [`report`]: bar lines.
//! - [`fio`]: fio jobs and their JSON results.
//! - [`mtd`]: starting and stopping `rewind-mtd`, the `rewind` CLI, cold caches.
//! - [`suite_test`]: benches that run one test of the suite at length.
//! - [`agentproc`]: starting `rewind-agent` and reading its status file.
//! - [`apply`], [`views`], [`agent`], [`failover`], [`crash`], [`netfault`], [`overhead`],
//!   [`powercut`], [`console`] (with [`alert_delay`]), [`soak`], [`site`]: the benches.
//! - [`site_proc`]: the configuration server and its master targets for the site bench.
//! - [`wan`]: the relay over a WAN, with [`wan_net`] (namespaces, veth, tbf) and [`wan_procs`]
//!   (the relay, the target's durable seq, load generators).

pub mod agent;
pub mod agent_overhead;
pub mod agentproc;
pub mod alert_delay;
pub mod apply;
pub mod cleanup;
pub mod console;
pub mod console_overview;
pub mod crash;
pub mod failover;
pub mod fio;
pub mod ltr;
pub mod mtd;
pub mod netfault;
pub mod nulltarget;
pub mod overhead;
pub mod powercut;
pub mod progress;
pub mod report;
pub mod settings;
pub mod site;
pub mod site_proc;
pub mod soak;
pub mod stats;
pub mod suite_test;
pub mod tools;
pub mod views;
pub mod wan;
pub mod wan_net;
pub mod wan_procs;

pub use settings::Settings;
