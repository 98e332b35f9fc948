//! One drill, as the body of a job: a test failover of the point (writable copies, so the
//! replica's history is never touched, and replication goes on), the group's boot command in a
//! network namespace of its own unless the drill config allows the network, the probes, a
//! screenshot, then cleanup whatever happened. A group without a boot command gets its disks'
//! file systems checked through read-only exports instead.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rewind_linux::clock::now_ms;

use super::config::{DrillConfig, Probe};
use super::evidence::{cut, DrillRecord, ProbeResult, OUTPUT_KEEP};
use super::{fscheck, probes, DrillRunner};
use crate::failover::boot;
use crate::failover::disks::{self, SetKind};
use crate::failover::state::DiskSet;
use crate::jobs::Job;
use rewind_formats::Seq;

/// What a drill is asked to prove.
pub struct Ask {
    pub group: String,
    pub point: String,
    pub seq: u64,
    pub note: Option<String>,
    pub scheduled: bool,
}

impl DrillRunner {
    /// The job body: run the drill, keep its evidence, publish it. Fails (the job fails) when
    /// the drill did.
    pub(super) fn run_job(&self, ask: &Ask, job: &Job) -> Result<DrillRecord> {
        let f = &self.failovers;
        let started_ms = now_ms();
        let (run, dir) = self.evidence.new_run(&ask.group, started_ms)?;
        let state = f.get(&ask.group);
        let cfg = state.drill.clone().unwrap_or_default();
        let point_time_ms = f
            .store()
            .group(&ask.group)
            .ok()
            .and_then(|g| g.time_of(Seq(ask.seq)));
        let mut rec = DrillRecord {
            group: ask.group.clone(),
            run,
            scheduled: ask.scheduled,
            point: ask.point.clone(),
            seq: ask.seq,
            point_time_ms,
            note: ask.note.clone(),
            started_ms,
            ended_ms: 0,
            ok: false,
            error: None,
            probes: Vec::new(),
            timings: BTreeMap::new(),
            evidence: dir.clone(),
            console_log: None,
            screenshot: None,
            isolated: state.boot.is_some() && !cfg.network,
        };
        let r = match &state.boot {
            Some(b) => self.vm_drill(&b.command, &cfg, &mut rec, job),
            None => {
                job.progress(20.0, "checking the disks' file systems (no boot command)");
                let t = Instant::now();
                rec.probes = self.fs_check(&ask.group, ask.seq, &dir);
                rec.timings.insert("probes".into(), ms(t));
                Ok(())
            }
        };
        rec.ended_ms = now_ms();
        let failed: Vec<String> = rec
            .probes
            .iter()
            .filter(|p| !p.ok)
            .map(|p| p.probe.clone())
            .collect();
        rec.error = match r {
            Err(e) => Some(format!("{e:#}")),
            Ok(()) if rec.probes.is_empty() => Some("no probe ran".into()),
            Ok(()) if !failed.is_empty() => Some(format!("probe {} failed", failed.join(", "))),
            Ok(()) => None,
        };
        rec.ok = rec.error.is_none();
        self.publish(&rec);
        Ok(rec)
    }

    fn fs_check(&self, group: &str, seq: u64, dir: &Path) -> Vec<ProbeResult> {
        let f = &self.failovers;
        let names = match f.store().group(group) {
            Ok(g) => g.disk_names(),
            Err(e) => {
                return vec![ProbeResult {
                    probe: "fs-check".into(),
                    ok: false,
                    output: e.to_string(),
                    took_ms: 0,
                }]
            }
        };
        fscheck::check_disks(
            &f.exports,
            f.views.as_deref(),
            &f.attachments,
            group,
            &names,
            seq,
            dir,
        )
    }

    /// Test disks, boot, probes, screenshot; the boot stopped and the disks dropped whatever
    /// happened.
    fn vm_drill(
        &self,
        command: &str,
        cfg: &DrillConfig,
        rec: &mut DrillRecord,
        job: &Job,
    ) -> Result<()> {
        let f = &self.failovers;
        let t = Instant::now();
        let mut set = disks::make_set(
            f,
            &rec.group,
            SetKind::Test,
            &rec.point,
            rec.seq,
            job,
            (5.0, 30.0),
        )?;
        rec.timings.insert("disks".into(), ms(t));
        if !cfg.network {
            for d in &mut set.disks {
                if let Some(u) = f.nbd_unix_uri(&d.export) {
                    d.nbd_uri = Some(u);
                }
            }
        }
        let mut pid = None;
        let r = self.boot_and_probe(command, cfg, &set, rec, &mut pid, job);
        let t = Instant::now();
        job.progress(
            90.0,
            "cleaning up: stopping the VM, dropping the test disks",
        );
        if let Some(pid) = pid {
            f.boots.stop(pid);
        }
        disks::drop_disks(f, &set.disks);
        rec.timings.insert("cleanup".into(), ms(t));
        // A drill is a test failover: the existing metric counts it.
        f.drills
            .record(&rec.group, r.is_ok() && rec.probes.iter().all(|p| p.ok));
        r
    }

    fn boot_and_probe(
        &self,
        command: &str,
        cfg: &DrillConfig,
        set: &DiskSet,
        rec: &mut DrillRecord,
        pid_out: &mut Option<u32>,
        job: &Job,
    ) -> Result<()> {
        let f = &self.failovers;
        let dir = rec.evidence.clone();
        let cmd = boot::substitute(command, &rec.group, &set.disks)?;
        let console = dir.join("console.log");
        let serial_log = dir.join("serial.log");
        let serial = dir.join("serial.sock");
        let qmp = dir.join("qmp.sock");
        let mut c = if cfg.network {
            rewind_linux::process::shell(&cmd)
        } else {
            // A network namespace with only loopback (up, for forwarded ports and a TCP
            // monitor): the replica cannot reach the production network or be reached from it.
            let mut c = Command::new("unshare");
            c.args([
                "--net",
                "--",
                "sh",
                "-c",
                "ip link set lo up || exit 97; exec sh -c \"$1\"",
                "rewind-drill",
                &cmd,
            ]);
            c
        };
        c.env("REWIND_SERIAL", &serial)
            .env("REWIND_CONSOLE_LOG", &serial_log)
            .env("REWIND_QMP", &qmp)
            .env("REWIND_DRILL_DIR", &dir);
        job.progress(35.0, "starting the boot command");
        let t = Instant::now();
        let pid = f.boots.spawn(c, &console)?;
        *pid_out = Some(pid);
        rec.console_log = Some(console.clone());
        tracing::info!(group = %rec.group, pid, isolated = !cfg.network, "drill VM started");
        let running = || f.boots.running(pid);
        let vm = probes::Vm {
            console: vec![console, serial_log],
            serial,
            pid,
            running: &running,
        };
        let deadline = Instant::now() + Duration::from_secs(cfg.timeout_secs);
        let list = if cfg.probes.is_empty() {
            vec![Probe::FsCheck]
        } else {
            cfg.probes.clone()
        };
        let n = list.len();
        for (i, p) in list.iter().enumerate() {
            job.progress(
                40.0 + 45.0 * i as f64 / n as f64,
                format!("probe {}/{n}: {p}", i + 1),
            );
            let t0 = Instant::now();
            // Every probe has a few seconds of its own, even after one that used up the time.
            let deadline = deadline.max(t0 + PROBE_GRACE);
            if *p == Probe::FsCheck {
                rec.probes.extend(self.fs_check(&rec.group, rec.seq, &dir));
                continue;
            }
            let r = match p {
                Probe::Console(re) => probes::console_line(&vm, re, deadline),
                Probe::Tcp(port) => probes::tcp_port(&vm, *port, !cfg.network, deadline),
                Probe::Command(c) => probes::guest_command(&vm, c, deadline),
                Probe::FsCheck => unreachable!("handled above"),
            };
            let (ok, output) = match r {
                Ok(o) => (true, o),
                Err(e) => (false, format!("{e:#}")),
            };
            if let Err(e) = std::fs::write(dir.join(format!("probe-{}.txt", i + 1)), &output) {
                tracing::warn!(error = %e, "writing a probe's output");
            }
            rec.probes.push(ProbeResult {
                probe: p.to_string(),
                ok,
                output: cut(&output, OUTPUT_KEEP),
                took_ms: ms(t0),
            });
        }
        rec.timings.insert("boot_and_probes".into(), ms(t));
        // The serial port's own log, when the boot command keeps one, is the console.
        if std::fs::metadata(&vm.console[1]).is_ok_and(|m| m.len() > 0) {
            rec.console_log = Some(vm.console[1].clone());
        }
        if qmp.exists() {
            let shot = dir.join("screenshot.ppm");
            match probes::screendump(&qmp, &shot).context("QMP screendump") {
                Ok(()) if shot.exists() => rec.screenshot = Some(shot),
                Ok(()) => tracing::warn!("QMP screendump wrote nothing"),
                Err(e) => tracing::warn!(group = %rec.group, error = %e, "no screenshot"),
            }
        }
        Ok(())
    }
}

/// The least time a probe gets, whatever the probes before it took.
const PROBE_GRACE: Duration = Duration::from_secs(10);

fn ms(t: Instant) -> u64 {
    t.elapsed().as_millis() as u64
}
