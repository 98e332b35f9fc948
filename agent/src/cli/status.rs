//! `rewind-agent status`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use rewind_agent::status;

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
    if let Some(e) = &st.last_error {
        println!("  last error: {e}");
    }
    println!(
        "  seq {} recorded, {} acknowledged{}; {} bytes queued",
        st.last_seq,
        st.acked_seq,
        if st.caught_up { " (caught up)" } else { "" },
        st.queued_bytes
    );
    match st.sync_bytes_per_sec {
        Some(rate) => println!(
            "  initial sync: {:?} ({:.1} MB/s)",
            st.sync,
            rate as f64 / 1e6
        ),
        None => println!("  initial sync: {:?}", st.sync),
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
