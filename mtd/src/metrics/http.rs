//! The `/metrics` listener: plain HTTP, `GET /metrics` only, read-only.
//!
//! Prometheus scrapes plain HTTP by default; the page holds group and disk names and figures,
//! nothing that changes anything. A non-loopback address is allowed (a Prometheus server on
//! another host has to reach it) but logged, so that exposing it is a visible choice.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::registry::Registry;

/// Binds `addr` and serves the registry's metrics until the runtime stops. Returns the bound
/// address (port 0 picks one).
pub async fn start(addr: SocketAddr, registry: Registry) -> Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the metrics listener (--metrics-listen {addr})"))?;
    let bound = listener.local_addr().context("metrics listener address")?;
    if !bound.ip().is_loopback() {
        tracing::warn!(%bound, "metrics are served on a non-loopback address: anyone who can \
            reach it reads group and disk names and figures");
    }
    let registry = Arc::new(registry);
    let app = axum::Router::new().route(
        "/metrics",
        get(move || {
            let registry = registry.clone();
            async move { scrape(registry).await }
        }),
    );
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "metrics listener stopped");
        }
    });
    tracing::info!(%bound, "metrics on http://{bound}/metrics");
    Ok(bound)
}

/// Renders on a blocking thread: collectors take the groups' locks and stat the data dir.
async fn scrape(registry: Arc<Registry>) -> axum::response::Response {
    let text = tokio::task::spawn_blocking(move || rewind_linux::metrics::render(&registry)).await;
    match text {
        Ok(Ok(text)) => (
            [(header::CONTENT_TYPE, rewind_linux::metrics::CONTENT_TYPE)],
            text,
        )
            .into_response(),
        _ => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "encoding metrics failed\n",
        )
            .into_response(),
    }
}
