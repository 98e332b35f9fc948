//! A TCP proxy that adds latency: every chunk read from one side is written to the other no
//! sooner than `delay` after it was read, in order, both ways (so a round trip through it takes
//! at least twice `delay`). It has no bandwidth limit of its own. With a zero delay it is a
//! plain forwarder, which the WAN bench uses to reach loopback-only test listeners in another
//! network namespace.
//!
//! Used because `tc netem` does not work on this project's machines while `tc tbf` does; the WAN
//! bench puts this on the relay-to-target path. It runs on its own thread and tokio runtime,
//! optionally inside a named network namespace (`ip netns`), and stops on drop.

use std::fs::File;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Bytes read at a time.
const CHUNK: usize = 64 << 10;
/// Chunks held per direction of a connection: what the proxy holds beyond the sockets' own
/// buffers is bounded (4 MiB), so a slow far side pushes back on the near one.
const HELD_CHUNKS: usize = 64;

/// A running delay proxy.
pub struct DelayProxy {
    addr: SocketAddr,
    stop: CancellationToken,
    thread: Option<JoinHandle<()>>,
}

impl DelayProxy {
    /// Listens on `listen` (port 0: a free one) and forwards each connection to `upstream`,
    /// holding every chunk `delay` each way. With `netns`, the listener and the upstream
    /// connections are in that network namespace (`/var/run/netns/NAME`).
    pub fn start(
        netns: Option<&str>,
        listen: SocketAddr,
        upstream: SocketAddr,
        delay: Duration,
    ) -> io::Result<DelayProxy> {
        let stop = CancellationToken::new();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<io::Result<SocketAddr>>();
        let netns = netns.map(str::to_string);
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("delay-proxy".into())
                .spawn(move || {
                    let bound = bind(netns.as_deref(), listen);
                    let (l, rt) = match bound {
                        Ok((l, rt, addr)) => {
                            let _ = ready_tx.send(Ok(addr));
                            (l, rt)
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    rt.block_on(async move {
                        match TcpListener::from_std(l) {
                            Ok(l) => accept_loop(l, upstream, delay, stop).await,
                            Err(e) => eprintln!("delay proxy: listener: {e}"),
                        }
                    });
                })?
        };
        let addr = match ready_rx.recv() {
            Ok(Ok(addr)) => addr,
            Ok(Err(e)) => {
                let _ = thread.join();
                return Err(e);
            }
            Err(_) => {
                let _ = thread.join();
                return Err(io::Error::other("delay proxy: its thread ended"));
            }
        };
        Ok(DelayProxy {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// On the calling thread: enters `netns` (if any), binds the listener and builds the runtime
/// (a current-thread runtime: every socket it opens is made on this thread, in that namespace).
fn bind(
    netns: Option<&str>,
    listen: SocketAddr,
) -> io::Result<(std::net::TcpListener, tokio::runtime::Runtime, SocketAddr)> {
    if let Some(ns) = netns {
        enter_netns(ns)?;
    }
    let l = std::net::TcpListener::bind(listen)?;
    l.set_nonblocking(true)?;
    let addr = l.local_addr()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    Ok((l, rt, addr))
}

/// Moves the calling thread into network namespace `name` (`ip netns add NAME` made it).
pub fn enter_netns(name: &str) -> io::Result<()> {
    let path = format!("/var/run/netns/{name}");
    let fd = File::open(&path).map_err(|e| io::Error::new(e.kind(), format!("{path}: {e}")))?;
    // SAFETY: setns(2) on a valid open descriptor with a constant flag; it changes only the
    // calling thread's network namespace.
    let r = unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) };
    if r != 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("setns {path}: {e}")));
    }
    Ok(())
}

async fn accept_loop(
    l: TcpListener,
    upstream: SocketAddr,
    delay: Duration,
    stop: CancellationToken,
) {
    loop {
        let down = tokio::select! {
            _ = stop.cancelled() => return,
            a = l.accept() => match a {
                Ok((s, _)) => s,
                // (EMFILE and the like: try again shortly rather than spin.)
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let stop = stop.clone();
        tokio::spawn(async move {
            // A refused upstream closes the client's side at once.
            let Ok(up) = TcpStream::connect(upstream).await else {
                return;
            };
            let _ = (down.set_nodelay(true), up.set_nodelay(true));
            let (dr, dw) = down.into_split();
            let (ur, uw) = up.into_split();
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = async { tokio::join!(pipe(dr, uw, delay), pipe(ur, dw, delay)) } => {}
            }
        });
    }
}

/// One direction: a reader stamps each chunk, a writer sends it when its time comes. An end of
/// stream is passed on as a shutdown of the far side's writing half, after the held chunks.
async fn pipe(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, delay: Duration) {
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(HELD_CHUNKS);
    let reader = async move {
        loop {
            let mut buf = vec![0u8; CHUNK];
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    buf.truncate(n);
                    if tx.send((Instant::now() + delay, buf)).await.is_err() {
                        return;
                    }
                }
            }
        }
    };
    let writer = async move {
        while let Some((at, chunk)) = rx.recv().await {
            tokio::time::sleep_until(at).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// An echo server on loopback: what it reads it writes back, until the client closes.
    fn echo_server() -> (SocketAddr, JoinHandle<()>) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let t = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut buf = [0u8; 8192];
            loop {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => s.write_all(&buf[..n]).unwrap(),
                }
            }
        });
        (addr, t)
    }

    #[test]
    fn a_round_trip_takes_both_delays_and_the_bytes_come_back_in_order() {
        let (echo, server) = echo_server();
        let delay = Duration::from_millis(20);
        let p = DelayProxy::start(None, "127.0.0.1:0".parse().unwrap(), echo, delay).unwrap();
        let mut c = std::net::TcpStream::connect(p.addr()).unwrap();
        c.set_nodelay(true).unwrap();
        let mut rtts = Vec::new();
        for round in 0..5u8 {
            let msg: Vec<u8> = (0..100_000u32).map(|i| (i as u8) ^ round).collect();
            let t0 = std::time::Instant::now();
            c.write_all(&msg).unwrap();
            let mut back = vec![0u8; msg.len()];
            c.read_exact(&mut back).unwrap();
            rtts.push(t0.elapsed());
            assert_eq!(back, msg, "round {round}: bytes changed or reordered");
        }
        for rtt in &rtts {
            assert!(*rtt >= 2 * delay, "round trip {rtt:?} under 2 x {delay:?}");
            assert!(*rtt < Duration::from_secs(2), "round trip {rtt:?}");
        }
        drop(c);
        server.join().unwrap();
    }

    #[test]
    fn zero_delay_forwards_and_a_refused_upstream_closes_the_client() {
        let (echo, server) = echo_server();
        let p =
            DelayProxy::start(None, "127.0.0.1:0".parse().unwrap(), echo, Duration::ZERO).unwrap();
        let mut c = std::net::TcpStream::connect(p.addr()).unwrap();
        c.write_all(b"ping").unwrap();
        let mut back = [0u8; 4];
        c.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"ping");
        drop(c);
        server.join().unwrap();
        // Nothing listens on the echo port now.
        let mut c = std::net::TcpStream::connect(p.addr()).unwrap();
        let mut buf = [0u8; 1];
        assert_eq!(c.read(&mut buf).unwrap_or(0), 0);
    }

    #[test]
    fn a_missing_namespace_is_an_error_naming_it() {
        let e = DelayProxy::start(
            Some("rewind-no-such-netns"),
            "127.0.0.1:0".parse().unwrap(),
            "127.0.0.1:9".parse().unwrap(),
            Duration::ZERO,
        )
        .err()
        .expect("an error");
        assert!(e.to_string().contains("rewind-no-such-netns"), "{e}");
    }
}
