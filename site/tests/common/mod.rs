//! What the site's integration tests share.
#![allow(dead_code)]

pub mod api;
pub mod hook;
// A throwaway PostgreSQL cluster: the bench driver starts one too, so it lives in the harness.
pub use rewind_benches::harness::pg;
pub mod protect;
pub mod site;
pub mod smtp;
pub mod target;
