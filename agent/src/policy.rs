//! The replication policy the target sends (CONTROL Policy, `formats/src/policy/`): validated
//! again here (a CONTROL frame is input), kept in `STATE_DIR/GROUP.policy` so it holds across a
//! restart, and applied while the agent runs:
//!
//! - `level`: the zstd level from the next batch on ([`Levels::set_configured`]);
//! - `bandwidth`: the weekly schedule's rate now, looked at again every status interval
//!   ([`PolicyCtl::tick`]), so the limit follows the schedule ([`RateLimit::set`]);
//! - `app_consistent_every_secs`, `freeze`: the tag scheduler's period and mount points
//!   ([`crate::schedule`]), in place of `--tag-every` and `--tag-freeze` while a policy is in
//!   force (0: no scheduled points);
//! - `initial_sync_window`: when the initial sync and resyncs may read and send, and how fast
//!   ([`crate::sync::window`]; a rate of 0 holds them);
//! - `spool_mib`: the spool's size from now on (records it holds stay until sent; 0 takes no
//!   more, so a full memory queue goes to bitmap mode), in place of `--spool-mib`;
//! - `pre_hook`, `post_hook`: this agent runs no hooks, so a policy with one is refused (an ERROR
//!   `policy refused: GROUP: policy field pre_hook: ...`), and the agent keeps what it ran before.
//!
//! `rewind-agent status` shows `policy: NAME vN`.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rewind_formats::policy::{Policy, Rate};

use crate::state::{files, StateDir};
use crate::stream::levels::Levels;
use crate::stream::queue::Queue;
use crate::stream::ratelimit::RateLimit;

/// The policy in force and what it drives.
pub struct PolicyCtl {
    file: PathBuf,
    limit: Arc<RateLimit>,
    levels: Arc<Levels>,
    /// Its spool is sized by the policy.
    queue: Arc<Queue>,
    current: Mutex<Option<Policy>>,
}

impl PolicyCtl {
    /// The policy kept in the state directory (if any) applied to `limit` and `levels`. One
    /// that no longer reads is logged and left aside: the target sends it again after WELCOME.
    pub fn load(
        state: &StateDir,
        limit: Arc<RateLimit>,
        levels: Arc<Levels>,
        queue: Arc<Queue>,
    ) -> PolicyCtl {
        let ctl = PolicyCtl {
            file: state.policy_file(),
            limit,
            levels,
            queue,
            current: Mutex::new(None),
        };
        if let Ok(text) = std::fs::read_to_string(&ctl.file) {
            match Policy::from_control_arg(&text).map_err(|e| e.to_string()) {
                Ok(p) => ctl.install(p),
                Err(e) => {
                    tracing::warn!(file = %ctl.file.display(), error = %e, "kept policy unusable; waiting for the target's")
                }
            }
        }
        ctl
    }

    /// Apply a CONTROL Policy `arg`; `Err` says which field cannot be applied (nothing changed).
    pub fn apply(&self, arg: &str) -> Result<String, String> {
        let p = Policy::from_control_arg(arg).map_err(|e| e.to_string())?;
        for (field, hook) in [("pre_hook", &p.pre_hook), ("post_hook", &p.post_hook)] {
            if hook.is_some() {
                return Err(format!(
                    "policy field {field}: this agent runs no hook scripts"
                ));
            }
        }
        if self.current().as_ref() == Some(&p) {
            return Ok(label(&p));
        }
        files::replace(&self.file, p.to_control_arg().as_bytes(), true)
            .map_err(|e| format!("keeping the policy in the state directory: {e}"))?;
        tracing::info!(
            policy = %p.name,
            version = p.version,
            level = p.level,
            tag_every_secs = p.app_consistent_every_secs,
            spool_mib = p.spool_mib,
            "policy applied: level, bandwidth, app-consistent interval, freeze, spool size and \
             sync window now"
        );
        let l = label(&p);
        self.install(p);
        Ok(l)
    }

    fn install(&self, p: Policy) {
        self.levels.set_configured(p.level);
        self.queue
            .set_spool_capacity(p.spool_mib.saturating_mul(1 << 20));
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = Some(p);
        self.tick();
    }

    /// Set the bandwidth limit the schedule gives for now.
    pub fn tick(&self) {
        let Some(p) = self.current() else { return };
        let rate = match p.bandwidth.rate_at_unix(unix_now()) {
            Rate::Unlimited => None,
            // A rate of 0 holds replication; the token bucket cannot express "never": one byte
            // a second is as close as it gets without stalling the session's keepalive forever.
            Rate::BytesPerSec(n) => Some(n.max(1)),
        };
        if self.limit.rate() != rate {
            tracing::info!(policy = %p.name, rate = ?rate, "bandwidth limit from the policy's schedule");
            self.limit.set(rate);
        }
    }

    pub fn current(&self) -> Option<Policy> {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The sync window's rate now (unlimited without a policy).
    pub fn sync_rate_now(&self) -> Rate {
        match self.current() {
            Some(p) => p.initial_sync_window.rate_at_unix(unix_now()),
            None => Rate::Unlimited,
        }
    }

    /// The scheduled points a policy in force asks for: `Some(None)` for none, `Some(Some((every
    /// seconds, mount points to freeze)))`; `None` without a policy (the command line decides).
    pub fn tag_schedule(&self) -> Option<Option<(u64, Vec<String>)>> {
        let p = self.current()?;
        Some((p.app_consistent_every_secs > 0).then_some((p.app_consistent_every_secs, p.freeze)))
    }

    /// `NAME vN`, for the status.
    pub fn label(&self) -> Option<String> {
        self.current().as_ref().map(label)
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

fn label(p: &Policy) -> String {
    format!("{} v{}", p.name, p.version)
}
