//! Who may do what on the control API: every accepted connection's peer is checked once
//! (`SO_PEERCRED`, through [`LocalAccess::check`]; on TCP its certificate, `control::tcp`) and the
//! answer travels with each request as its connect info; [`authorize`] turns it into a 403 or lets
//! the request through.

use std::sync::Arc;

use axum::extract::{ConnectInfo, Request};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::serve::{IncomingStream, Listener};
use tokio::net::{UnixListener, UnixStream};

use super::error::ApiError;
use crate::access::{LocalAccess, Role};
use crate::listen::Acceptor;

/// Who is on the other end of a control connection.
#[derive(Clone, Debug)]
pub enum Caller {
    Root,
    /// A member of the access group: read-only.
    Member {
        uid: u32,
        pid: i32,
    },
    /// A configuration server, by its site certificate on the TCP listener (`control::tcp`):
    /// everything root may do.
    Site {
        name: String,
    },
    /// Neither: everything is refused (the message says why).
    Refused(String),
}

/// The control socket's listener: accepts, and checks each peer as it comes in.
pub struct CheckedListener {
    pub inner: Acceptor<UnixListener>,
    pub access: Arc<LocalAccess>,
}

impl Listener for CheckedListener {
    type Io = UnixStream;
    type Addr = Caller;

    async fn accept(&mut self) -> (UnixStream, Caller) {
        let (s, _) = self.inner.accept().await;
        let caller = match self.access.check(&s) {
            Ok(p) if p.role == Role::Root => Caller::Root,
            Ok(p) => Caller::Member {
                uid: p.uid,
                pid: p.pid,
            },
            Err(r) => Caller::Refused(r.to_string()),
        };
        (s, caller)
    }

    fn local_addr(&self) -> std::io::Result<Caller> {
        Ok(Caller::Refused("the listener itself".into()))
    }
}

impl axum::extract::connect_info::Connected<IncomingStream<'_, CheckedListener>> for Caller {
    fn connect_info(stream: IncomingStream<'_, CheckedListener>) -> Self {
        stream.remote_addr().clone()
    }
}

/// Whether a request only reads.
fn reads_only(m: &Method) -> bool {
    m == Method::GET || m == Method::HEAD
}

/// Let root do everything and access-group members read; refuse the rest with a 403 and a log line.
pub async fn authorize(
    ConnectInfo(caller): ConnectInfo<Caller>,
    req: Request,
    next: Next,
) -> Response {
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    let refusal = match &caller {
        Caller::Root | Caller::Site { .. } => None,
        Caller::Member { .. } if reads_only(&method) => None,
        Caller::Member { uid, pid } => Some(format!(
            "{method} {path}: uid {uid} (pid {pid}) is in the access group, which may only read; changes need root"
        )),
        Caller::Refused(why) => Some(format!("{method} {path}: {why}")),
    };
    match refusal {
        None => next.run(req).await,
        Some(msg) => {
            tracing::warn!(refused = %msg, "control API request refused");
            ApiError::Forbidden(msg).into_response()
        }
    }
}
