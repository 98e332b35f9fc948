//! `rewind-mtd dump`: write a view to a raw image file (also how a point is restored to a file).

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};

use crate::view::View;

const CHUNK: usize = 1 << 20;

/// Copy the view into `out` (created or truncated, sized to the disk). All-zero chunks are left as
/// holes, so the image is sparse. Shows a progress bar when stderr is a terminal.
pub fn dump(view: &View, out: &Path) -> Result<u64> {
    let f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(out)
        .with_context(|| format!("creating {}", out.display()))?;
    let size = view.size_bytes();
    f.set_len(size)
        .with_context(|| format!("sizing {} to {size} bytes", out.display()))?;
    let bar = ProgressBar::new(size);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
            .expect("static template"),
    );
    let mut buf = vec![0u8; CHUNK];
    let mut off = 0u64;
    while off < size {
        let n = CHUNK.min((size - off) as usize);
        view.read_at(&mut buf[..n], off).with_context(|| {
            format!(
                "reading disk {}/{} at offset {off}",
                view.group().name,
                view.disk_name()
            )
        })?;
        if buf[..n].iter().any(|&b| b != 0) {
            f.write_all_at(&buf[..n], off)
                .with_context(|| format!("writing {} at offset {off}", out.display()))?;
        }
        off += n as u64;
        bar.set_position(off);
    }
    f.sync_all()
        .with_context(|| format!("fsync {}", out.display()))?;
    bar.finish_and_clear();
    Ok(size)
}
