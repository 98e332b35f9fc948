//! The transmission phase: a reader task decodes requests and runs each on a blocking thread;
//! replies go back, in whatever order they finish, through the single writer (`reply::run`).
//!
//! Two semaphores bound what a client can make us hold: at most `MAX_IN_FLIGHT` requests, and at
//! most `MAX_IN_FLIGHT_BYTES` of READ/WRITE payload, per connection. The reader takes the permits
//! before it reads a WRITE's payload or starts a READ, and the writer drops them once the reply
//! is on the wire.

use std::io;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, BufReader};
use tokio::sync::mpsc::{self, UnboundedSender};
use tokio::sync::Semaphore;

use super::conn::{Conn, Stats};
use super::exec;
use super::proto::*;
use super::reply::{self, Body, Permits, Reply};

pub const MAX_IN_FLIGHT: usize = 64;
/// Payload bytes in flight, counted in `BYTE_UNIT`s.
const MAX_IN_FLIGHT_BYTES: usize = 64 << 20;
const BYTE_UNIT: u32 = 64 << 10;
/// Read buffer: many request headers per syscall; large WRITE payloads bypass it.
const READ_BUFFER: usize = 256 << 10;

/// Why the transmission phase ended.
enum End {
    /// NBD_CMD_DISC: the clean way.
    Disconnect,
    /// The client closed the connection without NBD_CMD_DISC.
    Eof,
    BadMagic,
    ReadError(io::Error),
    /// The writer failed (the client stopped reading or went away).
    WriterGone,
}

/// Serve requests until the client disconnects; logs the end of the connection.
pub async fn run<R, W>(conn: Arc<Conn>, reader: R, writer: W)
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (tx, rx) = mpsc::unbounded_channel::<Reply>();
    let writer = tokio::spawn(reply::run(writer, rx, conn.structured));
    let end = read_loop(&conn, reader, &tx).await;
    // Requests still running hold their own senders: the writer finishes once they all replied.
    drop(tx);
    let write_result = writer.await;
    if conn.writable {
        // Make what the client wrote durable when it leaves, flush or not (nbdcopy, for one,
        // does not flush unless asked): an overlay's bitmap is otherwise only in memory until
        // the next flush, and a daemon stop would lose it.
        let c = conn.clone();
        let error = match tokio::task::spawn_blocking(move || c.volume.flush()).await {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(e) => Some(e.to_string()),
        };
        if let Some(error) = error {
            tracing::warn!(
                peer = %conn.peer,
                export = %conn.export,
                error,
                "flushing the overlay after its client left failed"
            );
        }
    }
    let requests = Stats::get(&conn.stats.requests);
    let read_bytes = Stats::get(&conn.stats.read_bytes);
    let written_bytes = Stats::get(&conn.stats.written_bytes);
    let errors = Stats::get(&conn.stats.errors);
    let write_error = match write_result {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(e) => Some(format!("writer task failed: {e}")),
    };
    match (&end, &write_error) {
        (End::Disconnect | End::Eof, None) => tracing::info!(
            peer = %conn.peer,
            export = %conn.export,
            requests,
            read_bytes,
            written_bytes,
            errors,
            clean = matches!(end, End::Disconnect),
            "nbd client disconnected"
        ),
        (End::BadMagic, _) => tracing::warn!(
            peer = %conn.peer,
            export = %conn.export,
            requests,
            "nbd request with a bad magic: the stream is out of sync; closing the connection"
        ),
        _ => {
            let read_error = match &end {
                End::ReadError(e) => e.to_string(),
                End::WriterGone => "writer stopped".into(),
                _ => String::new(),
            };
            tracing::warn!(
                peer = %conn.peer,
                export = %conn.export,
                requests,
                read_error,
                write_error = write_error.as_deref().unwrap_or(""),
                "nbd connection ended with an error"
            )
        }
    }
}

async fn read_loop<R: AsyncRead + Unpin>(
    conn: &Arc<Conn>,
    reader: R,
    tx: &UnboundedSender<Reply>,
) -> End {
    let mut reader = BufReader::with_capacity(READ_BUFFER, reader);
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let bytes = Arc::new(Semaphore::new(MAX_IN_FLIGHT_BYTES / BYTE_UNIT as usize));
    loop {
        let mut hdr = [0u8; REQUEST_LEN];
        match reader.read_exact(&mut hdr).await {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return End::Eof,
            Err(e) => return End::ReadError(e),
        }
        let Some(req) = Request::decode(&hdr) else {
            return End::BadMagic;
        };
        if req.cmd == CMD_DISC {
            return End::Disconnect;
        }
        if tx.is_closed() {
            return End::WriterGone;
        }
        Stats::add(&conn.stats.requests, 1);
        let slot = slots
            .clone()
            .acquire_owned()
            .await
            .expect("semaphore never closed");
        let payload_len = match req.cmd {
            CMD_READ | CMD_WRITE => req.len.min(MAX_PAYLOAD),
            _ => 0,
        };
        let bytes_permit = match payload_len.div_ceil(BYTE_UNIT) {
            0 => None,
            units => Some(
                bytes
                    .clone()
                    .acquire_many_owned(units)
                    .await
                    .expect("semaphore never closed"),
            ),
        };
        let permits = Permits {
            _slot: slot,
            _bytes: bytes_permit,
        };
        let payload = if req.cmd == CMD_WRITE {
            if req.len > MAX_PAYLOAD {
                // Too large to hold: skip the payload so the stream stays in sync, then refuse.
                if let Err(e) = discard(&mut reader, req.len as u64).await {
                    return End::ReadError(e);
                }
                None
            } else {
                let mut buf = conn.pool.get(req.len as usize);
                if let Err(e) = reader.read_exact(&mut buf).await {
                    return End::ReadError(e);
                }
                Some(buf)
            }
        } else {
            None
        };
        if let Err(f) = exec::validate(conn, &req) {
            let _ = tx.send(Reply {
                handle: req.handle,
                offset: req.offset,
                body: exec::refused(conn, &req, f),
                _permits: permits,
            });
            continue;
        }
        let conn = conn.clone();
        let tx = tx.clone();
        tokio::task::spawn_blocking(move || {
            // A panic in the store is a bug, but the client must still get an answer rather than
            // wait forever on this handle.
            let body =
                std::panic::catch_unwind(AssertUnwindSafe(|| exec::execute(&conn, &req, payload)))
                    .unwrap_or_else(|_| Body::Err {
                        errno: EIO,
                        msg: format!("internal error serving {}", cmd_name(req.cmd)),
                    });
            let _ = tx.send(Reply {
                handle: req.handle,
                offset: req.offset,
                body,
                _permits: permits,
            });
        });
    }
}

/// Read and drop `n` bytes.
async fn discard<R: AsyncRead + Unpin>(r: &mut R, n: u64) -> io::Result<()> {
    let copied = tokio::io::copy(&mut r.take(n), &mut tokio::io::sink()).await?;
    if copied < n {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}
