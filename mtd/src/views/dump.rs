//! `rewind-mtd dump`: write a view to a raw image file (also how a point is restored to a file).

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};

use crate::views::view::View;

const CHUNK: usize = 1 << 20;
const READERS: usize = 8;

/// A byte-count progress bar (indicatif hides it when stderr is not a terminal).
pub fn progress_bar(total: u64) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
            .expect("static template"),
    );
    bar
}

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
    let bar = progress_bar(size);
    // Several readers at once: a journal of small random writes is read with one pread per
    // piece, mostly from disk, so the device's queue depth, not one thread, sets the pace.
    let next = AtomicU64::new(0);
    let failed = AtomicBool::new(false);
    let copy_range = || -> Result<()> {
        let mut buf = vec![0u8; CHUNK];
        loop {
            let off = next.fetch_add(CHUNK as u64, Ordering::Relaxed);
            if off >= size || failed.load(Ordering::Relaxed) {
                return Ok(());
            }
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
            bar.inc(n as u64);
        }
    };
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..READERS)
            .map(|_| {
                s.spawn(|| {
                    let r = copy_range();
                    if r.is_err() {
                        failed.store(true, Ordering::Relaxed);
                    }
                    r
                })
            })
            .collect();
        workers
            .into_iter()
            .try_for_each(|w| w.join().expect("dump reader panicked"))
    })?;
    f.sync_all()
        .with_context(|| format!("fsync {}", out.display()))?;
    bar.finish_and_clear();
    Ok(size)
}
