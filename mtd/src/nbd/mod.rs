//! NBD server (fixed newstyle): exports views and overlays to qemu, nbdcopy, nbdinfo and friends.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;

use crate::exports::Exports;

pub struct NbdOptions {
    /// TCP address (`127.0.0.1:10809` by default; `127.0.0.1:0` picks a free port).
    pub listen: Option<String>,
    pub unix: Option<PathBuf>,
}

/// Bind the listeners and serve clients in the background. Returns the bound addresses
/// (`HOST:PORT` for TCP, `unix:PATH`).
pub async fn start(exports: Arc<Exports>, opts: &NbdOptions) -> Result<Vec<String>> {
    let _ = (exports, opts);
    Ok(Vec::new())
}
