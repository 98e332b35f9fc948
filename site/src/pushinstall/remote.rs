//! Where things go on the host, and the shell scripts that put them there.
//!
//! Normally the package is installed with `dpkg -i` and the agent runs as the systemd unit
//! `rewind-agent@GROUP`. Under a test root (`--install-root DIR`, hidden) every path is below
//! DIR: the package is unpacked with `dpkg-deb -x` (the host's dpkg database is never touched,
//! its version recorded in DIR/var/lib/rewind-push/), and the unit's `ExecStart` (read from the
//! unpacked unit file, `%i` the group, its paths moved under DIR) is started with `setsid`, its
//! pid in DIR/run/rewind-agent@GROUP.pid: for hosts (and test machines) where systemd is not
//! PID 1. The WELCOME wait that follows proves the started agent really connected.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};

use super::ssh::quote;

/// The host's layout.
pub struct Layout {
    /// "" for the real root; else an absolute directory every path is under.
    pub root: String,
    pub group: String,
}

/// What the probe found on the host.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Found {
    /// The installed package's version ("" if none).
    pub version: String,
    /// sha256 of each settings file there, by file name.
    pub sums: BTreeMap<String, String>,
    /// Whether the group's agent runs.
    pub running: bool,
    /// Whether systemd is PID 1 there (`/run/systemd/system`).
    pub systemd: bool,
}

/// An `--install-root`: absolute, plain characters, no `..` (it goes into shell scripts and
/// every path on the host).
pub fn check_root(r: &str) -> Result<()> {
    let plain = r
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-'));
    if !r.starts_with('/') || r == "/" || !plain || r.split('/').any(|p| p == "..") {
        bail!("--install-root {r:?}: give an absolute directory of [A-Za-z0-9/._-], not /, no ..");
    }
    Ok(())
}

impl Layout {
    pub fn test_root(&self) -> bool {
        !self.root.is_empty()
    }

    /// `path` (absolute) on the host.
    pub fn path(&self, path: &str) -> String {
        format!("{}{path}", self.root.trim_end_matches('/'))
    }

    pub fn unit(&self) -> String {
        format!("rewind-agent@{}", self.group)
    }

    /// The settings directory the unit reads: /etc/rewind/agent/GROUP.
    pub fn settings_dir(&self) -> String {
        self.path(&format!("/etc/rewind/agent/{}", self.group))
    }

    pub fn state_dir(&self) -> String {
        self.path(&format!("/var/lib/rewind-agent/{}", self.group))
    }

    fn version_file(&self) -> String {
        self.path("/var/lib/rewind-push/rewind-agent.version")
    }

    fn pid_file(&self) -> String {
        self.path(&format!("/run/{}.pid", self.unit()))
    }

    pub fn log_file(&self) -> String {
        self.path(&format!("/var/log/{}.log", self.unit()))
    }

    pub fn unit_file(&self) -> String {
        self.path("/usr/lib/systemd/system/rewind-agent@.service")
    }

    /// Prints `version=`, `sum SHA NAME` per settings file, `running=`, `systemd=`.
    pub fn probe_script(&self, files: &[String]) -> String {
        let version = if self.test_root() {
            format!("cat {} 2>/dev/null || true", quote(&self.version_file()))
        } else {
            "dpkg-query -W -f='${Version}' rewind-agent 2>/dev/null || true".to_string()
        };
        let running = if self.test_root() {
            format!(
                "pid=$(cat {} 2>/dev/null) && kill -0 \"$pid\" 2>/dev/null",
                quote(&self.pid_file())
            )
        } else {
            format!("systemctl is-active --quiet {}", quote(&self.unit()))
        };
        let mut s = format!("echo \"version=$({version})\"\n");
        let dir = self.settings_dir();
        for f in files {
            let p = quote(&format!("{dir}/{f}"));
            s += &format!(
                "if [ -f {p} ]; then echo \"sum $(sha256sum < {p} | cut -d' ' -f1) {f}\"; fi\n"
            );
        }
        s += &format!("if {running}; then echo running=yes; else echo running=no; fi\n");
        s += "if [ -d /run/systemd/system ]; then echo systemd=yes; else echo systemd=no; fi\n";
        s
    }

    /// Writes the package (on stdin) to a new private temporary directory; prints its path.
    pub fn copy_command(&self) -> String {
        let tmp = self.path("/var/tmp");
        format!(
            "umask 077 && mkdir -p {t} && d=$(mktemp -d {t}/rewind-push.XXXXXX) && \
             cat > \"$d/rewind-agent.deb\" && echo \"$d\"",
            t = quote(&tmp)
        )
    }

    /// Installs the package copied to `dir`, then removes it.
    pub fn install_script(&self, dir: &str, version: &str) -> String {
        let deb = quote(&format!("{dir}/rewind-agent.deb"));
        let install = if self.test_root() {
            let vf = self.version_file();
            format!(
                "dpkg-deb -x {deb} {root} && mkdir -p {vd} && echo {v} > {vf}",
                root = quote(&self.root),
                vd = quote(vf.rsplit_once('/').map(|(d, _)| d).unwrap_or("/")),
                v = quote(version),
                vf = quote(&vf),
            )
        } else {
            format!("DEBIAN_FRONTEND=noninteractive dpkg -i {deb}")
        };
        format!("{install}\nrc=$?\nrm -rf {}\nexit $rc\n", quote(dir))
    }

    /// Writes `files` (name, content) into the settings directory (0700), each 0600 and
    /// replaced whole (written beside, then renamed).
    pub fn settings_script(&self, files: &[(String, Vec<u8>)]) -> String {
        use base64::Engine;
        let parent = self.path("/etc/rewind/agent");
        let dir = self.settings_dir();
        let mut s = format!(
            "set -e\numask 077\nmkdir -p {p} {d}\nchmod 700 {p} {d}\n",
            p = quote(&parent),
            d = quote(&dir)
        );
        for (name, content) in files {
            let tmp = quote(&format!("{dir}/.{name}.tmp"));
            let b64 = base64::engine::general_purpose::STANDARD.encode(content);
            s += &format!("base64 -d > {tmp} <<'REWIND_EOF'\n");
            for chunk in b64.as_bytes().chunks(76) {
                s += std::str::from_utf8(chunk).expect("base64 is ASCII");
                s += "\n";
            }
            s += "REWIND_EOF\n";
            s += &format!(
                "chmod 600 {tmp}\nmv -f {tmp} {}\n",
                quote(&format!("{dir}/{name}"))
            );
        }
        s
    }

    /// Starts the agent (`restart`: stop it first if it runs). With systemd: `systemctl enable`
    /// and `start` or `restart`. Under a test root: `exec_start` (the unit's command, moved
    /// under the root) with setsid, its pid written down; fails if it is gone a second later.
    pub fn start_script(&self, restart: bool, exec_start: Option<&[String]>) -> Result<String> {
        let Some(cmd) = exec_start else {
            let unit = quote(&self.unit());
            let verb = if restart { "restart" } else { "start" };
            return Ok(format!(
                "set -e\nsystemctl daemon-reload\nsystemctl enable --quiet {unit}\n\
                 systemctl {verb} {unit}\nsystemctl is-active {unit}\n"
            ));
        };
        let pid_file = quote(&self.pid_file());
        let log = quote(&self.log_file());
        let cmd = cmd.iter().map(|a| quote(a)).collect::<Vec<_>>().join(" ");
        let mut s = format!(
            "umask 077\nmkdir -p {run} {logdir} {state}\n",
            run = quote(&self.path("/run")),
            logdir = quote(&self.path("/var/log")),
            state = quote(&self.state_dir()),
        );
        if restart {
            // Like systemctl stop: SIGTERM, then wait (the unit's TimeoutStopSec, 120 s) while
            // the agent drains.
            s += &format!(
                "if pid=$(cat {pid_file} 2>/dev/null) && kill -0 \"$pid\" 2>/dev/null; then\n\
                 \x20 kill -TERM \"$pid\"\n\
                 \x20 n=0\n\
                 \x20 while kill -0 \"$pid\" 2>/dev/null && \
                 ! grep -q '^State:.*Z' /proc/\"$pid\"/status 2>/dev/null; do\n\
                 \x20   n=$((n+1)); [ $n -le 1200 ] || {{ echo \"agent $pid did not stop\" >&2; exit 1; }}\n\
                 \x20   sleep 0.1\n\
                 \x20 done\n\
                 fi\n"
            );
        }
        s += &format!(
            "setsid {cmd} </dev/null >>{log} 2>&1 &\n\
             pid=$!\n\
             echo \"$pid\" > {pid_file}\n\
             sleep 1\n\
             if ! kill -0 \"$pid\" 2>/dev/null; then\n\
             \x20 echo \"the agent exited at once; the end of {log}:\" >&2; tail -n 20 {log} >&2; exit 1\n\
             fi\n\
             echo \"pid=$pid\"\n"
        );
        Ok(s)
    }
}

/// Parses the probe's output.
pub fn parse_probe(out: &str) -> Result<Found> {
    let mut f = Found::default();
    let mut seen = (false, false, false);
    for line in out.lines() {
        if let Some(v) = line.strip_prefix("version=") {
            f.version = v.trim().to_string();
            seen.0 = true;
        } else if let Some(rest) = line.strip_prefix("sum ") {
            let (sum, name) = rest
                .split_once(' ')
                .context("probe: a sum line without name")?;
            f.sums.insert(name.to_string(), sum.to_string());
        } else if let Some(v) = line.strip_prefix("running=") {
            f.running = v == "yes";
            seen.1 = true;
        } else if let Some(v) = line.strip_prefix("systemd=") {
            f.systemd = v == "yes";
            seen.2 = true;
        }
    }
    if seen != (true, true, true) {
        bail!("the host's reply to the probe is incomplete: {out:?}");
    }
    Ok(f)
}

/// The unit's `ExecStart=` command (continuation lines joined, `%i` the group), its absolute
/// paths moved under `root`: what a test root runs instead of systemd.
pub fn exec_start(unit: &str, group: &str, root: &str) -> Result<Vec<String>> {
    let joined = unit.replace("\\\n", " ");
    let line = joined
        .lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix("ExecStart="))
        .context("the unit file has no ExecStart=")?;
    // Prefixes that change how systemd runs the command, not the command.
    let line = line.trim_start_matches(['-', '@', '+', '!', ':']);
    let root = root.trim_end_matches('/');
    let args: Vec<String> = line
        .split_whitespace()
        .map(|a| {
            let a = a.replace("%i", group).replace("%%", "%");
            if a.starts_with('/') {
                format!("{root}{a}")
            } else {
                a
            }
        })
        .collect();
    if args.is_empty() {
        bail!("the unit's ExecStart= is empty");
    }
    Ok(args)
}

#[cfg(test)]
mod tests {
    use super::*;

    const UNIT: &str = "[Service]\nType=exec\nExecStart=/usr/bin/rewind-agent run --config \
                        /etc/rewind/agent/%i/agent.toml \\\n    --state-dir /var/lib/rewind-agent/%i\n\
                        KillMode=mixed\n";

    #[test]
    fn exec_start_moves_under_the_root() {
        let a = exec_start(UNIT, "g1", "/tmp/r/").unwrap();
        assert_eq!(
            a,
            [
                "/tmp/r/usr/bin/rewind-agent",
                "run",
                "--config",
                "/tmp/r/etc/rewind/agent/g1/agent.toml",
                "--state-dir",
                "/tmp/r/var/lib/rewind-agent/g1"
            ]
        );
        assert!(exec_start("[Service]\n", "g1", "/r").is_err());
    }

    #[test]
    fn roots_and_probes() {
        check_root("/var/tmp/x-1/root").unwrap();
        for bad in ["relative", "/", "/a/../b", "/a b", "/a;rm"] {
            assert!(check_root(bad).is_err(), "{bad}");
        }
        let f =
            parse_probe("version=0.1.0-1\nsum abc agent.toml\nrunning=yes\nsystemd=no\n").unwrap();
        assert_eq!(f.version, "0.1.0-1");
        assert_eq!(f.sums["agent.toml"], "abc");
        assert!(f.running && !f.systemd);
        assert!(parse_probe("version=\n").is_err());
        let l = Layout {
            root: "/r".into(),
            group: "g1".into(),
        };
        assert_eq!(l.settings_dir(), "/r/etc/rewind/agent/g1");
        let real = Layout {
            root: String::new(),
            group: "g1".into(),
        };
        assert_eq!(real.settings_dir(), "/etc/rewind/agent/g1");
        assert!(real.probe_script(&[]).contains("dpkg-query"));
    }
}
