//! `rewind-site push-install`: install and start a host's agent over SSH, from the site's
//! machine (it reads the bundle `protect` wrote in the state directory).
//!
//! Steps, each reported on its own line:
//! 1. connect: the host's key must be in STATE/ssh/known_hosts (or `--accept-new-host-key`);
//!    a probe reads the installed version, the settings files' sums and whether the agent runs;
//! 2. protect: the group is protected through the site (`POST /v1/protect`), or was already
//!    for this host, disks and policy (then its bundle is reused);
//! 3. copy and 4. install the package, skipped when that version is installed;
//! 5. settings: the bundle's `agent.toml` (its paths those of the host), CA, certificate and
//!    key into /etc/rewind/agent/GROUP (0700, files 0600), skipped when unchanged;
//! 6. start: `systemctl enable` and start (restart after a change) `rewind-agent@GROUP`;
//! 7. WELCOME: wait until a poll of the group's target, made after the start, reports the
//!    group's agent connected (its HELLO answered with WELCOME).
//!
//! A second run with nothing changed does nothing and says so; a new package version upgrades
//! and restarts the agent. See [`remote`] for the hidden test root (`--install-root`).

pub mod remote;
pub mod ssh;
mod steps;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use crate::api::{GroupView, ProtectReply, ProtectRequest, Protection, Target};
use crate::cli::ConnArgs;
use crate::names;
use crate::state::StateDir;
use remote::Layout;
use ssh::{Dest, Ssh};
use steps::Steps;

/// What to install where (validated by [`Request::check`]).
pub struct Request {
    /// The host's name at the site (its certificate's and agent's name).
    pub host: String,
    pub ssh: Dest,
    pub identity: Option<PathBuf>,
    pub accept_new_host_key: bool,
    pub group: String,
    pub disks: Vec<(String, String)>,
    pub policy: String,
    pub target: Option<String>,
    /// The rewind-agent .deb.
    pub package: PathBuf,
    /// A test root on the host ("" for none).
    pub install_root: String,
    /// How long to wait for the agent's WELCOME.
    pub wait: Duration,
}

/// `NAME=PATH` disks: a disk name and an absolute path.
pub fn parse_disks(specs: &[String]) -> Result<Vec<(String, String)>> {
    if specs.is_empty() {
        bail!("give at least one --disk NAME=PATH");
    }
    let mut out: Vec<(String, String)> = Vec::new();
    for d in specs {
        let Some((n, p)) = d.split_once('=') else {
            bail!("--disk {d:?}: give NAME=PATH");
        };
        names::check("disk name", n).map_err(|e| anyhow::anyhow!("--disk {d:?}: {}", e.message))?;
        if !p.starts_with('/') || p.contains(['\0', '\n']) {
            bail!("--disk {d:?}: path {p:?} is not absolute");
        }
        if out.iter().any(|(m, _)| m == n) {
            bail!("--disk {d:?}: disk {n} is given twice");
        }
        out.push((n.to_string(), p.to_string()));
    }
    Ok(out)
}

impl Request {
    /// Names, paths and the package, checked before anything is done.
    pub fn check(&self) -> Result<()> {
        let name = |what: &str, s: &str| {
            names::check(what, s).map_err(|e| anyhow::anyhow!("{}", e.message))
        };
        name("host", &self.host)?;
        name("group name", &self.group)?;
        name("policy name", &self.policy)?;
        if let Some(t) = &self.target {
            name("target name", t)?;
        }
        if !self.install_root.is_empty() {
            remote::check_root(&self.install_root)?;
        }
        if let Some(i) = &self.identity {
            std::fs::File::open(i).with_context(|| format!("--identity {}", i.display()))?;
        }
        Ok(())
    }
}

/// The package's version, read with `dpkg-deb` (it must be rewind-agent).
pub fn package_version(deb: &Path) -> Result<String> {
    let out = Command::new("dpkg-deb")
        .arg("-f")
        .arg(deb)
        .args(["Package", "Version"])
        .output()
        .context("running dpkg-deb (is dpkg installed?)")?;
    if !out.status.success() {
        bail!(
            "--package {}: not a Debian package: {}",
            deb.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}: ")))
            .map(str::trim)
            .unwrap_or_default()
            .to_string()
    };
    let (name, version) = (field("Package"), field("Version"));
    if name != "rewind-agent" {
        bail!(
            "--package {}: it is {name:?}, not rewind-agent",
            deb.display()
        );
    }
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '~' | ':' | '-');
    if version.is_empty() || !version.chars().all(plain) {
        bail!(
            "--package {}: version {version:?} is not a Debian version",
            deb.display()
        );
    }
    Ok(version)
}

/// The agent.toml written on the host: the bundle's, with the host's paths for the TLS files
/// and state (and, under a test root, the mount and links directories too).
fn host_toml(bundle_toml: &str, layout: &Layout, bundle: &Path) -> Result<(String, Vec<String>)> {
    let mut t: toml::Table =
        toml::from_str(bundle_toml).context("reading the bundle's agent.toml")?;
    let dir = layout.settings_dir();
    let mut files = Vec::new();
    for key in ["tls_ca", "tls_cert", "tls_key"] {
        let p = t
            .get(key)
            .and_then(toml::Value::as_str)
            .with_context(|| format!("the bundle's agent.toml has no {key}"))?;
        let name = Path::new(p)
            .file_name()
            .and_then(|n| n.to_str())
            .with_context(|| format!("{key} {p:?}"))?
            .to_string();
        t.insert(key.into(), format!("{dir}/{name}").into());
        files.push(name);
    }
    t.insert("state_dir".into(), layout.state_dir().into());
    if layout.test_root() {
        let g = &layout.group;
        t.insert(
            "mount_dir".into(),
            layout.path(&format!("/run/rewind/agent/{g}")).into(),
        );
        t.insert("links_dir".into(), layout.path("/dev/rewind").into());
    }
    let text = format!(
        "# rewind-agent settings for group {}, written by `rewind-site push-install` from the \
         bundle {}.\n{}",
        layout.group,
        bundle.display(),
        toml::to_string(&t).context("writing agent.toml")?
    );
    Ok((text, files))
}

/// The disks (NAME, PATH) in a bundle's agent.toml.
fn bundle_disks(toml_text: &str) -> Vec<(String, String)> {
    let t: toml::Table = toml::from_str(toml_text).unwrap_or_default();
    t.get("disk")
        .and_then(toml::Value::as_array)
        .map(|ds| {
            ds.iter()
                .map(|d| {
                    let s = |k| d.get(k).and_then(toml::Value::as_str).unwrap_or("");
                    (s("name").to_string(), s("path").to_string())
                })
                .collect()
        })
        .unwrap_or_default()
}

fn sha256(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// The site's known_hosts, in STATE/ssh (0700).
fn known_hosts(state: &StateDir) -> Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let dir = state.root.join("ssh");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir.join("known_hosts"))
}

/// Runs the push installation; prints each step and reports it as a site job (`push-install`
/// of HOST, 7 steps), failed with the reason when a step fails.
pub async fn run(conn: &ConnArgs, req: Request) -> Result<()> {
    req.check()?;
    let version = package_version(&req.package)?;
    let mut steps = Steps::start(conn, &req.host).await?;
    let r = install(conn, &req, &version, &mut steps).await;
    if let Err(e) = &r {
        steps.fail(&format!("{e:#}")).await;
    }
    r
}

async fn install(
    conn: &ConnArgs,
    req: &Request,
    version: &str,
    steps: &mut Steps<'_>,
) -> Result<()> {
    let state = StateDir::new(&conn.state);
    let ssh = Ssh {
        dest: req.ssh.clone(),
        identity: req.identity.clone(),
        known_hosts: known_hosts(&state)?,
        accept_new: req.accept_new_host_key,
    };
    let layout = Layout {
        root: req.install_root.clone(),
        group: req.group.clone(),
    };
    let started = Instant::now();

    // 1. connect (the host key is checked before anything else is done).
    let expected = [
        "agent.toml".to_string(),
        rewind_mtd::tls::ca::CA_CERT.to_string(),
        format!("{}.crt", req.host),
        format!("{}.key", req.host),
    ];
    let known = ssh.host_known();
    let probe = ssh.script("connect", &layout.probe_script(&expected))?;
    let found = remote::parse_probe(&probe.stdout)?;
    if !layout.test_root() && !found.systemd {
        bail!(
            "{} does not run systemd (no /run/systemd/system): push-install starts the agent \
             as the unit {}; install and start it by hand there",
            req.ssh.display(),
            layout.unit()
        );
    }
    steps
        .say(
            "connect",
            &format!(
                "{} (host key {}); installed: {}",
                req.ssh.display(),
                if known { "known" } else { "new, learnt" },
                if found.version.is_empty() {
                    "none"
                } else {
                    &found.version
                }
            ),
        )
        .await;

    // 2. protect (or find the protection made before).
    let (bundle, target, fresh) = protect(conn, req).await?;
    steps
        .say(
            "protect",
            &format!(
                "group {} on target {} ({}); bundle {}",
                req.group,
                target,
                if fresh { "new" } else { "protected already" },
                bundle.display()
            ),
        )
        .await;

    // 3-4. the package.
    let upgrade = found.version != version;
    if upgrade {
        let copied = ssh.with_file("copy package", &layout.copy_command(), &req.package)?;
        let dir = copied.stdout.trim().to_string();
        if !dir.starts_with('/') || dir.contains(['\n', '\'']) {
            bail!("copy package: the host replied {dir:?}, not a directory");
        }
        let size = std::fs::metadata(&req.package)
            .map(|m| m.len())
            .unwrap_or(0);
        steps
            .say(
                "copy package",
                &format!(
                    "{} ({:.1} MiB) to {dir}",
                    req.package.display(),
                    size as f64 / 1048576.0
                ),
            )
            .await;
        ssh.script("install", &layout.install_script(&dir, version))?;
        steps
            .say(
                "install",
                &if found.version.is_empty() {
                    format!("rewind-agent {version} installed")
                } else {
                    format!("rewind-agent upgraded from {} to {version}", found.version)
                },
            )
            .await;
    } else {
        steps
            .say("copy package", &format!("skipped: {version} is installed"))
            .await;
        steps
            .say(
                "install",
                &format!("nothing to do: rewind-agent {version} is installed"),
            )
            .await;
    }

    // 5. the settings.
    let bundle_toml = std::fs::read_to_string(bundle.join("agent.toml"))
        .with_context(|| format!("reading {}/agent.toml", bundle.display()))?;
    let (toml_text, tls_files) = host_toml(&bundle_toml, &layout, &bundle)?;
    let mut files: Vec<(String, Vec<u8>)> = vec![("agent.toml".into(), toml_text.into_bytes())];
    for name in &tls_files {
        let p = bundle.join(name);
        files.push((
            name.clone(),
            std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?,
        ));
    }
    let want: BTreeMap<String, String> =
        files.iter().map(|(n, c)| (n.clone(), sha256(c))).collect();
    let settings_changed = want.iter().any(|(n, s)| found.sums.get(n) != Some(s));
    if settings_changed {
        ssh.script("settings", &layout.settings_script(&files))?;
        steps
            .say(
                "settings",
                &format!(
                    "{} written to {} (0700, files 0600)",
                    files
                        .iter()
                        .map(|(n, _)| n.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    layout.settings_dir()
                ),
            )
            .await;
    } else {
        steps
            .say(
                "settings",
                &format!("unchanged in {}", layout.settings_dir()),
            )
            .await;
    }

    // 6. start (restart after a change).
    let restart = found.running && (upgrade || settings_changed);
    let start_needed = !found.running || restart;
    if start_needed {
        let exec = if layout.test_root() {
            let unit = ssh
                .script(
                    "read unit",
                    &format!("cat {}\n", ssh::quote(&layout.unit_file())),
                )?
                .stdout;
            Some(remote::exec_start(&unit, &req.group, &layout.root)?)
        } else {
            None
        };
        let out = ssh.script("start", &layout.start_script(restart, exec.as_deref())?)?;
        let how = match &exec {
            Some(_) => format!(
                "{} (the unit's ExecStart under {}, setsid; {}; log {})",
                if restart { "restarted" } else { "started" },
                layout.root,
                out.stdout.trim(),
                layout.log_file()
            ),
            None => format!(
                "{} enabled and {}",
                layout.unit(),
                if restart { "restarted" } else { "started" }
            ),
        };
        steps.say("start", &how).await;
    } else {
        steps
            .say("start", &format!("nothing to do: {} runs", layout.unit()))
            .await;
    }

    // 7. WELCOME: a poll made after the start (a stopped agent exited by then) says the group's
    // agent is connected.
    let since = crate::db::now_ms();
    let log = if layout.test_root() {
        layout.log_file()
    } else {
        format!("journalctl -u {}", layout.unit())
    };
    let waited = wait_welcome(conn, &req.group, &target, since, req.wait)
        .await
        .with_context(|| format!("welcome (the agent's log on {}: {log})", req.ssh.display()))?;
    steps
        .say(
            "welcome",
            &format!(
                "the agent of {} is connected to target {target} (seen after {:.1} s)",
                req.group,
                waited.as_secs_f64()
            ),
        )
        .await;
    let changed = upgrade || settings_changed || start_needed || fresh;
    let summary = if changed {
        format!(
            "rewind-agent {version} installed and {} connected",
            layout.unit()
        )
    } else {
        format!(
            "rewind-agent {version} installed, settings unchanged, {} running and connected",
            layout.unit()
        )
    };
    steps
        .finish(
            &req.host,
            changed,
            &summary,
            started.elapsed().as_secs_f64(),
        )
        .await;
    Ok(())
}

/// The group's bundle on this machine: protected now, or before for the same host, disks and
/// policy. (bundle dir, target, protected now)
async fn protect(conn: &ConnArgs, req: &Request) -> Result<(PathBuf, String, bool)> {
    let protections: Vec<Protection> = conn.get("/v1/protections").await?;
    if let Some(p) = protections.iter().find(|p| p.group == req.group) {
        if p.host != req.host {
            bail!(
                "group {} is protected for host {}, not {}",
                req.group,
                p.host,
                req.host
            );
        }
        if p.policy != req.policy {
            bail!(
                "group {} was protected with policy {}, not {} (change it with `rewind-site \
                 policy assign {} --group {}`)",
                req.group,
                p.policy,
                req.policy,
                req.policy,
                req.group
            );
        }
        if let Some(t) = &req.target {
            if &p.target != t {
                bail!("group {} is on target {}, not {t}", req.group, p.target);
            }
        }
        let bundle = PathBuf::from(&p.bundle);
        let text = std::fs::read_to_string(bundle.join("agent.toml")).with_context(|| {
            format!(
                "reading the group's bundle {} (run push-install on the site's machine)",
                bundle.display()
            )
        })?;
        let had = bundle_disks(&text);
        if had != req.disks {
            bail!(
                "group {} was protected with disks {}, not {}",
                req.group,
                show_disks(&had),
                show_disks(&req.disks)
            );
        }
        return Ok((bundle, p.target.clone(), false));
    }
    let r: ProtectReply = conn
        .send(
            "POST",
            "/v1/protect",
            &ProtectRequest {
                host: req.host.clone(),
                group: req.group.clone(),
                disks: req.disks.clone(),
                policy: req.policy.clone(),
                target: req.target.clone(),
                out: None,
            },
        )
        .await?;
    let bundle = PathBuf::from(&r.bundle);
    if !bundle.join("agent.toml").exists() {
        bail!(
            "the site wrote the bundle to {} on its machine, which is not here: run \
             push-install on the site's machine",
            bundle.display()
        );
    }
    Ok((bundle, r.target, true))
}

fn show_disks(d: &[(String, String)]) -> String {
    d.iter()
        .map(|(n, p)| format!("{n}={p}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Waits until a poll of `target` made after `since_ms` reports the group's agent connected.
async fn wait_welcome(
    conn: &ConnArgs,
    group: &str,
    target: &str,
    since_ms: i64,
    limit: Duration,
) -> Result<Duration> {
    let t0 = Instant::now();
    loop {
        let targets: Vec<Target> = conn.get("/v1/targets").await?;
        let polled = targets
            .iter()
            .find(|t| t.name == target)
            .is_some_and(|t| t.last_seen_ms > since_ms);
        if polled {
            let groups: Vec<GroupView> = conn.get("/v1/groups").await?;
            if groups
                .iter()
                .any(|g| g.name == group && g.agent_connected == 1)
            {
                return Ok(t0.elapsed());
            }
        }
        if t0.elapsed() >= limit {
            bail!(
                "the agent of group {group} did not connect to target {target} within {limit:?} \
                 (see `rewind-site groups`)"
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disks_are_checked() {
        let d = parse_disks(&["d0=/dev/sdb".into(), "d1=/dev/sdc".into()]).unwrap();
        assert_eq!(d[1], ("d1".to_string(), "/dev/sdc".to_string()));
        for (bad, says) in [
            ("d0", "NAME=PATH"),
            ("d0=dev/sdb", "not absolute"),
            ("d/0=/dev/sdb", "disk name"),
        ] {
            let e = parse_disks(&[bad.into()]).unwrap_err().to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
        let e = parse_disks(&["d0=/a".into(), "d0=/b".into()]).unwrap_err();
        assert!(e.to_string().contains("twice"), "{e}");
        assert!(parse_disks(&[]).is_err());
    }

    #[test]
    fn host_toml_points_at_the_hosts_files() {
        let bundle = "agent_name = \"web01\"\ngroup = \"g1\"\ntarget = \"tcp:t:1\"\n\
                      state_dir = \"/var/lib/rewind-agent/g1\"\ntls_ca = \"/s/b/ca.crt\"\n\
                      tls_cert = \"/s/b/web01.crt\"\ntls_key = \"/s/b/web01.key\"\n\
                      [[disk]]\nname = \"d0\"\npath = \"/dev/sdb\"\n";
        let l = Layout {
            root: "/r".into(),
            group: "g1".into(),
        };
        let (text, files) = host_toml(bundle, &l, Path::new("/s/b")).unwrap();
        assert_eq!(files, ["ca.crt", "web01.crt", "web01.key"]);
        let t: toml::Table = toml::from_str(&text).unwrap();
        assert_eq!(
            t["tls_key"].as_str(),
            Some("/r/etc/rewind/agent/g1/web01.key")
        );
        assert_eq!(t["state_dir"].as_str(), Some("/r/var/lib/rewind-agent/g1"));
        assert_eq!(t["links_dir"].as_str(), Some("/r/dev/rewind"));
        assert_eq!(
            bundle_disks(&text),
            [("d0".to_string(), "/dev/sdb".to_string())]
        );
        let real = Layout {
            root: String::new(),
            group: "g1".into(),
        };
        let (text, _) = host_toml(bundle, &real, Path::new("/s/b")).unwrap();
        let t: toml::Table = toml::from_str(&text).unwrap();
        assert_eq!(t["tls_ca"].as_str(), Some("/etc/rewind/agent/g1/ca.crt"));
        assert!(t.get("links_dir").is_none());
    }
}
