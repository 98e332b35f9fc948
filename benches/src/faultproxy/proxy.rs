//! The proxy: a loopback listener whose every connection is forwarded to one upstream address
//! through two [`pump`](super::pump)s, on its own thread and tokio runtime (so blocking tests and
//! the bench driver can use it), stopped on drop.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::counters::Counts;
use super::injector::Injector;
use super::kind::FaultKind;
use super::plan::Plan;
use super::pump::pump;

/// A running fault proxy; agents connect to [`FaultProxy::addr`] instead of the target.
pub struct FaultProxy {
    addr: SocketAddr,
    inj: Arc<Injector>,
    stop: CancellationToken,
    /// Cancelled (and replaced) by [`FaultProxy::cut_all`].
    conns: Arc<std::sync::Mutex<CancellationToken>>,
    thread: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// Listens on 127.0.0.1 (a free port) and forwards to `upstream` with `plan`'s faults.
    pub fn start(upstream: SocketAddr, plan: Plan) -> io::Result<FaultProxy> {
        if plan.kinds.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "fault proxy: no fault kinds in the plan",
            ));
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let inj = Arc::new(Injector::new(plan));
        let stop = CancellationToken::new();
        let conns = Arc::new(std::sync::Mutex::new(stop.child_token()));
        let thread = {
            let (inj, stop, conns) = (inj.clone(), stop.clone(), conns.clone());
            std::thread::Builder::new()
                .name("fault-proxy".into())
                .spawn(move || {
                    rt.block_on(async move {
                        let l = match TcpListener::from_std(std_listener) {
                            Ok(l) => l,
                            Err(e) => {
                                eprintln!("fault proxy: listener: {e}");
                                return;
                            }
                        };
                        accept_loop(l, upstream, inj, stop, conns).await;
                    })
                })?
        };
        Ok(FaultProxy {
            addr,
            inj,
            stop,
            conns,
            thread: Some(thread),
        })
    }

    /// Where agents connect (`127.0.0.1:PORT`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Turns fault injection on or off (connections go on either way).
    pub fn set_faults(&self, on: bool) {
        self.inj.set_enabled(on);
    }

    /// From now on, inject only `kinds` (not empty), into both streams or only the agent's.
    pub fn set_kinds(&self, kinds: &[FaultKind], both_directions: bool) {
        assert!(!kinds.is_empty(), "fault proxy: no fault kinds");
        self.inj.set_kinds(kinds.to_vec(), both_directions);
    }

    /// Closes every open connection now (not counted as a fault).
    pub fn cut_all(&self) {
        let mut c = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        c.cancel();
        *c = self.stop.child_token();
    }

    pub fn counts(&self) -> Counts {
        self.inj.counters.snapshot()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn accept_loop(
    l: TcpListener,
    upstream: SocketAddr,
    inj: Arc<Injector>,
    stop: CancellationToken,
    conns: Arc<std::sync::Mutex<CancellationToken>>,
) {
    loop {
        let (down, _) = tokio::select! {
            _ = stop.cancelled() => return,
            a = l.accept() => match a {
                Ok(a) => a,
                // (EMFILE and the like: try again shortly rather than spin.)
                Err(_) => {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let conn = conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .child_token();
        let inj = inj.clone();
        tokio::spawn(async move {
            // A refused upstream (the target is down) closes the agent's side at once.
            let Ok(up) = TcpStream::connect(upstream).await else {
                return;
            };
            inj.counters.connection();
            let _ = (down.set_nodelay(true), up.set_nodelay(true));
            let (dr, dw) = down.into_split();
            let (ur, uw) = up.into_split();
            let a = tokio::spawn(pump(dr, uw, true, inj.clone(), conn.clone()));
            let b = tokio::spawn(pump(ur, dw, false, inj, conn));
            let _ = tokio::join!(a, b);
        });
    }
}
