//! A group's drill configuration: which probes prove the booted replica works, how long each may
//! take, and whether the VM may have a network. Kept with the group's boot command in its
//! failover state (`DATA_DIR/failover/GROUP.json`), set by `rewind drill configure`.
//!
//! A probe is written `KIND=ARG` on the command line and in the API:
//! - `console=REGEX`: a line of the VM's serial console matches REGEX;
//! - `command=SHELL`: SHELL runs inside the guest through its serial console (the boot command
//!   connects the serial port to `$REWIND_SERIAL`) and exits 0;
//! - `tcp=PORT`: something answers on 127.0.0.1:PORT in the VM's network namespace (a port
//!   qemu forwards to the guest, `hostfwd=tcp:127.0.0.1:PORT-:22`);
//! - `fs-check`: each disk's file system is checked through a read-only export of the point
//!   (e2fsck -fn or xfs_repair -n, by blkid's type). A group without a boot command gets this
//!   probe alone.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Longest a probe may wait, and the default.
pub const MAX_TIMEOUT_SECS: u64 = 3600;
pub const DEFAULT_TIMEOUT_SECS: u64 = 120;
/// Most probes one group runs.
pub const MAX_PROBES: usize = 16;
/// Longest regex or guest command.
const MAX_ARG: usize = 1024;

/// One check of a drill.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "arg", rename_all = "kebab-case")]
pub enum Probe {
    Console(String),
    Command(String),
    Tcp(u16),
    FsCheck,
}

impl Probe {
    /// Checks what the probe carries; the error says what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            Probe::Console(re) => {
                if re.len() > MAX_ARG {
                    return Err(format!("console regex longer than {MAX_ARG} bytes"));
                }
                regex::Regex::new(re).map_err(|e| format!("console regex {re:?}: {e}"))?;
            }
            Probe::Command(c) => {
                if c.trim().is_empty() || c.len() > MAX_ARG || c.contains(['\n', '\r']) {
                    return Err(format!(
                        "guest command {c:?}: want one line of at most {MAX_ARG} bytes"
                    ));
                }
            }
            Probe::Tcp(0) => return Err("tcp port 0: want 1..=65535".into()),
            Probe::Tcp(_) | Probe::FsCheck => {}
        }
        Ok(())
    }

    /// A short name for evidence and messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Probe::Console(_) => "console",
            Probe::Command(_) => "command",
            Probe::Tcp(_) => "tcp",
            Probe::FsCheck => "fs-check",
        }
    }
}

impl fmt::Display for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Probe::Console(r) => write!(f, "console={r}"),
            Probe::Command(c) => write!(f, "command={c}"),
            Probe::Tcp(p) => write!(f, "tcp={p}"),
            Probe::FsCheck => write!(f, "fs-check"),
        }
    }
}

impl FromStr for Probe {
    type Err = String;

    fn from_str(s: &str) -> Result<Probe, String> {
        let (kind, arg) = s.split_once('=').unwrap_or((s, ""));
        let p = match kind {
            "console" => Probe::Console(arg.to_string()),
            "command" => Probe::Command(arg.to_string()),
            "tcp" => Probe::Tcp(
                arg.parse()
                    .map_err(|_| format!("probe {s:?}: tcp=PORT wants a port 1..=65535"))?,
            ),
            "fs-check" if arg.is_empty() => Probe::FsCheck,
            _ => {
                return Err(format!(
                    "probe {s:?}: want console=REGEX, command=SHELL, tcp=PORT or fs-check"
                ))
            }
        };
        p.validate()?;
        Ok(p)
    }
}

/// A group's drill settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrillConfig {
    #[serde(default)]
    pub probes: Vec<Probe>,
    /// Each probe's limit (the console and TCP probes wait up to this from the boot).
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// Give the VM the host's network. Off by default: the boot command runs in a network
    /// namespace of its own (loopback only), so a booted replica cannot reach, or be reached
    /// by, what the production machine talks to.
    #[serde(default)]
    pub network: bool,
}

fn default_timeout() -> u64 {
    DEFAULT_TIMEOUT_SECS
}

impl Default for DrillConfig {
    fn default() -> Self {
        DrillConfig {
            probes: Vec::new(),
            timeout_secs: DEFAULT_TIMEOUT_SECS,
            network: false,
        }
    }
}

impl DrillConfig {
    /// Checks every field (the API and the state file both come from outside).
    pub fn validate(&self) -> Result<(), String> {
        if self.probes.len() > MAX_PROBES {
            return Err(format!("at most {MAX_PROBES} probes"));
        }
        if !(1..=MAX_TIMEOUT_SECS).contains(&self.timeout_secs) {
            return Err(format!(
                "timeout_secs {}: want 1..={MAX_TIMEOUT_SECS}",
                self.timeout_secs
            ));
        }
        for p in &self.probes {
            p.validate()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_parse_validate_and_print() {
        for s in [
            "console=rewind-vm: healthy$",
            "command=test -f /marker",
            "tcp=2222",
            "fs-check",
        ] {
            let p: Probe = s.parse().unwrap();
            assert_eq!(p.to_string(), s);
        }
        for (s, why) in [
            ("console=(", "regex"),
            ("tcp=0", "tcp port 0"),
            ("tcp=70000", "1..=65535"),
            ("command=", "one line"),
            ("ping=x", "want console"),
            ("fs-check=x", "want console"),
        ] {
            let e = s.parse::<Probe>().unwrap_err();
            assert!(e.contains(why), "{s}: {e}");
        }
        let j = serde_json::to_string(&Probe::Tcp(22)).unwrap();
        assert_eq!(j, r#"{"kind":"tcp","arg":22}"#);
        let c: DrillConfig = serde_json::from_str(r#"{"probes":[{"kind":"fs-check"}]}"#).unwrap();
        assert_eq!(c.timeout_secs, DEFAULT_TIMEOUT_SECS);
        assert!(!c.network);
        let bad = DrillConfig {
            timeout_secs: 0,
            ..DrillConfig::default()
        };
        assert!(bad.validate().unwrap_err().contains("timeout_secs"));
    }
}
