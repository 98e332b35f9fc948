//! The HTTPS API: TLS accept loop, shared state and the routes.

mod alerts;
pub mod auth;
pub mod client_jobs;
mod follow;
pub(crate) mod groups;
mod ops;
mod plans;
mod policies;
mod protect;
mod reads;
mod targets;
mod users;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};
use axum::routing::{get, post};
use axum::Router;
use hyper_util::rt::TokioIo;
use tokio::sync::Notify;
use tower::Service;

use crate::db::Db;
use crate::state::StateDir;

/// What every handler and background task shares.
#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    pub state: StateDir,
    /// This instance's name (host:pid), as jobs and `status` show it.
    pub instance: String,
    /// Whether this instance holds the lease (runs polls, pushes and jobs).
    pub leader: Arc<AtomicBool>,
    /// Rung after every change, so the leader's policy pushes run at once.
    pub wake: Arc<Notify>,
    /// Rung when a target reports an event or is registered: poll at once.
    pub poll_now: Arc<Notify>,
    /// Rung when an alert fires or resolves: deliver at once.
    pub deliver_now: Arc<Notify>,
}

impl AppState {
    /// Wake the leader's loops (after a change).
    pub fn ring(&self) {
        self.wake.notify_one();
        self.poll_now.notify_one();
    }
}

impl AppState {
    pub fn is_leader(&self) -> bool {
        self.leader.load(Ordering::SeqCst)
    }
}

pub fn router(st: AppState) -> Router {
    Router::new()
        .route("/v1/status", get(reads::status))
        .route("/v1/audit", get(reads::audit))
        .route("/v1/events", get(reads::events))
        .route("/v1/events/follow", get(follow::follow))
        .route("/v1/alerts", get(alerts::list))
        .route("/v1/alerts/{id}/ack", post(alerts::ack))
        .route(
            "/v1/channels",
            get(alerts::channels).post(alerts::add_channel),
        )
        .route(
            "/v1/channels/{name}",
            axum::routing::delete(alerts::remove_channel),
        )
        .route("/v1/deliveries", get(alerts::deliveries))
        .route("/v1/jobs", get(reads::jobs).post(client_jobs::start))
        .route("/v1/jobs/{id}/progress", post(client_jobs::progress))
        .route("/v1/users", get(users::list).post(users::add))
        .route("/v1/users/{name}", axum::routing::delete(users::remove))
        .route("/v1/tokens", get(users::tokens).post(users::add_token))
        .route(
            "/v1/tokens/{name}",
            axum::routing::delete(users::remove_token),
        )
        .route("/v1/targets", get(targets::list).post(targets::add))
        .route("/v1/targets/{name}", axum::routing::delete(targets::remove))
        .route("/v1/agents", get(targets::agents))
        .route("/v1/groups", get(groups::list))
        .route("/v1/groups/{group}/labels", post(groups::label))
        .route(
            "/v1/groups/{group}/labels/{key}",
            axum::routing::delete(groups::unlabel),
        )
        .route("/v1/policies", get(policies::list).post(policies::create))
        .route(
            "/v1/policies/{name}",
            get(policies::show).patch(policies::update),
        )
        .route("/v1/policies/{name}/assign", post(policies::assign))
        .route(
            "/v1/assignments",
            get(policies::assignments).delete(policies::unassign),
        )
        .route("/v1/protect", post(protect::protect))
        .route("/v1/protections", get(protect::list))
        .merge(ops_routes())
        .merge(crate::console::routes())
        .with_state(st)
}

/// Site-wide operations (`server/ops.rs`) and recovery plans (`server/plans.rs`).
fn ops_routes() -> Router<AppState> {
    Router::new()
        .route("/v1/jobs/{id}", get(ops::job))
        .route("/v1/groups/{group}/failover", get(ops::show))
        .route("/v1/groups/{group}/failover/test", post(ops::test))
        .route("/v1/groups/{group}/failover/cleanup", post(ops::cleanup))
        .route("/v1/groups/{group}/failover/planned", post(ops::planned))
        .route(
            "/v1/groups/{group}/failover/unplanned",
            post(ops::unplanned),
        )
        .route("/v1/groups/{group}/failover/commit", post(ops::commit))
        .route(
            "/v1/groups/{group}/failover/change-point",
            post(ops::change_point),
        )
        .route("/v1/groups/{group}/points", get(ops::points))
        .route("/v1/groups/{group}/tag", post(ops::tag))
        .route("/v1/plans", get(plans::list).post(plans::create))
        .route("/v1/plans/{name}", get(plans::show).delete(plans::remove))
        .route("/v1/plans/{name}/run", post(plans::run))
        .route("/v1/plans/{name}/runs", get(plans::runs))
        .route("/v1/plans/{name}/cleanup", post(plans::cleanup))
}

/// Serve the API on `listener` until the process ends.
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: Router,
) -> Result<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // Out of descriptors and the like: wait a little rather than spin.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        tokio::spawn(async move {
            if let Err(e) = connection(acceptor, tcp, peer, app).await {
                tracing::debug!(%peer, error = %format!("{e:#}"), "connection ended");
            }
        });
    }
}

async fn connection(
    acceptor: tokio_rustls::TlsAcceptor,
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    app: Router,
) -> Result<()> {
    let tls = tokio::time::timeout(std::time::Duration::from_secs(10), acceptor.accept(tcp))
        .await
        .context("TLS handshake timed out")?
        .with_context(|| format!("TLS handshake with {peer}"))?;
    let cert = auth::PeerCert(crate::tls::peer_name(tls.get_ref().1));
    let svc = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(cert.clone());
        let mut app = app.clone();
        async move { app.call(req).await }
    });
    hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(tls), svc)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}
