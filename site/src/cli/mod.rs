//! The `rewind-site` commands: `init` and `serve` act locally; every other command calls the
//! API (see [`conn::ConnArgs`]).

mod alerts;
mod conn;
mod init;
mod print;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

use crate::api::*;
use crate::roles::Role;
use crate::state::StateDir;
pub use conn::ConnArgs;

#[derive(Parser, Debug)]
#[command(name = "rewind-site", about = "Rewind configuration server", version)]
pub struct Cli {
    #[command(flatten)]
    pub conn: ConnArgs,
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Make the state directory: site CA, certificates, database schema, the admin user.
    Init {
        /// The database (default sqlite:STATE/site.db).
        #[arg(long)]
        db: Option<String>,
        /// A DNS name or address the site is reached at (repeat).
        #[arg(long = "host")]
        hosts: Vec<String>,
    },
    /// Run the configuration server.
    Serve {
        #[arg(long)]
        db: Option<String>,
        #[arg(long, default_value = "127.0.0.1:7443")]
        listen: SocketAddr,
        /// Write the bound address here once listening.
        #[arg(long)]
        ready_file: Option<PathBuf>,
        /// How often targets are polled, e.g. 2s.
        #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
        poll_every: Duration,
    },
    /// Which instance answers, whether it leads, and who you are to it.
    Status,
    #[command(subcommand)]
    User(UserCmd),
    #[command(subcommand)]
    Token(TokenCmd),
    #[command(subcommand)]
    Target(TargetCmd),
    #[command(subcommand)]
    Policy(PolicyCmd),
    #[command(subcommand)]
    Group(GroupCmd),
    /// Agents the targets reported: group, target, version, address.
    Agents,
    /// Every group: state, target, policy, and whether the target runs an older version.
    Groups,
    /// Protect a host's disks: place the group, issue its certificate, write its bundle.
    Protect {
        host: String,
        #[arg(long)]
        group: String,
        /// NAME=PATH (repeat, in order).
        #[arg(long = "disk", required = true)]
        disks: Vec<String>,
        #[arg(long)]
        policy: String,
        #[arg(long)]
        target: Option<String>,
        /// Where the bundle goes (default STATE/bundles/HOST-GROUP on the site).
        #[arg(long)]
        out: Option<String>,
    },
    /// Install and start a host's agent over SSH: protect the group (or reuse its protection),
    /// copy and install the rewind-agent package, write its settings and certificate, start
    /// rewind-agent@GROUP and wait for its first WELCOME. Run on the site's machine; a second
    /// run does only what changed.
    PushInstall(PushInstallArgs),
    /// The audit log: who did what, when, and the result.
    Audit {
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
    /// State changes the site saw; with --follow, then each new one as it happens (--json: one
    /// object per line).
    Events {
        #[arg(long, default_value_t = 100)]
        limit: i64,
        #[arg(long)]
        follow: bool,
    },
    /// Alerts the site evaluates: firing ones (--all: every one); ack, channels, deliveries.
    Alerts(alerts::AlertsArgs),
    /// Site jobs and their progress.
    Jobs {
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
}

/// `push-install`'s flags.
#[derive(clap::Args, Debug)]
pub struct PushInstallArgs {
    /// The host's name at the site (its agent's and certificate's name).
    host: String,
    /// How to reach it: USER@HOST[:PORT] (a user other than root needs sudo without password).
    #[arg(long)]
    ssh: String,
    /// The SSH private key (default: ssh's own).
    #[arg(long)]
    identity: Option<PathBuf>,
    /// Learn the key of a host seen for the first time (STATE/ssh/known_hosts); a changed key
    /// is refused still.
    #[arg(long)]
    accept_new_host_key: bool,
    #[arg(long)]
    group: String,
    /// NAME=PATH (repeat, in order).
    #[arg(long = "disk", required = true)]
    disks: Vec<String>,
    #[arg(long)]
    policy: String,
    #[arg(long)]
    target: Option<String>,
    /// The rewind-agent .deb to install (`scripts/package.sh` builds it).
    #[arg(long)]
    package: PathBuf,
    /// How long to wait for the agent's first WELCOME, e.g. 2m.
    #[arg(long, default_value = "2m", value_parser = humantime::parse_duration)]
    wait: Duration,
    /// Tests only: every path on the host under DIR, the package unpacked (dpkg-deb -x) and the
    /// unit's command started with setsid instead of systemd.
    #[arg(long, hide = true, value_name = "DIR")]
    install_root: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum UserCmd {
    /// Add a user; the password is read from --password-from FILE, or stdin with `-`.
    Add {
        name: String,
        #[arg(long)]
        role: Role,
        #[arg(long)]
        password_from: Option<PathBuf>,
    },
    List,
    Remove {
        name: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum TokenCmd {
    /// Make an API token (printed once; only its hash is kept).
    Add {
        name: String,
        #[arg(long)]
        role: Role,
    },
    List,
    Remove {
        name: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum TargetCmd {
    /// Register a master target's control listener (`rewind-mtd serve --control-listen`).
    Add {
        name: String,
        #[arg(long)]
        url: String,
        /// Where its agents connect, HOST:PORT.
        #[arg(long)]
        agents: Option<String>,
    },
    List,
    Remove {
        name: String,
    },
}

/// A policy's fields; on update only those given change.
#[derive(clap::Args, Debug, Clone)]
pub struct PolicyFields {
    /// RPO target, e.g. 15m.
    #[arg(long)]
    rpo: Option<String>,
    /// Retention window, e.g. 24h.
    #[arg(long)]
    retention: Option<String>,
    /// App-consistent point every, e.g. 1h (0: none).
    #[arg(long)]
    app_consistent_every: Option<String>,
    /// Mount point frozen for app-consistent points (repeat).
    #[arg(long)]
    freeze: Vec<String>,
    #[arg(long)]
    pre_hook: Option<String>,
    #[arg(long)]
    post_hook: Option<String>,
    /// zstd level.
    #[arg(long)]
    level: Option<i32>,
    /// Weekly schedule, e.g. 'mon-fri 08:00-18:00=20MiB/s, *=unlimited'.
    #[arg(long)]
    bandwidth: Option<String>,
    #[arg(long)]
    spool_mib: Option<u64>,
    /// Weekly schedule for initial sync and resync.
    #[arg(long)]
    initial_sync_window: Option<String>,
    /// How often each target drills its groups (test failover, boot, probes): 7d; 0 or never: off.
    #[arg(long)]
    drill_every: Option<String>,
    /// Long-term retention: keep an hourly point for this many days (0: off).
    #[arg(long)]
    ltr_hourly_days: Option<u64>,
    /// Keep a daily point for this many weeks (0: off).
    #[arg(long)]
    ltr_daily_weeks: Option<u64>,
    /// Keep a monthly point for this many months (0: off).
    #[arg(long)]
    ltr_monthly_months: Option<u64>,
}

#[derive(Subcommand, Debug)]
pub enum PolicyCmd {
    Create {
        name: String,
        #[command(flatten)]
        fields: PolicyFields,
    },
    /// Change a policy (its version goes up by one).
    Update {
        name: String,
        #[command(flatten)]
        fields: PolicyFields,
    },
    Show {
        name: String,
    },
    List,
    /// Assign a policy to a group, or to every group with a label, now and later.
    Assign {
        name: String,
        #[arg(long, conflicts_with = "label", required_unless_present = "label")]
        group: Option<String>,
        /// KEY=VALUE
        #[arg(long)]
        label: Option<String>,
    },
    /// Remove the policy assigned to a group or to a label.
    Unassign {
        #[arg(long, conflicts_with = "label", required_unless_present = "label")]
        group: Option<String>,
        /// KEY=VALUE
        #[arg(long)]
        label: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum GroupCmd {
    /// Set a label on a group: KEY=VALUE.
    Label { group: String, label: String },
    /// Remove a label from a group.
    Unlabel { group: String, key: String },
}

fn spec(name: &str, f: &PolicyFields) -> PolicySpec {
    PolicySpec {
        name: name.to_string(),
        rpo: f.rpo.clone(),
        retention: f.retention.clone(),
        app_consistent_every: f.app_consistent_every.clone(),
        freeze: (!f.freeze.is_empty()).then(|| f.freeze.clone()),
        pre_hook: f.pre_hook.clone(),
        post_hook: f.post_hook.clone(),
        level: f.level,
        bandwidth: f.bandwidth.clone(),
        spool_mib: f.spool_mib,
        initial_sync_window: f.initial_sync_window.clone(),
        drill_every: f.drill_every.clone(),
        ltr_hourly_days: f.ltr_hourly_days,
        ltr_daily_weeks: f.ltr_daily_weeks,
        ltr_monthly_months: f.ltr_monthly_months,
    }
}

fn read_password(from: &std::path::Path) -> Result<String> {
    let mut s = String::new();
    if from == std::path::Path::new("-") {
        std::io::stdin()
            .read_line(&mut s)
            .context("reading the password from stdin")?;
    } else {
        s = std::fs::read_to_string(from).with_context(|| format!("reading {}", from.display()))?;
    }
    Ok(s.trim_end_matches(['\n', '\r']).to_string())
}

pub async fn run(cli: Cli) -> Result<()> {
    let c = &cli.conn;
    let state = StateDir::new(&c.state);
    let p = print::Printer { json: c.json };
    match cli.cmd {
        Cmd::Init { db, hosts } => {
            let db = db.unwrap_or_else(|| state.default_db());
            init::init(&state, &db, &hosts).await
        }
        Cmd::Serve {
            db,
            listen,
            ready_file,
            poll_every,
        } => {
            crate::daemon::serve(crate::daemon::ServeArgs {
                db: db.unwrap_or_else(|| state.default_db()),
                state,
                listen,
                ready_file,
                poll_every,
            })
            .await
        }
        Cmd::Status => p.status(&c.get::<Status>("/v1/status").await?),
        Cmd::User(u) => match u {
            UserCmd::Add {
                name,
                role,
                password_from,
            } => {
                let password = password_from.as_deref().map(read_password).transpose()?;
                p.done(
                    &c.send(
                        "POST",
                        "/v1/users",
                        &UserRequest {
                            name,
                            role,
                            password,
                        },
                    )
                    .await?,
                )
            }
            UserCmd::List => p.users(&c.get::<Vec<User>>("/v1/users").await?),
            UserCmd::Remove { name } => p.done(&c.delete(&format!("/v1/users/{name}")).await?),
        },
        Cmd::Token(t) => match t {
            TokenCmd::Add { name, role } => {
                let r: TokenReply = c
                    .send("POST", "/v1/tokens", &TokenRequest { name, role })
                    .await?;
                println!("{}", r.token);
                Ok(())
            }
            TokenCmd::List => p.tokens(&c.get::<Vec<Token>>("/v1/tokens").await?),
            TokenCmd::Remove { name } => p.done(&c.delete(&format!("/v1/tokens/{name}")).await?),
        },
        Cmd::Target(t) => match t {
            TargetCmd::Add { name, url, agents } => p.done(
                &c.send(
                    "POST",
                    "/v1/targets",
                    &TargetRequest {
                        name,
                        url,
                        agent_addr: agents,
                    },
                )
                .await?,
            ),
            TargetCmd::List => p.targets(&c.get::<Vec<Target>>("/v1/targets").await?),
            TargetCmd::Remove { name } => p.done(&c.delete(&format!("/v1/targets/{name}")).await?),
        },
        Cmd::Policy(pc) => match pc {
            PolicyCmd::Create { name, fields } => p.policy(
                &c.send("POST", "/v1/policies", &spec(&name, &fields))
                    .await?,
            ),
            PolicyCmd::Update { name, fields } => p.policy(
                &c.send(
                    "PATCH",
                    &format!("/v1/policies/{name}"),
                    &spec(&name, &fields),
                )
                .await?,
            ),
            PolicyCmd::Show { name } => p.policy(&c.get(&format!("/v1/policies/{name}")).await?),
            PolicyCmd::List => p.policies(
                &c.get::<Vec<rewind_formats::policy::Policy>>("/v1/policies")
                    .await?,
            ),
            PolicyCmd::Assign { name, group, label } => p.done(
                &c.send(
                    "POST",
                    &format!("/v1/policies/{name}/assign"),
                    &AssignRequest { group, label },
                )
                .await?,
            ),
            PolicyCmd::Unassign { group, label } => p.done(
                &c.send("DELETE", "/v1/assignments", &AssignRequest { group, label })
                    .await?,
            ),
        },
        Cmd::Group(g) => match g {
            GroupCmd::Label { group, label } => {
                let (key, value) = crate::names::label(&label).map_err(anyhow::Error::from)?;
                p.done(
                    &c.send(
                        "POST",
                        &format!("/v1/groups/{group}/labels"),
                        &LabelRequest { key, value },
                    )
                    .await?,
                )
            }
            GroupCmd::Unlabel { group, key } => p.done(
                &c.delete(&format!("/v1/groups/{group}/labels/{key}"))
                    .await?,
            ),
        },
        Cmd::Agents => p.raw(&c.get::<serde_json::Value>("/v1/agents").await?),
        Cmd::Groups => p.groups(&c.get::<Vec<GroupView>>("/v1/groups").await?),
        Cmd::Protect {
            host,
            group,
            disks,
            policy,
            target,
            out,
        } => {
            let mut pairs = Vec::new();
            for d in disks {
                let Some((n, path)) = d.split_once('=') else {
                    bail!("--disk {d:?}: give NAME=PATH");
                };
                pairs.push((n.to_string(), path.to_string()));
            }
            let r: ProtectReply = c
                .send(
                    "POST",
                    "/v1/protect",
                    &ProtectRequest {
                        host,
                        group,
                        disks: pairs,
                        policy,
                        target,
                        out,
                    },
                )
                .await?;
            p.protected(&r)
        }
        Cmd::PushInstall(a) => {
            let req = crate::pushinstall::Request {
                ssh: crate::pushinstall::ssh::Dest::parse(&a.ssh)?,
                disks: crate::pushinstall::parse_disks(&a.disks)?,
                host: a.host,
                identity: a.identity,
                accept_new_host_key: a.accept_new_host_key,
                group: a.group,
                policy: a.policy,
                target: a.target,
                package: a.package,
                install_root: a.install_root.unwrap_or_default(),
                wait: a.wait,
            };
            crate::pushinstall::run(c, req).await
        }
        Cmd::Audit { limit } => p.audit(
            &c.get::<Vec<AuditEntry>>(&format!("/v1/audit?limit={limit}"))
                .await?,
        ),
        Cmd::Events {
            limit,
            follow: true,
        } => alerts::follow(c, &p, limit).await,
        Cmd::Alerts(a) => alerts::run(c, &p, a).await,
        Cmd::Events { limit, .. } => p.events(
            &c.get::<Vec<Event>>(&format!("/v1/events?limit={limit}"))
                .await?,
        ),
        Cmd::Jobs { limit } => p.jobs(
            &c.get::<Vec<Job>>(&format!("/v1/jobs?limit={limit}"))
                .await?,
        ),
    }
}
