//! NBD over TLS with a client slower than the daemon: in a network namespace whose TCP buffers
//! are 64 KiB, the daemon's socket fills while a reply is being written. Over rustls, the tail of
//! that reply then sits in the TLS layer's buffer until the next write or a flush; the client
//! waits for that very reply, so without a flush nothing ever moves again (a writable overlay
//! has no idle deadline). Whole-export copies in both directions must finish, and match.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::nbd_pki::{nbds, Pki};
use common::*;

/// Bytes of the replicated disk (`sda:32MiB` below): every copy fills the small buffers many
/// times over.
const DISK: u64 = 32 << 20;
/// A copy of `DISK` on loopback takes well under a second; a stall shows as this deadline.
const COPY_DEADLINE_S: &str = "90";

/// A libnbd tool inside the namespace, killed at the deadline (a hang is the failure looked for).
fn nbdcopy_in(ns: &NetNs, from: &str, to: &str) -> Output {
    run(Command::new("ip")
        .args(["netns", "exec", &ns.name, "timeout", COPY_DEADLINE_S])
        .args(["/usr/bin/nbdcopy", "--request-size=4194304", from, to]))
}

/// None when the files are equal; else what differs (sizes, or the differing 4 KiB blocks).
fn differ(a: &Path, b: &Path) -> Option<String> {
    let (a, b) = (std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
    if a.len() != b.len() {
        return Some(format!("{} bytes vs {}", a.len(), b.len()));
    }
    let blocks: Vec<usize> = (0..a.len() / 4096)
        .filter(|i| a[i * 4096..(i + 1) * 4096] != b[i * 4096..(i + 1) * 4096])
        .collect();
    (!blocks.is_empty()).then(|| {
        format!(
            "{} of {} 4 KiB blocks differ, the first at {:?}",
            blocks.len(),
            a.len() / 4096,
            &blocks[..blocks.len().min(8)]
        )
    })
}

#[test]
fn tls_copies_finish_through_full_socket_buffers() {
    if !can_run()
        || !have_tools(
            "tls_copies_finish_through_full_socket_buffers",
            &["ip", "tc", "nbdcopy", "timeout"],
        )
    {
        return;
    }
    let work = tempdir();
    let w = work.path();
    let ns = NetNs::new(1, "10gbit");
    // Per-namespace TCP buffers: 4 KiB minimum, 16 KiB default, 64 KiB at most, both ways.
    for key in ["net.ipv4.tcp_wmem", "net.ipv4.tcp_rmem"] {
        ns.exec(&["sysctl", "-q", "-w", &format!("{key}=4096 16384 65536")]);
    }
    let pki = Pki::new(w);
    let clients = w.join("nbd-clients.toml");
    std::fs::write(&clients, "[clients.writer]\nwrite = [\"g\"]\n").unwrap();
    let ca = pki.ca.to_str().unwrap().to_string();
    let clients_s = clients.to_str().unwrap().to_string();
    let d = ns.within(|| {
        Mtd::start_engine(
            w,
            "sync",
            &[
                "--nbd-listen",
                "127.0.0.1:0",
                "--nbd-tls-dir",
                &ca,
                "--nbd-clients",
                &clients_s,
            ],
        )
    });
    let wl = Workload {
        group: "g".into(),
        disks: vec!["sda:32MiB".into()],
        seed: 11,
        pattern: "random",
        record_size: "64KiB",
        payload: "random",
    };
    let target = d.target();
    ns.within(|| run_ok(&mut wl.run_cmd(&target, "64MiB")));
    assert_ok(
        &run(d.rewind_cmd().args(["overlay", "create", "o1", "g/sda"])),
        "overlay create",
    );
    let certs = pki.client("writer");
    let uri = nbds(&d.nbd_tcp(), "g/sda@overlay:o1", &certs);
    let want = w.join("want.img");
    assert_ok(&dump(&d.data_dir, "g", "sda", "latest", &want), "dump");

    // Reads: the daemon writes replies faster than the client drains them.
    for round in 0..3 {
        let got = w.join(format!("got{round}.img"));
        let out = nbdcopy_in(&ns, &uri, got.to_str().unwrap());
        assert_ok(&out, &format!("read round {round} (exit 124 is the stall)"));
        if let Some(d) = differ(&want, &got) {
            panic!("read round {round} differs from latest: {d}");
        }
    }

    // Writes then a read-back: replies are small, but reads of what was written are not.
    let fresh = w.join("fresh.img");
    let mut noise = Vec::new();
    std::io::Read::read_to_end(
        &mut std::io::Read::take(std::fs::File::open("/dev/urandom").unwrap(), DISK),
        &mut noise,
    )
    .unwrap();
    std::fs::write(&fresh, &noise).unwrap();
    assert_ok(
        &nbdcopy_in(&ns, fresh.to_str().unwrap(), &uri),
        "write the overlay (exit 124 is the stall)",
    );
    let back = w.join("back.img");
    assert_ok(
        &nbdcopy_in(&ns, &uri, back.to_str().unwrap()),
        "read the overlay back (exit 124 is the stall)",
    );
    if let Some(d) = differ(&fresh, &back) {
        panic!("the overlay does not hold what was written: {d}");
    }
}
