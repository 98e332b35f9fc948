//! The agent's settings bundle that `protect` writes: a directory (0700) holding `agent.toml`
//! (for `rewind-agent run --config`), `ca.crt`, and the agent's certificate and key
//! (`HOST.crt`, `HOST.key`) issued from the site CA.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use rewind_formats::policy::Policy;
use serde::Serialize;

use crate::state::StateDir;

/// What goes into one bundle.
pub struct BundleSpec<'a> {
    pub host: &'a str,
    pub group: &'a str,
    pub disks: &'a [(String, String)],
    /// The target's agent listener, `HOST:PORT`.
    pub target_addr: &'a str,
    pub policy: &'a Policy,
    pub dir: &'a Path,
}

/// The agent TOML's keys (a subset of the agent's `RunOptions`, same names).
#[derive(Serialize)]
struct AgentToml<'a> {
    agent_name: &'a str,
    group: &'a str,
    target: String,
    state_dir: String,
    tls_ca: String,
    tls_cert: String,
    tls_key: String,
    level: i32,
    spool_mib: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    tag_every_secs: Option<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tag_freeze: Vec<&'a str>,
    disk: Vec<Disk<'a>>,
}

#[derive(Serialize)]
struct Disk<'a> {
    name: &'a str,
    path: &'a str,
}

/// Write the bundle (refuses a directory that exists: a bundle is never half-replaced).
/// Returns the TOML's path.
pub fn write(state: &StateDir, b: &BundleSpec<'_>) -> Result<PathBuf> {
    if b.dir.exists() {
        bail!("{} exists: give another --out", b.dir.display());
    }
    std::fs::create_dir_all(b.dir).with_context(|| format!("creating {}", b.dir.display()))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(b.dir, std::fs::Permissions::from_mode(0o700))?;
    let dir = b.dir.canonicalize()?;
    let issued = rewind_mtd::tls::ca::issue(
        &state.ca_dir(),
        rewind_mtd::tls::ca::Kind::Agent,
        b.host,
        Some(&dir),
        rewind_mtd::tls::ca::DEFAULT_DAYS,
    )
    .with_context(|| format!("issuing the agent certificate for {}", b.host))?;
    let ca = dir.join("ca.crt");
    std::fs::copy(state.ca_cert(), &ca).context("copying ca.crt")?;
    let toml = AgentToml {
        agent_name: b.host,
        group: b.group,
        target: format!("tcp:{}", b.target_addr),
        state_dir: format!("/var/lib/rewind-agent/{}", b.group),
        tls_ca: ca.display().to_string(),
        tls_cert: issued.cert.display().to_string(),
        tls_key: issued.key.display().to_string(),
        level: b.policy.level,
        spool_mib: b.policy.spool_mib,
        tag_every_secs: (b.policy.app_consistent_every_secs > 0)
            .then_some(b.policy.app_consistent_every_secs),
        tag_freeze: b.policy.freeze.iter().map(String::as_str).collect(),
        disk: b
            .disks
            .iter()
            .map(|(n, p)| Disk { name: n, path: p })
            .collect(),
    };
    let text = format!(
        "# rewind-agent settings for {} (group {}), written by `rewind-site protect` with policy \
         {} version {}.\n# Run: rewind-agent run --config {}\n{}",
        b.host,
        b.group,
        b.policy.name,
        b.policy.version,
        dir.join("agent.toml").display(),
        toml::to_string(&toml).context("writing the agent TOML")?
    );
    let path = dir.join("agent.toml");
    rewind_linux::atomic::write(&path, text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}
