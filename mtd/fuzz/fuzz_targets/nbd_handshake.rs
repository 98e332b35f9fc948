//! Fuzz target `nbd_handshake`: the NBD fixed newstyle handshake (the bytes a client sends).
//! The work is in `rewind_mtd::nbd::fuzzing::handshake`, which the corpus replay test also runs.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    rewind_mtd::nbd::fuzzing::handshake(data);
});
