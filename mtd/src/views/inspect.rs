//! `rewind-mtd inspect`: an offline report of a data directory's groups, segments and points.

use std::fmt::Write as _;

use rewind_formats::message::TagKind;
use serde::{Deserialize, Serialize};

use crate::store::group::Group;
use crate::store::points::format_ms;
use crate::store::Store;

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Report {
    pub data_dir: String,
    pub groups: Vec<GroupReport>,
    /// The file system of the data directory, where every journal lives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub space: Option<SpaceReport>,
}

/// Journal capacity and use, for placing new groups (the configuration server).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct SpaceReport {
    /// Size of the data directory's file system.
    pub capacity_bytes: u64,
    /// What unprivileged writers may still use there (`statvfs` f_bavail).
    pub free_bytes: u64,
    /// Journal bytes of every group.
    pub journal_bytes: u64,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct GroupReport {
    pub name: String,
    pub generation: u64,
    pub retention: String,
    pub horizon_seq: u64,
    pub durable_seq: u64,
    pub journal_bytes: u64,
    pub extents: usize,
    pub index_bytes: usize,
    pub disks: Vec<DiskReport>,
    pub segments: Vec<SegmentReport>,
    pub oldest_point: Option<PointReport>,
    pub newest_point: Option<PointReport>,
    pub tags: Vec<TagReport>,
    /// Resyncs (initial sync, bitmap resync): the points inside them are not recoverable.
    #[serde(default)]
    pub not_recoverable: Vec<UnrecoverableReport>,
    /// No resync is running: the newest point is recoverable.
    #[serde(default = "yes")]
    pub consistent: bool,
    /// The replication policy the target runs for the group, and what its agent was sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<crate::api::policy::PolicySummary>,
    /// The agent feeding the group, or the last one that did since the daemon started, with the
    /// software version its HELLO gave.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<crate::api::groups::AgentSeen>,
    /// The group's last drill and last verified point (the control API fills it in).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drill: Option<crate::api::drill::DrillBrief>,
    /// The group's last online verify (the control API fills it in).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<crate::verify::last::LastVerify>,
}

fn yes() -> bool {
    true
}

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct UnrecoverableReport {
    /// `initial-sync` or `resync`.
    pub name: String,
    pub from_seq: u64,
    /// The resync's last record (recoverable again from here); none while it runs.
    pub to_seq: Option<u64>,
    pub started: String,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct DiskReport {
    pub name: String,
    pub size_bytes: u64,
    pub extents: usize,
    pub index_bytes: usize,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct SegmentReport {
    pub id: u64,
    pub first_seq: u64,
    pub last_seq: u64,
    pub bytes: u64,
    pub state: String,
    pub chunks: usize,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct PointReport {
    pub seq: u64,
    pub time: String,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct TagReport {
    pub name: String,
    pub seq: u64,
    pub kind: TagKind,
    pub time: String,
}

pub fn report(store: &Store) -> Report {
    let groups: Vec<GroupReport> = store.groups().iter().map(|g| group_report(g)).collect();
    let space = nix::sys::statvfs::statvfs(&store.dir)
        .ok()
        .map(|s| SpaceReport {
            capacity_bytes: s.blocks() * s.fragment_size(),
            free_bytes: s.blocks_available() * s.fragment_size(),
            journal_bytes: groups.iter().map(|g| g.journal_bytes).sum(),
        });
    Report {
        data_dir: store.dir.display().to_string(),
        groups,
        space,
    }
}

/// One group's part of the report.
pub fn group_report(g: &Group) -> GroupReport {
    {
        let st = g.snapshot();
        let disks: Vec<DiskReport> = st
            .manifest
            .disks
            .iter()
            .zip(&st.indexes)
            .map(|(d, ix)| DiskReport {
                name: d.name.clone(),
                size_bytes: d.size_bytes,
                extents: ix.extents,
                index_bytes: ix.memory_bytes,
            })
            .collect();
        let range = st.points.time_range();
        let ps = g.policy_status();
        let policy =
            ps.name
                .zip(ps.version)
                .map(|(name, version)| crate::api::policy::PolicySummary {
                    name,
                    version,
                    delivered_version: ps.delivered,
                    agent_refused: ps.refused,
                });
        GroupReport {
            policy,
            agent: g.agent_seen(),
            drill: None,
            verify: None,
            name: g.name.clone(),
            generation: st.manifest.generation,
            retention: humantime::format_duration(std::time::Duration::from_millis(
                st.manifest.retention_ms,
            ))
            .to_string(),
            horizon_seq: st.manifest.horizon_seq,
            durable_seq: st.durable.0,
            journal_bytes: st.journal_bytes,
            extents: disks.iter().map(|d| d.extents).sum(),
            index_bytes: disks.iter().map(|d| d.index_bytes).sum(),
            disks,
            segments: st
                .segments
                .values()
                .map(|s| SegmentReport {
                    id: s.id,
                    first_seq: s.first_seq.0,
                    last_seq: s.last_seq.0,
                    bytes: s.len_bytes,
                    state: if s.sealed { "sealed" } else { "open" }.to_string(),
                    chunks: s.chunks,
                })
                .collect(),
            // Every seq from the first one in the journal is a point; the time table has a time
            // per chunk, so the oldest point's time is its chunk's.
            oldest_point: range.map(|((s, t), _)| PointReport {
                seq: st
                    .segments
                    .values()
                    .next()
                    .map_or(s.0, |seg| seg.first_seq.0),
                time: format_ms(t),
            }),
            newest_point: range.map(|(_, (s, t))| PointReport {
                seq: s.0,
                time: format_ms(t),
            }),
            not_recoverable: st
                .points
                .not_recoverable()
                .into_iter()
                .map(|w| UnrecoverableReport {
                    name: w.begin.name.clone(),
                    from_seq: w.begin.seq.0,
                    to_seq: w.end.map(|e| e.0),
                    started: format_ms(w.begin.timestamp_ms),
                })
                .collect(),
            consistent: st.points.consistent(),
            tags: st
                .points
                .tags()
                .iter()
                .map(|t| TagReport {
                    name: t.name.clone(),
                    seq: t.seq.0,
                    kind: t.kind,
                    time: format_ms(t.timestamp_ms),
                })
                .collect(),
        }
    }
}

/// Human-readable form of the report.
pub fn render(r: &Report) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "data dir {}", r.data_dir);
    if r.groups.is_empty() {
        let _ = writeln!(o, "no groups");
    }
    for g in &r.groups {
        let _ = writeln!(
            o,
            "\ngroup {}  generation {}  retention {}  durable seq {}  horizon seq {}",
            g.name, g.generation, g.retention, g.durable_seq, g.horizon_seq
        );
        let _ = writeln!(
            o,
            "  journal {} bytes in {} segments; index {} extents, {} bytes",
            g.journal_bytes,
            g.segments.len(),
            g.extents,
            g.index_bytes
        );
        let _ = writeln!(
            o,
            "  {:<16} {:>16} {:>10} {:>12}",
            "DISK", "SIZE", "EXTENTS", "INDEX BYTES"
        );
        for d in &g.disks {
            let _ = writeln!(
                o,
                "  {:<16} {:>16} {:>10} {:>12}",
                d.name, d.size_bytes, d.extents, d.index_bytes
            );
        }
        let _ = writeln!(
            o,
            "  {:<10} {:>12} {:>12} {:>14} {:>8} {:>7}",
            "SEGMENT", "FIRST SEQ", "LAST SEQ", "BYTES", "STATE", "CHUNKS"
        );
        for s in &g.segments {
            let _ = writeln!(
                o,
                "  {:<10} {:>12} {:>12} {:>14} {:>8} {:>7}",
                s.id, s.first_seq, s.last_seq, s.bytes, s.state, s.chunks
            );
        }
        match (&g.oldest_point, &g.newest_point) {
            (Some(a), Some(b)) => {
                let _ = writeln!(
                    o,
                    "  points: every seq from {} ({}) to {} ({})",
                    a.seq, a.time, b.seq, b.time
                );
            }
            _ => {
                let _ = writeln!(o, "  points: none in the journal");
            }
        }
        for w in &g.not_recoverable {
            let _ = writeln!(
                o,
                "  not recoverable: {} from seq {} to {} (started {})",
                w.name,
                w.from_seq,
                w.to_seq
                    .map_or("now (running)".to_string(), |e| e.to_string()),
                w.started
            );
        }
        if !g.tags.is_empty() {
            let _ = writeln!(o, "  {:<24} {:>12} {:<16} TIME", "TAG", "SEQ", "KIND");
            for t in &g.tags {
                let kind = serde_json::to_value(t.kind)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default();
                let _ = writeln!(o, "  {:<24} {:>12} {:<16} {}", t.name, t.seq, kind, t.time);
            }
        }
    }
    o
}
