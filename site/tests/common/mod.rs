//! What the site's integration tests share.
#![allow(dead_code)]

pub mod pg;
pub mod site;
