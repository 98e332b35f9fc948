//! The agent's settings: one struct, filled from flags and `--config FILE` (TOML, merged in
//! [`mod@file`]); it derives `Deserialize` and holds no clap types.

pub mod file;
pub mod fuzzing;

use std::fmt;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use rewind_formats::{DiskName, GroupName};

use crate::error::{Error, Result};
use crate::stream::wire::TlsClient;

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
    pub group: GroupName,
    /// The group's disks, in order: a record's disk index is the position here.
    pub disks: Vec<Disk>,
    /// Where the master target listens (or a relay in front of it): the first target tried.
    pub target: TargetAddr,
    /// More targets (relays, or the master target), tried in order after `target` when it
    /// fails (see `stream::sender::targets`).
    #[serde(default)]
    pub more_targets: Vec<TargetAddr>,
    /// Status file, control socket and markers live here.
    pub state_dir: PathBuf,
    /// zstd level for batches (1..=22, or -7..=-1 for zstd's fast levels).
    pub level: i32,
    /// The group's generation this agent announces in HELLO: 1 for a first protection; the
    /// bumped generation for reverse replication from a promoted replica. The target refuses
    /// any other.
    #[serde(default = "default_generation")]
    pub generation: u64,
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
    /// How the kernel and the capture files talk (FUSE over io_uring or `/dev/fuse`).
    #[serde(default)]
    pub fuse_transport: FuseTransport,
    /// Compress every batch at `level`, rather than only while the link is the bottleneck
    /// (see [`crate::stream::levels`]).
    #[serde(default)]
    pub fixed_level: bool,
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
    /// Serve Prometheus metrics on http://ADDR/metrics; `None` is off.
    #[serde(default)]
    pub metrics_listen: Option<SocketAddr>,
    /// The RPO this group should meet (seconds), exported as `rewind_rpo_target_seconds` for
    /// alerts; `None`: not exported.
    #[serde(default)]
    pub rpo_target_secs: Option<u64>,
    /// Mounted filesystems frozen (fsfreeze), in order, around each scheduled tag.
    #[serde(default)]
    pub tag_freeze: Vec<PathBuf>,
    /// Mutual TLS to a `tcp:` target: the site CA and this agent's certificate and key.
    #[serde(default)]
    pub tls: Option<TlsFiles>,
    /// Plain TCP without TLS, for tests only (loopback targets only): the target cannot tell
    /// this agent from any other local user claiming its name.
    #[serde(default)]
    pub insecure: bool,
    /// The TLS client built from `tls` by [`Settings::load_tls`] (once, at start: a missing or
    /// bad file fails the start, not the first connect).
    #[serde(skip)]
    pub tls_client: Option<TlsClient>,
}

fn default_generation() -> u64 {
    1
}

/// The files of a TLS identity, as `rewind-mtd ca init` and `ca issue` write them.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// The site CA (`ca.crt`): the only root the target's certificate may chain to.
    pub ca: PathBuf,
    /// This agent's certificate (`agents/NAME.crt`); its common name is the agent's identity.
    pub cert: PathBuf,
    /// Its private key (`agents/NAME.key`).
    pub key: PathBuf,
}

impl TlsFiles {
    /// The files in a directory laid out like `rewind-mtd ca` writes it: `DIR/ca.crt`,
    /// `DIR/agents/AGENT.crt`, `DIR/agents/AGENT.key`.
    pub fn in_dir(dir: &Path, agent: &str) -> TlsFiles {
        TlsFiles {
            ca: dir.join("ca.crt"),
            cert: dir.join("agents").join(format!("{agent}.crt")),
            key: dir.join("agents").join(format!("{agent}.key")),
        }
    }
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

/// The FUSE transport of the capture files.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum FuseTransport {
    /// FUSE over io_uring where the kernel offers it (the agent turns
    /// `/sys/module/fuse/parameters/enable_uring` on), else `/dev/fuse` (logged once).
    #[default]
    Auto,
    /// FUSE over io_uring or fail to start.
    Uring,
    /// `/dev/fuse` through fuser: a read and a write system call per request.
    DevFuse,
}

/// One protected disk: its name and the block device or image file behind it.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Disk {
    pub name: DiskName,
    pub path: PathBuf,
}

/// A disk as given (`--disk NAME=PATH` or a `[[disk]]` table), its name not checked yet: that
/// is [`crate::config::file`]'s call, which turns it into a [`Disk`].
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DiskSpec {
    pub name: String,
    pub path: PathBuf,
}

/// The target's address. Whether a TCP target may be reached (TLS, or `--insecure` on
/// loopback) is [`Settings::validate`]'s call.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum TargetAddr {
    Unix(PathBuf),
    /// `host` as given (a name or an address, without brackets): the name the target's
    /// certificate must carry.
    Tcp {
        host: String,
        addr: SocketAddr,
    },
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
            TargetAddr::Tcp { addr, .. } => write!(f, "tcp:{addr}"),
        }
    }
}

impl TargetAddr {
    /// `unix:PATH` or `tcp:HOST:PORT` (`HOST` a name, an IPv4 address or `[IPv6]`).
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
        let host = match hp.rsplit_once(':') {
            Some((h, _)) if !h.is_empty() => h.trim_start_matches('[').trim_end_matches(']'),
            _ => return Err(bad(format!("{hp:?}: expected HOST:PORT"))),
        };
        let addrs: Vec<SocketAddr> = hp
            .to_socket_addrs()
            .map_err(|e| bad(format!("{hp}: {e}")))?
            .collect();
        let Some(addr) = addrs.first().copied() else {
            return Err(bad(format!("{hp} resolves to no address")));
        };
        Ok(TargetAddr::Tcp {
            host: host.to_string(),
            addr,
        })
    }

    /// A TCP target whose every address is loopback (a name resolving also elsewhere is not).
    fn is_loopback(&self) -> bool {
        match self {
            TargetAddr::Unix(_) => true,
            TargetAddr::Tcp { addr, .. } => is_loopback(addr.ip()),
        }
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
    /// Every target, in the order they are tried.
    pub fn targets(&self) -> Vec<TargetAddr> {
        std::iter::once(&self.target)
            .chain(&self.more_targets)
            .cloned()
            .collect()
    }

    /// Checks what can be checked without touching the system: names, counts, the level.
    pub fn validate(&self) -> Result<()> {
        let name = |what: &'static str, n: &str| {
            rewind_formats::validate_name(n).map_err(|e| Error::Config {
                what,
                why: format!("{n:?}: {e}"),
            })
        };
        name("agent name", &self.agent)?;
        if self.generation == 0 {
            return Err(Error::Config {
                what: "--generation",
                why: "generations start at 1".into(),
            });
        }
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
            // (A DiskName is never a path step: no `/`, `.` or `..`.)
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
        self.validate_transport()
    }

    /// TLS for TCP targets; plain TCP only when asked for (`--insecure`) and on loopback; unix
    /// sockets are plain (their file permissions guard them), so TLS files with one are a mistake.
    fn validate_transport(&self) -> Result<()> {
        self.targets()
            .iter()
            .try_for_each(|t| self.validate_target(t))
    }

    fn validate_target(&self, t: &TargetAddr) -> Result<()> {
        let bad = |why: String| Error::Config {
            what: "--target",
            why,
        };
        match t {
            TargetAddr::Unix(_) if self.tls.is_some() => Err(bad(format!(
                "{t} is a unix socket, which is never TLS: drop the TLS files, or use a \
                 tcp:HOST:PORT target"
            ))),
            TargetAddr::Unix(_) if self.insecure => Err(bad(format!(
                "--insecure is for plain TCP; {t} is a unix socket (drop --insecure)"
            ))),
            TargetAddr::Unix(_) => Ok(()),
            TargetAddr::Tcp { .. } if self.tls.is_some() && self.insecure => Err(bad(format!(
                "{t}: both TLS files and --insecure given; choose one"
            ))),
            TargetAddr::Tcp { .. } if self.tls.is_some() => {
                if self.tls_client.is_none() {
                    return Err(Error::Config {
                        what: "TLS",
                        why: "the certificate files were not loaded (Settings::load_tls)".into(),
                    });
                }
                Ok(())
            }
            TargetAddr::Tcp { .. } if self.insecure && t.is_loopback() => {
                tracing::warn!(target = %t, "--insecure: plain TCP to the target, FOR TESTS ONLY: \
                    nothing proves this agent's identity; any local user could claim its name");
                Ok(())
            }
            TargetAddr::Tcp { .. } if self.insecure => Err(bad(format!(
                "{t} is not a loopback address: --insecure (plain TCP) is allowed only to \
                 loopback, as disk contents would cross the network in clear text; give \
                 --tls-dir (or --tls-ca, --tls-cert and --tls-key) for TLS"
            ))),
            TargetAddr::Tcp { .. } if t.is_loopback() => Err(bad(format!(
                "{t}: TCP needs TLS: give --tls-dir (or --tls-ca, --tls-cert and --tls-key); \
                 for plain TCP to a loopback target, --insecure"
            ))),
            TargetAddr::Tcp { .. } => Err(bad(format!(
                "{t}: TCP needs TLS (disk contents would cross the network in clear text): \
                 give --tls-dir DIR (the target's `rewind-mtd ca` directory, or a copy with \
                 ca.crt and agents/AGENT.crt/.key), or --tls-ca, --tls-cert and --tls-key"
            ))),
        }
    }

    /// Reads and checks the TLS files (if any) and builds the client once; call before
    /// [`Settings::validate`] (`Agent::start`).
    pub fn load_tls(&mut self) -> Result<()> {
        if let (Some(files), None) = (&self.tls, &self.tls_client) {
            self.tls_client = Some(TlsClient::load(files)?);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse() {
        assert_eq!(
            TargetAddr::parse("unix:/run/x.sock").unwrap(),
            TargetAddr::Unix("/run/x.sock".into())
        );
        assert_eq!(
            TargetAddr::parse("tcp:127.0.0.1:7000").unwrap(),
            TargetAddr::Tcp {
                host: "127.0.0.1".into(),
                addr: "127.0.0.1:7000".parse().unwrap()
            }
        );
        assert!(matches!(
            TargetAddr::parse("tcp:[::1]:7000").unwrap(),
            TargetAddr::Tcp { host, .. } if host == "::1"
        ));
        assert!(matches!(
            TargetAddr::parse("tcp:localhost:7000").unwrap(),
            TargetAddr::Tcp { host, .. } if host == "localhost"
        ));
        // A remote address parses; whether it may be used is validate's call.
        assert!(TargetAddr::parse("tcp:192.0.2.1:7000").is_ok());
        assert_eq!(
            TargetAddr::parse("tcp:192.0.2.1:7000").unwrap().to_string(),
            "tcp:192.0.2.1:7000"
        );
        assert!(TargetAddr::parse("http://x").is_err());
        assert!(TargetAddr::parse("unix:").is_err());
        assert!(TargetAddr::parse("tcp::7000").is_err());
        assert!(TargetAddr::parse("tcp:7000").is_err());
    }

    fn settings(target: &str) -> Settings {
        Settings {
            agent: "a".into(),
            group: GroupName::new("g").unwrap(),
            disks: vec![Disk {
                name: DiskName::new("d0").unwrap(),
                path: "/dev/null".into(),
            }],
            target: TargetAddr::parse(target).unwrap(),
            more_targets: vec![],
            state_dir: "/tmp".into(),
            level: 1,
            generation: 1,
            mount_dir: "/tmp/m".into(),
            links_dir: "/tmp/l".into(),
            max_queue_bytes: 64 << 20,
            fuse_threads: 1,
            io_engine: IoEngine::Sync,
            fuse_transport: FuseTransport::DevFuse,
            fixed_level: false,
            spool_bytes: 0,
            bandwidth_bytes_per_sec: None,
            tag_every_secs: None,
            metrics_listen: None,
            rpo_target_secs: None,
            tag_freeze: vec![],
            tls: None,
            insecure: false,
            tls_client: None,
        }
    }

    fn refused(s: &Settings) -> String {
        s.validate().unwrap_err().to_string()
    }

    #[test]
    fn transport_rules() {
        assert!(settings("unix:/run/x.sock").validate().is_ok());
        // TCP without TLS: refused, saying what to do.
        let e = refused(&settings("tcp:192.0.2.1:7000"));
        assert!(e.contains("TLS") && e.contains("--tls-dir"), "{e}");
        let e = refused(&settings("tcp:127.0.0.1:7000"));
        assert!(e.contains("--insecure") && e.contains("--tls-dir"), "{e}");
        // --insecure: loopback only.
        let mut s = settings("tcp:127.0.0.1:7000");
        s.insecure = true;
        assert!(s.validate().is_ok());
        let mut s = settings("tcp:[::1]:7000");
        s.insecure = true;
        assert!(s.validate().is_ok());
        let mut s = settings("tcp:192.0.2.1:7000");
        s.insecure = true;
        let e = refused(&s);
        assert!(e.contains("not a loopback address"), "{e}");
        // TLS files with a unix target, or with --insecure: a mistake, said so.
        let files = TlsFiles::in_dir(Path::new("/etc/rewind"), "a");
        assert_eq!(files.cert, Path::new("/etc/rewind/agents/a.crt"));
        let mut s = settings("unix:/run/x.sock");
        s.tls = Some(files.clone());
        assert!(refused(&s).contains("never TLS"));
        let mut s = settings("tcp:192.0.2.1:7000");
        s.tls = Some(files.clone());
        s.insecure = true;
        assert!(refused(&s).contains("choose one"));
        // TLS files given but not loaded: never a silent plain connection.
        let mut s = settings("tcp:192.0.2.1:7000");
        s.tls = Some(files);
        assert!(refused(&s).contains("not loaded"));
    }

    #[test]
    fn missing_tls_files_are_named() {
        let mut s = settings("tcp:192.0.2.1:7000");
        s.tls = Some(TlsFiles::in_dir(Path::new("/nonexistent/ca-dir"), "a"));
        let e = s.load_tls().unwrap_err();
        let text = format!(
            "{e}: {}",
            std::error::Error::source(&e).map_or(String::new(), |s| s.to_string())
        );
        assert!(text.contains("/nonexistent/ca-dir/ca.crt"), "{text}");
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
