//! A group's replication policy (`PUT /v1/groups/{group}/policy`): kept whole in the group's
//! directory as `policy.json` (written to a temporary name, synced, renamed), loaded with the
//! group, so it holds across restarts. Its retention window is the group's from the moment it is
//! set (the daemon-wide `--retention` only seeds new groups). Which version the agent was last
//! sent is remembered here too (in memory: every new session is sent the policy again).

use std::path::PathBuf;
use std::sync::Mutex;

use rewind_formats::policy::Policy;

use super::group::Group;
use super::{Result, StoreError};

/// The policy file in a group's directory.
pub const POLICY_FILE: &str = "policy.json";

/// A group's policy and its delivery.
#[derive(Debug, Default)]
pub(crate) struct GroupPolicy {
    current: Option<Policy>,
    /// The version last sent to the agent in a CONTROL frame.
    delivered: Option<u64>,
    /// What the agent answered to the last one it refused.
    refused: Option<String>,
}

impl GroupPolicy {
    /// The policy stored in `dir`, if any. A file that does not parse or validate is an error:
    /// the group must not run silently without the policy it was given.
    pub(crate) fn load(dir: &std::path::Path) -> Result<Mutex<GroupPolicy>> {
        let path = dir.join(POLICY_FILE);
        let current = match std::fs::read(&path) {
            Ok(b) => {
                let p: Policy = serde_json::from_slice(&b).map_err(|e| StoreError::Invalid {
                    what: "policy file",
                    why: format!("{}: {e}", path.display()),
                })?;
                p.validate().map_err(|e| StoreError::Invalid {
                    what: "policy file",
                    why: format!("{}: {e}", path.display()),
                })?;
                Some(p)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(StoreError::io("read", &path)(e)),
        };
        Ok(Mutex::new(GroupPolicy {
            current,
            ..GroupPolicy::default()
        }))
    }
}

/// What `GET /v1/groups` shows of a group's policy.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PolicyStatus {
    pub name: Option<String>,
    pub version: Option<u64>,
    pub delivered: Option<u64>,
    pub refused: Option<String>,
}

impl Group {
    /// The policy the target runs for this group.
    pub fn policy(&self) -> Option<Policy> {
        self.policy.lock().expect("policy lock").current.clone()
    }

    pub fn policy_status(&self) -> PolicyStatus {
        let p = self.policy.lock().expect("policy lock");
        PolicyStatus {
            name: p.current.as_ref().map(|c| c.name.clone()),
            version: p.current.as_ref().map(|c| c.version),
            delivered: p.delivered,
            refused: p.refused.clone(),
        }
    }

    /// Make `policy` the group's (validated by the caller): durable in `policy.json` first,
    /// then its retention window in the manifest.
    pub fn set_policy(&self, policy: &Policy) -> Result<()> {
        let path: PathBuf = self.dir.join(POLICY_FILE);
        let mut text = serde_json::to_vec_pretty(policy).expect("a policy serialises");
        text.push(b'\n');
        let mut p = self.policy.lock().expect("policy lock");
        super::files::write_atomic(&path, &text)?;
        p.current = Some(policy.clone());
        p.refused = None;
        drop(p);
        self.set_retention(policy.retention_secs.saturating_mul(1000))?;
        tracing::info!(group = %self.name, policy = %policy.name, version = policy.version, "policy set");
        Ok(())
    }

    /// Note that `version` was sent to the agent.
    pub(crate) fn policy_delivered(&self, version: u64) {
        let mut p = self.policy.lock().expect("policy lock");
        p.delivered = Some(version);
    }

    /// Note that the agent refused the policy it was sent, and why.
    pub(crate) fn policy_refused(&self, why: String) {
        self.policy.lock().expect("policy lock").refused = Some(why);
    }
}
