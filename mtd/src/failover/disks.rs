//! The writable disks of a failover: one overlay per disk of the group, all over the same seq,
//! each exported over NBD and (with a view tree) attached to a read-write loop device.

use anyhow::{Context, Result};

use super::state::{DiskSet, FailoverDisk};
use super::Failovers;
use crate::jobs::Job;
use crate::views::attach;
use crate::views::exports::{live_overlay_name, test_overlay_name};
use rewind_linux::clock::now_ms;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum SetKind {
    Test,
    Live,
}

impl SetKind {
    fn overlay(self, group: &str, disk: &str) -> String {
        match self {
            SetKind::Test => test_overlay_name(group, disk),
            SetKind::Live => live_overlay_name(group, disk),
        }
    }

    fn suffix(self) -> &'static str {
        match self {
            SetKind::Test => "test",
            SetKind::Live => "live",
        }
    }
}

/// Make the overlays (and loop devices) of `group` at `seq`. On failure, what was made is
/// removed again. Progress runs from `p0` to `p1` percent.
pub fn make_set(
    f: &Failovers,
    group: &str,
    kind: SetKind,
    point: &str,
    seq: u64,
    job: &Job,
    (p0, p1): (f64, f64),
) -> Result<DiskSet> {
    let names = f.store().group(group)?.disk_names();
    let mut set = DiskSet {
        point: point.into(),
        seq,
        started_ms: now_ms(),
        disks: Vec::new(),
        boot: None,
    };
    let step = (p1 - p0) / names.len().max(1) as f64;
    for (i, disk) in names.iter().enumerate() {
        job.progress(
            p0 + step * i as f64,
            format!("making {group}/{disk}@{}", kind.suffix()),
        );
        match make_disk(f, group, disk, kind, seq) {
            Ok(d) => set.disks.push(d),
            Err(e) => {
                drop_disks(f, &set.disks);
                return Err(e);
            }
        }
    }
    Ok(set)
}

fn make_disk(
    f: &Failovers,
    group: &str,
    disk: &str,
    kind: SetKind,
    seq: u64,
) -> Result<FailoverDisk> {
    let overlay = kind.overlay(group, disk);
    f.exports
        .overlays
        .create(&overlay, group, disk, &format!("seq:{seq}"), false)
        .with_context(|| format!("making the {} disk {group}/{disk}", kind.suffix()))?;
    let export = format!("{group}/{disk}@{}", kind.suffix());
    let mut d = FailoverDisk {
        disk: disk.into(),
        overlay: overlay.clone(),
        nbd_uri: f.nbd_uri(&export),
        export,
        loop_device: None,
    };
    if let Err(e) = attach_loop(f, &mut d) {
        attach::drop_overlay(&f.exports, &overlay);
        return Err(e);
    }
    Ok(d)
}

fn attach_loop(f: &Failovers, d: &mut FailoverDisk) -> Result<()> {
    let Some(views) = &f.views else {
        return Ok(());
    };
    let a = attach::attach(
        &f.exports,
        views,
        &f.attachments,
        &d.export,
        true,
        false,
        None,
    )
    .with_context(|| format!("attaching a loop device to {}", d.export))?;
    d.loop_device = Some(a.device);
    Ok(())
}

/// Detach the loop devices and delete the overlays (waiting a little for readers to let go).
pub fn drop_disks(f: &Failovers, disks: &[FailoverDisk]) {
    for d in disks {
        if let Some(dev) = &d.loop_device {
            if let Err(e) = attach::detach(&f.exports, &f.attachments, dev) {
                tracing::warn!(device = %dev, error = %e, "cannot detach a failover loop device");
            }
        }
    }
    for d in disks {
        attach::drop_overlay(&f.exports, &d.overlay);
    }
}

/// Refuse to drop a set whose overlays someone still uses (an NBD client, a mount): their
/// writes would go nowhere. The set's own loop devices do not count.
pub fn check_unused(f: &Failovers, set: &DiskSet) -> Result<()> {
    for d in &set.disks {
        let o = f.exports.overlays.get(&d.overlay)?;
        let own = 1 + usize::from(d.loop_device.is_some());
        let users = o.info().users;
        if users > own {
            anyhow::bail!(
                "{} is in use ({} open export(s) or file(s) besides its loop device); stop the VM or disconnect first",
                d.export,
                users - own
            );
        }
    }
    Ok(())
}

/// After a restart: the old loop devices were released at shutdown (or cleaned up after a
/// crash); attach new ones.
pub fn reattach(f: &Failovers, _group: &str, set: &mut DiskSet) -> Result<()> {
    for d in &mut set.disks {
        d.loop_device = None;
        d.nbd_uri = f.nbd_uri(&d.export);
        attach_loop(f, d)?;
    }
    Ok(())
}
