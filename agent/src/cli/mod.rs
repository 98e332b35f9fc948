//! Command line: `run`, `status`, `tag`.

mod progress;
mod run;
mod status;
mod tag;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "rewind-agent",
    version,
    about = "Rewind source agent: capture, sync and stream protected disks"
)]
pub struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Protect a group of disks and replicate them to the target (until SIGTERM / SIGINT; exits
    /// 3 if the target had not acknowledged everything within --drain-timeout)
    Run(Box<run::RunArgs>),
    /// Print the running agent's status (from STATE_DIR/status.json)
    Status {
        #[arg(long)]
        state_dir: PathBuf,
        /// Print the status file as JSON
        #[arg(long)]
        json: bool,
    },
    /// Insert a tag (a named recovery point), optionally freezing filesystems around it
    Tag(tag::TagArgs),
}

pub fn main(args: Args) -> anyhow::Result<ExitCode> {
    match args.cmd {
        Cmd::Run(a) => run::run(*a),
        Cmd::Status { state_dir, json } => status::status(&state_dir, json),
        Cmd::Tag(a) => tag::tag(a),
    }
}
