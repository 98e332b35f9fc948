//! The connection to the target and frame IO: a unix socket, mutual TLS over TCP, or plain TCP
//! (`--insecure`, loopback only; `Settings::validate` enforces it).
//!
//! A session has two users of one connection: the sender writes frames while the ACK reader
//! reads. For TLS both share one `rustls::ClientConnection` behind a mutex, over a non-blocking
//! socket: each takes the lock only for non-blocking steps (feed plaintext, move TLS records
//! to or from the socket) and waits for the socket with poll(2) outside it. Blocking with the
//! lock held could deadlock: a writer stuck on a full send buffer while the reader cannot take
//! the lock to read the ACKs that let the target go on reading.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::io::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rewind_formats::{FrameHeader, Message, FRAME_HEADER_LEN};
use rewind_linux::pem;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore};

use crate::config::{TargetAddr, TlsFiles};
use crate::error::{Error, Result};

/// How long a connect may take (and, separately, the TLS handshake after it).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A silent peer (a network cut, a target host that died) is given up on after about this long:
/// TCP keepalive probes an idle connection, and unacknowledged sent data times out. Without it
/// an idle session would look connected for ever, and a busy one would hang in a write for the
/// kernel's retransmission timeout (many minutes) before reconnecting.
const DEAD_PEER_AFTER: Duration = Duration::from_secs(30);
const KEEPALIVE_IDLE: Duration = Duration::from_secs(10);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
const KEEPALIVE_PROBES: u32 = 4;

fn detect_dead_peer(s: &TcpStream) -> io::Result<()> {
    let sock = socket2::SockRef::from(s);
    sock.set_tcp_keepalive(
        &socket2::TcpKeepalive::new()
            .with_time(KEEPALIVE_IDLE)
            .with_interval(KEEPALIVE_INTERVAL)
            .with_retries(KEEPALIVE_PROBES),
    )?;
    sock.set_tcp_user_timeout(Some(DEAD_PEER_AFTER))
}

pub enum Conn {
    Tcp(TcpStream),
    Unix(UnixStream),
    Tls(TlsConn),
}

impl Conn {
    /// Connects to `addr`; over TLS when `tls` is given (which `Settings::validate` requires
    /// for every TCP target not explicitly `--insecure`).
    pub fn connect(addr: &TargetAddr, tls: Option<&TlsClient>) -> Result<Conn> {
        let lost = |e: io::Error| Error::Connection {
            addr: addr.to_string(),
            why: e.to_string(),
        };
        match addr {
            TargetAddr::Tcp { host, addr: a } => {
                let s = TcpStream::connect_timeout(a, CONNECT_TIMEOUT).map_err(lost)?;
                s.set_nodelay(true).map_err(lost)?;
                detect_dead_peer(&s).map_err(lost)?;
                match tls {
                    None => Ok(Conn::Tcp(s)),
                    Some(t) => Ok(Conn::Tls(TlsConn::handshake(
                        s,
                        t,
                        host,
                        &addr.to_string(),
                        CONNECT_TIMEOUT,
                    )?)),
                }
            }
            TargetAddr::Unix(p) => Ok(Conn::Unix(UnixStream::connect(p).map_err(lost)?)),
        }
    }

    /// A second handle on the socket: the ACK reader reads while the sender writes.
    pub fn try_clone(&self) -> io::Result<Conn> {
        Ok(match self {
            Conn::Tcp(s) => Conn::Tcp(s.try_clone()?),
            Conn::Unix(s) => Conn::Unix(s.try_clone()?),
            Conn::Tls(s) => Conn::Tls(s.clone()),
        })
    }

    pub fn shutdown(&self) {
        let _ = match self {
            Conn::Tcp(s) => s.shutdown(Shutdown::Both),
            Conn::Unix(s) => s.shutdown(Shutdown::Both),
            Conn::Tls(s) => {
                s.shutdown();
                Ok(())
            }
        };
    }

    pub fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Conn::Tcp(s) => s.set_read_timeout(t),
            Conn::Unix(s) => s.set_read_timeout(t),
            Conn::Tls(s) => {
                s.set_read_timeout(t);
                Ok(())
            }
        }
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Tcp(s) => s.read(buf),
            Conn::Unix(s) => s.read(buf),
            Conn::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Tcp(s) => s.write(buf),
            Conn::Unix(s) => s.write(buf),
            Conn::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Conn::Tcp(s) => s.flush(),
            Conn::Unix(s) => s.flush(),
            Conn::Tls(_) => Ok(()),
        }
    }
}

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

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
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
    fn handshake(
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

    fn set_read_timeout(&self, t: Option<Duration>) {
        *self
            .shared
            .read_timeout
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = t;
    }

    /// Sends close_notify (best effort, never waiting) and shuts the socket down, which wakes
    /// both the writer and the reader.
    fn shutdown(&self) {
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

/// Reads one message; `Ok(None)` when the target closed the connection between frames.
/// Frames are validated (header checksum, length cap, payload checksum) before decoding.
pub fn read_message(r: &mut impl Read, addr: &str) -> Result<Option<Message>> {
    let lost = |e: io::Error| Error::Connection {
        addr: addr.to_string(),
        why: e.to_string(),
    };
    let mut hdr = [0u8; FRAME_HEADER_LEN];
    let mut got = 0;
    while got < hdr.len() {
        match r.read(&mut hdr[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(lost(io::ErrorKind::UnexpectedEof.into())),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(lost(e)),
        }
    }
    let header = FrameHeader::decode(&hdr).map_err(|source| Error::Decode {
        what: "frame header",
        source,
    })?;
    let mut payload = vec![0u8; header.payload_len as usize];
    r.read_exact(&mut payload).map_err(lost)?;
    header
        .verify_payload(&payload)
        .map_err(|source| Error::Decode {
            what: "frame payload",
            source,
        })?;
    Message::decode(header.kind, &payload)
        .map(Some)
        .map_err(|source| Error::Decode {
            what: "message",
            source,
        })
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::PrivateKeyDer;
    use rustls::server::WebPkiClientVerifier;

    use super::*;

    /// A CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files in `dir`.
    fn pki(dir: &Path) -> TlsFiles {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::default();
        ca.distinguished_name.push(DnType::CommonName, "test CA");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca.self_signed(&ca_key).unwrap();
        let leaf = |names: Vec<String>, cn: &str| {
            let key = KeyPair::generate().unwrap();
            let mut p = CertificateParams::new(names).unwrap();
            p.distinguished_name.push(DnType::CommonName, cn);
            (p.signed_by(&key, &ca, &ca_key).unwrap(), key)
        };
        let (server, server_key) = leaf(vec!["127.0.0.1".into()], "server");
        let (client, client_key) = leaf(vec!["agent.test".into()], "agent");
        for (name, text) in [
            ("ca.crt", ca.pem()),
            ("server.crt", server.pem()),
            ("server.key", server_key.serialize_pem()),
            ("agent.crt", client.pem()),
            ("agent.key", client_key.serialize_pem()),
        ] {
            std::fs::write(dir.join(name), text).unwrap();
        }
        TlsFiles {
            ca: dir.join("ca.crt"),
            cert: dir.join("agent.crt"),
            key: dir.join("agent.key"),
        }
    }

    fn server_config(dir: &Path) -> Arc<rustls::ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        for c in certs(&dir.join("ca.crt")).unwrap() {
            roots.add(c).unwrap();
        }
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .unwrap();
        let key =
            PrivateKeyDer::from_pem_slice(&std::fs::read(dir.join("server.key")).unwrap()).unwrap();
        Arc::new(
            rustls::ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_client_cert_verifier(verifier)
                .with_single_cert(certs(&dir.join("server.crt")).unwrap(), key)
                .unwrap(),
        )
    }

    /// A blocking TLS echo server for one connection: it reads a chunk, then writes it back, so
    /// it stops reading whenever the client is not reading its echoes.
    fn echo_server(cfg: Arc<rustls::ServerConfig>) -> (TargetAddr, std::thread::JoinHandle<u64>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = TargetAddr::parse(&format!("tcp:{}", l.local_addr().unwrap())).unwrap();
        let h = std::thread::spawn(move || {
            let (s, _) = l.accept().unwrap();
            let conn = rustls::ServerConnection::new(cfg).unwrap();
            let mut tls = rustls::StreamOwned::new(conn, s);
            let mut buf = vec![0u8; 64 << 10];
            let mut total = 0u64;
            loop {
                match tls.read(&mut buf) {
                    Ok(0) | Err(_) => return total,
                    Ok(n) => {
                        total += n as u64;
                        if tls.write_all(&buf[..n]).is_err() {
                            return total;
                        }
                    }
                }
            }
        });
        (addr, h)
    }

    /// The writer pushes far more than the socket buffers hold while a reader on a clone drains
    /// the echoes: neither may starve the other (the lock is never held across a wait).
    #[test]
    fn concurrent_writer_and_reader_do_not_deadlock() {
        let dir = tempfile::tempdir().unwrap();
        let files = pki(dir.path());
        let client = TlsClient::load(&files).unwrap();
        let (addr, server) = echo_server(server_config(dir.path()));
        let mut w = Conn::connect(&addr, Some(&client)).unwrap();
        let mut r = w.try_clone().unwrap();
        const TOTAL: usize = 48 << 20;
        let reader = std::thread::spawn(move || {
            let mut buf = vec![0u8; 100_000];
            let mut got = 0usize;
            let mut sum = 0u64;
            while got < TOTAL {
                let n = r.read(&mut buf).unwrap();
                assert!(n > 0, "EOF after {got} bytes");
                sum = buf[..n]
                    .iter()
                    .fold(sum, |s, &b| s.wrapping_mul(31).wrapping_add(b as u64));
                got += n;
            }
            sum
        });
        let mut sum = 0u64;
        let mut sent = 0usize;
        let mut i = 0u8;
        while sent < TOTAL {
            let chunk: Vec<u8> = (0..(1 << 20)).map(|j: usize| (j as u8) ^ i).collect();
            sum = chunk
                .iter()
                .fold(sum, |s, &b| s.wrapping_mul(31).wrapping_add(b as u64));
            w.write_all(&chunk).unwrap();
            sent += chunk.len();
            i = i.wrapping_add(1);
        }
        assert_eq!(reader.join().unwrap(), sum, "the echo is what was sent");
        w.shutdown();
        assert_eq!(server.join().unwrap(), TOTAL as u64);
    }

    #[test]
    fn read_timeout_and_shutdown_wake_the_reader() {
        let dir = tempfile::tempdir().unwrap();
        let client = TlsClient::load(&pki(dir.path())).unwrap();
        let (addr, server) = echo_server(server_config(dir.path()));
        let w = Conn::connect(&addr, Some(&client)).unwrap();
        let mut r = w.try_clone().unwrap();
        r.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let t0 = Instant::now();
        let e = r.read(&mut [0u8; 16]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        assert!(t0.elapsed() >= Duration::from_millis(100));
        // A reader waiting without a timeout wakes when the connection is shut down.
        r.set_read_timeout(None).unwrap();
        let reader = std::thread::spawn(move || r.read(&mut [0u8; 16]));
        std::thread::sleep(Duration::from_millis(100));
        w.shutdown();
        let res = reader.join().unwrap();
        assert!(matches!(res, Ok(0) | Err(_)), "{res:?}");
        server.join().unwrap();
    }

    #[test]
    fn a_server_from_another_ca_fails_the_handshake() {
        let ours = tempfile::tempdir().unwrap();
        let theirs = tempfile::tempdir().unwrap();
        let client = TlsClient::load(&pki(ours.path())).unwrap();
        pki(theirs.path());
        let (addr, server) = echo_server(server_config(theirs.path()));
        let e = Conn::connect(&addr, Some(&client))
            .err()
            .expect("handshake refused")
            .to_string();
        assert!(
            e.contains("TLS handshake: invalid peer certificate") && e.contains("ca.crt"),
            "{e}"
        );
        server.join().unwrap();
    }

    #[test]
    fn tcp_connections_give_up_on_a_silent_peer() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = TargetAddr::parse(&format!("tcp:{}", l.local_addr().unwrap())).unwrap();
        let conn = Conn::connect(&addr, None).unwrap();
        let Conn::Tcp(s) = &conn else {
            panic!("a plain TCP connection")
        };
        let sock = socket2::SockRef::from(s);
        assert!(sock.keepalive().unwrap());
        assert_eq!(sock.keepalive_time().unwrap(), KEEPALIVE_IDLE);
        assert_eq!(sock.tcp_user_timeout().unwrap(), Some(DEAD_PEER_AFTER));
    }
}
