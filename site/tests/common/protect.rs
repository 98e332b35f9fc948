//! Protecting a host through the site and starting its agent from the bundle `protect` wrote.

use std::path::{Path, PathBuf};

use rewind_benches::harness::Agent;
use serde_json::Value;

use super::site::Site;
use super::target::{add_target, target, wait_first_up, Target};

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

/// A sparse 16 MiB disk image at `work/disk0.img`, for a group of one disk.
pub fn disk_image(work: &Path) -> PathBuf {
    let image = work.join("disk0.img");
    std::fs::File::create(&image)
        .unwrap()
        .set_len(16 << 20)
        .unwrap();
    image
}

/// `rewind-site protect HOST --group g1 --disk d0=IMAGE --policy POLICY --target TARGET`: the
/// reply (its `bundle`, the `target` it placed g1 on).
pub fn protect_g1(site: &Site, host: &str, image: &Path, policy: &str, target: &str) -> Value {
    site.json(&[
        "protect",
        host,
        "--group",
        "g1",
        "--disk",
        &format!("d0={}", image.display()),
        "--policy",
        policy,
        "--target",
        target,
    ])
}

/// The harness's agent (it calls itself `test-agent`) for g1's disk d0 on `image`, with the
/// `agent.toml` of `bundle`, sending to `t`; its state under `work/agent`.
pub fn g1_agent(work: &Path, image: &Path, bundle: &Path, t: &Target) -> Agent {
    Agent::start(
        &work.join("agent"),
        "g1",
        &[("d0", image)],
        &format!("tcp:{}", t.agents),
        &["--config", bundle.join("agent.toml").to_str().unwrap()],
    )
}

/// [`disk_image`], [`protect_g1`] of `host` on the target registered as `name`, and
/// [`g1_agent`] from the bundle, sending to `t`: the running agent.
pub fn protect_g1_with_agent(
    site: &Site,
    work: &Path,
    host: &str,
    policy: &str,
    name: &str,
    t: &Target,
) -> Agent {
    let image = disk_image(work);
    let r = protect_g1(site, host, &image, policy, name);
    let bundle = PathBuf::from(r["bundle"].as_str().unwrap());
    g1_agent(work, &image, &bundle, t)
}

/// What the alert and console tests watch: target `t1` (of `site`'s CA) registered, a policy
/// `fast` with a short RPO target (6 s; an hour's retention), and once t1 is up, host
/// `test-agent`'s group g1 protected there (the harness's agent calls itself test-agent, and its
/// certificate must say the same), its agent running.
pub fn fast_g1_on_t1(site: &Site, work: &Path) -> (Target, Agent) {
    let t1 = target(work, &site.state, "t1");
    add_target(site, "t1", &t1);
    site.ok(&[
        "policy",
        "create",
        "fast",
        "--rpo",
        "6s",
        "--retention",
        "1h",
    ]);
    wait_first_up(site, "t1");
    let agent = protect_g1_with_agent(site, work, "test-agent", "fast", "t1", &t1);
    (t1, agent)
}
