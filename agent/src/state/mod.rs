//! The state directory: the files a running agent keeps beside it.

pub mod files;
pub mod status;
