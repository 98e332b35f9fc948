//! What the tree shows, asked of the store and the overlays every time (nothing is cached here:
//! new groups, tags and overlays appear at once, and the kernel's own caching is kept short).

use std::sync::Arc;

use rewind_formats::message::TagKind;
use rewind_formats::Seq;

use crate::store::group::Group;
use crate::store::points::{long_term_may_answer, PointSpec};
use crate::store::Result;
use crate::views::exports::Exports;
use crate::views::overlay::OverlayMeta;

/// The name `at/` lists for the newest app-consistent point.
pub const LATEST_APP_CONSISTENT: &str = "latest-app-consistent";

/// A point a name resolved to.
#[derive(Clone, Copy, Debug)]
pub struct Point {
    pub seq: u64,
    /// Source time of the point (unix ms), when the group holds times.
    pub time_ms: Option<u64>,
    pub size_bytes: u64,
}

pub struct Catalog {
    pub exports: Arc<Exports>,
}

impl Catalog {
    pub fn new(exports: Arc<Exports>) -> Catalog {
        Catalog { exports }
    }

    fn group(&self, group: &str) -> Option<Arc<Group>> {
        self.exports.store.group(group).ok()
    }

    pub fn groups(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .exports
            .store
            .groups()
            .iter()
            .map(|g| g.name.clone())
            .collect();
        names.sort();
        names
    }

    /// The newest point's time of a group (None for an unknown group or one without times).
    pub fn group_time(&self, group: &str) -> Option<Option<u64>> {
        Some(self.group(group)?.newest_time())
    }

    /// The disks of a group with their sizes, in manifest order.
    pub fn disks(&self, group: &str) -> Option<Vec<(String, u64)>> {
        Some(self.group(group)?.disks())
    }

    pub fn disk_size(&self, group: &str, disk: &str) -> Option<u64> {
        self.disks(group)?
            .into_iter()
            .find(|(d, _)| d == disk)
            .map(|(_, s)| s)
    }

    /// Resolve a point spec of one disk, as an open would (without pinning it).
    pub fn point(&self, group: &str, disk: &str, spec: &str) -> Result<Point> {
        let spec = PointSpec::parse(spec)?;
        let store = &self.exports.store;
        match store.group(group)?.resolve_on_disk(disk, &spec) {
            Ok(p) => Ok(Point {
                seq: p.seq.0,
                time_ms: p.time_ms,
                size_bytes: p.size_bytes,
            }),
            // Older than the window: the kept long-term point at or before it, if any.
            Err(e) if long_term_may_answer(&e, &spec) => {
                match store.ltr().and_then(|l| l.resolve(group, disk, &spec)) {
                    Some(k) => Ok(Point {
                        seq: k.seq,
                        time_ms: Some(k.time_ms),
                        size_bytes: k.disk_size,
                    }),
                    None => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// The source time of a seq of a group.
    pub fn time_of(&self, group: &str, seq: u64) -> Option<u64> {
        self.group(group)?.time_of(Seq(seq))
    }

    /// What a disk's `at/` lists: `tag:NAME` for every tag in the window (once per name), then
    /// `latest-app-consistent` when there is an app-consistent tag, then `seq:N` for every
    /// long-term point kept of the disk (older ones first), so that history past the window is
    /// found by listing, not only by a name the user must already know.
    pub fn listed_points(&self, group: &str, disk: &str) -> Vec<String> {
        let Some(g) = self.group(group) else {
            return Vec::new();
        };
        let mut out: Vec<String> = Vec::new();
        let mut app = false;
        for t in g.tags() {
            app |= t.kind == TagKind::AppConsistent;
            // A name that cannot be a file name is still reachable through NBD and the CLI.
            if t.name.contains('/') || t.name.contains('\0') || t.name.len() > 240 {
                continue;
            }
            let name = format!("tag:{}", t.name);
            if !out.contains(&name) {
                out.push(name);
            }
        }
        if app {
            out.push(LATEST_APP_CONSISTENT.to_string());
        }
        if let Some(ltr) = self.exports.store.ltr() {
            let mut kept: Vec<u64> = ltr
                .points_of(group)
                .into_iter()
                .filter(|k| k.disk == disk)
                .map(|k| k.seq)
                .collect();
            kept.sort_unstable();
            kept.dedup();
            out.extend(kept.into_iter().map(|seq| format!("seq:{seq}")));
        }
        out
    }

    /// The overlays over one disk, by name.
    pub fn overlays(&self, group: &str, disk: &str) -> Vec<OverlayMeta> {
        let mut v: Vec<OverlayMeta> = self
            .exports
            .overlays
            .list()
            .into_iter()
            .map(|o| o.meta)
            .filter(|m| m.group == group && m.disk == disk)
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// One overlay over one disk. (Through `list`, which takes no reference to the overlay: a
    /// reference held even briefly would make a concurrent `overlay delete` see it in use.)
    pub fn overlay(&self, group: &str, disk: &str, name: &str) -> Option<OverlayMeta> {
        self.exports
            .overlays
            .list()
            .into_iter()
            .map(|o| o.meta)
            .find(|m| m.name == name && m.group == group && m.disk == disk)
    }
}
