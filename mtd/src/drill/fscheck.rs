//! The file system probe: each disk of the point, attached read-only to a loop device (the
//! point's export in the view tree, so nothing can write to it), checked by the checker of its
//! type as blkid reports it: `e2fsck -fn` for ext2/3/4, `xfs_repair -n` for xfs. A disk with
//! partitions has each partition checked. Swap is skipped; any other type fails the probe,
//! since a drill that cannot check a disk proves nothing about it.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result};

use super::evidence::{cut, ProbeResult, OUTPUT_KEEP};
use crate::views::attach::{self, Attachments};
use crate::views::exports::Exports;

/// Check every disk of `group` at `seq`; one result per disk, its full output in
/// `evidence/fs-check-DISK.txt`.
pub fn check_disks(
    exports: &Exports,
    views: Option<&Path>,
    atts: &Attachments,
    group: &str,
    disks: &[String],
    seq: u64,
    evidence: &Path,
) -> Vec<ProbeResult> {
    disks
        .iter()
        .map(|disk| {
            let t0 = Instant::now();
            let r = check_disk(exports, views, atts, group, disk, seq);
            let (ok, output) = match r {
                Ok((ok, out)) => (ok, out),
                Err(e) => (false, format!("{e:#}")),
            };
            if let Err(e) = std::fs::write(evidence.join(format!("fs-check-{disk}.txt")), &output) {
                tracing::warn!(group, disk, error = %e, "writing the fs-check output");
            }
            ProbeResult {
                probe: format!("fs-check {disk}"),
                ok,
                output: cut(&output, OUTPUT_KEEP),
                took_ms: t0.elapsed().as_millis() as u64,
            }
        })
        .collect()
}

fn check_disk(
    exports: &Exports,
    views: Option<&Path>,
    atts: &Attachments,
    group: &str,
    disk: &str,
    seq: u64,
) -> Result<(bool, String)> {
    let views = views.context(
        "the fs-check probe reads the point through the view tree: start rewind-mtd with --views",
    )?;
    let export = format!("{group}/{disk}@seq:{seq}");
    let a = attach::attach(exports, views, atts, &export, false, true, None)
        .with_context(|| format!("attaching {export} read-only"))?;
    let r = (|| {
        let devices = if a.partitions.is_empty() {
            vec![a.device.clone()]
        } else {
            a.partitions.clone()
        };
        let mut ok = true;
        let mut out = String::new();
        for dev in devices {
            let (o, text) = check_device(&dev)?;
            ok &= o;
            out.push_str(&format!("== {export} ({dev})\n{text}\n"));
        }
        Ok((ok, out))
    })();
    if let Err(e) = attach::detach(exports, atts, &a.device) {
        tracing::error!(device = %a.device, error = %e, "detaching the fs-check loop device");
    }
    r
}

/// blkid's type of `dev`, then its checker: (clean, what it said).
fn check_device(dev: &str) -> Result<(bool, String)> {
    let out = Command::new("blkid")
        .args(["-p", "-o", "value", "-s", "TYPE", dev])
        .output()
        .context("running blkid (util-linux)")?;
    let fstype = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let mut cmd = match fstype.as_str() {
        "ext2" | "ext3" | "ext4" => {
            let mut c = Command::new("e2fsck");
            c.args(["-f", "-n", dev]);
            c
        }
        "xfs" => {
            let mut c = Command::new("xfs_repair");
            c.args(["-n", dev]);
            c
        }
        "swap" => return Ok((true, "swap: nothing to check".into())),
        "" => {
            return Ok((
                false,
                format!(
                    "blkid finds no file system on {dev} (exit {}): {}",
                    out.status.code().unwrap_or(-1),
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            ))
        }
        t => return Ok((false, format!("{t} on {dev}: no checker for this type"))),
    };
    let o = cmd
        .output()
        .with_context(|| format!("running {cmd:?} (e2fsprogs / xfsprogs)"))?;
    let code = o.status.code().unwrap_or(-1);
    let text = format!(
        "{fstype}: {cmd:?} exited {code}\n{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    Ok((code == 0, text))
}
