//! What the site's integration tests share.
#![allow(dead_code)]

// A throwaway PostgreSQL cluster: the bench driver starts one too, so it lives in the harness.
pub use rewind_benches::harness::pg;
pub mod site;
