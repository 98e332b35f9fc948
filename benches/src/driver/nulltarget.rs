//! A null target for the agent bench: it speaks just enough of the wire protocol to keep an
//! agent streaming (WELCOME, an ACK per BATCH, HASHES answered) and applies nothing, so the
//! agent pays its whole cost (capture, queue, compression, sending) and none of the target's.
//!
//! Every frame is read and checked (crc32c) as the real target would; a batch's records are not
//! decompressed. HASHES requests are answered with zero hashes, which match no real block, so
//! a resync sends every block it looks at (and they are acknowledged like any batch).

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};

use rewind_formats::frame::blocking::{read_frame, ReadError};
use rewind_formats::{
    Ack, BatchRef, FrameKind, Hashes, Message, ResumeStatus, Seq, Welcome, WelcomeGroup,
};

/// The null target listening on a unix socket; it serves until the process ends.
pub struct NullTarget {
    pub path: PathBuf,
}

/// The last seq acknowledged per group, kept across an agent's reconnections.
type Acked = Arc<Mutex<HashMap<String, u64>>>;

impl NullTarget {
    /// Listens on `path` (`unix:PATH` is the agent's `--target`).
    pub fn start(path: &Path) -> Result<NullTarget> {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path)
            .with_context(|| format!("null target: listening on {}", path.display()))?;
        let acked: Acked = Arc::default();
        std::thread::Builder::new()
            .name("null-target".into())
            .spawn(move || {
                for conn in listener.incoming().flatten() {
                    let acked = Arc::clone(&acked);
                    let _ = std::thread::Builder::new()
                        .name("null-session".into())
                        .spawn(move || {
                            if let Err(e) = serve(conn, &acked) {
                                super::progress::log(format!("null target: session ended: {e:#}"));
                            }
                        });
                }
            })
            .context("starting the null target")?;
        Ok(NullTarget {
            path: path.to_path_buf(),
        })
    }

    /// The agent's `--target` for it.
    pub fn target(&self) -> String {
        format!("unix:{}", self.path.display())
    }
}

/// One agent session: answers until the agent hangs up.
fn serve(mut conn: UnixStream, acked: &Acked) -> Result<()> {
    let mut r = conn.try_clone().context("cloning the session socket")?;
    loop {
        let (head, payload) = match read_frame(&mut r) {
            Ok(Some(f)) => f,
            Ok(None) => return Ok(()),
            Err(ReadError::Io(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return Ok(())
            }
            Err(e) => return Err(anyhow::anyhow!("reading a frame: {e}")),
        };
        let reply = match head.kind {
            FrameKind::Batch => {
                let b = BatchRef::decode(&payload).context("decoding a BATCH")?;
                let last = b.first_seq.0 + u64::from(b.record_count) - 1;
                let mut a = acked.lock().unwrap_or_else(|e| e.into_inner());
                a.insert(b.group.clone(), last);
                Some(Message::Ack(Ack {
                    group: b.group,
                    durable: Seq(last),
                }))
            }
            _ => match Message::decode_version(head.version, head.kind, &payload)
                .context("decoding a frame")?
            {
                Message::Hello(h) => {
                    let a = acked.lock().unwrap_or_else(|e| e.into_inner());
                    let framed_records = h.framed_records;
                    let groups = h
                        .groups
                        .into_iter()
                        .map(|g| WelcomeGroup {
                            durable: Seq(g.last_acked.0.max(a.get(&g.group).copied().unwrap_or(0))),
                            group: g.group,
                            generation: g.generation,
                            status: ResumeStatus::Resume,
                        })
                        .collect();
                    Some(Message::Welcome(Welcome {
                        groups,
                        dedup_window: 0,
                        framed_records,
                    }))
                }
                Message::Hashes(h) => Some(Message::Hashes(Hashes {
                    hashes: vec![0; h.hashes.len()],
                    ..h
                })),
                // Tags and controls change nothing here.
                _ => None,
            },
        };
        if let Some(m) = reply {
            conn.write_all(&m.to_frame()).context("replying")?;
        }
    }
}
