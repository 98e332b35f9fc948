//! The Linux plumbing that both `rewind-agent` and `rewind-mtd` need, in one place: each module
//! is one concept, with no knowledge of Rewind's protocol or store.
//!
//! - [`aligned`]: page-aligned buffers for O_DIRECT and the pools that recycle them.
//! - [`atomic`]: replacing a file whole (temporary file, fsync, rename, fsync the directory).
//! - [`loopdev`]: `losetup` attach and detach, `partx`.
//! - [`fuse_mount`]: mount points, and detaching the dead mount a killed FUSE server leaves.
//! - [`huge_pages`]: IO buffers in huge pages, one device segment each.
//! - [`memtrim`]: giving freed heap memory back to the kernel now and then.
//! - [`pem`]: certificates and keys from PEM files.
//! - [`process`]: child commands in their own process group, and stopping those groups.
//! - [`clock`]: wall-clock milliseconds.
//! - [`metrics`]: Prometheus plumbing: a lock-free latency histogram and the helpers that write
//!   a metric family computed at scrape time.

pub mod aligned;
pub mod atomic;
pub mod clidocs;
pub mod clock;
pub mod fuse_mount;
pub mod huge_pages;
pub mod logging;
pub mod loopdev;
pub mod memtrim;
pub mod metrics;
pub mod pem;
pub mod process;
