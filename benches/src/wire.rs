//! The connection to the target and frame-level IO.
//!
//! These are public so integration tests can drive a target by hand, including with frames that
//! are wrong on purpose ([`send_raw`]).

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use rewind_formats::frame::blocking::{self, ReadError};
use rewind_formats::{encode_frame, FrameKind, Hello, Message, Welcome};

use crate::error::{Error, Result};
use crate::units::Addr;

/// A connection to the target over TCP or a unix socket.
#[derive(Debug)]
pub enum Conn {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Conn {
    /// A second handle on the same socket (one thread reads while another writes).
    pub fn try_clone(&self) -> io::Result<Conn> {
        Ok(match self {
            Conn::Tcp(s) => Conn::Tcp(s.try_clone()?),
            Conn::Unix(s) => Conn::Unix(s.try_clone()?),
        })
    }

    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        match self {
            Conn::Tcp(s) => s.shutdown(how),
            Conn::Unix(s) => s.shutdown(how),
        }
    }

    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            Conn::Tcp(s) => s.set_read_timeout(timeout),
            Conn::Unix(s) => s.set_read_timeout(timeout),
        }
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Tcp(s) => s.read(buf),
            Conn::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Tcp(s) => s.write(buf),
            Conn::Unix(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Conn::Tcp(s) => s.flush(),
            Conn::Unix(s) => s.flush(),
        }
    }
}

/// Maps a socket error: timeouts are [`Error::Timeout`], the rest [`Error::ConnectionLost`].
fn socket_error(what: &str) -> impl FnOnce(io::Error) -> Error + '_ {
    move |e| match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
            Error::Timeout(format!("{what}: {e}"))
        }
        _ => Error::ConnectionLost(format!("{what}: {e}")),
    }
}

/// Connects to the target. Failures are [`Error::ConnectionLost`] so reconnect loops retry them.
pub fn connect(addr: &Addr) -> Result<Conn> {
    let what = format!("connect to {addr}");
    match addr {
        Addr::Tcp(hp) => {
            let s = TcpStream::connect(hp.as_str()).map_err(socket_error(&what))?;
            s.set_nodelay(true).map_err(socket_error(&what))?;
            Ok(Conn::Tcp(s))
        }
        Addr::Unix(p) => Ok(Conn::Unix(
            UnixStream::connect(p).map_err(socket_error(&what))?,
        )),
    }
}

/// Most slices handed to one writev (Linux's IOV_MAX).
const MAX_IOV: usize = 1024;

/// Writes `parts` back to back with as few writev calls as possible.
pub fn write_all_parts(w: &mut impl Write, parts: &[&[u8]]) -> io::Result<()> {
    let mut i = 0; // first part not fully written
    let mut skip = 0; // bytes of parts[i] already written
    let mut iov: Vec<io::IoSlice<'_>> = Vec::with_capacity(parts.len().min(MAX_IOV));
    while i < parts.len() {
        if parts[i].len() == skip {
            i += 1;
            skip = 0;
            continue;
        }
        iov.clear();
        iov.push(io::IoSlice::new(&parts[i][skip..]));
        iov.extend(
            parts[i + 1..]
                .iter()
                .filter(|p| !p.is_empty())
                .take(MAX_IOV - 1)
                .map(|p| io::IoSlice::new(p)),
        );
        let mut n = match w.write_vectored(&iov) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        while n > 0 {
            let left = parts[i].len() - skip;
            if n < left {
                skip += n;
                n = 0;
            } else {
                n -= left;
                i += 1;
                skip = 0;
            }
        }
    }
    Ok(())
}

/// Writes bytes as they are (for tests that send malformed frames).
pub fn send_raw(w: &mut impl Write, bytes: &[u8]) -> Result<()> {
    w.write_all(bytes).map_err(socket_error("send"))
}

/// Sends one frame of `kind` carrying `payload`.
pub fn send_frame(w: &mut impl Write, kind: FrameKind, payload: &[u8]) -> Result<()> {
    w.write_all(&encode_frame(kind, payload))
        .map_err(socket_error("send frame"))
}

/// Sends one message.
pub fn send_message(w: &mut impl Write, msg: &Message) -> Result<()> {
    w.write_all(&msg.to_frame())
        .map_err(socket_error("send message"))
}

/// A frame reading error as the loadgen reports it: a cut or failed read is the connection's
/// ([`Error::ConnectionLost`] or [`Error::Timeout`]), bad bytes are [`Error::Decode`].
fn read_error(e: ReadError) -> Error {
    match e {
        ReadError::Cut { .. } => Error::ConnectionLost(e.to_string()),
        ReadError::Io(io) => socket_error("read frame")(io),
        ReadError::Header(source) => Error::Decode {
            what: "frame header",
            source,
        },
        ReadError::Payload(source) => Error::Decode {
            what: "frame payload",
            source,
        },
        ReadError::Message(source) => Error::Decode {
            what: "message",
            source,
        },
    }
}

/// Reads one whole frame. `Ok(None)` when the peer closed cleanly between frames.
pub fn read_frame(r: &mut impl Read) -> Result<Option<(FrameKind, Vec<u8>)>> {
    let frame = blocking::read_frame(r).map_err(read_error)?;
    Ok(frame.map(|(head, payload)| (head.kind, payload)))
}

/// Reads and decodes one message. `Ok(None)` when the peer closed cleanly between frames.
pub fn read_message(r: &mut impl Read) -> Result<Option<Message>> {
    blocking::read_message(r).map_err(read_error)
}

/// Sends HELLO and waits for WELCOME. An ERROR answer is [`Error::Remote`].
pub fn hello(conn: &mut Conn, hello: &Hello) -> Result<Welcome> {
    send_message(conn, &Message::Hello(hello.clone()))?;
    match read_message(conn)? {
        Some(Message::Welcome(w)) => Ok(w),
        Some(Message::Error(e)) => Err(Error::Remote {
            code: e.code,
            message: e.message,
        }),
        Some(other) => Err(Error::Protocol(format!(
            "expected WELCOME, got {:?}",
            other.kind()
        ))),
        None => Err(Error::ConnectionLost(
            "the target closed the connection before WELCOME".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that takes at most `max` bytes per call, like a busy socket.
    struct Trickle {
        out: Vec<u8>,
        max: usize,
        calls: usize,
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.write_vectored(&[io::IoSlice::new(buf)])
        }
        fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
            assert!(bufs.len() <= MAX_IOV);
            self.calls += 1;
            let mut n = 0;
            for b in bufs {
                let take = b.len().min(self.max - n);
                self.out.extend_from_slice(&b[..take]);
                n += take;
                if n == self.max {
                    break;
                }
            }
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn parts_are_written_whole_and_in_order() {
        let data: Vec<u8> = (0..60_000u32).map(|i| (i % 253) as u8).collect();
        let mut parts: Vec<&[u8]> = Vec::new();
        let mut at = 0;
        for (k, len) in (0..3000).map(|k| (k, k % 37)).collect::<Vec<_>>() {
            let len = if k % 500 == 0 { 0 } else { len };
            parts.push(&data[at..at + len]);
            at += len;
        }
        for max in [1, 7, 1000, usize::MAX / 2] {
            let mut w = Trickle {
                out: Vec::new(),
                max,
                calls: 0,
            };
            write_all_parts(&mut w, &parts).unwrap();
            assert_eq!(w.out, data[..at], "max {max}");
            if max > at {
                assert!(w.calls <= 3, "{} calls", w.calls); // 3000 parts / 1024 per call
            }
        }
        let mut w = Trickle {
            out: Vec::new(),
            max: 10,
            calls: 0,
        };
        write_all_parts(&mut w, &[]).unwrap();
        write_all_parts(&mut w, &[&[], &[]]).unwrap();
        assert!(w.out.is_empty());
    }
}
