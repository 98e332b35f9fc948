//! The writing half of an agent session. The master target's sessions and the relay's speak the
//! same protocol to agents, so they send their frames the same way: this one task serves both.

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;

use rewind_formats::frame::restamp_version;
use rewind_formats::{FRAME_VERSION, FRAME_VERSION_MIN};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Start the task that writes a session's outgoing frames to `wr`: (where to send them, the
/// version they go out in, the task).
///
/// Frames sent are written in order; the task ends (and shuts the stream down) once every sender
/// of the channel is gone. Set the version to the agent's HELLO's, so that an agent of an older
/// build can read every frame; until the HELLO is read, it is the oldest (which every agent
/// reads).
pub(crate) fn start<W>(mut wr: W) -> (mpsc::Sender<Vec<u8>>, Arc<AtomicU16>, JoinHandle<()>)
where
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (out, mut out_rx) = mpsc::channel::<Vec<u8>>(256);
    let version = Arc::new(AtomicU16::new(FRAME_VERSION_MIN));
    let send_version = version.clone();
    let task = tokio::spawn(async move {
        while let Some(mut frame) = out_rx.recv().await {
            let v = send_version.load(Ordering::Relaxed);
            if v != FRAME_VERSION {
                restamp_version(&mut frame, v);
            }
            if wr.write_all(&frame).await.is_err() {
                break;
            }
            // Over TLS the end of a frame may still sit in rustls's buffer after `write_all` (the
            // socket was full): flush before waiting for the next frame, or the agent never gets
            // it (see `nbd::reply::run`).
            if out_rx.is_empty() && wr.flush().await.is_err() {
                break;
            }
        }
        let _ = wr.shutdown().await;
    });
    (out, version, task)
}
