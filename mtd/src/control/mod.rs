//! The control API: HTTP+JSON on a unix socket, used by the `rewind` CLI.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Result;

use crate::exports::Exports;

pub struct Control {
    pub exports: Arc<Exports>,
    pub views: Option<PathBuf>,
}

impl Control {
    pub fn new(exports: Arc<Exports>, views: Option<PathBuf>) -> Result<Arc<Control>> {
        Ok(Arc::new(Control { exports, views }))
    }

    /// Unmount, detach and drop everything `attach` and `mount` made.
    pub fn release_all(&self) {}
}

pub async fn start(control: Arc<Control>, path: &Path) -> Result<()> {
    let _ = (control, path);
    Ok(())
}
