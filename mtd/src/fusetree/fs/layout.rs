//! What each directory of the tree holds: the node a name stands for (LOOKUP) and a directory's
//! entries (READDIR). See the layout in `fs.rs`.

use std::ffi::OsStr;

use fuser::Errno;

use super::TreeFs;
use crate::fusetree::inodes::{Disk, Image, Node};
use crate::store::StoreError;

/// `NAME` of `NAME.img`.
fn image_stem(name: &str) -> Option<&str> {
    name.strip_suffix(".img").filter(|s| !s.is_empty())
}

impl TreeFs {
    /// The child `name` of directory `parent`, if it exists.
    pub(super) fn child(&self, parent: &Node, name: &OsStr) -> Result<Node, Errno> {
        let name = name.to_str().ok_or(Errno::ENOENT)?;
        match parent {
            Node::Root => Ok(Node::Group(name.to_string())),
            Node::Group(g) => Ok(Node::Disk(Disk {
                group: g.clone(),
                disk: name.to_string(),
            })),
            Node::Disk(d) => match name {
                "latest.img" => Ok(Node::Image(d.clone(), Image::Latest)),
                "at" => Ok(Node::At(d.clone())),
                "overlays" => Ok(Node::Overlays(d.clone())),
                _ => Err(Errno::ENOENT),
            },
            Node::At(d) => {
                let spec = image_stem(name).ok_or(Errno::ENOENT)?;
                // Resolve now, so a bad spec or a point out of the window is ENOENT at lookup,
                // with the reason in the log.
                match self.catalog.point(&d.group, &d.disk, spec) {
                    Ok(p) => {
                        tracing::debug!(group = %d.group, disk = %d.disk, spec, seq = p.seq, "view tree: point found");
                        Ok(Node::Image(d.clone(), Image::Point(spec.to_string())))
                    }
                    // A name that is no point spec at all is routine (shells probe names):
                    // debug. A spec that does not resolve is worth telling: info.
                    Err(e @ StoreError::BadPoint { .. }) => {
                        tracing::debug!(group = %d.group, disk = %d.disk, name, error = %e, "view tree: not a point spec");
                        Err(Errno::ENOENT)
                    }
                    Err(e) => {
                        tracing::info!(group = %d.group, disk = %d.disk, name, error = %e, "view tree: no such point");
                        Err(Errno::ENOENT)
                    }
                }
            }
            Node::Overlays(d) => {
                let o = image_stem(name).ok_or(Errno::ENOENT)?;
                Ok(Node::Image(d.clone(), Image::Overlay(o.to_string())))
            }
            Node::Image(..) => Err(Errno::ENOTDIR),
        }
    }

    /// A directory's entries (without `.` and `..`).
    pub(super) fn entries(&self, node: &Node) -> Result<Vec<(Node, String)>, Errno> {
        let mut out = Vec::new();
        match node {
            Node::Root => {
                for g in self.catalog.groups() {
                    out.push((Node::Group(g.clone()), g));
                }
            }
            Node::Group(g) => {
                for (disk, _) in self.catalog.disks(g).ok_or(Errno::ENOENT)? {
                    let d = Disk {
                        group: g.clone(),
                        disk: disk.clone(),
                    };
                    out.push((Node::Disk(d), disk));
                }
            }
            Node::Disk(d) => {
                self.catalog
                    .disk_size(&d.group, &d.disk)
                    .ok_or(Errno::ENOENT)?;
                out.push((Node::Image(d.clone(), Image::Latest), "latest.img".into()));
                out.push((Node::At(d.clone()), "at".into()));
                out.push((Node::Overlays(d.clone()), "overlays".into()));
            }
            Node::At(d) => {
                for spec in self.catalog.listed_points(&d.group, &d.disk) {
                    let name = format!("{spec}.img");
                    out.push((Node::Image(d.clone(), Image::Point(spec)), name));
                }
            }
            Node::Overlays(d) => {
                for m in self.catalog.overlays(&d.group, &d.disk) {
                    let name = format!("{}.img", m.name);
                    out.push((Node::Image(d.clone(), Image::Overlay(m.name)), name));
                }
            }
            Node::Image(..) => return Err(Errno::ENOTDIR),
        }
        Ok(out)
    }
}
