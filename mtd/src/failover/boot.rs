//! The boot command a failover runs once its disks are ready (a qemu command line, typically),
//! with `{nbd:DISK}`, `{loop:DISK}` and `{group}` filled in.
//!
//! It runs through `sh -c` in its own process group, so stopping it stops whatever it started
//! (qemu and its helpers) and nothing else; it is always stopped by that pid, never by name.

use std::collections::HashMap;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::state::{BootProcess, FailoverDisk};
use crate::plan::template::Values;
use crate::plan::{BootCommand, PreparedDisk};
use rewind_linux::process::{self, start_time};

/// Fill a boot command's placeholders (the recovery plans' template: an unknown placeholder or
/// disk is an error, so a typo never boots a VM from the wrong disk).
pub fn substitute(cmd: &str, group: &str, disks: &[FailoverDisk]) -> Result<String> {
    let t = BootCommand::parse(cmd)
        .map_err(|(at, m)| anyhow::anyhow!("boot command {cmd:?}, at byte {at}: {m}"))?;
    let prepared: Vec<PreparedDisk> = disks.iter().map(prepared).collect();
    for name in t.disks() {
        let d = disks.iter().find(|d| d.disk == name).with_context(|| {
            format!(
                "boot command: group {group} has no disk {name} (its disks: {})",
                disks
                    .iter()
                    .map(|d| d.disk.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?;
        if d.nbd_uri.is_none() && cmd.contains(&format!("{{nbd:{name}}}")) {
            bail!("boot command: {{nbd:{name}}} but this rewind-mtd serves no NBD");
        }
    }
    t.render(&Values {
        group,
        machine: group,
        disks: &prepared,
    })
    .map_err(|m| anyhow::anyhow!("boot command: {m}"))
}

/// A failover disk as boot command templates see it (no NBD: an empty URI).
pub fn prepared(d: &FailoverDisk) -> PreparedDisk {
    PreparedDisk {
        disk: d.disk.clone(),
        nbd_uri: d.nbd_uri.clone().unwrap_or_default(),
        loop_device: d.loop_device.clone(),
    }
}

/// Boot processes this daemon started, kept so they can be reaped.
#[derive(Default)]
pub struct BootProcesses {
    children: Mutex<HashMap<u32, Child>>,
}

impl BootProcesses {
    pub fn start(&self, command: &str, log: &Path) -> Result<BootProcess> {
        let pid = self.spawn(process::shell(command), log)?;
        tracing::info!(pid, command, log = %log.display(), "boot command started");
        Ok(BootProcess {
            pid,
            started: start_time(pid),
            command: command.into(),
            log: log.into(),
        })
    }

    /// Start a command in its own process group, its output to `log`; returns its pid.
    pub fn spawn(&self, mut cmd: Command, log: &Path) -> Result<u32> {
        let out = std::fs::File::create(log)
            .with_context(|| format!("creating log {}", log.display()))?;
        let err = out.try_clone()?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {cmd:?}"))?;
        let pid = child.id();
        self.children.lock().expect("boot lock").insert(pid, child);
        Ok(pid)
    }

    /// Stop a boot command's process group: SIGTERM, then SIGKILL after 5 s.
    pub fn stop(&self, pid: u32) {
        self.stop_within(pid, Duration::from_secs(5))
    }

    /// Stop a process group this daemon started: SIGTERM, then SIGKILL after `grace`. Only a
    /// process this daemon started (so the pid is surely still its own) is signalled.
    pub fn stop_within(&self, pid: u32, grace: Duration) {
        let Some(mut child) = self.children.lock().expect("boot lock").remove(&pid) else {
            tracing::warn!(
                pid,
                "process not started by this daemon run; not signalling it"
            );
            return;
        };
        process::terminate(&mut child, grace);
        tracing::info!(pid, "process group stopped");
    }

    /// Whether a boot command is still running (false once it exited, or if not ours).
    pub fn running(&self, pid: u32) -> bool {
        self.children
            .lock()
            .expect("boot lock")
            .get_mut(&pid)
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    pub fn stop_all(&self) {
        let pids: Vec<u32> = self
            .children
            .lock()
            .expect("boot lock")
            .keys()
            .copied()
            .collect();
        for pid in pids {
            self.stop(pid);
        }
    }
}

/// Stop the process group of a process an earlier daemon run started (it survived a kill -9 of
/// that daemon): only if `pid` is still that process (same start time). SIGTERM, then SIGKILL
/// after `grace`.
pub fn stop_leftover(pid: u32, started: Option<u64>, grace: Duration) {
    let (Some(started), Some(now)) = (started, start_time(pid)) else {
        return;
    };
    if now != started {
        return;
    }
    tracing::warn!(
        pid,
        "stopping a process left running by an earlier daemon run"
    );
    process::terminate_group(pid, grace);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disk(name: &str) -> FailoverDisk {
        FailoverDisk {
            disk: name.into(),
            overlay: format!("o-{name}"),
            export: format!("g/{name}@test"),
            nbd_uri: Some(format!("nbd+unix:///g/{name}@test?socket=/s")),
            loop_device: Some("/dev/loop7".into()),
        }
    }

    #[test]
    fn placeholders() {
        let d = [disk("root")];
        assert_eq!(
            substitute("qemu -drive file={nbd:root} {loop:root} {group}", "g", &d).unwrap(),
            "qemu -drive file=nbd+unix:///g/root@test?socket=/s /dev/loop7 g"
        );
        let e = substitute("x {nbd:sdb}", "g", &d).unwrap_err().to_string();
        assert!(e.contains("no disk sdb"), "{e}");
        let e = substitute("x {nope}", "g", &d).unwrap_err().to_string();
        assert!(e.contains("nope"), "{e}");
    }

    #[test]
    fn start_and_stop_kill_the_group() {
        let dir = std::env::temp_dir().join(format!("rewind-boot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let b = BootProcesses::default();
        let p = b
            .start("echo started; sleep 600 & wait", &dir.join("log"))
            .unwrap();
        std::thread::sleep(Duration::from_millis(200));
        assert!(b.running(p.pid));
        assert!(p.started.is_some() && p.started == start_time(p.pid));
        b.stop(p.pid);
        assert!(!b.running(p.pid));
        // The group is gone: signalling it fails.
        assert!(nix::sys::signal::killpg(nix::unistd::Pid::from_raw(p.pid as i32), None).is_err());
        assert!(std::fs::read_to_string(dir.join("log"))
            .unwrap()
            .contains("started"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
