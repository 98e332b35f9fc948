//! The agent's settings: one struct, filled from flags and `--config FILE` (TOML, merged in
//! `config_file`); it derives `Deserialize` and holds no clap types.

use std::fmt;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

use serde::Deserialize;

use crate::error::{Error, Result};

/// The fastest zstd level accepted (negative levels trade ratio for speed).
pub const MIN_LEVEL: i32 = -7;

/// Largest number of disks in one group (record `disk` is a u16 on the wire; we want far fewer).
pub const MAX_DISKS: usize = 64;

/// Everything `rewind-agent run` needs.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// This agent's name in HELLO (defaults to the host name).
    pub agent: String,
    /// The protection group.
    pub group: String,
    /// The group's disks, in order: a record's disk index is the position here.
    pub disks: Vec<DiskSpec>,
    /// Where the master target listens.
    pub target: TargetAddr,
    /// Status file, control socket and markers live here.
    pub state_dir: PathBuf,
    /// zstd level for batches (1..=22, or -7..=-1 for zstd's fast levels).
    pub level: i32,
    /// The FUSE capture files are served here (one file per disk).
    pub mount_dir: PathBuf,
    /// `LINKS_DIR/GROUP/DISK` links to each disk's loop device.
    pub links_dir: PathBuf,
    /// Most bytes of captured data held in memory unacknowledged; writers block beyond it.
    pub max_queue_bytes: u64,
    /// fuser threads serving the capture files.
    pub fuse_threads: usize,
    /// How captured writes reach the backing disks.
    #[serde(default)]
    pub io_engine: IoEngine,
    /// Most bytes of captured data spooled to `STATE_DIR/GROUP.spool` when memory is full
    /// (0: no spool; bitmap mode as soon as memory is full).
    #[serde(default)]
    pub spool_bytes: u64,
    /// Most bytes per second sent to the target (BATCH frames); `None` is unlimited.
    #[serde(default)]
    pub bandwidth_bytes_per_sec: Option<u64>,
    /// Insert an `auto-YYYYMMDD-HHMMSS` tag this often (seconds); `None` is never.
    #[serde(default)]
    pub tag_every_secs: Option<u64>,
    /// Mounted filesystems frozen (fsfreeze), in order, around each scheduled tag.
    #[serde(default)]
    pub tag_freeze: Vec<PathBuf>,
}

/// The backing-disk write engine.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum IoEngine {
    /// io_uring: FUSE threads submit and return; a completion thread finishes each write. Falls
    /// back to `sync` (with a warning) where the kernel has no io_uring.
    #[default]
    Uring,
    /// A synchronous O_DIRECT pwrite on the FUSE thread (the queue depth is the thread count).
    Sync,
}

/// One protected disk: a name and the block device or image file behind it.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DiskSpec {
    pub name: String,
    pub path: PathBuf,
}

/// The target's address. Plain connections only, until TLS lands.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum TargetAddr {
    Unix(PathBuf),
    Tcp(SocketAddr),
}

impl TryFrom<String> for TargetAddr {
    type Error = Error;
    fn try_from(s: String) -> Result<TargetAddr> {
        TargetAddr::parse(&s)
    }
}

impl fmt::Display for TargetAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetAddr::Unix(p) => write!(f, "unix:{}", p.display()),
            TargetAddr::Tcp(a) => write!(f, "tcp:{a}"),
        }
    }
}

impl TargetAddr {
    /// `unix:PATH` or `tcp:HOST:PORT`. TCP is accepted only to loopback addresses: the data
    /// would otherwise cross a network in clear text, and TLS is not built yet.
    pub fn parse(s: &str) -> Result<TargetAddr> {
        let bad = |why: String| Error::Config {
            what: "--target",
            why,
        };
        if let Some(p) = s.strip_prefix("unix:") {
            if p.is_empty() {
                return Err(bad("unix: needs a socket path".into()));
            }
            return Ok(TargetAddr::Unix(PathBuf::from(p)));
        }
        let Some(hp) = s.strip_prefix("tcp:") else {
            return Err(bad(format!("{s:?}: expected unix:PATH or tcp:HOST:PORT")));
        };
        let addrs: Vec<SocketAddr> = hp
            .to_socket_addrs()
            .map_err(|e| bad(format!("{hp}: {e}")))?
            .collect();
        let Some(addr) = addrs.first().copied() else {
            return Err(bad(format!("{hp} resolves to no address")));
        };
        if !addrs.iter().all(|a| is_loopback(a.ip())) {
            return Err(bad(format!(
                "{hp} is not a loopback address: plain TCP would send disk contents in clear \
                 text, and TLS is not implemented yet; use a unix socket or a loopback address \
                 (with an SSH tunnel or similar for a remote target)"
            )));
        }
        Ok(TargetAddr::Tcp(addr))
    }
}

fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v| v.is_loopback()),
    }
}

impl DiskSpec {
    /// `NAME=PATH`.
    pub fn parse(s: &str) -> Result<DiskSpec> {
        let (name, path) = s.split_once('=').ok_or_else(|| Error::Config {
            what: "--disk",
            why: format!("{s:?}: expected NAME=PATH"),
        })?;
        if path.is_empty() {
            return Err(Error::Config {
                what: "--disk",
                why: format!("{s:?}: empty path"),
            });
        }
        Ok(DiskSpec {
            name: name.to_string(),
            path: PathBuf::from(path),
        })
    }
}

impl Settings {
    /// Checks what can be checked without touching the system: names, counts, the level.
    pub fn validate(&self) -> Result<()> {
        let name = |what: &'static str, n: &str| {
            rewind_formats::validate_name(n).map_err(|e| Error::Config {
                what,
                why: format!("{n:?}: {e}"),
            })
        };
        name("agent name", &self.agent)?;
        name("group name", &self.group)?;
        if self.disks.is_empty() {
            return Err(Error::Config {
                what: "--disk",
                why: "a group needs at least one disk".into(),
            });
        }
        if self.disks.len() > MAX_DISKS {
            return Err(Error::Config {
                what: "--disk",
                why: format!("{} disks; at most {MAX_DISKS} per group", self.disks.len()),
            });
        }
        for (i, d) in self.disks.iter().enumerate() {
            name("disk name", &d.name)?;
            if d.name.contains('/') || d.name == "." || d.name == ".." {
                return Err(Error::Config {
                    what: "--disk",
                    why: format!("disk name {:?} cannot be a file name", d.name),
                });
            }
            if self.disks[..i].iter().any(|o| o.name == d.name) {
                return Err(Error::Config {
                    what: "--disk",
                    why: format!("disk {} named twice", d.name),
                });
            }
        }
        if !(MIN_LEVEL..=22).contains(&self.level) || self.level == 0 {
            return Err(Error::Config {
                what: "--level",
                why: format!(
                    "{} is not a zstd level in 1..=22 (or {MIN_LEVEL}..=-1, zstd's fast levels)",
                    self.level
                ),
            });
        }
        if self.max_queue_bytes < 16 << 20 {
            return Err(Error::Config {
                what: "max queue bytes",
                why: "at least 16 MiB (two full-size sync chunks and a write)".into(),
            });
        }
        if self.bandwidth_bytes_per_sec == Some(0) {
            return Err(Error::Config {
                what: "--bandwidth-mib",
                why: "0 would never send anything; leave it out for no limit".into(),
            });
        }
        if self.tag_every_secs == Some(0) {
            return Err(Error::Config {
                what: "--tag-every",
                why: "at least 1 second".into(),
            });
        }
        if !self.tag_freeze.is_empty() && self.tag_every_secs.is_none() {
            // Said rather than ignored: the operator expects app-consistent tags to be taken.
            return Err(Error::Config {
                what: "--tag-freeze",
                why: "freezes around scheduled tags: give --tag-every (tag_every_secs) too".into(),
            });
        }
        for mp in &self.tag_freeze {
            if !mp.is_absolute() {
                return Err(Error::Config {
                    what: "--tag-freeze",
                    why: format!("{}: give the mount point as an absolute path", mp.display()),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_and_remote_tcp_is_refused() {
        assert_eq!(
            TargetAddr::parse("unix:/run/x.sock").unwrap(),
            TargetAddr::Unix("/run/x.sock".into())
        );
        assert!(matches!(
            TargetAddr::parse("tcp:127.0.0.1:7000").unwrap(),
            TargetAddr::Tcp(_)
        ));
        assert!(matches!(
            TargetAddr::parse("tcp:[::1]:7000").unwrap(),
            TargetAddr::Tcp(_)
        ));
        let e = TargetAddr::parse("tcp:192.0.2.1:7000")
            .unwrap_err()
            .to_string();
        assert!(e.contains("TLS"), "{e}");
        assert!(TargetAddr::parse("http://x").is_err());
        assert!(TargetAddr::parse("unix:").is_err());
    }

    #[test]
    fn disk_specs_parse() {
        assert_eq!(
            DiskSpec::parse("sda=/dev/sda").unwrap(),
            DiskSpec {
                name: "sda".into(),
                path: "/dev/sda".into()
            }
        );
        assert!(DiskSpec::parse("sda").is_err());
        assert!(DiskSpec::parse("sda=").is_err());
    }
}
