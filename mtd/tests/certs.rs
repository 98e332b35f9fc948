//! The site CA's life cycle: validity (a year by default, `--days`), NBD client certificates in
//! the layout qemu and libnbd read, revocation seen by a RUNNING target at the next handshake, a
//! corrupt revocation list refusing everyone (fail closed), and renewal keeping group ownership.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::tls_agent::*;
use common::*;
use rewind_formats::message::*;
use rewind_formats::{Batch, RecordKind, RecordRef, Seq};

fn mtd() -> std::process::Command {
    std::process::Command::new(bin("rewind-mtd"))
}

fn ca_init(dir: &Path, extra: &[&str]) {
    run_ok(mtd().args(["ca", "init", "--dir"]).arg(dir).args(extra));
}

fn issue_agent(dir: &Path, name: &str) {
    run_ok(
        mtd()
            .args(["ca", "issue", "--agent", name, "--dir"])
            .arg(dir),
    );
}

/// The register, as `ca list --json` prints it.
fn issued(dir: &Path) -> Vec<serde_json::Value> {
    let out = run_ok(mtd().args(["ca", "list", "--json", "--dir"]).arg(dir));
    serde_json::from_slice(&out.stdout).expect("ca list --json")
}

fn serials_of(dir: &Path, name: &str) -> Vec<String> {
    issued(dir)
        .iter()
        .filter(|c| c["name"] == name)
        .map(|c| c["serial"].as_str().unwrap().to_string())
        .collect()
}

/// Seconds from now until the certificate in `pem` expires.
fn secs_left(pem: &Path) -> i64 {
    let text = std::fs::read(pem).unwrap();
    let (_, p) = x509_parser::pem::parse_x509_pem(&text).expect("PEM");
    let cert = p.parse_x509().expect("X.509");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    cert.validity().not_after.timestamp() - now
}

fn serial_of(pem: &Path) -> String {
    let text = std::fs::read(pem).unwrap();
    let (_, p) = x509_parser::pem::parse_x509_pem(&text).expect("PEM");
    let cert = p.parse_x509().expect("X.509");
    cert.raw_serial()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

const DAY: i64 = 86_400;

fn assert_days(pem: &Path, days: i64) {
    let left = secs_left(pem);
    assert!(
        (days * DAY - 2 * 3600..=days * DAY + 60).contains(&left),
        "{}: expires in {left} s, expected about {days} days",
        pem.display()
    );
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn validity_is_a_year_by_default_and_days_is_respected() {
    let work = tempdir();
    let site = work.path().join("ca");
    ca_init(&site, &[]);
    issue_agent(&site, "web01");
    assert_days(&site.join("ca.crt"), 3650);
    assert_days(&site.join("server.crt"), 365);
    assert_days(&site.join("agents/web01.crt"), 365);
    assert_eq!(mode(&site), 0o700, "the CA directory is private");
    assert_eq!(mode(&site.join("ca.key")), 0o600);
    assert_eq!(mode(&site.join("issued.json")), 0o600);

    run_ok(
        mtd()
            .args(["ca", "issue", "--agent", "short", "--days", "30", "--dir"])
            .arg(&site),
    );
    assert_days(&site.join("agents/short.crt"), 30);

    let other = work.path().join("ca2");
    ca_init(&other, &["--days", "90", "--ca-days", "1000"]);
    assert_days(&other.join("ca.crt"), 1000);
    assert_days(&other.join("server.crt"), 90);
    // No certificate outlives its CA.
    run_ok(
        mtd()
            .args(["ca", "issue", "--agent", "long", "--days", "5000", "--dir"])
            .arg(&other),
    );
    assert_days(&other.join("agents/long.crt"), 1000);

    // Out-of-range days and bad names are refused, and write nothing.
    for days in ["0", "36501", "-1", "1e9"] {
        let out = run(mtd()
            .args(["ca", "issue", "--agent", "x1", "--days", days, "--dir"])
            .arg(&site));
        assert!(!out.status.success(), "--days {days} accepted");
    }
    for name in ["../evil", "a/b", "..", "", &"n".repeat(65), "sp ace"] {
        let out = run(mtd()
            .args(["ca", "issue", "--client", name, "--dir"])
            .arg(&site));
        assert!(!out.status.success(), "name {name:?} accepted");
    }
    assert!(!site.join("agents/x1.crt").exists());
    assert!(!work.path().join("evil").exists());
    assert!(!site.join("clients").exists(), "a refused name left files");
    let names: Vec<String> = issued(&site)
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["Rewind site CA", "rewind-mtd", "web01", "short"]);
    // Issuing over existing files is renewal's job.
    let out = run(mtd()
        .args(["ca", "issue", "--agent", "web01", "--dir"])
        .arg(&site));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("ca renew"));
}

#[test]
fn client_certificates_in_the_qemu_and_libnbd_layout() {
    let work = tempdir();
    let site = work.path().join("ca");
    ca_init(&site, &[]);
    issue_agent(&site, "web01");
    let out_dir = work.path().join("nbd-client");
    run_ok(
        mtd()
            .args(["ca", "issue", "--client", "backup01", "--dir"])
            .arg(&site)
            .arg("--out")
            .arg(&out_dir),
    );
    let (ca, cert, key) = (
        out_dir.join("ca-cert.pem"),
        out_dir.join("client-cert.pem"),
        out_dir.join("client-key.pem"),
    );
    assert_eq!(mode(&key), 0o600, "client key readable by others");
    assert_eq!(mode(&out_dir), 0o700);
    assert_eq!(
        std::fs::read(&ca).unwrap(),
        std::fs::read(site.join("ca.crt")).unwrap()
    );
    assert_days(&cert, 365);
    // Chains to the CA, as GnuTLS and OpenSSL see it, and is for client authentication.
    let v = run(std::process::Command::new("openssl")
        .args(["verify", "-purpose", "sslclient", "-CAfile"])
        .arg(&ca)
        .arg(&cert));
    assert_ok(&v, "openssl verify client-cert.pem");
    let text = run_ok(
        std::process::Command::new("openssl")
            .args(["x509", "-noout", "-subject", "-in"])
            .arg(&cert),
    );
    let subject = String::from_utf8_lossy(&text.stdout);
    assert!(
        subject.contains("CN = backup01") && subject.contains("OU = nbd-client"),
        "{subject}"
    );
    // The key goes with the certificate.
    let pubs: Vec<Vec<u8>> = [
        ["x509", "-noout", "-pubkey", "-in"],
        ["pkey", "-pubout", "-in", ""],
    ]
    .iter()
    .map(|args| {
        let args: Vec<&str> = args.iter().copied().filter(|a| !a.is_empty()).collect();
        let f = if args[0] == "x509" { &cert } else { &key };
        run_ok(std::process::Command::new("openssl").args(&args).arg(f)).stdout
    })
    .collect();
    assert_eq!(
        pubs[0], pubs[1],
        "client-key.pem does not go with client-cert.pem"
    );
    // rustls (the target's side) loads them too.
    rewind_mtd::tls::client_config(&ca, &cert, &key).expect("rustls loads the client files");

    // The default place, and names are one kind each: no client certificate under an agent's
    // name (it would be taken for the agent).
    run_ok(
        mtd()
            .args(["ca", "issue", "--client", "qemu01", "--dir"])
            .arg(&site),
    );
    assert!(site.join("clients/qemu01/client-key.pem").exists());
    let out = run(mtd()
        .args(["ca", "issue", "--client", "web01", "--dir"])
        .arg(&site));
    assert!(
        !out.status.success(),
        "client cert issued under an agent's name"
    );
    assert!(!site.join("clients/web01").exists());
    let kinds: Vec<(String, String)> = issued(&site)
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                c["kind"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        kinds.contains(&("backup01".into(), "client".into())),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&("web01".into(), "agent".into())),
        "{kinds:?}"
    );
}

// ---- sessions against a running target ----

fn client_cfg(site: &Path, cert: &Path, key: &Path) -> Arc<rustls::ClientConfig> {
    rewind_mtd::tls::client_config(&site.join("ca.crt"), cert, key).unwrap()
}

fn agent_files(site: &Path, agent: &str) -> (PathBuf, PathBuf) {
    (
        site.join(format!("agents/{agent}.crt")),
        site.join(format!("agents/{agent}.key")),
    )
}

/// Connect with `cfg`, say HELLO for `group` as `agent`: `Ok(session)` if WELCOMEd, `Err(what
/// happened)` otherwise (refused handshake, closed, or an ERROR).
fn session(
    addr: &str,
    cfg: Arc<rustls::ClientConfig>,
    agent: &str,
    group: &str,
) -> Result<Tls, String> {
    let mut s = connect(addr, cfg).map_err(|e| format!("handshake: {e}"))?;
    send(&mut s, &hello(agent, group)).map_err(|e| format!("send: {e}"))?;
    match recv(&mut s) {
        Some(Message::Welcome(_)) => Ok(s),
        Some(m) => Err(format!("got {m:?}")),
        None => Err("closed".into()),
    }
}

/// Send one 4 KiB record at `seq` and wait for it to be durable.
fn write_block(s: &mut Tls, group: &str, seq: u64, byte: u8) {
    let data = vec![byte; 4096];
    let recs = [RecordRef {
        disk: 0,
        kind: RecordKind::Data,
        offset: 0,
        len: 4096,
        data: &data,
    }];
    send(
        s,
        &Message::Batch(Batch::build(group, 1, Seq(seq), 1_000 * seq, &recs, 1)),
    )
    .unwrap();
    loop {
        match recv(s) {
            Some(Message::Ack(a)) if a.durable.0 >= seq => break,
            Some(Message::Ack(_)) => continue,
            other => panic!("expected ACK for seq {seq}, got {other:?}"),
        }
    }
}

fn durable(d: &Mtd, group: &str) -> u64 {
    // Inspect reads the store offline: fine for a check of what is durable.
    group_json(&inspect(&d.data_dir), group)["durable_seq"]
        .as_u64()
        .unwrap()
}

fn tls_daemon(work: &Path, site: &Path) -> (Mtd, String) {
    let d = Mtd::start_engine(
        work,
        "sync",
        &[
            "--listen",
            "127.0.0.1:0",
            "--tls-dir",
            site.to_str().unwrap(),
        ],
    );
    let addr = d.ready_lines()[0].clone();
    (d, addr)
}

#[test]
fn revocation_is_seen_by_a_running_target_at_the_next_handshake() {
    let work = tempdir();
    let site = work.path().join("ca");
    ca_init(&site, &[]);
    issue_agent(&site, "web01");
    issue_agent(&site, "db01");
    let (web_c, web_k) = agent_files(&site, "web01");
    let (db_c, db_k) = agent_files(&site, "db01");
    let (d, addr) = tls_daemon(work.path(), &site);

    let mut s = session(&addr, client_cfg(&site, &web_c, &web_k), "web01", "g1").unwrap();
    write_block(&mut s, "g1", 1, 0x11);
    drop(s);
    session(&addr, client_cfg(&site, &db_c, &db_k), "db01", "g2").expect("db01 before");

    // Revoke web01 while the daemon runs.
    let serial = serial_of(&web_c);
    let out = run_ok(mtd().args(["ca", "revoke", "web01", "--dir"]).arg(&site));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&serial));
    assert!(site.join("crl.pem").exists());

    let r = session(&addr, client_cfg(&site, &web_c, &web_k), "web01", "g1");
    assert!(r.is_err(), "revoked web01 got a session");
    // The unrevoked agent still works.
    session(&addr, client_cfg(&site, &db_c, &db_k), "db01", "g2").expect("db01 after");
    let log = d.log_text();
    assert!(
        log.contains(&format!("certificate web01 serial {serial} revoked")),
        "{}",
        d.log_tail(20)
    );
    assert!(
        !log.contains("certificate db01 serial"),
        "{}",
        d.log_tail(20)
    );
    // Nothing the revoked agent could have sent landed.
    assert_eq!(durable(&d, "g1"), 1);

    // Revoking again, or a bad serial, changes nothing.
    run_ok(mtd().args(["ca", "revoke", "web01", "--dir"]).arg(&site));
    let out = run(mtd()
        .args(["ca", "revoke", "--serial", "00ff", "--dir"])
        .arg(&site));
    assert!(!out.status.success());
    let out = run(mtd().args(["ca", "revoke", "nobody", "--dir"]).arg(&site));
    assert!(!out.status.success());
    session(&addr, client_cfg(&site, &db_c, &db_k), "db01", "g2").expect("db01 at the end");
}

#[test]
fn a_corrupt_revocation_list_refuses_everyone() {
    let work = tempdir();
    let site = work.path().join("ca");
    ca_init(&site, &[]);
    issue_agent(&site, "web01");
    let (c, k) = agent_files(&site, "web01");
    let (d, addr) = tls_daemon(work.path(), &site);
    let mut s = session(&addr, client_cfg(&site, &c, &k), "web01", "g1").unwrap();
    write_block(&mut s, "g1", 1, 0x22);
    drop(s);

    // Not PEM at all, then PEM of garbage: both refuse a valid, unrevoked certificate.
    for (i, text) in [
        "this is not a CRL\n".to_string(),
        "-----BEGIN X509 CRL-----\nAAAAAAAAAAAAAAAA\n-----END X509 CRL-----\n".to_string(),
    ]
    .iter()
    .enumerate()
    {
        std::fs::write(site.join("crl.pem"), text).unwrap();
        let r = session(&addr, client_cfg(&site, &c, &k), "web01", "g1");
        assert!(r.is_err(), "corrupt CRL #{i}: web01 was let in");
    }
    let log = d.log_text();
    assert!(
        log.contains("revocation list unusable"),
        "{}",
        d.log_tail(20)
    );
    assert!(
        log.contains("certificate web01 serial"),
        "{}",
        d.log_tail(20)
    );
    assert_eq!(durable(&d, "g1"), 1);

    // A CRL signed by another CA is not this site's: refused as well.
    let rogue = work.path().join("rogue");
    ca_init(&rogue, &[]);
    issue_agent(&rogue, "x1");
    run_ok(mtd().args(["ca", "revoke", "x1", "--dir"]).arg(&rogue));
    std::fs::copy(rogue.join("crl.pem"), site.join("crl.pem")).unwrap();
    assert!(
        session(&addr, client_cfg(&site, &c, &k), "web01", "g1").is_err(),
        "a foreign CRL let web01 in"
    );

    // A valid CRL (revoking someone else) restores service without a restart.
    issue_agent(&site, "other");
    run_ok(mtd().args(["ca", "revoke", "other", "--dir"]).arg(&site));
    let mut s = session(&addr, client_cfg(&site, &c, &k), "web01", "g1")
        .expect("web01 after the CRL was fixed");
    write_block(&mut s, "g1", 2, 0x23);
}

#[test]
fn renewal_keeps_ownership_and_the_old_serial_can_be_revoked() {
    let work = tempdir();
    let site = work.path().join("ca");
    ca_init(&site, &[]);
    issue_agent(&site, "web01");
    issue_agent(&site, "db01");
    let (c, k) = agent_files(&site, "web01");
    // Keep the old files, as an agent not yet switched would.
    let old = work.path().join("old");
    std::fs::create_dir(&old).unwrap();
    let (old_c, old_k) = (old.join("web01.crt"), old.join("web01.key"));
    std::fs::copy(&c, &old_c).unwrap();
    std::fs::copy(&k, &old_k).unwrap();
    let old_serial = serial_of(&c);

    let (d, addr) = tls_daemon(work.path(), &site);
    let mut s = session(&addr, client_cfg(&site, &old_c, &old_k), "web01", "g1").unwrap();
    write_block(&mut s, "g1", 1, 0x31);
    drop(s);

    run_ok(mtd().args(["ca", "renew", "web01", "--dir"]).arg(&site));
    let new_serial = serial_of(&c);
    assert_ne!(new_serial, old_serial);
    assert_eq!(
        serials_of(&site, "web01"),
        [old_serial.clone(), new_serial.clone()]
    );
    assert_eq!(mode(&k), 0o600);
    assert_days(&c, 365);

    // Both work until the old one is revoked; the new one owns g1 (ownership is by name).
    session(&addr, client_cfg(&site, &old_c, &old_k), "web01", "g1").expect("old before revoke");
    run_ok(
        mtd()
            .args(["ca", "revoke", "--serial", &old_serial, "--dir"])
            .arg(&site),
    );
    assert!(
        session(&addr, client_cfg(&site, &old_c, &old_k), "web01", "g1").is_err(),
        "the revoked old certificate still works"
    );
    let mut s = session(&addr, client_cfg(&site, &c, &k), "web01", "g1").expect("renewed web01");
    write_block(&mut s, "g1", 2, 0x32);
    drop(s);
    assert_eq!(durable(&d, "g1"), 2);
    // Another agent still may not take g1.
    let (db_c, db_k) = agent_files(&site, "db01");
    let r = session(&addr, client_cfg(&site, &db_c, &db_k), "db01", "g1");
    assert!(r.unwrap_err().contains("Forbidden"));
    assert!(d
        .log_text()
        .contains(&format!("certificate web01 serial {old_serial} revoked")));

    // Renewing a name never issued is an error, not a fresh issue.
    let out = run(mtd().args(["ca", "renew", "ghost", "--dir"]).arg(&site));
    assert!(!out.status.success());
    assert!(!site.join("agents/ghost.crt").exists());
    // The server certificate renews too (a year again), for the next start.
    let before = serial_of(&site.join("server.crt"));
    run_ok(mtd().args(["ca", "renew", "--server", "--dir"]).arg(&site));
    assert_ne!(serial_of(&site.join("server.crt")), before);
    assert_days(&site.join("server.crt"), 365);
}

#[test]
fn certificates_from_before_the_register_can_be_revoked_and_renewed() {
    let work = tempdir();
    let site = work.path().join("ca");
    ca_init(&site, &[]);
    issue_agent(&site, "old1");
    issue_agent(&site, "old2");
    // As a CA directory made before issued.json existed.
    std::fs::remove_file(site.join("issued.json")).unwrap();
    let serial = serial_of(&site.join("agents/old1.crt"));
    run_ok(mtd().args(["ca", "revoke", "old1", "--dir"]).arg(&site));
    let crl = run_ok(
        std::process::Command::new("openssl")
            .args(["crl", "-noout", "-text", "-in"])
            .arg(site.join("crl.pem")),
    );
    let text = String::from_utf8_lossy(&crl.stdout).to_ascii_lowercase();
    assert!(text.contains(&serial), "{serial} not in the CRL:\n{text}");
    // The CRL verifies against the CA.
    assert_ok(
        &run(std::process::Command::new("openssl")
            .args(["crl", "-noout", "-CAfile"])
            .arg(site.join("ca.crt"))
            .arg("-in")
            .arg(site.join("crl.pem"))),
        "openssl crl -CAfile",
    );
    let before = serial_of(&site.join("agents/old2.crt"));
    run_ok(mtd().args(["ca", "renew", "old2", "--dir"]).arg(&site));
    assert_eq!(
        serials_of(&site, "old2"),
        [before, serial_of(&site.join("agents/old2.crt"))]
    );
}

/// The files `ca issue --client` writes are what qemu and libnbd load: against qemu-nbd (GnuTLS,
/// verifying client certificates, presenting this CA's server certificate), qemu-img with
/// `tls-creds-x509,dir=` and nbdinfo with `tls-certificates=` connect; the same layout from
/// another CA is refused. (qemu checks the key usage of its own certificate: this is what caught
/// certificates without key encipherment.)
#[test]
fn client_certificates_work_with_qemu_and_libnbd() {
    let work = tempdir();
    let site = work.path().join("ca");
    ca_init(&site, &[]);
    let good = work.path().join("good");
    run_ok(
        mtd()
            .args(["ca", "issue", "--client", "hv01", "--dir"])
            .arg(&site)
            .arg("--out")
            .arg(&good),
    );
    let rogue = work.path().join("rogue");
    ca_init(&rogue, &[]);
    let bad = work.path().join("bad");
    run_ok(
        mtd()
            .args(["ca", "issue", "--client", "hv01", "--dir"])
            .arg(&rogue)
            .arg("--out")
            .arg(&bad),
    );
    // The attacker even has the right CA certificate, just not a certificate it signed.
    std::fs::copy(site.join("ca.crt"), bad.join("ca-cert.pem")).unwrap();

    // qemu-nbd's server side: this CA's server certificate, in qemu's layout.
    let srv = work.path().join("srv");
    std::fs::create_dir(&srv).unwrap();
    for (from, to) in [
        ("ca.crt", "ca-cert.pem"),
        ("server.crt", "server-cert.pem"),
        ("server.key", "server-key.pem"),
    ] {
        std::fs::copy(site.join(from), srv.join(to)).unwrap();
    }
    let disk = work.path().join("disk.img");
    std::fs::write(&disk, vec![0x5a; 1 << 20]).unwrap();
    let sock = work.path().join("nbd.sock");
    let _server = Proc::spawn(
        std::process::Command::new("qemu-nbd")
            .arg("--persistent")
            .arg("-k")
            .arg(&sock)
            .arg("--object")
            .arg(format!(
                "tls-creds-x509,id=tls0,endpoint=server,dir={},verify-peer=on",
                srv.display()
            ))
            .args(["--tls-creds", "tls0", "-f", "raw", "--read-only"])
            .arg(&disk),
    );
    let t0 = std::time::Instant::now();
    while !sock.exists() {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "qemu-nbd did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let qemu_img = |dir: &Path| {
        run(std::process::Command::new("qemu-img")
            .args(["info", "--object"])
            .arg(format!(
                "tls-creds-x509,id=tls0,endpoint=client,dir={}",
                dir.display()
            ))
            .arg("--image-opts")
            .arg(format!(
                "driver=nbd,path={},tls-creds=tls0,tls-hostname=localhost",
                sock.display()
            )))
    };
    let nbdinfo = |dir: &Path| {
        run(std::process::Command::new("nbdinfo")
            .env(
                "PATH",
                format!("/usr/bin:{}", std::env::var("PATH").unwrap_or_default()),
            )
            .arg("--size")
            .arg(format!(
                "nbds+unix:///?socket={}&tls-certificates={}",
                sock.display(),
                dir.display()
            )))
    };
    let out = qemu_img(&good);
    assert_ok(&out, "qemu-img info over TLS with the issued client files");
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 MiB"));
    let out = nbdinfo(&good);
    assert_ok(&out, "nbdinfo over TLS with the issued client files");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1048576");
    assert!(
        !qemu_img(&bad).status.success(),
        "qemu-img with another CA's certificate"
    );
    assert!(
        !nbdinfo(&bad).status.success(),
        "nbdinfo with another CA's certificate"
    );
}

#[test]
fn an_nbd_client_certificate_cannot_speak_as_an_agent() {
    let work = tempdir();
    let site = work.path().join("ca");
    ca_init(&site, &[]);
    issue_agent(&site, "web01");
    let out_dir = work.path().join("reader");
    run_ok(
        mtd()
            .args(["ca", "issue", "--client", "reader", "--out"])
            .arg(&out_dir)
            .arg("--dir")
            .arg(&site),
    );
    let (d, addr) = tls_daemon(work.path(), &site);
    let reader = client_cfg(
        &site,
        &out_dir.join("client-cert.pem"),
        &out_dir.join("client-key.pem"),
    );
    // Its certificate chains to the site CA, so the TLS handshake itself succeeds; the session
    // must still be refused before any group is made.
    let r = session(&addr, reader, "reader", "stolen");
    assert!(r.is_err(), "an NBD client certificate got an agent session");
    assert!(
        d.log_text()
            .contains("an NBD client certificate tried to speak as an agent"),
        "{}",
        d.log_tail(20)
    );
    let report = inspect(&d.data_dir);
    let groups: Vec<_> = report["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .map(|g| g["name"].clone())
        .collect();
    assert!(
        !groups.contains(&serde_json::json!("stolen")),
        "a group was made for the client certificate: {groups:?}"
    );
    // The agent's own certificate still works.
    let (c, k) = agent_files(&site, "web01");
    session(&addr, client_cfg(&site, &c, &k), "web01", "g1").expect("agent session");
}
