//! External tools, cargo builds and the small conventions of running a command from a bench.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::cleanup;
use super::progress;
use super::settings::Settings;

/// Makes sure `cmd` is on PATH, installing `package` with apt-get when running as root.
pub fn need_tool(cmd: &str, package: &str) -> Result<()> {
    if on_path(cmd) {
        return Ok(());
    }
    if !nix::unistd::Uid::effective().is_root() {
        bail!("{cmd} is missing; install the {package} package");
    }
    progress::log(format!("installing {package}"));
    let apt = |args: &[&str]| succeeds(Command::new("apt-get").args(args));
    let installed =
        apt(&["install", "-y", package]) || (apt(&["update"]) && apt(&["install", "-y", package]));
    if !installed {
        bail!("could not install {package}");
    }
    if !on_path(cmd) {
        bail!("{cmd} still missing after installing {package}");
    }
    Ok(())
}

/// Whether an executable `cmd` is in one of PATH's directories.
pub fn on_path(cmd: &str) -> bool {
    use std::os::unix::fs::MetadataExt;
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| {
            std::fs::metadata(dir.join(cmd)).is_ok_and(|m| m.is_file() && m.mode() & 0o111 != 0)
        })
    })
}

/// Runs `cmd` quietly; whether it exited 0.
fn succeeds(cmd: &mut Command) -> bool {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Standard output redirected to our stderr (the script's `>&2`), so reports stay clean.
pub fn stdout_to_stderr() -> Result<Stdio> {
    Ok(Stdio::from(std::io::stderr().as_fd().try_clone_to_owned()?))
}

/// `cargo ARGS` in the source tree, its output on stderr; `Ok(false)` if it failed.
pub fn cargo(settings: &Settings, args: &[&str]) -> Result<bool> {
    let mut cmd = Command::new("cargo");
    cmd.args(args)
        .current_dir(&settings.root)
        .stdin(Stdio::null())
        .stdout(stdout_to_stderr()?);
    let status = progress::hidden(|| cmd.status()).context("running cargo")?;
    Ok(status.success())
}

/// The release binaries a bench runs.
pub struct Bins {
    pub mtd: PathBuf,
    pub rewind: PathBuf,
    pub loadgen: PathBuf,
    pub null_target: PathBuf,
    pub agent: PathBuf,
    pub site: PathBuf,
}

impl Bins {
    fn at(settings: &Settings) -> Bins {
        Bins {
            mtd: settings.release_bin("rewind-mtd"),
            rewind: settings.release_bin("rewind"),
            loadgen: settings.release_bin("rewind-loadgen"),
            null_target: settings.release_bin("examples/null-target"),
            agent: settings.release_bin("rewind-agent"),
            site: settings.release_bin("rewind-site"),
        }
    }
}

/// `cargo build --release -p P ...` for `packages` (and `extra` flags), logged; an error if
/// it fails.
fn build_release(settings: &Settings, packages: &[&str], extra: &[&str]) -> Result<()> {
    let mut args = vec!["build", "--release"];
    for p in packages {
        args.extend(["-p", p]);
    }
    args.extend(extra);
    progress::log(format!(
        "building release binaries (cargo {})",
        args.join(" ")
    ));
    if !cargo(settings, &args)? {
        bail!("release build failed: cargo {}", args.join(" "));
    }
    Ok(())
}

/// An error naming the first of `paths` the build did not leave behind.
fn check_built(paths: &[&PathBuf]) -> Result<()> {
    match paths.iter().find(|p| !p.is_file()) {
        Some(p) => bail!("{} not found after the build", p.display()),
        None => Ok(()),
    }
}

/// Builds the daemon, the load generator and the null target (apply, views).
pub fn build_target_side(settings: &Settings) -> Result<Bins> {
    build_release(settings, &["rewind-mtd", "rewind-benches"], &[])?;
    build_release(settings, &["rewind-benches"], &["--example", "null-target"])?;
    let bins = Bins::at(settings);
    check_built(&[&bins.mtd, &bins.loadgen, &bins.null_target])?;
    Ok(bins)
}

/// Builds the daemon and the agent (agent, failover).
pub fn build_agent_side(settings: &Settings) -> Result<Bins> {
    build_release(settings, &["rewind-mtd", "rewind-agent"], &[])?;
    Ok(Bins::at(settings))
}

/// Builds the configuration server, the daemon and the load generator (site).
pub fn build_site_side(settings: &Settings) -> Result<Bins> {
    build_release(
        settings,
        &["rewind-site", "rewind-mtd", "rewind-benches"],
        &[],
    )?;
    let bins = Bins::at(settings);
    check_built(&[&bins.site, &bins.mtd, &bins.loadgen])?;
    Ok(bins)
}

/// Builds the configuration server, the daemon and the agent (console's alert-delay).
pub fn build_alert_side(settings: &Settings) -> Result<Bins> {
    build_release(
        settings,
        &["rewind-site", "rewind-mtd", "rewind-agent"],
        &[],
    )?;
    let bins = Bins::at(settings);
    check_built(&[&bins.site, &bins.mtd, &bins.agent])?;
    Ok(bins)
}

/// Runs `cmd` to the end with its output captured; an error with the tail of its stderr if it
/// fails (`what` names it in the message).
pub fn output(cmd: &mut Command, what: &str) -> Result<Output> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed: {}",
            tail(&String::from_utf8_lossy(&out.stderr), 5)
        );
    }
    Ok(out)
}

/// Runs `cmd` and returns its standard output as text.
pub fn stdout_of(cmd: &mut Command, what: &str) -> Result<String> {
    let out = output(cmd, what)?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The last `n` lines of file `path` (empty if it cannot be read).
pub fn tail_file(path: &Path, n: usize) -> String {
    tail(
        &String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()),
        n,
    )
}

/// Polls `ready` every `step` up to `tries` times; whether it became true.
pub fn poll(tries: u32, step: Duration, mut ready: impl FnMut() -> bool) -> bool {
    for _ in 0..tries {
        if ready() {
            return true;
        }
        std::thread::sleep(step);
    }
    ready()
}

/// The first line of `path`, trimmed, once the file is non-empty.
pub fn first_line(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let line = text.lines().next()?.trim();
    (!line.is_empty()).then(|| line.to_string())
}

/// Seconds since `t0`.
pub fn since(t0: Instant) -> f64 {
    t0.elapsed().as_secs_f64()
}

/// Opens `path` for a child's output (created or truncated).
pub fn log_file(path: &Path) -> Result<File> {
    File::create(path).with_context(|| format!("creating {}", path.display()))
}

/// Opens `path` for a child's output, appending.
pub fn append_file(path: &Path) -> Result<File> {
    File::options()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))
}

/// `df --output=FIELDS PATH`: the figures of the filesystem holding `path`, without the heading.
pub fn df(fields: &str, path: &Path) -> Result<String> {
    let out = stdout_of(
        Command::new("df")
            .arg(format!("--output={fields}"))
            .arg(path),
        "df",
    )?;
    Ok(out.lines().last().unwrap_or("").trim().to_string())
}

/// Writes `text` to `path`.
pub fn write_file(path: &Path, text: &str) -> Result<()> {
    let mut f = log_file(path)?;
    f.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

/// An image of `size` bytes, every block written (zeros) and synced: allocated, as a disk is.
/// Random writes into a sparse file measure ext4's allocator instead, which lays the new
/// blocks out one after the other and turns random writes into sequential ones.
pub fn allocated_image(path: &Path, size: u64) -> Result<()> {
    let mut f = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let zeros = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = left.min(zeros.len() as u64) as usize;
        f.write_all(&zeros[..n])
            .with_context(|| format!("writing {}", path.display()))?;
        left -= n as u64;
    }
    f.sync_all()
        .with_context(|| format!("syncing {}", path.display()))
}

/// A plain loop device (direct IO) over `image`, the baseline the protected device is measured
/// against; detached by the cleanup.
pub fn plain_loop(image: &Path) -> Result<String> {
    let dev = stdout_of(
        Command::new("losetup")
            .args(["--find", "--show", "--direct-io=on"])
            .arg(image),
        "losetup",
    )?;
    let dev = dev.trim().to_string();
    cleanup::add_loop(&dev);
    Ok(dev)
}

/// Detaches a loop device the bench attached and gave to the exit cleanup ([`plain_loop`], say),
/// and takes it back from that cleanup.
pub fn detach_loop(dev: &str) -> Result<()> {
    rewind_linux::loopdev::detach(dev).with_context(|| format!("losetup -d {dev}"))?;
    cleanup::forget_loop(dev);
    Ok(())
}
