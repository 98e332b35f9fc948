//! The test harness both crates' tests share: the real `rewind-mtd`, `rewind-agent`, `rewind`
//! and `rewind-loadgen` binaries run as processes, and guards that undo what a test set up
//! (processes by pid, mounts, loop devices) even when the test fails.
//!
//! - [`bins`]: where the workspace's binaries (and fsx) are.
//! - [`cmd`]: running a command to completion, with or without asserting success.
//! - [`procs`]: child processes stopped and reaped by pid.
//! - [`scratch`]: scratch directories and what a test needs of the machine.
//! - [`mtd`] and [`mtd_cli`]: a `rewind-mtd serve` process, and the CLI and control API against it.
//! - [`agent`] and [`agent_status`]: a `rewind-agent run` process, and polling its status file.
//! - [`mounts`] and [`loopdev`]: mounted filesystems and loop devices, undone on drop.
//! - [`disk`]: test data written to and compared between devices and images.
//! - [`sites`]: failover sites (a target with a view tree) and their reverse replication.
//! - [`http`] and [`prometheus`]: GETs to `/metrics`, and a real Prometheus scraping them.
//! - [`loadgen`]: `rewind-loadgen` workloads.
//! - [`netns`]: a network namespace behind a veth pair, for partitions.
//! - [`pg`]: a throwaway PostgreSQL cluster (the site's tests and its bench).
//! - [`powercut`]: power-cut campaigns' mounts, rounds and result lines.
//! - [`vm`]: a qemu test VM booting from what the target exposes.
//! - [`container`]: a Debian root booted with systemd as PID 1, for the packages' units.
//! - [`packages`]: the Debian packages, built with cargo-deb from the debug binaries.
//! - [`writer`]: a background random-extent workload on a protected device.
//!
//! Everything here panics on failure: it is for tests only.

pub mod agent;
pub mod agent_status;
pub mod bins;
pub mod cmd;
pub mod container;
pub mod corpus;
pub mod disk;
pub mod frames;
pub mod http;
pub mod loadgen;
pub mod loopdev;
pub mod mounts;
pub mod mtd;
pub mod mtd_cli;
pub mod netns;
pub mod packages;
pub mod pg;
pub mod powercut;
pub mod procs;
pub mod prometheus;
pub mod scratch;
pub mod sites;
pub mod vm;
pub mod writer;

pub use agent::Agent;
/// The agent's status file, read (its layout is `rewind_formats::agent_status`).
pub use agent_status::read_status;
pub use agent_status::wait_caught_up_at;
pub use bins::{bin, fsx_bin};
pub use cmd::{assert_ok, run, run_ok};
pub use disk::{
    assert_fsck_clean, assert_same, open_direct, try_write_direct, write_random_mib, Rng,
};
pub use frames::recv_message;
pub use loadgen::{acked, Workload};
pub use loopdev::Loop;
pub use mounts::{umount_lazy, umount_or_lazy, Mount};
pub use mtd::{tail, Mtd};
pub use mtd_cli::{dump, group_json, inspect};
pub use netns::NetNs;
pub use powercut::{parse_powercut_result, powercut_mount, powercut_rounds, print_powercut_result};
pub use procs::{kill_and_reap, sigterm_and_wait, wait_for_path, wait_or_kill, Proc};
pub use prometheus::{have_prometheus, Prometheus};
pub use scratch::{can_run, have_tool, have_tools, sparse_image, tempdir};
pub use sites::{live_loop, reverse_log, reverse_state, site};
pub use writer::Writer;
