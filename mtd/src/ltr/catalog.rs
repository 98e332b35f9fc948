//! What long-term points the store holds: a summary of every manifest, by group and disk, seq
//! ascending. Built by reading the manifests at start and kept as archives and garbage
//! collection change them. The chunk lists stay in the object store: a view or an incremental
//! archive reads the one manifest it needs.

use std::collections::BTreeMap;

use rewind_formats::ltr::LtrManifest;

use crate::store::points::PointSpec;

/// One archived point, without its chunk list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeptPoint {
    pub group: String,
    pub disk: String,
    pub seq: u64,
    pub time_ms: u64,
    pub keep_until_ms: u64,
    pub disk_size: u64,
    pub chunk_size: u32,
    pub app_consistent: bool,
    pub tags: Vec<String>,
}

impl KeptPoint {
    pub fn of(m: &LtrManifest) -> KeptPoint {
        KeptPoint {
            group: m.group.clone(),
            disk: m.disk.clone(),
            seq: m.seq,
            time_ms: m.time_ms,
            keep_until_ms: m.keep_until_ms,
            disk_size: m.disk_size,
            chunk_size: m.chunk_size,
            app_consistent: m.app_consistent,
            tags: m.tags.clone(),
        }
    }

    pub fn key(&self) -> String {
        LtrManifest::key(&self.group, &self.disk, self.seq)
    }
}

#[derive(Default, Debug)]
pub struct Catalog {
    points: BTreeMap<(String, String), BTreeMap<u64, KeptPoint>>,
}

impl Catalog {
    pub fn insert(&mut self, p: KeptPoint) {
        self.points
            .entry((p.group.clone(), p.disk.clone()))
            .or_default()
            .insert(p.seq, p);
    }

    pub fn remove(&mut self, group: &str, disk: &str, seq: u64) {
        if let Some(m) = self.points.get_mut(&(group.to_string(), disk.to_string())) {
            m.remove(&seq);
        }
    }

    pub fn get(&self, group: &str, disk: &str, seq: u64) -> Option<&KeptPoint> {
        self.disk(group, disk)?.get(&seq)
    }

    fn disk(&self, group: &str, disk: &str) -> Option<&BTreeMap<u64, KeptPoint>> {
        self.points.get(&(group.to_string(), disk.to_string()))
    }

    /// The newest point of `group/disk` older than `seq`.
    pub fn before(&self, group: &str, disk: &str, seq: u64) -> Option<&KeptPoint> {
        self.disk(group, disk)?
            .range(..seq)
            .next_back()
            .map(|(_, p)| p)
    }

    /// Every point of a group (all disks), oldest first per disk.
    pub fn of_group(&self, group: &str) -> Vec<KeptPoint> {
        self.points
            .iter()
            .filter(|((g, _), _)| g == group)
            .flat_map(|(_, m)| m.values().cloned())
            .collect()
    }

    pub fn all(&self) -> Vec<KeptPoint> {
        self.points
            .values()
            .flat_map(|m| m.values().cloned())
            .collect()
    }

    /// The kept point a spec names: the newest at or before a seq or a time, or the newest with
    /// a tag of that name. `latest` and `latest-app-consistent` are the journal's to answer.
    pub fn resolve(&self, group: &str, disk: &str, spec: &PointSpec) -> Option<&KeptPoint> {
        let pts = self.disk(group, disk)?;
        match spec {
            PointSpec::Seq(s) => pts.range(..=s.0).next_back().map(|(_, p)| p),
            PointSpec::Time(ms) => pts.values().rev().find(|p| p.time_ms <= *ms),
            PointSpec::Tag(name) => pts.values().rev().find(|p| p.tags.contains(name)),
            PointSpec::Latest | PointSpec::LatestAppConsistent => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rewind_formats::Seq;

    fn p(seq: u64, time_ms: u64, tag: &str) -> KeptPoint {
        KeptPoint {
            group: "g".into(),
            disk: "d".into(),
            seq,
            time_ms,
            keep_until_ms: 0,
            disk_size: 1,
            chunk_size: 4096,
            app_consistent: false,
            tags: vec![tag.into()],
        }
    }

    #[test]
    fn resolves_to_the_newest_kept_point_at_or_before() {
        let mut c = Catalog::default();
        c.insert(p(10, 1000, "a"));
        c.insert(p(20, 2000, "b"));
        let seq = |spec: PointSpec| c.resolve("g", "d", &spec).map(|p| p.seq);
        assert_eq!(seq(PointSpec::Seq(Seq(15))), Some(10));
        assert_eq!(seq(PointSpec::Seq(Seq(20))), Some(20));
        assert_eq!(seq(PointSpec::Seq(Seq(9))), None);
        assert_eq!(seq(PointSpec::Time(1999)), Some(10));
        assert_eq!(seq(PointSpec::Time(999)), None);
        assert_eq!(seq(PointSpec::Tag("b".into())), Some(20));
        assert_eq!(seq(PointSpec::Latest), None);
        assert_eq!(c.before("g", "d", 20).map(|p| p.seq), Some(10));
        c.remove("g", "d", 10);
        assert_eq!(c.resolve("g", "d", &PointSpec::Time(1999)), None);
    }
}
