//! Mutual TLS between agents and the target: `rewind-mtd ca init/issue` make the files; the target
//! accepts only certificates from its CA, only for groups the certificate's agent owns, and plain
//! TCP only with --insecure on loopback.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::tls_agent::*;
use common::*;
use rewind_formats::message::*;
use rewind_formats::{Batch, RecordKind, RecordRef, Seq};

fn ca(dir: &Path, agents: &[&str]) {
    run_ok(
        std::process::Command::new(bin("rewind-mtd"))
            .args(["ca", "init", "--dir"])
            .arg(dir),
    );
    for a in agents {
        run_ok(
            std::process::Command::new(bin("rewind-mtd"))
                .args(["ca", "issue", "--agent", a, "--dir"])
                .arg(dir),
        );
    }
}

fn client(ca_dir: &Path, cert_dir: &Path, agent: &str) -> Arc<rustls::ClientConfig> {
    rewind_mtd::tls::client_config(
        &ca_dir.join("ca.crt"),
        &cert_dir.join(format!("agents/{agent}.crt")),
        &cert_dir.join(format!("agents/{agent}.key")),
    )
    .unwrap()
}

#[test]
fn mutual_tls_and_group_ownership() {
    let work = tempdir();
    let site = work.path().join("ca");
    let rogue = work.path().join("rogue");
    ca(&site, &["web01", "db01"]);
    ca(&rogue, &["web01"]);
    // Keys are the owner's only.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(site.join("agents/web01.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let again = run(std::process::Command::new(bin("rewind-mtd"))
        .args(["ca", "init", "--dir"])
        .arg(&site));
    assert!(!again.status.success(), "ca init overwrote a CA");

    let d = Mtd::start_engine(
        work.path(),
        "uring",
        &[
            "--listen",
            "127.0.0.1:0",
            "--tls-dir",
            site.to_str().unwrap(),
        ],
    );
    let addr = d.ready_lines()[0].clone();

    // The owner: welcomed, and its batch is durable and readable.
    let mut s = connect(&addr, client(&site, &site, "web01")).unwrap();
    send(&mut s, &hello("web01", "g1")).unwrap();
    assert!(matches!(recv(&mut s), Some(Message::Welcome(_))));
    let data = vec![0x5au8; 4096];
    let recs = [RecordRef {
        disk: 0,
        kind: RecordKind::Data,
        offset: 8192,
        len: 4096,
        data: &data,
    }];
    send(
        &mut s,
        &Message::Batch(Batch::build("g1", 1, Seq(1), 1_000, &recs, 1)),
    )
    .unwrap();
    loop {
        match recv(&mut s) {
            Some(Message::Ack(a)) if a.durable.0 >= 1 => break,
            Some(Message::Ack(_)) => continue,
            other => panic!("expected ACK, got {other:?}"),
        }
    }
    drop(s);
    let img = work.path().join("g1.img");
    assert_ok(&dump(&d.data_dir, "g1", "sda", "latest", &img), "dump");
    assert_eq!(std::fs::read(&img).unwrap()[8192..12288], data[..]);
    assert_eq!(group_json(&inspect(&d.data_dir), "g1")["durable_seq"], 1);

    // Another agent of the same site may not write to web01's group.
    let mut s = connect(&addr, client(&site, &site, "db01")).unwrap();
    send(&mut s, &hello("db01", "g1")).unwrap();
    match recv(&mut s) {
        Some(Message::Error(e)) => {
            assert_eq!(e.code, ErrorCode::Forbidden);
            assert!(
                e.message.contains("belongs to another agent") && !e.message.contains("web01"),
                "{}",
                e.message
            );
        }
        other => panic!("expected ERROR Forbidden, got {other:?}"),
    }
    // Nor claim to be web01 with db01's certificate.
    let mut s = connect(&addr, client(&site, &site, "db01")).unwrap();
    send(&mut s, &hello("web01", "g1")).unwrap();
    match recv(&mut s) {
        Some(Message::Error(e)) => {
            assert_eq!(e.code, ErrorCode::Forbidden);
            assert!(
                e.message.contains("certificate is for agent db01"),
                "{}",
                e.message
            );
        }
        other => panic!("expected ERROR Forbidden, got {other:?}"),
    }
    // A certificate from another CA (even named web01) never gets a session.
    let r: std::io::Result<()> =
        connect(&addr, client(&site, &rogue, "web01")).and_then(|mut s| {
            send(&mut s, &hello("web01", "g1"))?;
            match recv(&mut s) {
                Some(m) => Err(std::io::Error::other(format!("got {m:?}"))),
                None => Err(std::io::Error::other("closed")),
            }
        });
    assert!(r.is_err());
    // Nothing changed for g1.
    assert_eq!(group_json(&inspect(&d.data_dir), "g1")["durable_seq"], 1);
    let log = d.log_text();
    assert!(log.contains("TLS handshake refused"), "{}", d.log_tail(20));
    assert!(log.contains("belongs to another agent"));
    assert!(log.contains("TLS session authenticated"));
}

#[test]
fn plain_tcp_only_with_insecure_on_loopback() {
    let work = tempdir();
    let serve = |args: &[&str]| {
        let dir = tempdir();
        run(std::process::Command::new(bin("rewind-mtd"))
            .args([
                "serve",
                "--nbd-listen",
                "none",
                "--nbd-unix",
                "none",
                "--data-dir",
            ])
            .arg(dir.path().join("data"))
            .arg("--control")
            .arg(dir.path().join("c.sock"))
            .args(args))
    };
    let out = serve(&["--listen", "127.0.0.1:0"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("refusing plain TCP"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = serve(&["--listen", "0.0.0.0:0", "--insecure"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("refusing plain TCP"));
    let out = serve(&["--listen", "127.0.0.1:0", "--tls-dir", "/nonexistent"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/ca.crt"));
    // --insecure on loopback serves (the harness stops it).
    let d = Mtd::start_engine(
        work.path(),
        "sync",
        &["--listen", "127.0.0.1:0", "--insecure"],
    );
    assert!(d.ready_lines()[0].starts_with("127.0.0.1:"));
}
