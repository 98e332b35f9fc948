//! The `/metrics` listener on its own thread (the agent has no async runtime elsewhere): a
//! one-thread tokio runtime serving `GET /metrics` until the agent stops.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::registry::Registry;

use crate::error::{Error, Result};

/// Binds `addr` now (so a taken port fails the start) and serves until `stop`.
pub fn spawn(
    addr: SocketAddr,
    registry: Registry,
    stop: Arc<AtomicBool>,
) -> Result<JoinHandle<()>> {
    let listener = std::net::TcpListener::bind(addr)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .map_err(Error::path(
            "binding the metrics listener",
            addr.to_string(),
        ))?;
    if !addr.ip().is_loopback() {
        tracing::warn!(%addr, "metrics are served on a non-loopback address: anyone who can \
            reach it reads group and disk names and figures");
    }
    let registry = Arc::new(registry);
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => return tracing::error!(error = %e, "metrics: starting tokio"),
            };
            rt.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => l,
                    Err(e) => return tracing::error!(error = %e, "metrics listener"),
                };
                let app = axum::Router::new().route(
                    "/metrics",
                    get(move || {
                        let registry = registry.clone();
                        async move { scrape(&registry) }
                    }),
                );
                let stopped = async move {
                    while !stop.load(Ordering::SeqCst) {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                };
                if let Err(e) = axum::serve(listener, app)
                    .with_graceful_shutdown(stopped)
                    .await
                {
                    tracing::error!(error = %e, "metrics listener stopped");
                }
            });
        })
        .map_err(Error::path("starting a thread for", "metrics"))
}

fn scrape(registry: &Registry) -> axum::response::Response {
    match rewind_linux::metrics::render(registry) {
        Ok(text) => (
            [(header::CONTENT_TYPE, rewind_linux::metrics::CONTENT_TYPE)],
            text,
        )
            .into_response(),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "encoding metrics failed\n",
        )
            .into_response(),
    }
}
