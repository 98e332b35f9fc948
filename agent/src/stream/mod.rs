//! The stream: the ordered queue of captured writes and sync copies, and the sender that takes it
//! to the target.

pub mod inflight;
pub mod levels;
pub mod link;
pub mod loss;
pub mod queue;
pub mod ratelimit;
pub mod sender;
pub mod seq;
pub mod spool;
pub mod wire;
