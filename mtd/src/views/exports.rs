//! Exports: what NBD clients, FUSE files and loop devices read and write.
//!
//! An export name is `GROUP/DISK` (latest, read-only), `GROUP/DISK@POINT` (any point spec,
//! read-only) or `GROUP/DISK@overlay:NAME` (read-write); `GROUP/DISK@test` and `GROUP/DISK@live`
//! name the overlays of a test failover and of a promotion. Opening one gives a `Volume`, the single
//! read/write path that NBD and FUSE share. A read-only volume is frozen at the seq it resolved to
//! when opened, and pins it for as long as it is open.
//!
//! NBD clients get overlays through `Volume::for_nbd`: read-only when the client may not write
//! the group, or while reverse replication runs; otherwise writable until `set_nbd_read_only`
//! turns them read-only, open connections included. An overlay named under another group than
//! the export name says is refused as unknown, so a client learns nothing about groups it may
//! not read.

use std::sync::Arc;

use crate::store::points::PointSpec;
use crate::store::{Result, Store, StoreError};
use crate::views::overlay::{Overlay, Overlays};
use crate::views::view::{Extent, View};

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
    /// An overlay an NBD client may only read: a live disk under reverse replication (only its
    /// loop device may write it), or a client not authorised to write its group.
    OverlayReadOnly(Arc<Overlay>, ReadOnlyWhy),
    /// An overlay as an NBD client writes it: writable until reverse replication starts on it
    /// (`set_nbd_read_only`), read-only from then on, even for connections opened before.
    Nbd(Arc<Overlay>),
}

/// Why an overlay is read-only for an NBD client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadOnlyWhy {
    ReverseReplication,
    NotAuthorised,
}

/// NBD writes to overlays hold this for reading across their check of `nbd_read_only` and the
/// write itself; `set_nbd_read_only` takes it for writing once, so that when it returns no NBD
/// write that saw the flag clear is still going on (reverse replication starts after that and
/// so sees every write NBD made).
static NBD_WRITES: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// Make NBD clients' access to overlay `o` read-only (`on`) or writable again. Connections already
/// open get the change at their next write. Returns once no NBD write is in progress on it.
pub fn set_nbd_read_only(o: &Overlay, on: bool) {
    o.nbd_read_only
        .store(on, std::sync::atomic::Ordering::SeqCst);
    drop(NBD_WRITES.write().unwrap_or_else(|e| e.into_inner()));
}

impl Volume {
    pub fn size_bytes(&self) -> u64 {
        match self {
            Volume::ReadOnly(v) => v.size_bytes(),
            Volume::Overlay(o) | Volume::OverlayReadOnly(o, _) | Volume::Nbd(o) => o.size_bytes(),
        }
    }

    /// As an NBD client gets it: writable only when `may_write` (the client's grants) and the
    /// overlay is not under reverse replication; a read-only point stays as it is.
    pub fn for_nbd(self, may_write: bool) -> Volume {
        match self {
            Volume::Overlay(o) if !may_write => {
                Volume::OverlayReadOnly(o, ReadOnlyWhy::NotAuthorised)
            }
            Volume::Overlay(o) if o.nbd_read_only.load(std::sync::atomic::Ordering::SeqCst) => {
                Volume::OverlayReadOnly(o, ReadOnlyWhy::ReverseReplication)
            }
            Volume::Overlay(o) => Volume::Nbd(o),
            v => v,
        }
    }

    /// Writable when opened (an NBD overlay may become read-only later: its writes then fail).
    pub fn writable(&self) -> bool {
        match self {
            Volume::Overlay(_) => true,
            Volume::Nbd(o) => !o.nbd_read_only.load(std::sync::atomic::Ordering::SeqCst),
            _ => false,
        }
    }

    /// Whether this is a read-only point of the store (a view that pins its seq), as opposed
    /// to an overlay (which pins its point for as long as it exists anyway).
    pub fn is_point(&self) -> bool {
        matches!(self, Volume::ReadOnly(_))
    }

    /// The seq the volume's point is frozen at.
    pub fn seq(&self) -> u64 {
        match self {
            Volume::ReadOnly(v) => v.seq().0,
            Volume::Overlay(o) | Volume::OverlayReadOnly(o, _) | Volume::Nbd(o) => o.meta.seq,
        }
    }

    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        match self {
            Volume::ReadOnly(v) => v.read_at(buf, offset),
            Volume::Overlay(o) | Volume::OverlayReadOnly(o, _) | Volume::Nbd(o) => {
                o.read_at(buf, offset)
            }
        }
    }

    fn read_only(&self, op: &str) -> StoreError {
        match self {
            Volume::OverlayReadOnly(o, ReadOnlyWhy::NotAuthorised) => StoreError::ReadOnly(format!(
                "{op} on overlay {}: this client may read group {} but not write it",
                o.meta.name, o.meta.group
            )),
            Volume::OverlayReadOnly(o, ReadOnlyWhy::ReverseReplication) | Volume::Nbd(o) => {
                StoreError::ReadOnly(format!(
                    "{op} on overlay {}: it is a live disk under reverse replication; write through the protected device (LINKS_DIR/{}/{})",
                    o.meta.name, o.meta.group, o.meta.disk
                ))
            }
            Volume::ReadOnly(v) => StoreError::ReadOnly(format!(
                "{op} on {}/{} at seq {}: recovery points are read-only; write to an overlay (`rewind overlay create`)",
                v.group().name,
                v.disk_name(),
                v.seq().0
            )),
            Volume::Overlay(o) => StoreError::ReadOnly(format!("{op} on overlay {}", o.meta.name)),
        }
    }

    /// Run a write on the overlay, if this volume may write it (now: see `set_nbd_read_only`).
    fn write(&self, op: &str, f: impl FnOnce(&Overlay) -> Result<()>) -> Result<()> {
        match self {
            Volume::Overlay(o) => f(o),
            Volume::Nbd(o) => {
                let _gate = NBD_WRITES.read().unwrap_or_else(|e| e.into_inner());
                if o.nbd_read_only.load(std::sync::atomic::Ordering::SeqCst) {
                    return Err(self.read_only(op));
                }
                f(o)
            }
            _ => Err(self.read_only(op)),
        }
    }

    pub fn write_at(&self, buf: &[u8], offset: u64) -> Result<()> {
        self.write("write", |o| o.write_at(buf, offset))
    }

    /// Zero a range (NBD WRITE_ZEROES and TRIM both end here: a trimmed overlay block reads as
    /// zeroes, which NBD allows).
    pub fn write_zeroes(&self, offset: u64, len: u64) -> Result<()> {
        self.write("write zeroes", |o| o.write_zeroes(offset, len))
    }

    pub fn flush(&self) -> Result<()> {
        match self {
            Volume::ReadOnly(_) | Volume::OverlayReadOnly(..) => Ok(()),
            // Flushing makes earlier writes durable; harmless under reverse replication.
            Volume::Overlay(o) | Volume::Nbd(o) => o.flush(),
        }
    }

    pub fn extents(&self, offset: u64, len: u64) -> Result<Vec<Extent>> {
        match self {
            Volume::ReadOnly(v) => v.extents(offset, len),
            Volume::Overlay(o) | Volume::OverlayReadOnly(o, _) | Volume::Nbd(o) => {
                o.extents(offset, len)
            }
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
            Target::Latest => Ok(Volume::ReadOnly(View::open(
                &self.store,
                &n.group,
                &n.disk,
                &PointSpec::Latest,
            )?)),
            Target::Point(p) => Ok(Volume::ReadOnly(View::open(
                &self.store,
                &n.group,
                &n.disk,
                &PointSpec::parse(p)?,
            )?)),
            Target::Overlay(o) => {
                let ov = self.overlays.get(o)?;
                if ov.meta.group != n.group || ov.meta.disk != n.disk {
                    // Not "it is over G/D": a client that may read this group only must not
                    // learn where another group's overlays are. Same answer as no such overlay.
                    return Err(StoreError::UnknownOverlay(o.clone()));
                }
                Ok(Volume::Overlay(ov))
            }
        }
    }

    /// Every `GROUP/DISK` (the latest exports), for NBD_OPT_LIST and the FUSE tree.
    pub fn list(&self) -> Vec<(String, String, u64)> {
        let mut out = Vec::new();
        for g in self.store.groups() {
            for (disk, size_bytes) in g.disks() {
                out.push((g.name.clone(), disk, size_bytes));
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
            crate::views::overlay::check_overlay_name(&n).unwrap();
        }
        assert!(ExportName::parse("web").is_err());
        assert!(ExportName::parse("web/").is_err());
        assert!(ExportName::parse("web/sda/x").is_err());
        assert!(ExportName::parse("web/sda@nonsense").is_err());
    }
}
