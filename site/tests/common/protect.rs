//! Protecting a host through the site and starting its agent from the bundle `protect` wrote.

use std::path::{Path, PathBuf};

use rewind_benches::harness::Agent;

use super::site::Site;

/// A host protected through the site, its agent running.
pub struct Protected {
    /// The target the site placed the group on.
    pub target: String,
    pub bundle: PathBuf,
    pub agent: Agent,
}

/// `rewind-site protect HOST --group GROUP --disk NAME=PATH... --policy POLICY [--target T]`,
/// then the agent from the bundle's `agent.toml` (its target, certificate and policy), its state
/// under `work/HOST`.
pub fn protect_one(
    site: &Site,
    work: &Path,
    host: &str,
    group: &str,
    disks: &[(&str, &Path)],
    policy: &str,
    target: Option<&str>,
) -> Protected {
    let specs: Vec<String> = disks
        .iter()
        .map(|(n, p)| format!("{n}={}", p.display()))
        .collect();
    let mut args = vec!["protect", host, "--group", group, "--policy", policy];
    for s in &specs {
        args.extend_from_slice(&["--disk", s]);
    }
    if let Some(t) = target {
        args.extend_from_slice(&["--target", t]);
    }
    let r = site.json(&args);
    let placed = r["target"].as_str().expect("placed target").to_string();
    let bundle = PathBuf::from(r["bundle"].as_str().expect("bundle"));
    let toml: toml::Table =
        toml::from_str(&std::fs::read_to_string(bundle.join("agent.toml")).unwrap()).unwrap();
    let addr = toml["target"]
        .as_str()
        .expect("target in agent.toml")
        .to_string();
    let dir = work.join(host);
    std::fs::create_dir_all(&dir).unwrap();
    let config = bundle.join("agent.toml");
    let agent = Agent::start(
        &dir,
        group,
        disks,
        &addr,
        &["--config", config.to_str().unwrap(), "--agent-name", host],
    );
    Protected {
        target: placed,
        bundle,
        agent,
    }
}
