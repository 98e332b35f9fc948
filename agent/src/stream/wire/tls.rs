//! Mutual TLS to the target (see the module docs of [`super`] for why one session is shared by
//! a writer and a reader this way).

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rewind_linux::pem;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore};

use crate::config::TlsFiles;
use crate::error::{Error, Result};

/// The agent's TLS client: trusts only the site CA, presents the agent's certificate. Built
/// once at start ([`TlsClient::load`]) and shared by every connection.
#[derive(Clone)]
pub struct TlsClient {
    config: Arc<ClientConfig>,
    /// The CA file (named in errors).
    ca: PathBuf,
}

impl std::fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsClient")
    }
}

fn bad_file(path: &Path, why: impl std::fmt::Display) -> Error {
    Error::Config {
        what: "TLS file",
        why: format!("{}: {why}", path.display()),
    }
}

/// A PEM file that cannot be used, in the agent's error type.
fn pem_error(e: pem::Error) -> Error {
    match e {
        pem::Error::Read { path, source } => Error::path("reading TLS file", path)(source),
        pem::Error::Bad { path, why } => bad_file(&path, why),
    }
}

pub(super) fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    pem::certs(path).map_err(pem_error)
}

impl TlsClient {
    /// Reads the CA, certificate and key; any missing, unreadable or malformed file is an error
    /// naming it.
    pub fn load(files: &TlsFiles) -> Result<TlsClient> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        for c in certs(&files.ca)? {
            roots
                .add(c)
                .map_err(|e| bad_file(&files.ca, format!("not a usable CA certificate: {e}")))?;
        }
        let chain = certs(&files.cert)?;
        let key = pem::key(&files.key).map_err(pem_error)?;
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Config {
                what: "TLS",
                why: e.to_string(),
            })?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(|e| {
                bad_file(
                    &files.key,
                    format!("does not go with {}: {e}", files.cert.display()),
                )
            })?;
        Ok(TlsClient {
            config: Arc::new(config),
            ca: files.ca.clone(),
        })
    }

    /// A handshake error, with what a refused target certificate most likely means.
    fn explain(&self, e: io::Error) -> String {
        let refused_cert = e
            .get_ref()
            .and_then(|i| i.downcast_ref::<rustls::Error>())
            .is_some_and(|r| matches!(r, rustls::Error::InvalidCertificate(_)));
        if refused_cert {
            format!(
                "{e} (the target's certificate must be signed by the CA in {} and name this \
                 address)",
                self.ca.display()
            )
        } else {
            e.to_string()
        }
    }
}

/// One TLS session over TCP; clones are handles on the same session (one writer, one reader).
#[derive(Clone)]
pub struct TlsConn {
    shared: Arc<TlsShared>,
}

struct TlsShared {
    /// Non-blocking: nobody ever waits on it while holding `conn`.
    sock: TcpStream,
    conn: Mutex<ClientConnection>,
    read_timeout: Mutex<Option<Duration>>,
    /// Application data came from the target: an EOF or alert before it means the target
    /// refused the session (most likely this agent's certificate).
    got_data: AtomicBool,
}

/// What [`TlsShared::pull`] found on the socket.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pulled {
    Some,
    Nothing,
    Eof,
}

/// What to wait for on the socket.
#[derive(Clone, Copy)]
enum Wait {
    Read,
    Write,
}

/// Waits until the socket is ready for `w` (or hung up, or in error: the next IO says why), or
/// until `deadline`. Returns false on timeout.
fn wait(sock: &TcpStream, w: Wait, deadline: Option<Instant>) -> io::Result<bool> {
    let events = match w {
        Wait::Read => libc::POLLIN,
        Wait::Write => libc::POLLOUT,
    };
    loop {
        let timeout_ms = match deadline {
            None => -1,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Ok(false);
                }
                // At least 1 ms: a 0 ms poll would spin until the deadline.
                left.as_millis().clamp(1, i32::MAX as u128) as i32
            }
        };
        let mut fd = libc::pollfd {
            fd: sock.as_raw_fd(),
            events,
            revents: 0,
        };
        // SAFETY: `fd` is one valid pollfd that lives across the call, and the count is 1.
        let n = unsafe { libc::poll(&mut fd, 1, timeout_ms) };
        if n > 0 {
            return Ok(true);
        }
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}

fn tls_err(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl TlsShared {
    fn lock(&self) -> MutexGuard<'_, ClientConnection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Moves pending TLS records to the socket until done (true) or the socket is full (false).
    fn push(&self, c: &mut ClientConnection) -> io::Result<bool> {
        while c.wants_write() {
            match c.write_tls(&mut &self.sock) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Reads what the socket has into the session and processes it.
    fn pull(&self, c: &mut ClientConnection) -> io::Result<Pulled> {
        match c.read_tls(&mut &self.sock) {
            // The peer's EOF: rustls records it, and the next plaintext read says whether the
            // close was clean.
            Ok(0) => Ok(Pulled::Eof),
            Ok(_) => {
                if let Err(e) = c.process_new_packets() {
                    // Tell the peer why (an alert is queued), best effort.
                    let _ = self.push(c);
                    return Err(tls_err(e));
                }
                // Handshake and post-handshake replies (key updates), without waiting.
                let _ = self.push(c);
                Ok(Pulled::Some)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Pulled::Nothing),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(Pulled::Some),
            Err(e) => Err(e),
        }
    }
}

impl TlsConn {
    /// Runs the handshake on a connected socket, bounded by `limit`; a certificate the agent
    /// does not trust (or one the target refuses during the handshake) fails here.
    pub(super) fn handshake(
        sock: TcpStream,
        client: &TlsClient,
        host: &str,
        addr: &str,
        limit: Duration,
    ) -> Result<TlsConn> {
        let fail = |why: String| Error::Connection {
            addr: addr.to_string(),
            why: format!("TLS handshake: {why}"),
        };
        let name = ServerName::try_from(host.to_string())
            .map_err(|e| fail(format!("{host:?} is not a valid server name: {e}")))?;
        let conn = ClientConnection::new(Arc::clone(&client.config), name)
            .map_err(|e| fail(e.to_string()))?;
        sock.set_nonblocking(true)
            .map_err(|e| fail(e.to_string()))?;
        let t = TlsConn {
            shared: Arc::new(TlsShared {
                sock,
                conn: Mutex::new(conn),
                read_timeout: Mutex::new(None),
                got_data: AtomicBool::new(false),
            }),
        };
        let sh = &t.shared;
        let deadline = Instant::now() + limit;
        loop {
            let mut c = sh.lock();
            let flushed = sh.push(&mut c).map_err(|e| fail(e.to_string()))?;
            if !c.is_handshaking() && flushed {
                break;
            }
            let w = if !flushed {
                Wait::Write
            } else {
                match sh.pull(&mut c) {
                    Ok(Pulled::Some) => continue,
                    Ok(Pulled::Nothing) => Wait::Read,
                    Ok(Pulled::Eof) => {
                        return Err(fail("the target closed the connection".into()));
                    }
                    Err(e) => return Err(fail(client.explain(e))),
                }
            };
            drop(c);
            if !wait(&sh.sock, w, Some(deadline)).map_err(|e| fail(e.to_string()))? {
                return Err(fail(format!("no answer within {limit:?}")));
            }
        }
        Ok(t)
    }

    pub(super) fn set_read_timeout(&self, t: Option<Duration>) {
        *self
            .shared
            .read_timeout
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = t;
    }

    /// Sends close_notify (best effort, never waiting) and shuts the socket down, which wakes
    /// both the writer and the reader.
    pub(super) fn shutdown(&self) {
        {
            let mut c = self.shared.lock();
            c.send_close_notify();
            let _ = self.shared.push(&mut c);
        }
        let _ = self.shared.sock.shutdown(Shutdown::Both);
    }

    /// The refusal a TLS error before any data means, said plainly.
    fn explain(&self, e: io::Error) -> io::Error {
        if self.shared.got_data.load(Ordering::Relaxed) {
            return e;
        }
        let why = match e.kind() {
            io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe => {
                "the target closed the TLS session before answering (did it refuse this \
                 agent's certificate? see the target's log)"
                    .to_string()
            }
            io::ErrorKind::InvalidData => format!(
                "the target refused the TLS session: {e} (is this agent's certificate from the \
                 target's CA?)"
            ),
            _ => return e,
        };
        io::Error::new(e.kind(), why)
    }
}

impl Read for TlsConn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let sh = &self.shared;
        let timeout = *sh.read_timeout.lock().unwrap_or_else(|e| e.into_inner());
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut eof = false;
        loop {
            {
                let mut c = sh.lock();
                match c.reader().read(buf) {
                    Ok(n) => {
                        if n > 0 {
                            sh.got_data.store(true, Ordering::Relaxed);
                        }
                        return Ok(n);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock && eof => {
                        return Err(self.explain(io::ErrorKind::UnexpectedEof.into()));
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(self.explain(e)),
                }
                match sh.pull(&mut c) {
                    Ok(Pulled::Some) => continue,
                    Ok(Pulled::Eof) => {
                        eof = true;
                        continue;
                    }
                    Ok(Pulled::Nothing) => {}
                    Err(e) => return Err(self.explain(e)),
                }
            }
            if !wait(&sh.sock, Wait::Read, deadline)? {
                return Err(io::Error::new(
                    io::ErrorKind::WouldBlock,
                    "timed out reading from the target",
                ));
            }
        }
    }
}

impl Write for TlsConn {
    /// Encrypts `buf` and returns once every TLS record is on the socket.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let sh = &self.shared;
        let mut taken = 0;
        loop {
            {
                let mut c = sh.lock();
                let mut step = |c: &mut ClientConnection| -> io::Result<bool> {
                    // (rustls takes plaintext up to its buffer limit, so after a flush at
                    // least some of it.)
                    if taken == 0 && !buf.is_empty() && sh.push(c)? {
                        taken = c.writer().write(buf)?;
                    }
                    Ok(sh.push(c)? && (taken > 0 || buf.is_empty()))
                };
                match step(&mut c) {
                    Ok(true) => return Ok(taken),
                    Ok(false) => {}
                    Err(e) if sh.got_data.load(Ordering::Relaxed) => return Err(e),
                    // Before any answer, a broken pipe usually means the target refused the
                    // session: its alert, if it is there to read, says why.
                    Err(e) => {
                        let e = match sh.pull(&mut c) {
                            Err(alert) => alert,
                            Ok(_) => e,
                        };
                        return Err(self.explain(e));
                    }
                }
            }
            wait(&sh.sock, Wait::Write, None)?;
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
