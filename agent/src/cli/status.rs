//! `rewind-agent status`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use rewind_agent::state::status;

pub fn status(state_dir: &Path, json: bool) -> Result<ExitCode> {
    let st = status::read(state_dir)?;
    // Signal 0 only asks whether the pid exists.
    let alive = nix::sys::signal::kill(nix::unistd::Pid::from_raw(st.pid as i32), None).is_ok();
    if json {
        println!("{}", serde_json::to_string_pretty(&st)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "group {} -> {} ({}{})",
        st.group,
        st.target,
        if st.connected {
            "connected"
        } else {
            "not connected"
        },
        if alive { "" } else { "; agent not running" }
    );
    if let Some(p) = &st.policy {
        println!("  policy: {p}");
    }
    if let Some(reason) = &st.fenced {
        println!("  fenced: {reason}");
        println!(
            "  (the group failed over: this agent no longer replicates it; writes are refused)"
        );
    }
    if let Some(tag) = &st.draining {
        println!("  draining for tag {tag}: writes refused, sending everything captured");
    }
    if let Some(d) = &st.drained {
        println!(
            "  drained: tag {} at seq {} acknowledged by the target; writes refused",
            d.tag, d.seq
        );
    }
    if let Some(e) = &st.last_error {
        println!("  last error: {e}");
    }
    println!(
        "  seq {} recorded, {} acknowledged{}; {} bytes queued in memory, {} of {} in the spool",
        st.last_seq,
        st.acked_seq,
        if st.caught_up { " (caught up)" } else { "" },
        st.queued_bytes,
        st.spooled_bytes,
        st.spool_capacity_bytes,
    );
    if let Some(t) = st.target_durable_seq {
        println!(
            "  through a relay: {} durable in the relay's cache, {t} durable at the master target",
            st.acked_seq
        );
    }
    if let (Some(p50), Some(p99), Some(max)) = (st.lag_ms_p50, st.lag_ms_p99, st.lag_ms_max) {
        println!("  lag (last 10 s): p50 {p50} ms, p99 {p99} ms, max {max} ms");
    }
    if st.bitmap_mode {
        println!(
            "  BITMAP MODE: memory and spool full; {} writes tracked as dirty regions, resynced \
             once the target catches up",
            st.dropped_writes
        );
    }
    // Caught up, the unpinned dirty regions are acknowledged already: a pass every second
    // clears them a few seconds later (see `dirty`). Said, so "caught up" beside them is not a
    // contradiction.
    let acked = st.dirty_regions.saturating_sub(st.pinned_regions);
    println!(
        "  dirty regions: {} (1 MiB each{}), {} waiting for a compare with the target",
        st.dirty_regions,
        if st.caught_up && acked > 0 {
            format!("; {acked} acknowledged, clearing within a few seconds")
        } else {
            String::new()
        },
        st.pinned_regions
    );
    let kind = st.sync_kind.as_deref().unwrap_or("sync");
    match st.sync_bytes_per_sec {
        Some(rate) => println!("  {kind}: {:?} ({:.1} MB/s)", st.sync, rate as f64 / 1e6),
        None => println!("  {kind}: {:?}", st.sync),
    }
    for d in &st.disks {
        println!(
            "  disk {}: {} -> {} ({}), {} bytes, sync {:.1}%",
            d.name,
            d.link.display(),
            d.device.display(),
            d.path.display(),
            d.size_bytes,
            d.sync_percent
        );
    }
    Ok(ExitCode::SUCCESS)
}
