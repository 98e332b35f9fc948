//! The agent's tests run on the shared test harness (`rewind_benches::harness`, also used by the
//! master target's tests): a real `rewind-mtd serve` and a real `rewind-agent run` as processes,
//! and guards that undo what a test set up even when it fails.

pub use rewind_benches::harness::*;
