//! rewind-site, the configuration server: one site's master targets, groups, policies, users and
//! audit log in one database (SQLite or PostgreSQL), served over HTTPS.
//!
//! - [`db`]: the schema's tables, one file each; [`server`]: the API; [`api`]: its types.
//! - [`lease`]: which instance leads; [`poll`], [`watch`], [`push`], [`alerts`] and [`notify`]:
//!   what the leader runs; [`ops`]: failovers and recovery plans across targets.
//! - [`cli`]: the `rewind-site` commands ([`pushinstall`]: an agent installed over SSH); [`https`]: the client they and the poller use.

pub mod alerts;
pub mod api;
pub mod bundle;
pub mod cli;
pub mod console;
pub mod daemon;
pub mod db;
pub mod endpoint;
pub mod error;
pub mod https;
pub mod lease;
pub mod names;
pub mod notify;
pub mod ops;
pub mod policy_spec;
pub mod poll;
pub mod push;
pub mod pushinstall;
pub mod roles;
pub mod secrets;
pub mod server;
pub mod sse;
pub mod state;
pub mod targets;
pub mod tls;
pub mod watch;
