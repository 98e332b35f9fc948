//! `rewind-site`: parse the command line and run it (see [`rewind_site::cli`]).

use clap::Parser;

#[tokio::main]
async fn main() {
    rewind_linux::logging::init("info");
    rewind_linux::clidocs::generate_if_asked(
        <rewind_site::cli::Cli as clap::CommandFactory>::command(),
    );
    let cli = rewind_site::cli::Cli::parse();
    if let Err(e) = rewind_site::cli::run(cli).await {
        eprintln!("rewind-site: {e:#}");
        std::process::exit(1);
    }
}
