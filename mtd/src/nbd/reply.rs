//! Replies and the writer task that sends them.
//!
//! Requests complete out of order on blocking threads; each sends its `Reply` over a channel to
//! one writer task. The writer drains whatever is queued before writing, so many small replies
//! (4 KiB random reads, write acks) go out in one syscall, while a large READ payload goes out
//! with its header in one vectored write straight from the buffer it was read into (no copy).
//!
//! The write half sits behind a mutex: a request the reader served itself (nothing else in
//! flight, see `transmission`) goes out with [`send_one`] right away, sparing the wakeup of the
//! writer task, which is a scheduling delay on a loaded machine.

use std::io::{self, IoSlice};
use std::sync::Arc;

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::sync::{Mutex, OwnedSemaphorePermit};

use super::proto::*;
use rewind_linux::aligned::AlignedBuf as Buf;

/// What a request produced.
pub enum Body {
    /// Success without a payload.
    Ok,
    /// READ data (the buffer holds exactly the requested bytes).
    Data(Buf),
    /// BLOCK_STATUS descriptors for `base:allocation`: (length, flags).
    Status(Vec<(u32, u32)>),
    /// A failure: an NBD error value and a message for the human at the client.
    Err { errno: u32, msg: String },
}

pub struct Reply {
    pub handle: u64,
    pub offset: u64,
    pub body: Body,
    /// Released once the reply is on the wire: this is what bounds requests (and payload
    /// bytes) in flight per connection.
    pub _permits: Permits,
}

pub struct Permits {
    pub _slot: OwnedSemaphorePermit,
    pub _bytes: Option<OwnedSemaphorePermit>,
    /// The same bytes, from the pool shared by every connection.
    pub _global: Option<OwnedSemaphorePermit>,
}

/// Payloads up to this size are copied into the batch buffer (cheaper than a separate write).
const COPY_MAX: usize = 16 << 10;
/// Flush the batch buffer once it holds this much.
const BATCH_MAX: usize = 256 << 10;

/// Encode a reply's header and small payload into `out`; return a large payload to send after it.
fn encode<'a>(r: &'a Reply, structured: bool, out: &mut Vec<u8>) -> Option<&'a [u8]> {
    match &r.body {
        Body::Ok => {
            // A simple reply is allowed for anything without a payload, structured or not.
            put_simple(out, 0, r.handle);
            None
        }
        Body::Data(buf) => {
            if structured {
                if buf.is_empty() {
                    // An OFFSET_DATA chunk must carry at least one byte.
                    put_structured(out, REPLY_FLAG_DONE, REPLY_TYPE_NONE, r.handle, 0);
                    return None;
                }
                put_structured(
                    out,
                    REPLY_FLAG_DONE,
                    REPLY_TYPE_OFFSET_DATA,
                    r.handle,
                    8 + buf.len() as u32,
                );
                out.extend_from_slice(&r.offset.to_be_bytes());
            } else {
                put_simple(out, 0, r.handle);
            }
            if buf.len() <= COPY_MAX {
                out.extend_from_slice(buf);
                None
            } else {
                Some(buf)
            }
        }
        Body::Status(descs) => {
            put_structured(
                out,
                REPLY_FLAG_DONE,
                REPLY_TYPE_BLOCK_STATUS,
                r.handle,
                4 + 8 * descs.len() as u32,
            );
            out.extend_from_slice(&BASE_ALLOCATION_ID.to_be_bytes());
            for (len, flags) in descs {
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(&flags.to_be_bytes());
            }
            None
        }
        Body::Err { errno, msg } => {
            // Without structured replies, an error is just the number (and, for a READ, no
            // payload at all).
            if structured {
                let msg = clip_str(msg).as_bytes();
                put_structured(
                    out,
                    REPLY_FLAG_DONE,
                    REPLY_TYPE_ERROR,
                    r.handle,
                    6 + msg.len() as u32,
                );
                out.extend_from_slice(&errno.to_be_bytes());
                out.extend_from_slice(&(msg.len() as u16).to_be_bytes());
                out.extend_from_slice(msg);
            } else {
                put_simple(out, *errno, r.handle);
            }
            None
        }
    }
}

/// Write `a` then `b` completely, with vectored writes.
async fn write_two<W: AsyncWrite + Unpin>(w: &mut W, mut a: &[u8], mut b: &[u8]) -> io::Result<()> {
    while !a.is_empty() || !b.is_empty() {
        let n = if a.is_empty() {
            w.write(b).await?
        } else {
            w.write_vectored(&[IoSlice::new(a), IoSlice::new(b)])
                .await?
        };
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        let from_a = n.min(a.len());
        a = &a[from_a..];
        b = &b[n - from_a..];
    }
    Ok(())
}

/// The connection's write half, shared by the writer task and the reader (`send_one`).
pub type Writer<W> = Arc<Mutex<W>>;

/// Send one reply now and flush it (see `run` on why the flush), then drop it (its permits).
pub async fn send_one<W: AsyncWrite + Unpin>(
    w: &mut W,
    r: Reply,
    structured: bool,
) -> io::Result<()> {
    let mut head = Vec::with_capacity(64 + COPY_MAX);
    let big = encode(&r, structured, &mut head).unwrap_or(&[]);
    write_two(w, &head, big).await?;
    w.flush().await
}

/// Send replies until every sender is gone (the reader stopped and all requests finished), then
/// shut the write side down. Returns early on a write error (the client went away).
pub async fn run<W: AsyncWrite + Unpin>(
    w: Writer<W>,
    mut rx: UnboundedReceiver<Reply>,
    structured: bool,
) -> io::Result<()> {
    let mut batch: Vec<u8> = Vec::with_capacity(BATCH_MAX + 64 * 1024);
    while let Some(first) = rx.recv().await {
        let mut w = w.lock().await;
        let w = &mut *w;
        let mut next = Some(first);
        while let Some(r) = next.take() {
            if let Some(big) = encode(&r, structured, &mut batch) {
                write_two(w, &batch, big).await?;
                batch.clear();
            } else if batch.len() >= BATCH_MAX {
                w.write_all(&batch).await?;
                batch.clear();
            }
            // The permits go with the reply: the reader may now admit another request.
            drop(r);
            next = rx.try_recv().ok();
        }
        if !batch.is_empty() {
            w.write_all(&batch).await?;
            batch.clear();
        }
        // Nothing more queued: flush before waiting for the next reply. Over TLS, `write_all`
        // returns once rustls holds the bytes, and when the socket is full (a client slower
        // than us) up to 64 KiB of the last reply stay in rustls's buffer; nothing would send
        // them until the next reply, which the client, waiting for this one, never asks for.
        // (A no-op on plain TCP and unix sockets.)
        w.flush().await?;
    }
    let mut w = w.lock().await;
    w.flush().await?;
    w.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::Semaphore;

    fn permits() -> Permits {
        Permits {
            _slot: Arc::new(Semaphore::new(1)).try_acquire_owned().unwrap(),
            _bytes: None,
            _global: None,
        }
    }

    fn reply(body: Body) -> Reply {
        Reply {
            handle: 9,
            offset: 4096,
            body,
            _permits: permits(),
        }
    }

    #[test]
    fn structured_read_is_one_offset_data_chunk() {
        let r = reply(Body::Data(Buf::copy_from(&[0xab; 100])));
        let mut out = Vec::new();
        assert!(encode(&r, true, &mut out).is_none());
        assert_eq!(out.len(), STRUCTURED_REPLY_LEN + 8 + 100);
        assert_eq!(&out[0..4], &STRUCTURED_REPLY_MAGIC.to_be_bytes());
        assert_eq!(&out[4..6], &REPLY_FLAG_DONE.to_be_bytes());
        assert_eq!(&out[6..8], &REPLY_TYPE_OFFSET_DATA.to_be_bytes());
        assert_eq!(&out[16..20], &108u32.to_be_bytes());
        assert_eq!(&out[20..28], &4096u64.to_be_bytes());
    }

    #[test]
    fn large_payloads_are_not_copied() {
        let r = reply(Body::Data(Buf::copy_from(&[1; 1 << 20])));
        let mut out = Vec::new();
        let big = encode(&r, false, &mut out).unwrap();
        assert_eq!(big.len(), 1 << 20);
        assert_eq!(out.len(), SIMPLE_REPLY_LEN);
    }

    #[test]
    fn errors_carry_messages_only_when_structured() {
        let r = reply(Body::Err {
            errno: EINVAL,
            msg: "past the end".into(),
        });
        let mut out = Vec::new();
        encode(&r, false, &mut out);
        assert_eq!(out.len(), SIMPLE_REPLY_LEN);
        assert_eq!(&out[4..8], &EINVAL.to_be_bytes());
        out.clear();
        encode(&r, true, &mut out);
        assert_eq!(out.len(), STRUCTURED_REPLY_LEN + 6 + 12);
        assert_eq!(&out[6..8], &REPLY_TYPE_ERROR.to_be_bytes());
    }

    #[tokio::test]
    async fn writer_sends_everything_then_shuts_down() {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let (mut client, server) = tokio::io::duplex(1 << 22);
        tx.send(reply(Body::Data(Buf::copy_from(&[7; 100_000]))))
            .unwrap();
        tx.send(reply(Body::Ok)).unwrap();
        drop(tx);
        run(Arc::new(Mutex::new(server)), rx, false).await.unwrap();
        let mut got = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut client, &mut got)
            .await
            .unwrap();
        assert_eq!(got.len(), 16 + 100_000 + 16);
    }

    #[tokio::test]
    async fn a_reply_goes_out_before_the_writer_waits_for_the_next() {
        // A stream that keeps written bytes until flushed, as tokio-rustls does when its socket
        // is full: each reply must reach the client while the connection stays open.
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let (mut client, server) = tokio::io::duplex(1 << 22);
        let server = Arc::new(Mutex::new(tokio::io::BufWriter::new(server)));
        let writer = tokio::spawn(run(server, rx, false));
        for (body, len) in [
            (Body::Ok, SIMPLE_REPLY_LEN),
            (
                Body::Data(Buf::copy_from(&[7; 100_000])),
                SIMPLE_REPLY_LEN + 100_000,
            ),
        ] {
            tx.send(reply(body)).unwrap();
            read_reply(&mut client, len).await;
        }
        drop(tx);
        writer.await.unwrap().unwrap();
    }

    /// The next `len` bytes the client gets, failing if they do not come within 10 s.
    async fn read_reply(client: &mut tokio::io::DuplexStream, len: usize) -> Vec<u8> {
        let mut got = vec![0u8; len];
        let read = tokio::io::AsyncReadExt::read_exact(client, &mut got);
        tokio::time::timeout(std::time::Duration::from_secs(10), read)
            .await
            .expect("the reply stayed in the writer's buffer")
            .unwrap();
        got
    }

    #[tokio::test]
    async fn send_one_puts_a_whole_reply_on_the_wire_at_once() {
        // Through a buffering stream (as rustls is): the reply must be flushed, not kept.
        let (mut client, server) = tokio::io::duplex(1 << 22);
        let mut w = tokio::io::BufWriter::new(server);
        for (body, len) in [
            (
                Body::Data(Buf::copy_from(&[5; 4096])),
                STRUCTURED_REPLY_LEN + 8 + 4096,
            ),
            (
                Body::Data(Buf::copy_from(&[6; 100_000])),
                STRUCTURED_REPLY_LEN + 8 + 100_000,
            ),
        ] {
            send_one(&mut w, reply(body), true).await.unwrap();
            let got = read_reply(&mut client, len).await;
            assert_eq!(&got[8..16], &9u64.to_be_bytes(), "the handle");
            assert_eq!(&got[20..28], &4096u64.to_be_bytes(), "the offset");
            assert_eq!(got[len - 1], got[28], "the payload follows the header");
        }
    }
}
