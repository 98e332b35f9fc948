//! The three Debian packages, built by cargo-deb from the debug binaries (`--profile dev
//! --fast`: what tests check is the layout and what the packages do, not the release build,
//! which `scripts/package.sh` makes).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::bins::bin;
use super::cmd::{assert_ok, run};

/// Each package: its crate, its binaries, its unit files (the one enabled at install first).
pub const PACKAGES: [(&str, &[&str], &[&str]); 3] = [
    (
        "mtd",
        &["rewind-mtd", "rewind"],
        &["rewind-mtd.service", "rewind-relay.service"],
    ),
    ("agent", &["rewind-agent"], &["rewind-agent@.service"]),
    ("site", &["rewind-site"], &["rewind-site.service"]),
];

/// The workspace's root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_path_buf()
}

/// Runs `name` with `REWIND_GENERATE_DOCS=dir`: it writes its man pages and completions there.
pub fn generate_docs(name: &str, dir: &Path) {
    let out = run(Command::new(bin(name)).env("REWIND_GENERATE_DOCS", dir));
    assert_ok(
        &out,
        &format!("{name} REWIND_GENERATE_DOCS={}", dir.display()),
    );
}

/// Whether cargo-deb is installed. When it is not, says so and returns false (skip), unless
/// `REWIND_REQUIRE_TOOLS` is set (scripts/test.sh installs it): then that fails the test.
pub fn have_cargo_deb() -> bool {
    let ok = Command::new("cargo")
        .args(["deb", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var_os("REWIND_REQUIRE_TOOLS").is_none(),
            "cargo-deb is not installed (scripts/test.sh installs it)"
        );
        eprintln!("SKIPPED: cargo-deb is not installed");
    }
    ok
}

/// Builds the package of `krate` (one of [`PACKAGES`]) into `out`: its path.
pub fn build_deb(krate: &str, out: &Path) -> PathBuf {
    let (_, bins, _) = PACKAGES
        .iter()
        .find(|(k, _, _)| *k == krate)
        .unwrap_or_else(|| panic!("no package for crate {krate}"));
    // cargo-deb takes the assets from the target directory (`target/release/...` in the
    // metadata is the selected profile's directory): the docs go where the metadata says.
    let target = bin("rewind").parent().expect("target dir").to_path_buf();
    for b in *bins {
        generate_docs(b, &target.join("docs").join(b));
    }
    let built = run(Command::new("cargo")
        .current_dir(workspace())
        .args(["deb", "-p", &format!("rewind-{krate}")])
        .args(["--no-build", "--profile", "dev", "--fast", "-o"])
        .arg(out));
    assert_ok(&built, &format!("cargo deb -p rewind-{krate}"));
    fs::read_dir(out)
        .expect("package dir")
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("rewind-{krate}_")))
        })
        .unwrap_or_else(|| {
            panic!(
                "cargo deb left no rewind-{krate} package in {}",
                out.display()
            )
        })
}
