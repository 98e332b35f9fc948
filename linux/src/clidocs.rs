//! Man pages and shell completions for the binaries, written from their clap definitions so
//! that they never drift from the flags: `scripts/package.sh` runs each binary with
//! `REWIND_GENERATE_DOCS=DIR` and puts what it writes in the packages.
//!
//! An environment variable rather than a subcommand: every binary has a different command
//! tree (`rewind-agent` has no global flags, `rewind` has several), and a hook called first in
//! `main` needs no place in any of them.

use std::path::{Path, PathBuf};

use clap_complete::Shell;

/// The variable that asks a binary to write its docs instead of running.
pub const ENV: &str = "REWIND_GENERATE_DOCS";

/// When `REWIND_GENERATE_DOCS=DIR` is set, write `cmd`'s man pages and completions under DIR
/// and exit (0, or 1 with the error). Otherwise return at once.
pub fn generate_if_asked(cmd: clap::Command) {
    let Some(dir) = std::env::var_os(ENV) else {
        return;
    };
    let dir = PathBuf::from(dir);
    match write(cmd, &dir) {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            eprintln!("{ENV}: writing into {}: {e}", dir.display());
            std::process::exit(1)
        }
    }
}

/// `DIR/man/man1/NAME.1` (a MANPATH entry; and `NAME-SUB.1` for every subcommand, as git does), and
/// `DIR/completions/{bash/NAME, zsh/_NAME, fish/NAME.fish}`.
pub fn write(mut cmd: clap::Command, dir: &Path) -> std::io::Result<()> {
    let name = cmd.get_name().to_string();
    let man = dir.join("man").join("man1");
    std::fs::create_dir_all(&man)?;
    clap_mangen::generate_to(cmd.clone(), &man)?;
    for (shell, sub, file) in [
        (Shell::Bash, "bash", name.clone()),
        (Shell::Zsh, "zsh", format!("_{name}")),
        (Shell::Fish, "fish", format!("{name}.fish")),
    ] {
        let d = dir.join("completions").join(sub);
        std::fs::create_dir_all(&d)?;
        let mut out = std::fs::File::create(d.join(file))?;
        clap_complete::generate(shell, &mut cmd, &name, &mut out);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_page_per_subcommand_and_three_completions() {
        let cmd = clap::Command::new("demo")
            .about("a demo")
            .subcommand(clap::Command::new("run").arg(clap::Arg::new("fast").long("fast")));
        let tmp = tempfile::tempdir().unwrap();
        write(cmd, tmp.path()).unwrap();
        let page = std::fs::read_to_string(tmp.path().join("man/man1/demo-run.1")).unwrap();
        assert!(page.contains("\\-\\-fast"), "{page}");
        assert!(tmp.path().join("man/man1/demo.1").exists());
        let bash = std::fs::read_to_string(tmp.path().join("completions/bash/demo")).unwrap();
        assert!(bash.contains("--fast"), "{bash}");
        assert!(tmp.path().join("completions/zsh/_demo").exists());
        assert!(tmp.path().join("completions/fish/demo.fish").exists());
    }
}
