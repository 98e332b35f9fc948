//! The agent's epoch at the relay. An agent bumps a group's epoch whenever it moves to another
//! address (another relay, or the master target itself). The relay keeps the epoch its cache
//! was filled under (in `meta.json`) and says it upstream, where the master target refuses any
//! session of an older epoch than it has seen.
//!
//! So a cache of an older epoch than an agent's new HELLO is dead weight: the agent has sent
//! that stretch again through another path (renumbered), and the target would refuse it. The
//! relay drops it (its forwarder ends, its directory goes) and starts the group anew; the agent
//! resends or resyncs what the relay's WELCOME does not cover. An agent whose epoch is older
//! than the cache's is refused: its state went back, and this cache is newer than it.

use std::fs;
use std::path::Path;
use std::sync::atomic::Ordering;

use anyhow::{Context, Result};
use rewind_formats::message::ErrorCode;

use super::group::RelayGroup;

/// Whether `epoch` (an agent's HELLO) is newer than the epoch `g`'s cache was filled under;
/// refused (the text for the agent) when it is older. Another agent's group is not this
/// check's business (the caller refuses it).
pub(crate) fn newer(g: &RelayGroup, epoch: u64, agent: &str) -> Result<bool, String> {
    let m = g.meta.lock().expect("meta lock");
    if m.agent != agent {
        return Ok(false);
    }
    if epoch < m.epoch {
        // The agent reads the held epoch after STALE_EPOCH_HELD, to move past it.
        return Err(format!(
            "group {}: the agent's epoch {epoch} is {}{} of this relay's cache: the agent's \
             state directory went back",
            g.name,
            rewind_formats::STALE_EPOCH_HELD,
            m.epoch
        ));
    }
    Ok(epoch > m.epoch)
}

impl RelayGroup {
    pub(crate) fn is_retired(&self) -> bool {
        self.retired.load(Ordering::SeqCst)
    }
}

/// Drops `g`'s cache for an agent at `epoch`: its forwarder ends (at once, mid-session too), its
/// writer takes nothing more, its agent session (if any) ends, its room is given back and its
/// directory removed. The caller lists a new group in its place.
pub(crate) fn drop_cache(g: &RelayGroup, cache_dir: &Path, epoch: u64) -> Result<()> {
    let old = g.meta.lock().expect("meta lock").epoch;
    let bytes = g.cached_bytes();
    tracing::warn!(group = %g.name, old_epoch = old, epoch, cached_bytes = bytes,
        "the agent moved on since this cache was filled: dropping it (the master target would refuse it)");
    g.retired.store(true, Ordering::SeqCst);
    g.writer_failed(format!(
        "the cache of epoch {old} was dropped for epoch {epoch}"
    ));
    g.redo_hello.notify_one();
    g.stop_agent(
        ErrorCode::Busy,
        format!(
            "group {}: the relay dropped its cache of an older epoch",
            g.name
        ),
    );
    // Out of the way first (one rename, durable), so the new group's directory can be made at
    // once. (Gone already: an earlier attempt moved it and failed after.)
    let aside = cache_dir.join(format!(".dropped-{}-epoch-{old}", g.name));
    if g.dir.exists() {
        if aside.exists() {
            fs::remove_dir_all(&aside).with_context(|| format!("removing {}", aside.display()))?;
        }
        fs::rename(&g.dir, &aside).with_context(|| format!("moving {} aside", g.dir.display()))?;
        fs::File::open(cache_dir)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("syncing {}", cache_dir.display()))?;
        g.space.give_back(bytes);
    }
    // What is left of it goes at the next start if this fails.
    if let Err(e) = fs::remove_dir_all(&aside) {
        tracing::warn!(dir = %aside.display(), error = %e, "removing a dropped cache");
    }
    Ok(())
}
