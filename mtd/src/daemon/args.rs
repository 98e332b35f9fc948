//! The arguments of `rewind-mtd serve`, in one struct.

use std::path::PathBuf;
use std::time::Duration;

use crate::store::engine::EngineKind;

/// `rewind-mtd serve`: paths as given; [`super::serve::serve`] makes them absolute.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    #[arg(long)]
    pub data_dir: PathBuf,
    /// TCP address for agents: mutual TLS with --tls-dir, or plain with --insecure on loopback.
    #[arg(long)]
    pub listen: Option<String>,
    /// CA directory made by `rewind-mtd ca init`: agents must present a certificate from it.
    #[arg(long)]
    pub tls_dir: Option<PathBuf>,
    /// FOR TESTS ONLY: accept plain TCP (no TLS) on a loopback --listen address. Any local
    /// user can then connect and claim to be any agent.
    #[arg(long)]
    pub insecure: bool,
    /// Unix socket for agents on this host (root and --agent-uid only).
    #[arg(long)]
    pub unix: Option<PathBuf>,
    /// A uid besides root that may speak for agents on --unix (repeat). Other members of
    /// the access group are refused there.
    #[arg(long = "agent-uid")]
    pub agent_uids: Vec<u32>,
    /// A relay (`rewind-mtd relay`, its certificate from `ca issue --relay NAME`) that may speak
    /// for the agents it relays (repeat). Relay certificates of other names are refused.
    #[arg(long = "trusted-relay", value_parser = crate::names::parse_agent)]
    pub trusted_relays: Vec<String>,
    /// Open agent connections per listener; more are closed at once.
    #[arg(long, default_value_t = crate::server::DEFAULT_MAX_CONNS)]
    pub max_agent_conns: usize,
    /// Groups one agent may own; a HELLO that would create more is refused whole.
    #[arg(long, default_value_t = 64)]
    pub max_groups_per_agent: usize,
    /// Disks in one group.
    #[arg(long, default_value_t = 64)]
    pub max_disks_per_group: usize,
    /// Largest disk an agent may declare (an overlay keeps 1 bit per 4 KiB in memory).
    #[arg(long, default_value = "8TiB", value_parser = parse_bytes)]
    pub max_disk_size: u64,
    /// Estimated extent-index memory of one group's unmerged journal; batches past it are
    /// refused until the merger frees some.
    #[arg(long, default_value = "256MiB", value_parser = parse_bytes)]
    pub max_index_bytes_per_group: u64,
    /// Journal bytes one group may spend padding records smaller than 4 KiB to a block.
    #[arg(long, default_value = "4GiB", value_parser = parse_bytes)]
    pub max_padding_bytes_per_group: u64,
    /// How far ahead of this host's clock a batch may be stamped.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    pub max_clock_skew: Duration,
    /// Largest dedup window a relay may have per group (memory the target spends on each
    /// relayed group; 0 refuses deduplication). At most 256MiB.
    #[arg(long, default_value = "32MiB", value_parser = parse_dedup_window)]
    pub max_dedup_window: u32,
    #[arg(long, value_enum, default_value = "uring")]
    pub io_engine: EngineKind,
    /// Retention window for groups created by a first HELLO (e.g. 24h, 30m).
    #[arg(long, default_value = "24h", value_parser = crate::limits::parse_retention)]
    pub retention: Duration,
    /// Seal a journal segment at this size.
    #[arg(long, default_value = "256MiB", value_parser = parse_bytes)]
    pub segment_size: u64,
    /// How the journal stores data records: `off` (raw), `zstd` (level 1) or `zstd:LEVEL`
    /// (1..=19). Records that do not save a 4 KiB block stay raw either way.
    #[arg(long, default_value = "zstd")]
    pub journal_compression: crate::store::compression::JournalCompression,
    /// Seal an open segment after this long even if not full (so it can expire and merge).
    #[arg(long, default_value = "60s", value_parser = crate::limits::parse_interval)]
    pub seal_after: Duration,
    /// Space kept allocated (DATA_DIR/space-reserve) for the merger to spend when the disk is
    /// full, so it can still fold history and free journal space. Default: what one merge step
    /// may need, one segment, the chunk that may overshoot it (at most a segment or 64 MiB)
    /// and 1 MiB; 0 turns it off.
    #[arg(long, value_parser = parse_bytes)]
    pub space_reserve: Option<u64>,
    /// How often the merger looks for expired segments.
    #[arg(long, default_value = "1s", value_parser = crate::limits::parse_interval)]
    pub merge_interval: Duration,
    /// NBD exports on TCP (off by default; "none" for off). TCP needs TLS: --nbd-tls-dir and
    /// --nbd-clients (or --nbd-insecure on a loopback address, for tests).
    #[arg(long)]
    pub nbd_listen: Option<String>,
    /// NBD exports on a unix socket ("none" for no unix listener): root may read and write
    /// every export, members of the access group read them all.
    #[arg(long, default_value = "/run/rewind/nbd.sock")]
    pub nbd_unix: String,
    /// CA directory made by `rewind-mtd ca init`: NBD clients on TCP must negotiate STARTTLS
    /// and present a certificate from it.
    #[arg(long)]
    pub nbd_tls_dir: Option<PathBuf>,
    /// TOML file naming what each NBD client certificate may read and write:
    /// `[clients.NAME] read = ["GROUP" or "*"], write = ["GROUP"]`. Unnamed certificates get
    /// nothing.
    #[arg(long)]
    pub nbd_clients: Option<PathBuf>,
    /// TESTS ONLY: plain NBD on a loopback --nbd-listen address, no TLS; every local user may
    /// then read and write every export over it.
    #[arg(long)]
    pub nbd_insecure: bool,
    /// Members of the access group may also open writable NBD exports (overlays, @test,
    /// @live) on the unix socket.
    #[arg(long)]
    pub nbd_group_writable: bool,
    /// Connections per NBD listener; more are closed at once.
    #[arg(long, default_value_t = 256)]
    pub nbd_max_conns: usize,
    /// An NBD client must finish its handshake (TLS included) within this.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub nbd_handshake_timeout: Duration,
    /// Close a read-only NBD connection idle this long ("0" for never).
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    pub nbd_idle_timeout: Duration,
    /// Longest an NBD client may hold a read-only point open ("0" for no limit): past it the
    /// point is released so retention can merge, and the client's requests fail with EIO.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    pub nbd_max_point_age: Duration,
    /// Mount the FUSE view tree here (GROUP/DISK/latest.img, at/POINT.img, overlays/NAME.img).
    #[arg(long)]
    pub views: Option<PathBuf>,
    /// The control API's unix socket (what the `rewind` CLI talks to).
    #[arg(long, default_value = "/run/rewind/mtd.sock")]
    pub control: PathBuf,
    /// The control API on TCP too, for the configuration server (off unless given): mutual TLS
    /// with the CA of --tls-dir, and only site certificates (`ca issue --site`) are served.
    #[arg(long, requires = "tls_dir")]
    pub control_listen: Option<String>,
    /// Members of this group may connect to the daemon's unix sockets (mode 0660, owner
    /// root); created as a system group if missing. Nobody else may.
    #[arg(long, default_value = crate::access::DEFAULT_GROUP)]
    pub access_group: String,
    /// Serve Prometheus metrics on http://ADDR/metrics (plain HTTP, read-only; off unless
    /// given). Port 0 picks a free port (the ready file says which).
    #[arg(long)]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Long-term retention's object store: `file:///DIR` or `s3://BUCKET?endpoint=...&region=...`
    /// (S3 credentials from the standard AWS_* environment variables). Default:
    /// file://DATA_DIR/ltr. "none" turns long-term retention off.
    #[arg(long)]
    pub ltr_store: Option<String>,
    /// Local cache of chunks read from the long-term store. Default: DATA_DIR/ltr-cache.
    #[arg(long)]
    pub ltr_cache: Option<PathBuf>,
    /// Most bytes the long-term chunk cache holds.
    #[arg(long, default_value = "1GiB", value_parser = parse_bytes)]
    pub ltr_cache_size: u64,
    /// Chunk uploads in flight at once.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=256))]
    pub ltr_parallel: u64,
    /// How often long-term retention looks for points to archive.
    #[arg(long, default_value = "30s", value_parser = crate::limits::parse_interval)]
    pub ltr_interval: Duration,
    /// How often long-term garbage is collected.
    #[arg(long, default_value = "1h", value_parser = crate::limits::parse_interval)]
    pub ltr_gc_interval: Duration,
    /// Chunks no manifest names are deleted only once older than this.
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
    pub ltr_gc_grace: Duration,
    /// Lock every object long-term archives write with S3 Object Lock, in this mode, until
    /// its point's expiry (chunks a little longer); reused chunks are extended. Needs an s3://
    /// store whose bucket has Object Lock enabled, and static AWS_* credentials. Off by default.
    #[arg(long, value_enum)]
    pub ltr_object_lock: Option<crate::ltr::lock::LockMode>,
    /// TESTS ONLY: an "hour" of the long-term tiers lasts this long (a day 24 of them).
    #[arg(long, hide = true, value_parser = humantime::parse_duration)]
    pub ltr_test_hour: Option<Duration>,
    /// Write the bound addresses here once listening (agents' first, then `nbd ADDR`,
    /// `views PATH`, `control PATH`, `metrics ADDR`).
    #[arg(long)]
    pub ready_file: Option<PathBuf>,
}

/// A size with an optional unit (`256MiB`, `8TiB`).
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    parse_size::parse_size(s).map_err(|e| e.to_string())
}

/// A dedup window as a size (`32MiB`; 0 for none): a multiple of 4 KiB, at most 256 MiB. In
/// blocks, what HELLO and WELCOME carry.
pub fn parse_dedup_window(s: &str) -> Result<u32, String> {
    use rewind_formats::dedup::MAX_DEDUP_WINDOW_BLOCKS;
    let bytes = parse_bytes(s)?;
    let block = rewind_formats::BLOCK as u64;
    let max = u64::from(MAX_DEDUP_WINDOW_BLOCKS) * block;
    if bytes % block != 0 || bytes > max {
        return Err(format!(
            "bad dedup window {s:?}: give a multiple of 4KiB up to {}MiB (0 for none)",
            max >> 20
        ));
    }
    Ok((bytes / block) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedup_windows_are_whole_blocks_up_to_the_maximum() {
        assert_eq!(parse_dedup_window("32MiB"), Ok(8192));
        assert_eq!(parse_dedup_window("0"), Ok(0));
        assert!(parse_dedup_window("4097").is_err());
        assert!(parse_dedup_window("257MiB").is_err());
        assert!(parse_dedup_window("lots").is_err());
    }
}
