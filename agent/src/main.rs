//! `rewind-agent`: parses arguments and calls the library (subcommands live in `cli/`).

mod cli;

use clap::Parser;

fn main() -> std::process::ExitCode {
    // Before anything is created: the spool and state files hold captured writes.
    // SAFETY: umask only changes this process's file-creation mask; no memory is involved.
    unsafe { libc::umask(0o077) };
    rewind_linux::clidocs::generate_if_asked(<cli::Args as clap::CommandFactory>::command());
    let args = cli::Args::parse();
    rewind_linux::logging::init("info");
    match cli::main(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("rewind-agent: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
