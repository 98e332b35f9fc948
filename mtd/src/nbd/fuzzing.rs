//! Fuzz entry points for the NBD server, shared by `mtd/fuzz` (cargo fuzz) and the corpus replay
//! test (`mtd/tests/fuzz_corpus.rs`), so every input the fuzzer kept stays a regression test.
//!
//! - [`handshake`]: the bytes are what a client sends during the fixed newstyle handshake, over
//!   an in-memory pipe, against a store holding one group `g` with one 1 MiB disk `d` (so `g/d`,
//!   `g/d@latest` and friends exist and NBD_OPT_GO can succeed). Bounded in time per input.
//! - [`request`]: the bytes are transmission request headers (28 bytes each) for a read-only
//!   connection to `g/d`; each is decoded, validated, and run if valid (reads, block status and
//!   flush on the 1 MiB disk: cheap).
//!
//! A harness is one data directory and one tokio runtime; [`Harness::new`] takes the directory
//! (tests give a temporary one they remove), the free functions share one per process in the
//! system temp directory (`rewind-fuzz-nbd-PID`, removed by scripts/fuzz.sh).

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rewind_formats::message::{DiskInfo, HelloGroup};
use rewind_formats::Seq;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::store::engine::EngineKind;
use crate::store::{Store, StoreOptions};
use crate::views::exports::{Exports, Volume};
use crate::views::overlay::Overlays;

use super::handshake::{Outcome, Tls};
use super::proto::{Request, REQUEST_LEN};

/// One handshake may not take longer than this (a client that stops sending ends in EOF here,
/// so this only bounds slow paths).
const HANDSHAKE_LIMIT: Duration = Duration::from_secs(5);
/// The pipe's buffer: the client's bytes are written while the replies are drained.
const PIPE: usize = 64 << 10;

pub struct Harness {
    rt: tokio::runtime::Runtime,
    exports: Arc<Exports>,
    pub dir: PathBuf,
}

impl Harness {
    /// A store in `dir` (created if missing) with group `g`, disk `d` of 1 MiB.
    pub fn new(dir: &Path) -> Harness {
        let store = Store::open(
            dir,
            StoreOptions {
                engine: EngineKind::Sync,
                ..StoreOptions::default()
            },
        )
        .unwrap_or_else(|e| panic!("opening a store in {}: {e}", dir.display()));
        if store.group("g").is_err() {
            let hg = HelloGroup {
                group: "g".into(),
                generation: 1,
                last_acked: Seq(0),
                epoch: 0,
                disks: vec![DiskInfo {
                    disk: "d".into(),
                    size_bytes: 1 << 20,
                }],
            };
            crate::server::admission::hello_group(&store, &hg, "fuzz")
                .unwrap_or_else(|e| panic!("creating group g: {}", e.message));
        }
        let overlays = Arc::new(Overlays::load(store.clone()).expect("loading overlays"));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        Harness {
            rt,
            exports: Exports::new(store, overlays),
            dir: dir.to_path_buf(),
        }
    }

    /// Run the server's handshake with `data` as everything the client sends (then EOF).
    pub fn handshake(&self, data: &[u8]) {
        self.negotiates(data);
    }

    /// [`Harness::handshake`], telling whether an export was agreed on.
    pub fn negotiates(&self, data: &[u8]) -> bool {
        let exports = self.exports.clone();
        self.rt.block_on(async move {
            let (mut server, client) = tokio::io::duplex(PIPE);
            let (mut from_server, mut to_server) = tokio::io::split(client);
            let input = data.to_vec();
            let writer = tokio::spawn(async move {
                let _ = to_server.write_all(&input).await;
                let _ = to_server.shutdown().await;
            });
            let reader = tokio::spawn(async move {
                let mut sink = Vec::new();
                let _ = from_server.read_to_end(&mut sink).await;
            });
            // As root on the unix socket: every export, no TLS (the widest option surface).
            let grants = super::clients::Grants::all("fuzz");
            let ctx = super::handshake::Ctx {
                exports: &exports,
                grants: &grants,
                peer: "fuzz",
            };
            let r = tokio::time::timeout(HANDSHAKE_LIMIT, async {
                match super::handshake::greet(&mut server, "fuzz").await? {
                    Some(no_zeroes) => {
                        super::handshake::options(&mut server, &ctx, no_zeroes, Tls::Off).await
                    }
                    None => Ok(Outcome::Closed),
                }
            })
            .await;
            drop(server);
            writer.abort();
            let _ = reader.await;
            match r {
                Ok(Ok(Outcome::Go(n))) => {
                    // What was agreed must be coherent with what exists.
                    assert!(n.export.starts_with("g/d"), "negotiated {:?}", n.export);
                    assert_eq!(n.volume.size_bytes(), 1 << 20);
                    true
                }
                _ => false,
            }
        })
    }

    /// Decode, validate and (when valid) run each 28-byte request header in `data[1..]` on a
    /// read-only connection to `g/d`; `data[0]` chooses structured replies and base:allocation.
    pub fn requests(&self, data: &[u8]) {
        let Some((&mode, rest)) = data.split_first() else {
            return;
        };
        let volume = match self.exports.open("g/d").map(|v| Volume::for_nbd(v, false)) {
            Ok(v) => v,
            Err(e) => panic!("opening g/d: {e}"),
        };
        let conn = super::conn::Conn {
            peer: "fuzz".into(),
            who: "fuzz".into(),
            export: "g/d".into(),
            size: volume.size_bytes(),
            writable: volume.writable(),
            volume: std::sync::RwLock::new(Some(Arc::new(volume))),
            structured: mode & 1 != 0,
            base_allocation: mode & 2 != 0,
            pool: super::bufpool::new(),
            stats: Default::default(),
        };
        for chunk in rest.chunks_exact(REQUEST_LEN).take(64) {
            let hdr: &[u8; REQUEST_LEN] = chunk.try_into().expect("chunks_exact");
            let Some(r) = Request::decode(hdr) else {
                continue;
            };
            check_fields(hdr, &r);
            let _ = super::proto::cmd_name(r.cmd);
            match super::exec::validate(&conn, &r) {
                Ok(()) => {
                    assert!(
                        !matches!(
                            r.cmd,
                            super::proto::CMD_WRITE
                                | super::proto::CMD_TRIM
                                | super::proto::CMD_WRITE_ZEROES
                        ),
                        "a write was accepted on a read-only export: {r:?}"
                    );
                    drop(super::exec::execute(&conn, &r, None));
                }
                Err(f) => drop(super::exec::refused(&conn, &r, f)),
            }
        }
    }
}

/// The decoded fields are the header's bytes (big-endian), nothing else.
fn check_fields(b: &[u8; REQUEST_LEN], r: &Request) {
    assert_eq!(r.flags.to_be_bytes(), b[4..6]);
    assert_eq!(r.cmd.to_be_bytes(), b[6..8]);
    assert_eq!(r.handle.to_be_bytes(), b[8..16]);
    assert_eq!(r.offset.to_be_bytes(), b[16..24]);
    assert_eq!(r.len.to_be_bytes(), b[24..28]);
}

fn shared() -> &'static Harness {
    static H: OnceLock<Harness> = OnceLock::new();
    H.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("rewind-fuzz-nbd-{}", std::process::id()));
        Harness::new(&dir)
    })
}

/// Fuzz target `nbd_handshake` (see the module docs).
pub fn handshake(data: &[u8]) {
    shared().handshake(data);
}

/// Fuzz target `nbd_request` (see the module docs).
pub fn request(data: &[u8]) {
    shared().requests(data);
}
