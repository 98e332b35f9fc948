//! Reading the target's answers in tests that speak the agent protocol by hand.

use std::io::Read;

use rewind_formats::frame::blocking::{read_message, ReadError};
use rewind_formats::Message;

/// The next message from the daemon, or `None` once it closed the connection (also mid-frame).
/// A frame or message that does not decode fails the test: the daemon only sends valid ones.
pub fn recv_message(r: &mut impl Read) -> Option<Message> {
    match read_message(r) {
        Ok(m) => m,
        Err(ReadError::Io(_) | ReadError::Cut { .. }) => None,
        Err(e) => panic!("the daemon sent a bad frame: {e}"),
    }
}
