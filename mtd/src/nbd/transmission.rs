//! The transmission phase: a reader task decodes requests and runs each on a blocking thread;
//! replies go back, in whatever order they finish, through the writer task (`reply::run`).
//!
//! A READ that arrives while nothing else of the connection is in flight (a client at queue
//! depth 1, as a VM's random reads often are) is served by the reader itself, in
//! `block_in_place`, and its reply written by the reader too: that spares two thread wakeups
//! per request (the blocking thread's and the writer's), each a scheduling delay on a loaded
//! machine, which is what dominated the latency of a 4 KiB read. With more in flight, requests
//! go to blocking threads as before, so they run in parallel.
//!
//! Semaphores bound what a client can make us hold: at most `MAX_IN_FLIGHT` requests, and at
//! most `MAX_IN_FLIGHT_BYTES` of READ/WRITE payload (BLOCK_STATUS replies count too), per
//! connection, and payload bytes across all connections (`Limits::payload`, so that many clients
//! together cannot take more either). The reader takes the permits before it reads a WRITE's
//! payload or starts a READ, and the writer drops them once the reply is on the wire: a client
//! past its bound waits, it never makes us allocate more.
//!
//! Deadlines: a read-only connection that sends nothing for `idle` while nothing of it is in
//! flight is closed, and any connection whose reader cannot get a permit for `idle` (its client
//! stopped reading replies) is closed, writer and all, which frees what it held.

use std::io;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, BufReader};
use tokio::runtime::{Handle, RuntimeFlavor};
use tokio::sync::mpsc::{self, UnboundedSender};
use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::conn::{Conn, Stats};
use super::exec;
use super::proto::*;
use super::reply::{self, Body, Permits, Reply, Writer};

pub const MAX_IN_FLIGHT: usize = 64;
/// Payload bytes in flight, counted in `BYTE_UNIT`s.
const MAX_IN_FLIGHT_BYTES: usize = 64 << 20;
pub const BYTE_UNIT: u32 = 64 << 10;
/// What a BLOCK_STATUS reply may take (`exec::MAX_DESCRIPTORS` descriptors of 8 bytes).
const BLOCK_STATUS_BYTES: u32 = 512 << 10;

/// Bounds shared by a connection's reader and the listener.
pub struct Bounds {
    /// Payload bytes in flight across all connections, in `BYTE_UNIT`s.
    pub payload: Arc<Semaphore>,
    /// See the module doc; `None`: no deadline.
    pub idle: Option<std::time::Duration>,
}
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
    /// A reply the reader sent itself could not be written.
    WriteError(io::Error),
    /// Nothing from a read-only client for the idle deadline.
    Idle,
    /// The client stopped reading replies: its requests could not get permits in time.
    Stalled,
}

/// Serve requests until the client disconnects; logs the end of the connection.
pub async fn run<R, W>(conn: Arc<Conn>, reader: R, writer: W, bounds: &Bounds)
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (tx, rx) = mpsc::unbounded_channel::<Reply>();
    let out: Writer<W> = Arc::new(Mutex::new(writer));
    let writer = tokio::spawn(reply::run(out.clone(), rx, conn.structured));
    let end = read_loop(&conn, reader, &tx, &out, bounds).await;
    drop(out);
    // Requests still running hold their own senders: the writer finishes once they all replied.
    drop(tx);
    if matches!(end, End::Stalled) {
        // Its client reads nothing: the writer would wait forever, holding the permits.
        writer.abort();
    }
    let write_result = writer.await;
    if conn.writable {
        // Make what the client wrote durable when it leaves, flush or not (nbdcopy, for one,
        // does not flush unless asked): an overlay's bitmap is otherwise only in memory until
        // the next flush, and a daemon stop would lose it.
        let c = conn.clone();
        let flush = move || c.volume().map_or(Ok(()), |v| v.flush());
        let error = match tokio::task::spawn_blocking(flush).await {
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
        Err(_) if matches!(end, End::Stalled) => None,
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
        (End::Idle, _) => tracing::info!(
            peer = %conn.peer,
            export = %conn.export,
            requests,
            "nbd client idle past the deadline (--nbd-idle-timeout); closed"
        ),
        (End::Stalled, _) => tracing::warn!(
            peer = %conn.peer,
            export = %conn.export,
            requests,
            "nbd client stopped reading replies; closed"
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
                End::WriteError(e) => format!("writing a reply: {e}"),
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

/// Wait for `permits` from `sem`, for at most `limit`.
async fn acquire(
    sem: &Arc<Semaphore>,
    permits: u32,
    limit: Option<std::time::Duration>,
) -> Option<OwnedSemaphorePermit> {
    let fut = sem.clone().acquire_many_owned(permits);
    let permit = match limit {
        Some(d) => tokio::time::timeout(d, fut).await.ok()?,
        None => fut.await,
    };
    Some(permit.expect("semaphore never closed"))
}

/// Runs a validated request and turns a panic into an error reply: a panic in the store is a bug,
/// but the client must still get an answer rather than wait forever on this handle. Blocking.
fn serve(conn: &Conn, req: &Request, payload: Option<rewind_linux::aligned::AlignedBuf>) -> Body {
    std::panic::catch_unwind(AssertUnwindSafe(|| exec::execute(conn, req, payload))).unwrap_or_else(
        |_| Body::Err {
            errno: EIO,
            msg: format!("internal error serving {}", cmd_name(req.cmd)),
        },
    )
}

async fn read_loop<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    conn: &Arc<Conn>,
    reader: R,
    tx: &UnboundedSender<Reply>,
    out: &Writer<W>,
    bounds: &Bounds,
) -> End {
    let mut reader = BufReader::with_capacity(READ_BUFFER, reader);
    // `block_in_place` needs worker threads to hand this one's other tasks to.
    let inline_ok = Handle::current().runtime_flavor() == RuntimeFlavor::MultiThread;
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let bytes = Arc::new(Semaphore::new(MAX_IN_FLIGHT_BYTES / BYTE_UNIT as usize));
    // Writable connections are a VM's disk, for one: idle for hours is normal there, and closing
    // it would fail the guest's next IO. They are bounded by the connection cap and by who may
    // write at all.
    let idle = bounds.idle.filter(|_| !conn.writable);
    loop {
        let mut hdr = [0u8; REQUEST_LEN];
        let read = async {
            match reader.read_exact(&mut hdr).await {
                Ok(_) => None,
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Some(End::Eof),
                Err(e) => Some(End::ReadError(e)),
            }
        };
        let ended = match idle {
            None => read.await,
            Some(d) => {
                tokio::pin!(read);
                let mut deadline = Instant::now() + d;
                loop {
                    match tokio::time::timeout_at(deadline, &mut read).await {
                        Ok(r) => break r,
                        // Busy with its requests, not idle.
                        Err(_) if slots.available_permits() < MAX_IN_FLIGHT => {
                            deadline = Instant::now() + d;
                        }
                        Err(_) => return End::Idle,
                    }
                }
            }
        };
        if let Some(end) = ended {
            return end;
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
        let Some(slot) = acquire(&slots, 1, bounds.idle).await else {
            return End::Stalled;
        };
        let payload_len = match req.cmd {
            CMD_READ | CMD_WRITE => req.len.min(MAX_PAYLOAD),
            CMD_BLOCK_STATUS => BLOCK_STATUS_BYTES,
            _ => 0,
        };
        let (bytes_permit, global_permit) = match payload_len.div_ceil(BYTE_UNIT) {
            0 => (None, None),
            units => {
                let Some(mine) = acquire(&bytes, units, bounds.idle).await else {
                    return End::Stalled;
                };
                let Some(all) = acquire(&bounds.payload, units, bounds.idle).await else {
                    return End::Stalled;
                };
                (Some(mine), Some(all))
            }
        };
        let permits = Permits {
            _slot: slot,
            _bytes: bytes_permit,
            _global: global_permit,
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
        // Ours is the only slot taken: nothing else is in flight (see the module doc).
        if inline_ok && req.cmd == CMD_READ && slots.available_permits() == MAX_IN_FLIGHT - 1 {
            let body = tokio::task::block_in_place(|| serve(conn, &req, payload));
            let r = Reply {
                handle: req.handle,
                offset: req.offset,
                body,
                _permits: permits,
            };
            // The writer task holds the lock only while it sends what was queued.
            match out.try_lock() {
                Ok(mut w) => {
                    let send = reply::send_one(&mut *w, r, conn.structured);
                    let sent = match bounds.idle {
                        None => send.await,
                        Some(d) => match tokio::time::timeout(d, send).await {
                            Ok(sent) => sent,
                            Err(_) => return End::Stalled,
                        },
                    };
                    if let Err(e) = sent {
                        return End::WriteError(e);
                    }
                }
                Err(_) => {
                    let _ = tx.send(r);
                }
            }
            continue;
        }
        let conn = conn.clone();
        let tx = tx.clone();
        tokio::task::spawn_blocking(move || {
            let body = serve(&conn, &req, payload);
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
