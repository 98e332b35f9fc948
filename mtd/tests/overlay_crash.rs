//! A write to an overlay that a client has flushed survives kill -9 of the daemon: after the
//! restart it reads back exactly, over NBD and through the view tree, and the point under the
//! overlay is unchanged. Writes not yet flushed may be lost (block-device rules), but never
//! corrupt what was flushed.

mod common;

use std::process::Command;

use common::*;

fn qemu_io(uri: &str, cmds: &[&str]) -> std::process::Output {
    let mut c = Command::new("qemu-io");
    c.args(["-f", "raw"]);
    for cmd in cmds {
        c.args(["-c", cmd]);
    }
    c.arg(uri);
    run(&mut c)
}

fn qemu_io_ok(uri: &str, cmds: &[&str]) -> String {
    let out = qemu_io(uri, cmds);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success()
            && !text.contains("Pattern verification failed")
            && !text.contains("error"),
        "qemu-io {cmds:?}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

#[test]
fn flushed_overlay_writes_survive_kill9() {
    let work = tempdir();
    let views = work.path().join("views");
    let mut d = Mtd::start_engine(work.path(), "uring", &["--views", views.to_str().unwrap()]);
    let wl = Workload {
        group: "g".into(),
        disks: vec!["sda:16MiB".into()],
        seed: 11,
        pattern: "random",
        record_size: "4KiB",
        payload: "random",
    };
    run_ok(&mut wl.run_cmd(&d.target(), "8MiB"));
    run_ok(
        d.rewind_cmd()
            .args(["overlay", "create", "c1", "g/sda@seq:1000"]),
    );
    let point = work.path().join("point.img");
    assert_ok(&dump(&d.data_dir, "g", "sda", "seq:1000", &point), "dump");

    let uri = d.nbd_uri("g/sda@overlay:c1");
    for round in 0..5u8 {
        let pat = 0x10 + round;
        let off = round as u64 * (3 << 20) + 512;
        // qemu-io flushes on exit: the write is acknowledged durable when it returns.
        qemu_io_ok(
            &uri,
            &[
                &format!("write -P {pat} {off} 1M"),
                &format!("write -z {} 8k", off + (1 << 20)),
            ],
        );
        d.kill9();
        d.restart();
        for r in 0..=round {
            let p = 0x10 + r;
            let o = r as u64 * (3 << 20) + 512;
            qemu_io_ok(
                &uri,
                &[
                    &format!("read -P {p} {o} 1M"),
                    &format!("read -P 0 {} 8k", o + (1 << 20)),
                ],
            );
        }
    }
    // The same bytes through the view tree.
    let file = views.join("g/sda/overlays/c1.img");
    let bytes = std::fs::read(&file).unwrap();
    assert_eq!(bytes.len(), 16 << 20);
    assert!(bytes[512..512 + (1 << 20)].iter().all(|&b| b == 0x10));
    // Untouched ranges still read as the point, and the point itself never changed.
    let orig = std::fs::read(&point).unwrap();
    assert_eq!(&bytes[..512], &orig[..512]);
    assert_eq!(&bytes[15 << 20..], &orig[15 << 20..]);
    let again = work.path().join("again.img");
    assert_ok(&dump(&d.data_dir, "g", "sda", "seq:1000", &again), "dump");
    assert!(
        std::fs::read(&again).unwrap() == orig,
        "the point under the overlay changed"
    );
}
