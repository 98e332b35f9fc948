//! One accept loop for every listener of the daemon: agents, NBD and the control API.
//!
//! `accept` fails for two kinds of reasons, and neither stops serving:
//! - one connection's own trouble (reset or aborted before it was taken) says nothing about the
//!   next one: take the next at once;
//! - out of descriptors (EMFILE, ENFILE) or memory, the pending connection stays queued and accept
//!   fails again at once, so retrying at once spins and logs at disk speed: wait, 100 ms growing
//!   to 1 s while the failures go on, and log once every 10 s with the count since the last line.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::net::{unix, TcpListener, TcpStream, UnixListener, UnixStream};

/// A bound socket that hands out connections.
pub trait Listener {
    type Stream;
    type Peer;
    fn accept_once(&self) -> impl Future<Output = io::Result<(Self::Stream, Self::Peer)>> + Send;
}

impl Listener for TcpListener {
    type Stream = TcpStream;
    type Peer = SocketAddr;
    fn accept_once(&self) -> impl Future<Output = io::Result<(TcpStream, SocketAddr)>> + Send {
        self.accept()
    }
}

impl Listener for UnixListener {
    type Stream = UnixStream;
    type Peer = unix::SocketAddr;
    fn accept_once(
        &self,
    ) -> impl Future<Output = io::Result<(UnixStream, unix::SocketAddr)>> + Send {
        self.accept()
    }
}

/// A listener whose [`accept`](Acceptor::accept) always returns a connection: failures are
/// logged and waited out as the module doc says.
pub struct Acceptor<L> {
    listener: L,
    /// Who serves here, for the log: "agent", "NBD", "control API".
    server: &'static str,
    /// Which of its listeners: "TCP", "unix".
    kind: &'static str,
    delay: Option<Duration>,
    failures: u64,
    last_log: Option<Instant>,
}

const FIRST_DELAY: Duration = Duration::from_millis(100);
const MAX_DELAY: Duration = Duration::from_secs(1);
const LOG_EVERY: Duration = Duration::from_secs(10);

impl<L: Listener> Acceptor<L> {
    pub fn new(listener: L, server: &'static str, kind: &'static str) -> Acceptor<L> {
        Acceptor {
            listener,
            server,
            kind,
            delay: None,
            failures: 0,
            last_log: None,
        }
    }

    /// The next connection.
    pub async fn accept(&mut self) -> (L::Stream, L::Peer) {
        loop {
            match self.listener.accept_once().await {
                Ok(c) => {
                    self.delay = None;
                    return c;
                }
                Err(e) if is_connection_error(&e) => {
                    tracing::debug!(listener = self.kind, error = %e, "{}: a connection failed before it was accepted", self.server);
                }
                Err(e) => self.back_off(&e).await,
            }
        }
    }

    async fn back_off(&mut self, e: &io::Error) {
        self.failures += 1;
        if self.last_log.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
            tracing::warn!(
                listener = self.kind,
                error = %e,
                failures = self.failures,
                "{} accept failed; backing off",
                self.server
            );
            self.last_log = Some(Instant::now());
            self.failures = 0;
        }
        let d = self.delay.map_or(FIRST_DELAY, |d| (d * 2).min(MAX_DELAY));
        self.delay = Some(d);
        tokio::time::sleep(d).await;
    }
}

/// Errors of the one connection being accepted, not of the listener.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A listener that fails as told, then accepts.
    struct Failing(std::sync::Mutex<Vec<io::ErrorKind>>);

    impl Listener for Failing {
        type Stream = ();
        type Peer = ();
        fn accept_once(&self) -> impl Future<Output = io::Result<((), ())>> + Send {
            let next = self.0.lock().unwrap().pop();
            async move {
                match next {
                    Some(kind) => Err(io::Error::from(kind)),
                    None => Ok(((), ())),
                }
            }
        }
    }

    #[tokio::test]
    async fn backs_off_on_listener_errors_only() {
        let failing = |kinds: Vec<io::ErrorKind>| Failing(std::sync::Mutex::new(kinds));
        // Out of descriptors twice: 100 ms, then 200 ms; the success resets the delay.
        let oom = io::ErrorKind::OutOfMemory;
        let mut a = Acceptor::new(failing(vec![oom, oom]), "test", "unix");
        let t0 = Instant::now();
        a.accept().await;
        assert!(t0.elapsed() >= Duration::from_millis(300));
        assert_eq!(a.delay, None);
        // A connection's own error costs no wait.
        a.listener = failing(vec![io::ErrorKind::ConnectionAborted]);
        let t0 = Instant::now();
        a.accept().await;
        assert!(t0.elapsed() < FIRST_DELAY);
        assert_eq!(a.delay, None);
    }
}
