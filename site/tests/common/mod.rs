//! What the site's integration tests share.
#![allow(dead_code)]

pub mod hook;
pub mod pg;
pub mod site;
pub mod smtp;
pub mod target;
