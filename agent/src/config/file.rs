//! `rewind-agent run --config FILE`: the TOML file's keys, and how they merge with flags.
//!
//! The file and the command line each fill a [`RunOptions`] (every field optional, named as in
//! the file). A flag given on the command line wins over the file; defaults apply only after
//! merging, so a default flag value can never hide a file's setting. See `agent.example.toml`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use rewind_formats::{DiskName, GroupName, NameKind};

use crate::config::{Disk, DiskSpec, FuseTransport, IoEngine, Settings, TargetAddr, TlsFiles};
use crate::error::{Error, Result};

pub const DEFAULT_LEVEL: i32 = 1;
pub const DEFAULT_GENERATION: u64 = 1;
pub const DEFAULT_LINKS_DIR: &str = "/dev/rewind";
/// The mount dir defaults to this joined with the group name.
pub const DEFAULT_MOUNT_ROOT: &str = "/run/rewind/agent";
pub const DEFAULT_MAX_QUEUE_MIB: u64 = 256;
pub const DEFAULT_SPOOL_MIB: u64 = 1024;
pub const DEFAULT_DRAIN_TIMEOUT_SECS: u64 = 30;
/// io_uring threads only submit, so few are needed.
pub const DEFAULT_FUSE_THREADS_URING: usize = 8;
/// With synchronous writes each thread does one pwrite at a time: this is the queue depth.
pub const DEFAULT_FUSE_THREADS_SYNC: usize = 32;

/// Every `run` setting, each optional: one layer (the file, or the flags).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunOptions {
    pub agent_name: Option<String>,
    pub group: Option<String>,
    /// `unix:PATH` or `tcp:HOST:PORT`.
    pub target: Option<String>,
    /// Several targets (relays, or the master target), tried in order: the agent moves to the
    /// next after repeated failures. After `target` if both are given.
    pub targets: Option<Vec<String>>,
    pub state_dir: Option<PathBuf>,
    pub level: Option<i32>,
    /// Compress every batch at `level` (default: only while the link is the bottleneck).
    pub fixed_level: Option<bool>,
    /// The group's generation announced in HELLO (default 1; reverse replication runs with the
    /// generation the failover bumped the group to).
    pub generation: Option<u64>,
    pub mount_dir: Option<PathBuf>,
    pub links_dir: Option<PathBuf>,
    pub max_queue_mib: Option<u64>,
    /// MiB of disk spool behind the memory queue (0: none).
    pub spool_mib: Option<u64>,
    pub fuse_threads: Option<usize>,
    pub io_engine: Option<IoEngine>,
    pub fuse_transport: Option<FuseTransport>,
    /// Seconds.
    pub drain_timeout: Option<u64>,
    /// MiB per second.
    pub bandwidth_mib: Option<u64>,
    pub tag_every_secs: Option<u64>,
    /// `HOST:PORT` for Prometheus metrics (`/metrics`); not given: off.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Seconds: the RPO the group should meet (for `rewind_rpo_target_seconds`).
    pub rpo_target_secs: Option<u64>,
    /// Empty means "not given" (flags then leave the file's list alone).
    #[serde(default)]
    pub tag_freeze: Vec<PathBuf>,
    /// `[[disk]]` tables in the file; empty means "not given".
    #[serde(default, rename = "disk")]
    pub disks: Vec<DiskSpec>,
    /// TLS files in the layout `rewind-mtd ca` writes (DIR/ca.crt, DIR/agents/AGENT.crt/.key);
    /// `tls_ca`, `tls_cert` and `tls_key` override one each, or give all three without it.
    pub tls_dir: Option<PathBuf>,
    pub tls_ca: Option<PathBuf>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Plain TCP to a loopback target.
    pub insecure: Option<bool>,
}

/// What `run` needs once the layers are merged and defaults applied.
#[derive(Clone, Debug)]
pub struct RunConfig {
    pub settings: Settings,
    /// On stop, how long to wait for the target to acknowledge what is queued.
    pub drain_timeout: Duration,
}

impl RunOptions {
    /// Reads and parses a settings file.
    pub fn load(path: &Path) -> Result<RunOptions> {
        let text = std::fs::read_to_string(path).map_err(Error::path("reading", path))?;
        RunOptions::parse(&text, path)
    }

    /// Parses a settings file's text; errors name `origin` and (from toml) the line and column.
    pub fn parse(text: &str, origin: &Path) -> Result<RunOptions> {
        toml::from_str(text).map_err(|e| Error::Config {
            what: "--config",
            why: format!("{}: {e}", origin.display()),
        })
    }

    /// `self` (the file) with every setting that `flags` gives replaced by the flag's.
    pub fn overridden_by(self, flags: RunOptions) -> RunOptions {
        // Lists are replaced whole, not appended to: `--disk` on the command line describes the
        // group, it does not add to the file's disks.
        RunOptions {
            agent_name: flags.agent_name.or(self.agent_name),
            group: flags.group.or(self.group),
            // The flags' targets replace the file's whole (like every list).
            target: flags.target.clone().or(self
                .target
                .filter(|_| flags.target.is_none() && flags.targets.is_none())),
            targets: flags.targets.clone().or(self
                .targets
                .filter(|_| flags.target.is_none() && flags.targets.is_none())),
            state_dir: flags.state_dir.or(self.state_dir),
            level: flags.level.or(self.level),
            fixed_level: flags.fixed_level.or(self.fixed_level),
            generation: flags.generation.or(self.generation),
            mount_dir: flags.mount_dir.or(self.mount_dir),
            links_dir: flags.links_dir.or(self.links_dir),
            max_queue_mib: flags.max_queue_mib.or(self.max_queue_mib),
            spool_mib: flags.spool_mib.or(self.spool_mib),
            fuse_threads: flags.fuse_threads.or(self.fuse_threads),
            io_engine: flags.io_engine.or(self.io_engine),
            fuse_transport: flags.fuse_transport.or(self.fuse_transport),
            drain_timeout: flags.drain_timeout.or(self.drain_timeout),
            bandwidth_mib: flags.bandwidth_mib.or(self.bandwidth_mib),
            tag_every_secs: flags.tag_every_secs.or(self.tag_every_secs),
            metrics_listen: flags.metrics_listen.or(self.metrics_listen),
            rpo_target_secs: flags.rpo_target_secs.or(self.rpo_target_secs),
            tag_freeze: or_list(flags.tag_freeze, self.tag_freeze),
            disks: or_list(flags.disks, self.disks),
            tls_dir: flags.tls_dir.or(self.tls_dir),
            tls_ca: flags.tls_ca.or(self.tls_ca),
            tls_cert: flags.tls_cert.or(self.tls_cert),
            tls_key: flags.tls_key.or(self.tls_key),
            insecure: flags.insecure.or(self.insecure),
        }
    }

    /// Applies defaults, checks that the required settings are there, and validates.
    /// `host_name` is asked only when no agent name is given.
    pub fn into_config(self, host_name: impl FnOnce() -> Result<String>) -> Result<RunConfig> {
        let tls_names = TlsNames {
            dir: self.tls_dir.clone(),
            ca: self.tls_ca.clone(),
            cert: self.tls_cert.clone(),
            key: self.tls_key.clone(),
        };
        let group = required(self.group, "group", "--group", "group = \"NAME\"")?;
        let mut targets: Vec<String> = self.target.into_iter().collect();
        targets.extend(self.targets.unwrap_or_default());
        let mut targets = targets.iter().map(|t| TargetAddr::parse(t));
        let target = targets.next().ok_or_else(|| Error::Config {
            what: "target",
            why: "not given: --target ADDR (repeat for several), or target = \"unix:PATH\" \
                  or targets = [...] in the config file"
                .into(),
        })??;
        let more_targets = targets.collect::<Result<Vec<_>>>()?;
        let state_dir = required(
            self.state_dir,
            "state dir",
            "--state-dir",
            "state_dir = \"DIR\"",
        )?;
        if self.disks.is_empty() {
            return Err(Error::Config {
                what: "disk",
                why: "missing: pass --disk NAME=PATH or add a [[disk]] table (name = \"...\", \
                      path = \"...\") to the config file"
                    .into(),
            });
        }
        let agent = match self.agent_name {
            Some(n) => n,
            None => host_name()?,
        };
        let tls = tls_names.files(&agent)?;
        let mib = |what: &'static str, n: u64| {
            n.checked_mul(1 << 20).ok_or_else(|| Error::Config {
                what,
                why: format!("{n} MiB is too large"),
            })
        };
        let io_engine = self.io_engine.unwrap_or_default();
        let group = typed_name(NameKind::Group, group, GroupName::new)?;
        let disks = self
            .disks
            .into_iter()
            .map(|d| {
                Ok(Disk {
                    name: typed_name(NameKind::Disk, d.name, DiskName::new)?,
                    path: d.path,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let mut settings = Settings {
            agent,
            mount_dir: self
                .mount_dir
                .unwrap_or_else(|| Path::new(DEFAULT_MOUNT_ROOT).join(group.as_str())),
            group,
            disks,
            target,
            more_targets,
            state_dir,
            level: self.level.unwrap_or(DEFAULT_LEVEL),
            fixed_level: self.fixed_level.unwrap_or(false),
            generation: self.generation.unwrap_or(DEFAULT_GENERATION),
            links_dir: self
                .links_dir
                .unwrap_or_else(|| PathBuf::from(DEFAULT_LINKS_DIR)),
            max_queue_bytes: mib(
                "max queue MiB",
                self.max_queue_mib.unwrap_or(DEFAULT_MAX_QUEUE_MIB),
            )?,
            spool_bytes: mib("spool MiB", self.spool_mib.unwrap_or(DEFAULT_SPOOL_MIB))?,
            fuse_threads: self.fuse_threads.unwrap_or(match io_engine {
                IoEngine::Uring => DEFAULT_FUSE_THREADS_URING,
                IoEngine::Sync => DEFAULT_FUSE_THREADS_SYNC,
            }),
            io_engine,
            fuse_transport: self.fuse_transport.unwrap_or_default(),
            bandwidth_bytes_per_sec: self
                .bandwidth_mib
                .map(|n| mib("bandwidth MiB/s", n))
                .transpose()?,
            tag_every_secs: self.tag_every_secs,
            metrics_listen: self.metrics_listen,
            rpo_target_secs: self.rpo_target_secs,
            tag_freeze: self.tag_freeze,
            tls,
            insecure: self.insecure.unwrap_or(false),
            tls_client: None,
        };
        // The TLS files are read now: a missing or bad one fails the start, not the first connect.
        settings.load_tls()?;
        settings.validate()?;
        check_names(&settings)?;
        if let Some(t) = settings.tag_every_secs.filter(|t| *t > MAX_TAG_EVERY_SECS) {
            return Err(Error::Config {
                what: "--tag-every",
                why: format!("{t}: at most {MAX_TAG_EVERY_SECS} seconds (31 days)"),
            });
        }
        let drain_secs = self.drain_timeout.unwrap_or(DEFAULT_DRAIN_TIMEOUT_SECS);
        if drain_secs == 0 || drain_secs > MAX_DRAIN_TIMEOUT_SECS {
            return Err(Error::Config {
                what: "drain_timeout",
                why: format!("{drain_secs}: give 1 to {MAX_DRAIN_TIMEOUT_SECS} seconds"),
            });
        }
        Ok(RunConfig {
            settings,
            drain_timeout: Duration::from_secs(drain_secs),
        })
    }
}

/// The TLS settings as given: a directory and/or single files.
struct TlsNames {
    dir: Option<PathBuf>,
    ca: Option<PathBuf>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
}

impl TlsNames {
    /// The TLS files named by `tls_dir` and/or `tls_ca`, `tls_cert`, `tls_key`.
    fn files(self, agent: &str) -> Result<Option<TlsFiles>> {
        let from_dir = self.dir.as_deref().map(|d| TlsFiles::in_dir(d, agent));
        let (ca, cert, key) = (self.ca, self.cert, self.key);
        Ok(match from_dir {
            Some(d) => Some(TlsFiles {
                ca: ca.unwrap_or(d.ca),
                cert: cert.unwrap_or(d.cert),
                key: key.unwrap_or(d.key),
            }),
            None => {
                match (ca, cert, key) {
                    (None, None, None) => None,
                    (Some(ca), Some(cert), Some(key)) => Some(TlsFiles { ca, cert, key }),
                    _ => return Err(Error::Config {
                        what: "TLS",
                        why: "give --tls-dir (tls_dir), or all three of --tls-ca, --tls-cert and \
                              --tls-key (tls_ca, tls_cert, tls_key)"
                            .into(),
                    }),
                }
            }
        })
    }
}

fn or_list<T>(flag: Vec<T>, file: Vec<T>) -> Vec<T> {
    if flag.is_empty() {
        file
    } else {
        flag
    }
}

/// A setting that has no default: the error says which flag or key gives it.
fn required<T>(v: Option<T>, what: &'static str, flag: &str, key: &str) -> Result<T> {
    v.ok_or_else(|| Error::Config {
        what,
        why: format!("missing: pass {flag} or set `{key}` in the config file (--config)"),
    })
}

/// The longest tag period (31 days): the schedule's deadline must not overflow.
const MAX_TAG_EVERY_SECS: u64 = 31 * 24 * 3600;

/// The longest drain a config may ask for (a day): its deadline must not overflow.
const MAX_DRAIN_TIMEOUT_SECS: u64 = 24 * 3600;

/// Each name against its own kind's limit (`rewind_formats::name`), so that whatever the config
/// file or flags say, the target accepts the names and every later use fits.
fn check_names(s: &Settings) -> Result<()> {
    let check = |kind: NameKind, n: &str| {
        rewind_formats::validate_name_of(kind, n).map_err(|e| Error::Config {
            what: kind.what(),
            why: format!("{n:?}: {e}"),
        })
    };
    check(NameKind::Agent, &s.agent)?;
    Ok(())
}

/// A group or disk name as given, checked against its kind's limit (the same error
/// [`check_names`] gives).
fn typed_name<T>(
    kind: NameKind,
    n: String,
    new: impl FnOnce(String) -> std::result::Result<T, rewind_formats::DecodeError>,
) -> Result<T> {
    new(n.clone()).map_err(|e| Error::Config {
        what: kind.what(),
        why: format!("{n:?}: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../agent.example.toml");

    fn no_host() -> Result<String> {
        panic!("the host name is not needed when agent_name is set")
    }

    #[test]
    fn the_example_parses_and_makes_settings() {
        let o = RunOptions::parse(EXAMPLE, Path::new("agent.example.toml")).unwrap();
        let c = o.into_config(no_host).unwrap();
        assert_eq!(c.settings.group.as_str(), "db");
        assert_eq!(c.settings.disks.len(), 2);
        assert_eq!(c.settings.disks[1].name.as_str(), "logs");
        assert_eq!(c.drain_timeout, Duration::from_secs(30));
        assert_eq!(c.settings.generation, 1, "generation 1 unless told");
    }

    #[test]
    fn every_key_parses() {
        let text = r#"
            agent_name = "a1"
            group = "g"
            target = "unix:/run/rewind/mtd.sock"
            state_dir = "/var/lib/rewind-agent/g"
            level = -3
            generation = 3
            mount_dir = "/run/m"
            links_dir = "/dev/rw"
            max_queue_mib = 64
            fuse_threads = 4
            io_engine = "sync"
            drain_timeout = 5
            bandwidth_mib = 10
            tag_every_secs = 900
            tag_freeze = ["/srv/db", "/srv/logs"]

            [[disk]]
            name = "d0"
            path = "/dev/vdb"
        "#;
        let c = RunOptions::parse(text, Path::new("t.toml"))
            .unwrap()
            .into_config(no_host)
            .unwrap();
        let s = &c.settings;
        assert_eq!(s.agent, "a1");
        assert_eq!(s.target, TargetAddr::Unix("/run/rewind/mtd.sock".into()));
        assert_eq!(s.level, -3);
        assert_eq!(s.generation, 3);
        assert_eq!(s.mount_dir, PathBuf::from("/run/m"));
        assert_eq!(s.links_dir, PathBuf::from("/dev/rw"));
        assert_eq!(s.max_queue_bytes, 64 << 20);
        assert_eq!(s.fuse_threads, 4);
        assert_eq!(s.io_engine, IoEngine::Sync);
        assert_eq!(s.bandwidth_bytes_per_sec, Some(10 << 20));
        assert_eq!(s.tag_every_secs, Some(900));
        assert_eq!(s.tag_freeze.len(), 2);
        assert_eq!(
            s.disks,
            vec![Disk {
                name: DiskName::new("d0").unwrap(),
                path: "/dev/vdb".into()
            }]
        );
        assert_eq!(c.drain_timeout, Duration::from_secs(5));
    }

    #[test]
    fn unknown_keys_are_refused_with_file_and_line() {
        let text = "group = \"g\"\ntarget = \"unix:/x\"\nbandwith_mib = 3\n";
        let e = RunOptions::parse(text, Path::new("/etc/rewind/agent.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/etc/rewind/agent.toml"), "{e}");
        assert!(e.contains("line 3"), "{e}");
        assert!(e.contains("bandwith_mib"), "{e}");

        // In a disk table too.
        let text = "[[disk]]\nname = \"d\"\npath = \"/x\"\nsize = 3\n";
        let e = RunOptions::parse(text, Path::new("a.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 4") && e.contains("size"), "{e}");
    }

    #[test]
    fn flags_override_the_file_and_defaults_come_last() {
        let file = RunOptions::parse(
            r#"
            agent_name = "file-agent"
            group = "g"
            target = "unix:/file.sock"
            state_dir = "/s"
            level = 9
            tag_every_secs = 60
            [[disk]]
            name = "d0"
            path = "/dev/vdb"
            "#,
            Path::new("a.toml"),
        )
        .unwrap();
        let flags = RunOptions {
            target: Some("unix:/flag.sock".into()),
            bandwidth_mib: Some(2),
            disks: vec![DiskSpec::parse("x=/dev/vdc").unwrap()],
            ..RunOptions::default()
        };
        let s = file
            .overridden_by(flags)
            .into_config(no_host)
            .unwrap()
            .settings;
        assert_eq!(s.target, TargetAddr::Unix("/flag.sock".into()));
        assert_eq!(s.agent, "file-agent");
        assert_eq!(
            s.level, 9,
            "a file value is not hidden by the flag's default"
        );
        assert_eq!(s.tag_every_secs, Some(60));
        assert_eq!(s.bandwidth_bytes_per_sec, Some(2 << 20));
        assert_eq!(
            s.disks[0].name.as_str(),
            "x",
            "--disk replaces the file's disks"
        );
        assert_eq!(s.mount_dir, PathBuf::from("/run/rewind/agent/g"));
        assert_eq!(s.fuse_threads, DEFAULT_FUSE_THREADS_URING);
    }

    #[test]
    fn several_targets_come_in_order_and_flags_replace_the_files_list() {
        let file = RunOptions::parse(
            r#"
            agent_name = "a"
            group = "g"
            targets = ["unix:/relay-a.sock", "unix:/relay-b.sock", "unix:/mtd.sock"]
            state_dir = "/s"
            [[disk]]
            name = "d0"
            path = "/dev/vdb"
            "#,
            Path::new("a.toml"),
        )
        .unwrap();
        let s = file.clone().into_config(no_host).unwrap().settings;
        assert_eq!(
            s.targets()
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            ["unix:/relay-a.sock", "unix:/relay-b.sock", "unix:/mtd.sock"]
        );
        // `--target` given twice on the command line: those two, nothing of the file's.
        let flags = RunOptions {
            targets: Some(vec!["unix:/x".into(), "unix:/y".into()]),
            ..RunOptions::default()
        };
        let s = file
            .clone()
            .overridden_by(flags)
            .into_config(no_host)
            .unwrap()
            .settings;
        assert_eq!(
            s.targets(),
            [TargetAddr::Unix("/x".into()), TargetAddr::Unix("/y".into())]
        );
        // A bad one anywhere in the list is refused, naming it.
        let flags = RunOptions {
            targets: Some(vec!["unix:/x".into(), "udp:1".into()]),
            ..RunOptions::default()
        };
        let e = file
            .overridden_by(flags)
            .into_config(no_host)
            .unwrap_err()
            .to_string();
        assert!(e.contains("udp:1"), "{e}");
    }

    #[test]
    fn a_missing_setting_names_its_flag_and_key() {
        let file = RunOptions::parse(
            "target = \"unix:/x\"\nstate_dir = \"/s\"\n[[disk]]\nname = \"d\"\npath = \"/x\"\n",
            Path::new("a.toml"),
        )
        .unwrap();
        let e = file.into_config(no_host).unwrap_err().to_string();
        assert!(e.contains("--group") && e.contains("group = "), "{e}");

        let e = RunOptions {
            group: Some("g".into()),
            target: Some("unix:/x".into()),
            state_dir: Some("/s".into()),
            ..RunOptions::default()
        }
        .into_config(no_host)
        .unwrap_err()
        .to_string();
        assert!(e.contains("--disk") && e.contains("[[disk]]"), "{e}");
    }

    /// A complete set of options, for tests that change one field.
    fn base() -> RunOptions {
        RunOptions {
            agent_name: Some("a".into()),
            group: Some("g".into()),
            target: Some("unix:/x".into()),
            state_dir: Some("/s".into()),
            disks: vec![DiskSpec::parse("d=/x").unwrap()],
            ..RunOptions::default()
        }
    }

    #[test]
    fn new_settings_are_validated() {
        let err = |o: RunOptions| o.into_config(no_host).unwrap_err().to_string();
        let e = err(RunOptions {
            tag_every_secs: Some(0),
            ..base()
        });
        assert!(e.contains("--tag-every"), "{e}");
        let e = err(RunOptions {
            bandwidth_mib: Some(0),
            ..base()
        });
        assert!(e.contains("--bandwidth-mib"), "{e}");
        let e = err(RunOptions {
            tag_freeze: vec!["/srv".into()],
            ..base()
        });
        assert!(e.contains("--tag-every"), "{e}");
        let e = err(RunOptions {
            tag_every_secs: Some(5),
            tag_freeze: vec!["srv".into()],
            ..base()
        });
        assert!(e.contains("absolute"), "{e}");
        assert!(base().into_config(no_host).is_ok());
    }

    /// Names from the config file are checked against their kind's limit (a 49-byte group could
    /// replicate but never fail over); path steps are refused.
    #[test]
    fn names_fit_their_limits() {
        let err = |o: RunOptions| o.into_config(no_host).unwrap_err().to_string();
        let e = err(RunOptions {
            group: Some("g".repeat(49)),
            ..base()
        });
        assert!(e.contains("group name") && e.contains("48"), "{e}");
        let e = err(RunOptions {
            agent_name: Some("a".repeat(65)),
            ..base()
        });
        assert!(e.contains("agent name") && e.contains("64"), "{e}");
        let e = err(RunOptions {
            disks: vec![DiskSpec::parse(&format!("{}=/x", "d".repeat(49))).unwrap()],
            ..base()
        });
        assert!(e.contains("disk name") && e.contains("48"), "{e}");
        let e = err(RunOptions {
            group: Some("..".into()),
            ..base()
        });
        assert!(e.contains("reserved"), "{e}");
        let e = err(RunOptions {
            drain_timeout: Some(u64::MAX),
            ..base()
        });
        assert!(e.contains("drain_timeout"), "{e}");
        let e = err(RunOptions {
            tag_every_secs: Some(u64::MAX),
            ..base()
        });
        assert!(e.contains("--tag-every"), "{e}");
        let ok = RunOptions {
            group: Some("g".repeat(48)),
            agent_name: Some("a".repeat(64)),
            ..base()
        };
        assert!(ok.into_config(no_host).is_ok());
    }
}
