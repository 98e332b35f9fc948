//! The control API: HTTP+JSON on a unix socket, used by the `rewind` CLI, and optionally on TCP
//! with mutual TLS for the configuration server ([`tcp`], `serve --control-listen`).
//!
//! Who may do what (`authorize`): root everything; members of the access group (`rewind`) only
//! GET; on TCP a site certificate everything; anybody else nothing (403). Names in paths and bodies are checked by `names` before they
//! reach a path (400).
//!
//! Routes (all JSON, typed in `crate::api`; errors are `{"error": "..."}` with the status of
//! their [`error::ApiError`]):
//! - `GET /v1/groups`: groups, disks, segments, points, tags, horizon (the `inspect` report)
//! - `GET /v1/events`: server-sent events, one JSON object each (`crate::events`)
//! - `PUT|GET /v1/groups/{group}/policy`: the group's replication policy (`control/policy.rs`)
//! - `DELETE /v1/groups/{group}`: delete an idle group (`control/groups.rs`)
//! - `GET /v1/groups/{group}/points`: the recovery points of one group
//! - `POST /v1/groups/{group}/drain` `{"tag", "timeout_secs"}`: the agent stops writes, sends
//!   everything and tags its last seq; answers `{"seq"}` once the tag is durable
//! - `POST /v1/groups/{group}/fence` `{"reason"}`: bump the generation, refuse the old source
//! - `POST /v1/groups/{group}/verify` `{"point", "repair", "deadline_secs"}`: an online verify,
//!   as a job (`control/verify.rs`)
//! - `GET|POST /v1/overlays`, `DELETE /v1/overlays/{name}`
//! - `GET|POST /v1/attachments`, `POST /v1/detach`
//! - `POST /v1/mounts`, `POST /v1/umount`
//! - failover (`control/failover.rs`): `GET /v1/jobs[/{id}]`, `GET /v1/failover`,
//!   `GET /v1/groups/{group}/failover`, `POST /v1/groups/{group}/failover/{configure,test,cleanup,
//!   planned,unplanned,change-point,commit}`, `POST|DELETE /v1/groups/{group}/reverse`,
//!   `POST /v1/groups/{group}/adopt`
//! - drills (`control/drill.rs`): `GET|POST /v1/groups/{group}/drill`,
//!   `POST /v1/groups/{group}/drill/config`
//! - recovery plans (`control/plans.rs`): `POST /v1/plans/run`, `GET /v1/plans/current`,
//!   `POST /v1/plans/continue`, `POST /v1/plans/cleanup`

mod attachments;
mod authorize;
mod drain;
mod drill;
pub mod error;
mod events;
mod failover;
pub mod fuzzing;
mod groups;
mod handler;
mod ltr;
pub mod names;
mod overlays;
mod plans;
mod points;
mod policy;
mod routes;
pub mod tcp;
mod verify;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Result;

use crate::access::LocalAccess;
use crate::failover::Failovers;
use crate::listen::Acceptor;
use crate::views::attach::{self, Attachments};
use crate::views::exports::Exports;

pub struct Control {
    pub exports: Arc<Exports>,
    /// The view tree's mount point (attach and mount need it).
    pub views: Option<PathBuf>,
    pub attachments: Arc<Attachments>,
    pub failovers: Arc<Failovers>,
    /// The recovery plan run last (one at a time).
    pub plan: std::sync::Mutex<Option<Arc<crate::plan::PlanRun>>>,
    /// Drills (`crate::drill`), and the thread that runs the scheduled ones.
    pub drills: Arc<crate::drill::DrillRunner>,
    drill_schedule: std::sync::Mutex<Option<crate::drill::schedule::Scheduler>>,
}

impl Control {
    /// `nbd`: the NBD server's bound addresses (failovers hand out URIs on the first).
    pub fn new(
        exports: Arc<Exports>,
        views: Option<PathBuf>,
        nbd: Vec<String>,
    ) -> Result<Arc<Control>> {
        let attachments = Arc::new(Attachments::load(&exports.store.dir)?);
        let failovers = Failovers::load(exports.clone(), views.clone(), attachments.clone(), nbd)?;
        let drills = crate::drill::DrillRunner::new(failovers.clone());
        crate::verify::last::load(&exports.store.dir);
        Ok(Arc::new(Control {
            exports,
            views,
            attachments,
            failovers,
            plan: std::sync::Mutex::new(None),
            drills,
            drill_schedule: std::sync::Mutex::new(None),
        }))
    }

    /// Start running the drills the groups' policies schedule (once the failovers resumed).
    pub fn start_drill_schedule(&self) {
        let s = crate::drill::schedule::Scheduler::start(self.drills.clone());
        *self.drill_schedule.lock().expect("drill schedule lock") = Some(s);
    }

    /// Stop reverse agents and boot commands, then unmount, detach and drop everything
    /// `attach`, `mount` and failovers made (daemon shutdown).
    pub fn release_all(&self) {
        // No new drill may start while things are torn down.
        if let Some(mut s) = self
            .drill_schedule
            .lock()
            .expect("drill schedule lock")
            .take()
        {
            s.stop();
        }
        // A test-mode plan's machines use the test disks: stop them first.
        let run = self.plan.lock().expect("plan lock").clone();
        if let Some(run) = run {
            if run.status().mode == crate::plan::Mode::Test {
                if let Err(e) = run.cleanup() {
                    tracing::error!(error = %e, "cleaning up the recovery plan");
                }
            }
        }
        self.failovers.shutdown();
        attach::release_all(&self.exports, &self.attachments);
    }
}

/// Serve the API on a unix socket in the background. A socket that another live daemon answers on
/// is an error, not something to take over.
///
/// Every connection's peer is checked (`SO_PEERCRED`): root may do everything; members of the
/// access group may only read (GET); anybody else, and a member asking for a change, gets a 403
/// (the API runs boot commands as root).
pub async fn start(control: Arc<Control>, path: &Path, access: &Arc<LocalAccess>) -> Result<()> {
    let listener = access.bind(path, "control API", "--control").await?;
    tracing::info!(path = %path.display(), "control API listening");
    let app = routes::router(control).layer(axum::middleware::from_fn(authorize::authorize));
    let listener = authorize::CheckedListener {
        inner: Acceptor::new(listener, "control API", "unix"),
        access: access.clone(),
    };
    tokio::spawn(async move {
        let app = app.into_make_service_with_connect_info::<authorize::Caller>();
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "control API stopped");
        }
    });
    Ok(())
}
