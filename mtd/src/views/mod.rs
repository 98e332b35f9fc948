//! The read path: a disk of a group as of one point, and everything that shows it to the outside.
//!
//! ```text
//! store (journal + base) -> view (one disk at one point, pinned)
//!                        -> overlay (a writable layer over a view)
//!                        -> exports (names -> views and overlays; what NBD and FUSE open)
//!                        -> attach (loop devices and mounts over the FUSE tree's files)
//!                        -> dump, inspect (offline: one image to a file; a report of the store)
//! ```
//!
//! Dependencies point one way: these modules use `store`, and `store` uses nothing here.

pub mod attach;
pub mod dump;
pub mod exports;
pub mod inspect;
pub mod overlay;
pub mod view;
