//! `rewind-agent tag`: wait for a running sync to finish (a tag inside one would not be
//! recoverable), freeze, tag at one seq, thaw (always), then wait for the target.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use clap::Args;
use rewind_agent::control::{self, Request};
use rewind_agent::formats::TagKind;
use rewind_agent::freeze;
use rewind_agent::state::status::SyncState;

#[derive(Args)]
pub struct TagArgs {
    #[arg(long)]
    state_dir: PathBuf,
    /// The tag's name
    #[arg(long)]
    name: String,
    /// Check that the agent serves this group
    #[arg(long)]
    group: Option<String>,
    /// Freeze this mounted filesystem (fsfreeze) while the tag is inserted; repeatable
    #[arg(long = "freeze", value_name = "MOUNTPOINT")]
    freeze: Vec<PathBuf>,
    /// Return once queued, without waiting for the target to acknowledge it (and fail at once,
    /// rather than wait, while a sync runs)
    #[arg(long)]
    no_wait: bool,
    /// How long to wait for a running sync to finish, and then for the acknowledgement
    /// (seconds, each)
    #[arg(long, default_value_t = 60)]
    timeout: u64,
}

pub fn tag(a: TagArgs) -> Result<ExitCode> {
    if let Some(g) = &a.group {
        let st = rewind_agent::state::status::read(&a.state_dir)?;
        if &st.group != g {
            bail!(
                "the agent with state dir {} serves group {}, not {g}",
                a.state_dir.display(),
                st.group
            );
        }
    }
    if !a.no_wait {
        wait_for_sync(&a.state_dir, Duration::from_secs(a.timeout))?;
    }
    let kind = if a.freeze.is_empty() {
        TagKind::User
    } else {
        TagKind::AppConsistent
    };
    // Thaw whatever happened: a filesystem left frozen stalls its applications.
    let (frozen, froze) = freeze::freeze(&a.freeze);
    let result = froze.map_err(anyhow::Error::from).and_then(|()| {
        control::call(
            &a.state_dir,
            &Request::Tag {
                name: a.name.clone(),
                kind,
            },
        )
        .map_err(anyhow::Error::from)
    });
    let thawed = freeze::thaw(&frozen);
    let reply = result?;
    thawed?;
    if !reply.ok {
        bail!("{}", reply.error.unwrap_or_else(|| "tag refused".into()));
    }
    match reply.seq {
        Some(seq) => println!("tag {} at seq {seq}", a.name),
        None => println!(
            "tag {} queued (its seq is known once the agent reaches the target)",
            a.name
        ),
    }
    if a.no_wait {
        return Ok(ExitCode::SUCCESS);
    }
    let done = control::call(
        &a.state_dir,
        &Request::Wait {
            id: reply.id,
            timeout_ms: a.timeout * 1000,
        },
    )?;
    if !done.ok {
        bail!(
            "{}",
            done.error.unwrap_or_else(|| "not acknowledged".into())
        );
    }
    println!("tag {} acknowledged by the target", a.name);
    Ok(ExitCode::SUCCESS)
}

/// Waits (before anything is frozen) while the agent syncs, has regions to compare, or is in
/// bitmap mode: the agent refuses tags then, as the point would not be recoverable. (Before the
/// first contact with the target, with nothing to compare, a tag is fine: it is queued.)
fn wait_for_sync(state_dir: &Path, limit: Duration) -> Result<()> {
    let t0 = Instant::now();
    let mut said = false;
    loop {
        let st = rewind_agent::state::status::read(state_dir)?;
        let busy = st.bitmap_mode
            || st.pinned_regions > 0
            || matches!(
                st.sync,
                SyncState::Running | SyncState::Acking | SyncState::Bitmap
            );
        if !busy {
            return Ok(());
        }
        if t0.elapsed() > limit {
            bail!(
                "the agent is still syncing ({:?}, {} regions to compare) after {} s: a tag \
                 now would not be recoverable; try again later or raise --timeout",
                st.sync,
                st.pinned_regions,
                limit.as_secs()
            );
        }
        if !said {
            eprintln!(
                "rewind-agent: waiting for the {} to finish before tagging ({:?})",
                st.sync_kind.as_deref().unwrap_or("sync"),
                st.sync
            );
            said = true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
