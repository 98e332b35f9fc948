//! `rewind-agent tag`: freeze, tag at one seq, thaw (always), then wait for the target.

use std::path::PathBuf;
use std::process::{Command, ExitCode};

use anyhow::{bail, Context, Result};
use clap::Args;
use rewind_agent::control::{self, Request};
use rewind_agent::formats::TagKind;

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
    /// Return once queued, without waiting for the target to acknowledge it
    #[arg(long)]
    no_wait: bool,
    /// How long to wait for the acknowledgement (seconds)
    #[arg(long, default_value_t = 60)]
    timeout: u64,
}

fn fsfreeze(flag: &str, mp: &PathBuf) -> Result<()> {
    let out = Command::new("fsfreeze")
        .arg(flag)
        .arg(mp)
        .output()
        .with_context(|| format!("running fsfreeze {flag} {}", mp.display()))?;
    if !out.status.success() {
        bail!(
            "fsfreeze {flag} {}: {}",
            mp.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Thaws what was frozen; reports the first failure but tries every one.
fn thaw(frozen: &[PathBuf]) -> Result<()> {
    let mut first = Ok(());
    for mp in frozen.iter().rev() {
        if let Err(e) = fsfreeze("-u", mp) {
            eprintln!("rewind-agent: {e:#}");
            if first.is_ok() {
                first = Err(e);
            }
        }
    }
    first
}

pub fn tag(a: TagArgs) -> Result<ExitCode> {
    if let Some(g) = &a.group {
        let st = rewind_agent::status::read(&a.state_dir)?;
        if &st.group != g {
            bail!(
                "the agent with state dir {} serves group {}, not {g}",
                a.state_dir.display(),
                st.group
            );
        }
    }
    let kind = if a.freeze.is_empty() {
        TagKind::User
    } else {
        TagKind::AppConsistent
    };
    let mut frozen = Vec::new();
    let mut result = Ok(None);
    for mp in &a.freeze {
        match fsfreeze("-f", mp) {
            Ok(()) => frozen.push(mp.clone()),
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    if result.is_ok() {
        result = control::call(
            &a.state_dir,
            &Request::Tag {
                name: a.name.clone(),
                kind,
            },
        )
        .map(Some)
        .map_err(anyhow::Error::from);
    }
    let thawed = thaw(&frozen);
    let reply = result?.expect("a reply when no error");
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
