//! `rewind-site serve`: open the database, take part in the lease, run the leader's loops and
//! serve the API.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::sync::Notify;

use crate::db::Db;
use crate::server::{self, AppState};
use crate::state::StateDir;

pub struct ServeArgs {
    pub state: StateDir,
    pub db: String,
    pub listen: SocketAddr,
    /// Written (the bound address, one line) once the API listens.
    pub ready_file: Option<PathBuf>,
    pub poll_every: Duration,
}

pub async fn serve(a: ServeArgs) -> Result<()> {
    a.state.check()?;
    let db = Db::open(&a.db).await?;
    let tls = crate::tls::server_config(&a.state)?;
    let listener = tokio::net::TcpListener::bind(a.listen)
        .await
        .with_context(|| format!("listening on {}", a.listen))?;
    let bound = listener.local_addr()?;
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "site".into());
    let st = AppState {
        db,
        state: a.state.clone(),
        instance: format!("{host}:{}:{}", std::process::id(), bound.port()),
        leader: Arc::new(AtomicBool::new(false)),
        wake: Arc::new(Notify::new()),
        poll_now: Arc::new(Notify::new()),
        deliver_now: Arc::new(Notify::new()),
    };
    tracing::info!(listen = %bound, db = %crate::db::redact(&a.db), instance = %st.instance, "rewind-site serving");
    tokio::spawn(crate::lease::run(st.clone()));
    tokio::spawn(crate::poll::run(st.clone(), a.poll_every));
    tokio::spawn(crate::push::run(st.clone()));
    tokio::spawn(crate::watch::run(st.clone()));
    tokio::spawn(crate::alerts::run(st.clone()));
    tokio::spawn(crate::notify::run(st.clone()));
    if let Some(r) = &a.ready_file {
        rewind_linux::atomic::write(r, format!("{bound}\n").as_bytes())
            .with_context(|| format!("writing {}", r.display()))?;
    }
    server::serve(listener, tls, server::router(st)).await
}
