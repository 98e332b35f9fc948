//! Exports: what NBD clients, FUSE files and loop devices read and write.
//!
//! An export name is `GROUP/DISK` (latest, read-only), `GROUP/DISK@POINT` (any point spec,
//! read-only) or `GROUP/DISK@overlay:NAME` (read-write); `GROUP/DISK@test` and `GROUP/DISK@live`
//! name the overlays of a test failover and of a promotion. Opening one gives a `Volume`, the single
//! read/write path that NBD and FUSE share. A read-only volume is frozen at the seq it resolved to
//! when opened, and pins it for as long as it is open.

use std::sync::Arc;

use crate::overlay::{Overlay, Overlays};
use crate::store::points::PointSpec;
use crate::store::{Result, Store, StoreError};
use crate::view::{Extent, View};

/// What an export name points at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Latest,
    Point(String),
    Overlay(String),
}

/// A parsed export name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportName {
    pub group: String,
    pub disk: String,
    pub target: Target,
}

impl ExportName {
    pub fn parse(name: &str) -> Result<ExportName> {
        let bad = |why: &str| StoreError::Invalid {
            what: "export name",
            why: format!(
                "{name:?}: {why} (want GROUP/DISK, GROUP/DISK@POINT or GROUP/DISK@overlay:NAME)"
            ),
        };
        let (path, at) = match name.split_once('@') {
            Some((p, a)) => (p, Some(a)),
            None => (name, None),
        };
        let (group, disk) = path.split_once('/').ok_or_else(|| bad("no '/'"))?;
        if group.is_empty() || disk.is_empty() || disk.contains('/') {
            return Err(bad("empty or extra path parts"));
        }
        let target = match at {
            None | Some("latest") => Target::Latest,
            Some("test") => Target::Overlay(test_overlay_name(group, disk)),
            Some("live") => Target::Overlay(live_overlay_name(group, disk)),
            Some(a) => match a.strip_prefix("overlay:") {
                Some(o) => Target::Overlay(o.to_string()),
                None => {
                    PointSpec::parse(a)?;
                    Target::Point(a.to_string())
                }
            },
        };
        Ok(ExportName {
            group: group.into(),
            disk: disk.into(),
            target,
        })
    }
}

impl std::fmt::Display for ExportName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.group, self.disk)?;
        match &self.target {
            Target::Latest => Ok(()),
            Target::Point(p) => write!(f, "@{p}"),
            Target::Overlay(o) => write!(f, "@overlay:{o}"),
        }
    }
}

/// `GROUP.DISK` in the overlay alphabet, one name per pair: '_' and ':' (which overlay names
/// may not hold) are escaped, and the group's length comes first, since both names may hold '.'
/// (group `a.b` disk `c` and group `a` disk `b.c` stay apart).
fn overlay_part(group: &str, disk: &str) -> String {
    let esc = |s: &str| s.replace('_', "_u").replace(':', "_c");
    let g = esc(group);
    format!("{}.{g}.{}", g.len(), esc(disk))
}

/// The overlay behind `GROUP/DISK@test`: the disk of a test failover.
pub fn test_overlay_name(group: &str, disk: &str) -> String {
    format!("failover-test.{}", overlay_part(group, disk))
}

/// The overlay behind `GROUP/DISK@live`: the live disk of a promoted group.
pub fn live_overlay_name(group: &str, disk: &str) -> String {
    format!("live.{}", overlay_part(group, disk))
}

/// An open export.
pub enum Volume {
    ReadOnly(View),
    Overlay(Arc<Overlay>),
    /// An overlay read through NBD while only its loop device may write it (reverse replication).
    OverlayReadOnly(Arc<Overlay>),
}

impl Volume {
    pub fn size_bytes(&self) -> u64 {
        match self {
            Volume::ReadOnly(v) => v.size_bytes(),
            Volume::Overlay(o) | Volume::OverlayReadOnly(o) => o.size_bytes(),
        }
    }

    /// As an NBD client gets it: read-only if the overlay says so.
    pub fn for_nbd(self) -> Volume {
        match self {
            Volume::Overlay(o) if o.nbd_read_only.load(std::sync::atomic::Ordering::SeqCst) => {
                Volume::OverlayReadOnly(o)
            }
            v => v,
        }
    }

    pub fn writable(&self) -> bool {
        matches!(self, Volume::Overlay(_))
    }

    /// The seq the volume's point is frozen at.
    pub fn seq(&self) -> u64 {
        match self {
            Volume::ReadOnly(v) => v.seq().0,
            Volume::Overlay(o) | Volume::OverlayReadOnly(o) => o.meta.seq,
        }
    }

    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        match self {
            Volume::ReadOnly(v) => v.read_at(buf, offset),
            Volume::Overlay(o) | Volume::OverlayReadOnly(o) => o.read_at(buf, offset),
        }
    }

    fn overlay(&self, op: &str) -> Result<&Overlay> {
        match self {
            Volume::Overlay(o) => Ok(o),
            Volume::OverlayReadOnly(o) => Err(StoreError::ReadOnly(format!(
                "{op} on overlay {}: it is a live disk under reverse replication; write through the protected device (LINKS_DIR/{}/{})",
                o.meta.name, o.meta.group, o.meta.disk
            ))),
            Volume::ReadOnly(v) => Err(StoreError::ReadOnly(format!(
                "{op} on {}/{} at seq {}: recovery points are read-only; write to an overlay (`rewind overlay create`)",
                v.group().name,
                v.disk_name(),
                v.seq().0
            ))),
        }
    }

    pub fn write_at(&self, buf: &[u8], offset: u64) -> Result<()> {
        self.overlay("write")?.write_at(buf, offset)
    }

    /// Zero a range (NBD WRITE_ZEROES and TRIM both end here: a trimmed overlay block reads as
    /// zeroes, which NBD allows).
    pub fn write_zeroes(&self, offset: u64, len: u64) -> Result<()> {
        self.overlay("write zeroes")?.write_zeroes(offset, len)
    }

    pub fn flush(&self) -> Result<()> {
        match self {
            Volume::ReadOnly(_) | Volume::OverlayReadOnly(_) => Ok(()),
            Volume::Overlay(o) => o.flush(),
        }
    }

    pub fn extents(&self, offset: u64, len: u64) -> Result<Vec<Extent>> {
        match self {
            Volume::ReadOnly(v) => v.extents(offset, len),
            Volume::Overlay(o) | Volume::OverlayReadOnly(o) => o.extents(offset, len),
        }
    }
}

/// Resolves export names against the store and the overlays.
pub struct Exports {
    pub store: Arc<Store>,
    pub overlays: Arc<Overlays>,
}

impl Exports {
    pub fn new(store: Arc<Store>, overlays: Arc<Overlays>) -> Arc<Exports> {
        Arc::new(Exports { store, overlays })
    }

    pub fn open(&self, name: &str) -> Result<Volume> {
        let n = ExportName::parse(name)?;
        self.open_parsed(&n)
    }

    pub fn open_parsed(&self, n: &ExportName) -> Result<Volume> {
        match &n.target {
            Target::Latest => Ok(Volume::ReadOnly(self.store.view(
                &n.group,
                &n.disk,
                &PointSpec::Latest,
            )?)),
            Target::Point(p) => Ok(Volume::ReadOnly(self.store.view(
                &n.group,
                &n.disk,
                &PointSpec::parse(p)?,
            )?)),
            Target::Overlay(o) => {
                let ov = self.overlays.get(o)?;
                if ov.meta.group != n.group || ov.meta.disk != n.disk {
                    return Err(StoreError::Invalid {
                        what: "export name",
                        why: format!(
                            "overlay {o} is over {}/{}, not {}/{}",
                            ov.meta.group, ov.meta.disk, n.group, n.disk
                        ),
                    });
                }
                Ok(Volume::Overlay(ov))
            }
        }
    }

    /// Every `GROUP/DISK` (the latest exports), for NBD_OPT_LIST and the FUSE tree.
    pub fn list(&self) -> Vec<(String, String, u64)> {
        let mut out = Vec::new();
        for g in self.store.groups() {
            let st = g.state.read().expect("group lock");
            for d in &st.manifest.disks {
                out.push((g.name.clone(), d.name.clone(), d.size_bytes));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_names() {
        let n = ExportName::parse("web/sda").unwrap();
        assert_eq!(n.target, Target::Latest);
        let n = ExportName::parse("web/sda@tag:v1").unwrap();
        assert_eq!(n.target, Target::Point("tag:v1".into()));
        let n = ExportName::parse("web/sda@-15m").unwrap();
        assert_eq!(n.target, Target::Point("-15m".into()));
        let n = ExportName::parse("web/sda@overlay:t1").unwrap();
        assert_eq!(n.target, Target::Overlay("t1".into()));
        assert_eq!(n.to_string(), "web/sda@overlay:t1");
        let n = ExportName::parse("web/sda@live").unwrap();
        assert_eq!(n.target, Target::Overlay("live.3.web.sda".into()));
        let n = ExportName::parse("a:b/sda@test").unwrap();
        assert_eq!(n.target, Target::Overlay("failover-test.4.a_cb.sda".into()));
        // Distinct pairs, distinct overlays.
        assert_ne!(live_overlay_name("a.b", "c"), live_overlay_name("a", "b.c"));
        assert_ne!(live_overlay_name("a:b", "c"), live_overlay_name("a_b", "c"));
        for n in [
            live_overlay_name("a:b_c", "d.e"),
            test_overlay_name("x", "y:z"),
        ] {
            crate::overlay::check_overlay_name(&n).unwrap();
        }
        assert!(ExportName::parse("web").is_err());
        assert!(ExportName::parse("web/").is_err());
        assert!(ExportName::parse("web/sda/x").is_err());
        assert!(ExportName::parse("web/sda@nonsense").is_err());
    }
}
