//! `failover [RUNS]`: two protected VM root disks (the test VM of agent/tests/common/vm.rs:
//! Debian kernel, busybox initramfs, ext4 root), each replicated by its own `rewind-agent` to one
//! `rewind-mtd`. Measured RUNS times each (default BENCH_RUNS), medians reported:
//! - test-failover-exports-readable: from `rewind failover test` to the first 4 KiB read of the
//!   test export over NBD, against the same read from qemu-nbd started on the source image;
//! - rto-test-plan: the measured RTO of a two-VM recovery plan in test mode (the second VM boots
//!   only once the first is healthy), against booting the same two VMs one after the other
//!   straight from copies of their image files.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::agentproc::Agent;
use super::cleanup::{self, Stop};
use super::mtd::{self, Rewind, GRACE};
use super::progress;
use super::report::{print_bars, Bar};
use super::settings::Settings;
use super::stats::{ratio_text, Series};
use super::tools;
use super::views::is_socket;

pub fn run(settings: &Settings, runs_arg: Option<&str>) -> Result<()> {
    let runs = match runs_arg {
        None => settings.runs,
        Some(r) => r
            .parse::<usize>()
            .ok()
            .filter(|&r| r > 0)
            .context("failover: RUNS must be a positive number")?,
    };
    tools::need_tool("qemu-io", "qemu-utils")?;
    if !tools::on_path("qemu-system-x86_64") {
        bail!(
            "qemu-system-x86_64 is missing: run scripts/test.sh once (it installs qemu-system-x86)"
        );
    }
    let vm_dir = std::env::var_os("REWIND_VM_DIR")
        .map_or_else(|| PathBuf::from("/var/cache/rewind-vm"), PathBuf::from);
    let ok = progress::hidden(|| {
        Command::new(settings.root.join("scripts/vm-image.sh"))
            .arg(&vm_dir)
            .stdout(tools::stdout_to_stderr().map_or(Stdio::null(), |s| s))
            .status()
    })
    .is_ok_and(|s| s.success());
    if !ok {
        bail!("building the test VM's kernel and initramfs failed");
    }
    let bins = tools::build_agent_side(settings)?;
    let work = settings.make_workdir()?;
    let rw = Rewind::new(&bins, &work);
    // Test machines and exports first, while the daemon still answers.
    for args in [&["plan", "cleanup"][..], &["failover", "cleanup", "vm1"]] {
        let mut c = rw.command(args);
        let control = rw.control.clone();
        cleanup::add_hook(move || {
            if is_socket(&control) {
                cleanup::quiet(&mut c);
            }
        });
    }
    let views = work.join("views");
    cleanup::add_mount(&views);
    let _daemon = mtd::start_views(&bins, &work, &views, "24h", None)?;

    let mut agents = Vec::new();
    for vm in ["vm1", "vm2"] {
        let img = work.join(format!("{vm}.img"));
        let ok = progress::hidden(|| {
            Command::new(settings.root.join("scripts/vm-rootfs.sh"))
                .arg(&img)
                .arg("64")
                .arg(format!("marker of {vm}"))
                .stdout(tools::stdout_to_stderr().map_or(Stdio::null(), |s| s))
                .status()
        })
        .is_ok_and(|s| s.success());
        if !ok {
            bail!("vm-rootfs.sh failed");
        }
        let agent = Agent::start(&bins, &work, vm, &img, &[])?;
        agent.wait_synced(120)?;
        agents.push(agent);
    }

    progress::log(format!(
        "test failover to readable exports, {runs} runs (baseline: qemu-nbd on the source image)"
    ));
    let (mut ft_ours, mut ft_theirs) = (Series::fixed(3), Series::fixed(3));
    let qsock = work.join("qemu-nbd.sock");
    for run in 1..=runs {
        let t0 = Instant::now();
        let reply = rw.json(&["failover", "test", "vm1"])?;
        let uri = reply["test"]["disks"][0]["nbd_uri"]
            .as_str()
            .context("rewind failover test: no test.disks[0].nbd_uri")?
            .to_string();
        read_first_block(&uri)?;
        let ours = ft_ours.push(tools::since(t0));
        rw.run(&["failover", "cleanup", "vm1"])?;
        let _ = std::fs::remove_file(&qsock);
        let t0 = Instant::now();
        let mut qemu = Command::new("qemu-nbd")
            .args(["--read-only", "--format=raw"])
            .arg(format!("--socket={}", qsock.display()))
            .arg(work.join("vm1.img"))
            .stdin(Stdio::null())
            .spawn()
            .context("starting qemu-nbd")?;
        cleanup::add_proc(qemu.id(), Stop::Kill);
        read_first_block(&format!("nbd+unix:///?socket={}", qsock.display()))?;
        let theirs = ft_theirs.push(tools::since(t0));
        cleanup::terminate(qemu.id() as i32, GRACE);
        let _ = qemu.wait();
        cleanup::forget_proc(qemu.id());
        progress::log(format!(
            "run {run}: rewind {ours:.3} s, qemu-nbd {theirs:.3} s"
        ));
    }

    progress::log(format!(
        "recovery plan of two VMs in test mode, {runs} runs (baseline: the same two boots from files)"
    ));
    let plan = work.join("plan.toml");
    tools::write_file(&plan, &plan_toml(&qemu_cmd(&vm_dir, "{nbd:sda}")))?;
    let plan_arg = plan.to_string_lossy();
    let (mut rto_ours, mut rto_theirs) = (Series::raw(), Series::fixed(2));
    for run in 1..=runs {
        let st = rw
            .json(&["plan", "run", &plan_arg, "--mode", "test"])
            .context("the plan failed")?;
        let rto = st["rto_ms"]
            .as_f64()
            .context("the plan's reply has no rto_ms")?
            / 1000.0;
        rto_ours.push(rto);
        rw.run(&["plan", "cleanup"])?;
        let mut boots = 0.0;
        for (vm, copy) in [("vm1", "copy1"), ("vm2", "copy2")] {
            let copy = work.join(format!("{copy}.img"));
            tools::output(
                Command::new("cp")
                    .arg("--sparse=always")
                    .arg(work.join(format!("{vm}.img")))
                    .arg(&copy),
                "cp",
            )?;
            boots += boot_to_healthy(&work, &vm_dir, &copy)?;
        }
        let base = rto_theirs.push(boots);
        progress::log(format!(
            "run {run}: plan RTO {rto} s, two plain boots {base:.2} s"
        ));
    }
    for agent in agents {
        agent.stop();
    }
    progress::finish();

    let (ft, ftq) = (ft_ours.median_text(), ft_theirs.median_text());
    let (rt, rtq) = (rto_ours.median_text(), rto_theirs.median_text());
    println!("test failover to a readable NBD export: {ft} s; qemu-nbd on the source image: {ftq} s (median of {runs})");
    println!(
        "two-VM plan in test mode: RTO {rt} s; the same boots from plain files: {rtq} s, ratio {}x (median of {runs})",
        ratio_text(rto_ours.median(), rto_theirs.median())
    );
    print_bars(
        runs,
        &[
            Bar {
                name: "rto-test-plan",
                value: rt,
                want: "< 30",
                spread: Some(rto_ours.spread_text()),
            },
            Bar {
                name: "test-failover-exports-readable",
                value: format!("{ft} s"),
                want: "< 1",
                spread: Some(format!("{} s", ft_ours.spread_text())),
            },
        ],
    );
    Ok(())
}

/// The test VM's qemu command line (as agent/tests/common/vm.rs runs it) on `drive`.
fn qemu_cmd(vm_dir: &Path, drive: &str) -> String {
    format!(
        "qemu-system-x86_64 -accel tcg -M q35 -m 512 -smp 1 -nographic -no-reboot -kernel {} -initrd {} -append 'console=ttyS0 panic=-1 quiet' -drive 'file={drive},format=raw,if=virtio,cache=none'",
        vm_dir.join("vmlinuz").display(),
        vm_dir.join("initrd.cpio.gz").display()
    )
}

/// The two-VM plan: the second boot group starts once the first machine is healthy.
fn plan_toml(boot: &str) -> String {
    let boot = boot.replace('\\', "\\\\").replace('"', "\\\"");
    let machine = |group: &str, name: &str, vm: &str| {
        format!(
            "[[boot_group]]\nname = \"{group}\"\n\n[[boot_group.machine]]\nname = \"{name}\"\ngroup = \"{vm}\"\nboot = \"{boot}\"\nhealth = {{ console = \"rewind-vm: healthy\" }}\ntimeout_secs = 120\n"
        )
    };
    format!(
        "name = \"bench-two-vms\"\n\n{}\n{}",
        machine("first", "m1", "vm1"),
        machine("second", "m2", "vm2")
    )
}

/// Seconds from qemu's start to the VM's healthy line on its console (the VM is then killed).
fn boot_to_healthy(work: &Path, vm_dir: &Path, img: &Path) -> Result<f64> {
    let out = work.join("boot.out");
    let log = tools::log_file(&out)?;
    let t0 = Instant::now();
    let mut vm = Command::new("setsid")
        .args(["sh", "-c"])
        .arg(format!("exec {}", qemu_cmd(vm_dir, &img.to_string_lossy())))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("starting qemu")?;
    cleanup::add_proc(vm.id(), Stop::Kill);
    let healthy = || std::fs::read_to_string(&out).is_ok_and(|t| t.contains("rewind-vm: healthy"));
    tools::poll(1200, Duration::from_millis(50), || {
        healthy() || !matches!(vm.try_wait(), Ok(None))
    });
    // Written down to the millisecond, as the script's `since` did.
    let took = super::stats::round(tools::since(t0), 3);
    let _ = vm.kill();
    let _ = vm.wait();
    cleanup::forget_proc(vm.id());
    if !healthy() {
        bail!(
            "the VM on {} did not boot: {}",
            img.display(),
            tools::tail_file(&out, 5)
        );
    }
    Ok(took)
}

/// Waits up to 10 s for a 4 KiB read of the export at `uri` to succeed.
fn read_first_block(uri: &str) -> Result<()> {
    let read = || {
        Command::new("qemu-io")
            .args(["-f", "raw", "-r", "-c", "read 0 4k", uri])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !tools::poll(1000, Duration::from_millis(10), read) {
        bail!("no read from {uri} within 10 s");
    }
    Ok(())
}
