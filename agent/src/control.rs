//! The control socket (`STATE_DIR/control.sock`): `rewind-agent tag` asks the running agent to
//! insert a tag. One JSON request per line, one JSON reply per line.
//!
//! A tag is two requests so that filesystems stay frozen as briefly as possible: `tag` queues it
//! at the current seq and answers at once (the caller thaws right after), then `wait` waits until
//! the tag has been sent and its seq acknowledged by the target.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rewind_formats::{Seq, TagKind};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::now_ms;
use crate::state::{StateDir, CONTROL_SOCKET};
use crate::stream::queue::Queue;

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Request {
    Tag { name: String, kind: TagKind },
    Wait { id: u64, timeout_ms: u64 },
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Reply {
    pub ok: bool,
    #[serde(default)]
    pub error: Option<String>,
    /// For `tag`: the tag's id (for `wait`) and seq (none until the agent has reached the
    /// target once: seqs continue the target's numbering).
    #[serde(default)]
    pub id: u64,
    #[serde(default)]
    pub seq: Option<Seq>,
}

/// Listens on the control socket; serves each client on its own thread.
pub fn serve(state: &StateDir, queue: Arc<Queue>) -> Result<PathBuf> {
    let p = state.control_socket();
    let _ = std::fs::remove_file(&p);
    let listener = UnixListener::bind(&p).map_err(Error::path("binding the control socket", &p))?;
    std::thread::Builder::new()
        .name("control".into())
        .spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let q = Arc::clone(&queue);
                let _ = std::thread::Builder::new()
                    .name("control-client".into())
                    .spawn(move || serve_client(conn, &q));
            }
        })
        .map_err(Error::path("starting the control thread for", &p))?;
    Ok(p)
}

fn serve_client(conn: UnixStream, queue: &Queue) {
    let Ok(mut w) = conn.try_clone() else { return };
    for line in BufReader::new(conn).lines() {
        let Ok(line) = line else { return };
        let reply = match serde_json::from_str::<Request>(&line) {
            Err(e) => Reply {
                error: Some(format!("bad request: {e}")),
                ..Reply::default()
            },
            Ok(Request::Tag { name, kind }) => {
                match rewind_formats::validate_name(&name)
                    .map_err(|e| e.to_string())
                    .and_then(|()| {
                        queue
                            .push_tag(&name, kind, now_ms())
                            .map_err(|e| e.to_string())
                    }) {
                    Ok((id, seq)) => {
                        tracing::info!(tag = %name, ?seq, "tag queued");
                        Reply {
                            ok: true,
                            id,
                            seq,
                            ..Reply::default()
                        }
                    }
                    Err(e) => Reply {
                        error: Some(format!("tag {name:?}: {e}")),
                        ..Reply::default()
                    },
                }
            }
            Ok(Request::Wait { id, timeout_ms }) => {
                if queue.wait_tag(id, Duration::from_millis(timeout_ms)) {
                    Reply {
                        ok: true,
                        id,
                        ..Reply::default()
                    }
                } else {
                    Reply {
                        id,
                        error: Some(format!(
                            "tag not yet acknowledged by the target after {timeout_ms} ms (it \
                             stays queued and is sent when the link allows)"
                        )),
                        ..Reply::default()
                    }
                }
            }
        };
        let mut text = serde_json::to_string(&reply).expect("reply serialises");
        text.push('\n');
        if w.write_all(text.as_bytes()).is_err() {
            return;
        }
    }
}

/// A client: one request, one reply.
pub fn call(state_dir: &Path, req: &Request) -> Result<Reply> {
    let p = state_dir.join(CONTROL_SOCKET);
    let mut s = UnixStream::connect(&p).map_err(Error::path(
        "connecting to the agent's control socket (is `rewind-agent run` running with this state dir?)",
        &p,
    ))?;
    let mut text = serde_json::to_string(req).expect("request serialises");
    text.push('\n');
    s.write_all(text.as_bytes())
        .map_err(Error::path("sending to", &p))?;
    let mut line = String::new();
    BufReader::new(s)
        .read_line(&mut line)
        .map_err(Error::path("reading the reply from", &p))?;
    serde_json::from_str(&line).map_err(|e| Error::Config {
        what: "control reply",
        why: format!("{line:?}: {e}"),
    })
}
