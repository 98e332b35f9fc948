//! Request and reply types of the site's HTTP API, shared by the server, the CLI and the tests.

use serde::{Deserialize, Serialize};

use crate::roles::Role;

pub use crate::db::alerts::{Alert, Notice};
pub use crate::db::audit::{AuditEntry, Event};
pub use crate::db::channels::{Channel, Delivery};
pub use crate::db::groups::{GroupView, Protection};
pub use crate::db::jobs::Job;
pub use crate::db::policies::Assignment;
pub use crate::db::targets::Target;
pub use crate::db::users::{Token, User};
pub use crate::error::ErrorBody;
pub use crate::notify::channel::ChannelRequest;

/// `GET /v1/status`: which instance answered and whether it leads.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Status {
    pub instance: String,
    pub leader: bool,
    /// `sqlite` or `postgres`.
    pub backend: String,
    pub schema_versions: Vec<i64>,
    /// The caller, as the audit log names it, and its role.
    pub caller: String,
    pub role: Role,
}

/// `POST /v1/users`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct UserRequest {
    pub name: String,
    pub role: Role,
    /// None: the user logs in with a client certificate only.
    pub password: Option<String>,
}

/// `POST /v1/tokens`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TokenRequest {
    pub name: String,
    pub role: Role,
}

/// The new token, shown once.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TokenReply {
    pub name: String,
    pub token: String,
}

/// `POST /v1/targets`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TargetRequest {
    pub name: String,
    /// `https://HOST:PORT` of the target's control listener.
    pub url: String,
    /// Where its agents connect, `HOST:PORT` (what `protect` writes into bundles).
    #[serde(default)]
    pub agent_addr: Option<String>,
}

/// `POST /v1/policies` (every field the policy needs) and `PATCH /v1/policies/{name}` (only
/// what changes). Durations as `15m`, `24h`; schedules in the weekly grammar.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySpec {
    pub name: String,
    pub rpo: Option<String>,
    pub retention: Option<String>,
    pub app_consistent_every: Option<String>,
    pub freeze: Option<Vec<String>>,
    pub pre_hook: Option<String>,
    pub post_hook: Option<String>,
    pub level: Option<i32>,
    pub bandwidth: Option<String>,
    pub spool_mib: Option<u64>,
    pub initial_sync_window: Option<String>,
    /// How often the target drills each group (`7d`; `0` or `never`: no drills).
    #[serde(default)]
    pub drill_every: Option<String>,
    /// Long-term retention: hourly points kept this many days (0: off).
    #[serde(default)]
    pub ltr_hourly_days: Option<u64>,
    /// Daily points kept this many weeks (0: off).
    #[serde(default)]
    pub ltr_daily_weeks: Option<u64>,
    /// Monthly points kept this many months (0: off).
    #[serde(default)]
    pub ltr_monthly_months: Option<u64>,
}

/// `POST /v1/policies/{name}/assign`: a group or a label (`KEY=VALUE`), one of them.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct AssignRequest {
    pub group: Option<String>,
    pub label: Option<String>,
}

/// `POST /v1/groups/{group}/labels`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LabelRequest {
    pub key: String,
    pub value: String,
}

/// `POST /v1/protect`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProtectRequest {
    pub host: String,
    pub group: String,
    /// (disk name, path on the host).
    pub disks: Vec<(String, String)>,
    pub policy: String,
    /// The master target; None: the site picks one.
    pub target: Option<String>,
    /// Where the bundle goes on the site's machine (default STATE/bundles/HOST-GROUP).
    pub out: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProtectReply {
    pub target: String,
    /// The bundle directory.
    pub bundle: String,
    /// The agent TOML file in it.
    pub config: String,
}

/// A reply that only says what was done.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Done {
    pub done: String,
}

/// `POST /v1/jobs`: a job a client runs itself (`push-install`), shown with the site's own jobs
/// so that the console and `rewind-site jobs` follow it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClientJobStart {
    /// What runs: one of [`CLIENT_JOB_KINDS`].
    pub kind: String,
    /// What it runs on (a host's name).
    pub subject: String,
    /// Steps in all (1..=[`MAX_CLIENT_JOB_STEPS`]).
    pub total: i64,
}

/// `POST /v1/jobs/{id}/progress`: a client job's step.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClientJobProgress {
    /// Steps done (0..=total).
    pub done: i64,
    /// `running`, `done` or `failed`.
    pub state: String,
    /// The step, or why it failed (at most [`MAX_CLIENT_JOB_DETAIL`] bytes).
    pub detail: String,
}

/// The jobs a client may report.
pub const CLIENT_JOB_KINDS: &[&str] = &["push-install"];
pub const MAX_CLIENT_JOB_STEPS: i64 = 1000;
pub const MAX_CLIENT_JOB_DETAIL: usize = 2000;
