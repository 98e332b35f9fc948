//! A power-cut simulation file system (the approach of LazyFS): a FUSE file system over a
//! backing directory that keeps, for each file, the bytes written since its last
//! fsync/fdatasync, and for each directory, the entry changes (create, mkdir, rename, unlink)
//! since its last fsync, apart from what was made durable; [`PowercutMount::cut`] drops them as
//! a power cut does, and the mount then shows only what was made durable.
//!
//! - [`ranges`]: the byte ranges of a file written since its last sync.
//! - [`file`](mod@file): one file's live and durable bytes, synced and rolled back by those ranges.
//! - [`tree`]: the live and the durable directory entries, and the cut of the tree.
//! - [`state`]: the whole file system without FUSE (inodes, operations, the cut).
//! - [`fs`]: the FUSE requests, one [`state::State`] call each.
//! - [`mount`]: mounting, the cut (unmount, drop, mount again), unmounting.
//!
//! Supported: open/create (O_EXCL), pread/pwrite, O_DIRECT, ftruncate, fallocate (all modes
//! the kernel passes on), SEEK_DATA/SEEK_HOLE, rename (and RENAME_NOREPLACE), unlink, mkdir,
//! rmdir, readdir, fsync/fdatasync of files and directories, statfs, chmod/chown. Not: mmap,
//! hard links, symlinks, xattrs, POSIX locks (flock works: the kernel keeps it locally).

pub mod file;
pub mod fs;
pub mod mount;
pub mod ranges;
pub mod state;
pub mod tree;

pub use mount::PowercutMount;
pub use state::CutReport;
