//! Attributes of the tree's nodes: sizes and times from the catalog, and the modes that keep
//! replica data as private as the data directory.

use std::time::{Duration, UNIX_EPOCH};

use fuser::{Errno, FileAttr, FileType, INodeNo};

use super::TreeFs;
use crate::fusetree::errno::errno;
use crate::fusetree::handles::Handle;
use crate::fusetree::inodes::{Disk, Image, Node};

/// Modes of the tree: owner root, group the access group, no access for anybody else (replica
/// data is as private as the data directory).
const DIR_MODE: u16 = 0o750;
/// A point's image: read-only.
const IMAGE_MODE: u16 = 0o440;
/// An overlay's image, live disks (`GROUP/DISK@live`, overlay `live.*`) included: written by
/// root only (a live disk through its loop device, where reverse replication captures every
/// write); the access group reads it, as over NBD, where members write only with
/// `--nbd-group-writable`: one rule for every transport.
const OVERLAY_MODE: u16 = 0o640;

impl TreeFs {
    fn attr(&self, ino: u64, node: &Node, size: u64, time_ms: Option<u64>, perm: u16) -> FileAttr {
        let t = time_ms.map_or(self.mounted, |ms| UNIX_EPOCH + Duration::from_millis(ms));
        let dir = node.is_dir();
        FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: t,
            mtime: t,
            ctime: t,
            crtime: t,
            kind: if dir {
                FileType::Directory
            } else {
                FileType::RegularFile
            },
            perm,
            nlink: if dir { 2 } else { 1 },
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        }
    }

    /// A node's attributes as of now; ENOENT when it no longer exists (or its point no longer
    /// resolves). With an open handle, an image shows the point the handle is frozen at.
    pub(super) fn attr_of(
        &self,
        ino: u64,
        node: &Node,
        open: Option<&Handle>,
    ) -> Result<FileAttr, Errno> {
        let dir = |time: Option<u64>| self.attr(ino, node, 0, time, DIR_MODE);
        let disk_time = |d: &Disk| {
            self.catalog
                .disk_size(&d.group, &d.disk)
                .ok_or(Errno::ENOENT)?;
            self.catalog.group_time(&d.group).ok_or(Errno::ENOENT)
        };
        match node {
            Node::Root => Ok(dir(None)),
            Node::Group(g) => Ok(dir(self.catalog.group_time(g).ok_or(Errno::ENOENT)?)),
            Node::Disk(d) | Node::At(d) | Node::Overlays(d) => Ok(dir(disk_time(d)?)),
            Node::Image(d, Image::Overlay(name)) => {
                match self.catalog.overlay(&d.group, &d.disk, name) {
                    Some(m) => {
                        Ok(self.attr(ino, node, m.size_bytes, Some(m.created_ms), OVERLAY_MODE))
                    }
                    None => match open {
                        // Not listed any more while open: cannot happen (an overlay in use is not
                        // deleted), but the open file keeps working regardless.
                        Some(h) => {
                            Ok(self.attr(ino, node, h.volume.size_bytes(), None, OVERLAY_MODE))
                        }
                        None => Err(Errno::ENOENT),
                    },
                }
            }
            Node::Image(d, image) => {
                if let Some(h) = open {
                    let time = self.catalog.time_of(&d.group, h.volume.seq());
                    return Ok(self.attr(ino, node, h.volume.size_bytes(), time, IMAGE_MODE));
                }
                let spec = match image {
                    Image::Point(s) => s.as_str(),
                    _ => "latest",
                };
                match self.catalog.point(&d.group, &d.disk, spec) {
                    Ok(p) => Ok(self.attr(ino, node, p.size_bytes, p.time_ms, IMAGE_MODE)),
                    Err(e) => {
                        tracing::debug!(group = %d.group, disk = %d.disk, spec, error = %e, "view tree: point no longer resolves");
                        Err(errno(&e))
                    }
                }
            }
        }
    }
}
