//! The system OpenSSH client, run as a process: push-install never speaks SSH itself.
//!
//! Every call is `ssh -o BatchMode=yes` (a key, never a password prompt) with the site's own
//! known_hosts file (`STATE/ssh/known_hosts`) and `StrictHostKeyChecking=yes`: a host whose key
//! the site does not know is refused, unless `--accept-new-host-key` switches to `accept-new`
//! (a new host's key is learnt; a changed key is still refused).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

/// Where to connect: `USER@HOST[:PORT]`, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dest {
    pub user: String,
    /// A DNS name, an IPv4 address, or an IPv6 address (without brackets).
    pub host: String,
    pub port: u16,
}

impl Dest {
    /// `USER@HOST[:PORT]` (IPv6 as `USER@[ADDR]:PORT`); port 22 when not given.
    pub fn parse(s: &str) -> Result<Dest> {
        let what = || format!("--ssh {s:?}: give USER@HOST[:PORT]");
        let (user, rest) = s.split_once('@').with_context(what)?;
        check_user(user).with_context(what)?;
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (addr, after) = v6.split_once(']').with_context(what)?;
            addr.parse::<std::net::Ipv6Addr>()
                .with_context(|| format!("--ssh {s:?}: {addr:?} is not an IPv6 address"))?;
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':').with_context(what)?),
            };
            (addr.to_string(), port)
        } else {
            match rest.split_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (rest.to_string(), None),
            }
        };
        if !rest.starts_with('[') {
            check_host(&host).with_context(what)?;
        }
        let port = match port {
            None => 22,
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 => n,
                _ => bail!("--ssh {s:?}: port {p:?} is not a number from 1 to 65535"),
            },
        };
        Ok(Dest {
            user: user.to_string(),
            host,
            port,
        })
    }

    /// As the user gave it, for messages.
    pub fn display(&self) -> String {
        if self.host.contains(':') {
            format!("{}@[{}]:{}", self.user, self.host, self.port)
        } else {
            format!("{}@{}:{}", self.user, self.host, self.port)
        }
    }
}

/// A POSIX login name: `[a-z_][a-z0-9_-]*`, at most 32 bytes.
fn check_user(u: &str) -> Result<()> {
    let ok = !u.is_empty()
        && u.len() <= 32
        && u.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && u.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if !ok {
        bail!("user {u:?} is not a login name ([a-z_][a-z0-9_-]*, at most 32 characters)");
    }
    Ok(())
}

/// A DNS name or IPv4 address: labels of `[A-Za-z0-9-]`, not starting with `-` (which ssh
/// would take for an option).
fn check_host(h: &str) -> Result<()> {
    let ok = !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if !ok {
        bail!("host {h:?} is not a DNS name or an address");
    }
    Ok(())
}

/// How every `ssh` call is made.
pub struct Ssh {
    pub dest: Dest,
    pub identity: Option<PathBuf>,
    pub known_hosts: PathBuf,
    pub accept_new: bool,
}

/// What a remote command printed.
pub struct Output {
    pub stdout: String,
}

impl Ssh {
    fn command(&self) -> Command {
        let mut c = Command::new("ssh");
        let checking = if self.accept_new { "accept-new" } else { "yes" };
        c.args(["-o", "BatchMode=yes"])
            .args(["-o", &format!("StrictHostKeyChecking={checking}")])
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", self.known_hosts.display()))
            .args(["-o", "GlobalKnownHostsFile=/dev/null"])
            // The site's file lists hosts by name, for whoever reviews it.
            .args(["-o", "HashKnownHosts=no"])
            .args(["-o", "ConnectTimeout=15"])
            .args(["-o", "ServerAliveInterval=15"])
            .args(["-o", "LogLevel=ERROR"]);
        if let Some(i) = &self.identity {
            c.arg("-i").arg(i).args(["-o", "IdentitiesOnly=yes"]);
        }
        c.args(["-p", &self.dest.port.to_string(), "-l", &self.dest.user])
            .arg(&self.dest.host);
        c
    }

    /// Whether the site's known_hosts has a key for the host (`ssh-keygen -F`).
    pub fn host_known(&self) -> bool {
        let name = if self.dest.port == 22 {
            self.dest.host.clone()
        } else {
            format!("[{}]:{}", self.dest.host, self.dest.port)
        };
        self.known_hosts.exists()
            && Command::new("ssh-keygen")
                .arg("-F")
                .arg(&name)
                .arg("-f")
                .arg(&self.known_hosts)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
    }

    /// Runs `script` with `sh -s` on the host (as root: through `sudo -n` for another user),
    /// the script on stdin so that nothing it holds (a key) shows on a command line there.
    pub fn script(&self, what: &str, script: &str) -> Result<Output> {
        let mut c = self.command();
        c.arg(self.as_root("sh -s"));
        self.run(what, c, script.as_bytes())
    }

    /// Runs `remote` (a shell command line) with `file` on its stdin.
    pub fn with_file(&self, what: &str, remote: &str, file: &Path) -> Result<Output> {
        let f = std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
        let mut c = self.command();
        c.arg(self.as_root(&format!("sh -c {}", quote(remote))))
            .stdin(f);
        self.finish(what, c)
    }

    fn as_root(&self, cmd: &str) -> String {
        if self.dest.user == "root" {
            cmd.to_string()
        } else {
            format!("sudo -n {cmd}")
        }
    }

    fn run(&self, what: &str, mut c: Command, input: &[u8]) -> Result<Output> {
        c.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c
            .spawn()
            .context("running ssh (is openssh-client installed?)")?;
        let mut stdin = child.stdin.take().expect("piped stdin");
        // A script is small; a remote that exits early closes the pipe (reported below).
        let _ = stdin.write_all(input);
        drop(stdin);
        let out = child.wait_with_output().context("waiting for ssh")?;
        self.check(what, out)
    }

    fn finish(&self, what: &str, mut c: Command) -> Result<Output> {
        let out = c
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .context("running ssh (is openssh-client installed?)")?;
        self.check(what, out)
    }

    fn check(&self, what: &str, out: std::process::Output) -> Result<Output> {
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() {
            return Ok(Output { stdout });
        }
        let d = self.dest.display();
        if stderr.contains("Host key verification failed")
            || stderr.contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
        {
            if stderr.contains("HAS CHANGED") || self.accept_new {
                bail!(
                    "{what}: the host key of {d} differs from the one in {}: refusing it \
                     (if the host was reinstalled, remove its line there after checking)\n{stderr}",
                    self.known_hosts.display()
                );
            }
            bail!(
                "{what}: the host key of {d} is not known (not in {}): refusing to connect. \
                 Check its fingerprint (ssh-keyscan -p {} {} | ssh-keygen -lf -) and run again \
                 with --accept-new-host-key",
                self.known_hosts.display(),
                self.dest.port,
                self.dest.host
            );
        }
        if out.status.code() == Some(255) {
            bail!("{what}: ssh to {d} failed: {stderr}");
        }
        if self.dest.user != "root" && sudo_refused(&stderr) {
            bail!(
                "{what} on {d}: {} cannot run commands as root without a password (`sudo -n`): \
                 give it passwordless sudo on the host, or connect as root@\n{stderr}",
                self.dest.user
            );
        }
        bail!(
            "{what} on {d} failed ({}): {stderr}{}{}",
            out.status,
            if stdout.trim().is_empty() { "" } else { "\n" },
            stdout.trim()
        );
    }
}

/// Whether `stderr` is `sudo -n` failing instead of asking: a password needed, no rights, or
/// no sudo on the host (its own messages, and the shell's when it is missing).
fn sudo_refused(stderr: &str) -> bool {
    [
        "sudo: a password is required",
        "is not in the sudoers file",
        "is not allowed to execute",
        "sudo: not found",
        "sudo: command not found",
    ]
    .iter()
    .any(|m| stderr.contains(m))
}

/// `s` quoted for a POSIX shell.
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sudo_refusals_are_recognised() {
        assert!(sudo_refused("sudo: a password is required"));
        assert!(sudo_refused(
            "deploy is not in the sudoers file.  This incident will be reported."
        ));
        assert!(sudo_refused("sh: 1: sudo: not found"));
        assert!(!sudo_refused(
            "sudo: unable to resolve host web01\ndpkg: error processing archive"
        ));
    }

    #[test]
    fn destinations() {
        let d = Dest::parse("root@web01.example.com").unwrap();
        assert_eq!(
            (d.user.as_str(), d.host.as_str(), d.port),
            ("root", "web01.example.com", 22)
        );
        let d = Dest::parse("deploy@127.0.0.1:2222").unwrap();
        assert_eq!((d.host.as_str(), d.port), ("127.0.0.1", 2222));
        let d = Dest::parse("root@[::1]:22").unwrap();
        assert_eq!(
            (d.host.as_str(), d.display()),
            ("::1", "root@[::1]:22".into())
        );
        for (bad, says) in [
            ("web01", "USER@HOST"),
            ("@web01", "login name"),
            ("Root@web01", "login name"),
            ("root@", "not a DNS name"),
            ("root@-oProxyCommand=x", "not a DNS name"),
            ("root@a b", "not a DNS name"),
            ("root@web01:0", "port \"0\""),
            ("root@web01:70000", "port \"70000\""),
            ("root@web01:", "port \"\""),
            ("root@[zz]:22", "not an IPv6"),
        ] {
            let e = format!("{:#}", Dest::parse(bad).unwrap_err());
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn quoting() {
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), r"'it'\''s'");
    }
}
