//! Certificates for a site of many master targets: the configuration server's (`ca issue
//! --site`, organisational unit "site") and other targets' server certificates from the one site
//! CA (`ca issue --server NAME --host HOST`), which `serve --tls-dir` takes as they are written.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use common::tls_agent::*;
use common::*;
use rewind_formats::message::*;

fn mtd() -> std::process::Command {
    std::process::Command::new(bin("rewind-mtd"))
}

fn ca_init(dir: &Path) {
    run_ok(mtd().args(["ca", "init", "--dir"]).arg(dir));
}

fn subject_ou(pem: &Path) -> Option<String> {
    let text = std::fs::read(pem).unwrap();
    let (_, p) = x509_parser::pem::parse_x509_pem(&text).expect("PEM");
    let cert = p.parse_x509().expect("X.509");
    let ou = cert
        .subject()
        .iter_organizational_unit()
        .next()
        .map(|o| o.as_str().unwrap().to_string());
    ou
}

fn sans(pem: &Path) -> Vec<String> {
    let text = std::fs::read(pem).unwrap();
    let (_, p) = x509_parser::pem::parse_x509_pem(&text).expect("PEM");
    let cert = p.parse_x509().expect("X.509");
    let ext = cert.subject_alternative_name().unwrap().expect("SAN");
    ext.value
        .general_names
        .iter()
        .map(|n| match n {
            x509_parser::extensions::GeneralName::DNSName(d) => d.to_string(),
            x509_parser::extensions::GeneralName::IPAddress(b) if b.len() == 4 => {
                format!("{}.{}.{}.{}", b[0], b[1], b[2], b[3])
            }
            other => format!("{other:?}"),
        })
        .collect()
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn issued(dir: &Path) -> Vec<serde_json::Value> {
    let out = run_ok(mtd().args(["ca", "list", "--json", "--dir"]).arg(dir));
    serde_json::from_slice(&out.stdout).expect("ca list --json")
}

#[test]
fn site_certificates_have_their_own_kind_and_layout() {
    let work = tempdir();
    let ca = work.path().join("ca");
    ca_init(&ca);
    run_ok(
        mtd()
            .args(["ca", "issue", "--site", "site1", "--dir"])
            .arg(&ca),
    );
    let d = ca.join("sites/site1");
    assert_eq!(mode(&d), 0o700);
    assert_eq!(mode(&d.join("site.key")), 0o600);
    assert_eq!(
        std::fs::read(d.join("ca.crt")).unwrap(),
        std::fs::read(ca.join("ca.crt")).unwrap(),
        "the CA copy"
    );
    assert_eq!(subject_ou(&d.join("site.crt")).as_deref(), Some("site"));
    let reg = issued(&ca);
    let rec = reg.iter().find(|c| c["name"] == "site1").expect("register");
    assert_eq!(rec["kind"], "site");

    // A name has one kind: no agent or client called site1, no site called like an agent.
    run_ok(
        mtd()
            .args(["ca", "issue", "--agent", "web01", "--dir"])
            .arg(&ca),
    );
    for (flag, name) in [
        ("--agent", "site1"),
        ("--client", "site1"),
        ("--site", "web01"),
    ] {
        let out = run(mtd().args(["ca", "issue", flag, name, "--dir"]).arg(&ca));
        assert!(!out.status.success(), "{flag} {name} was issued");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("already the name of"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Issued once; renewed keeps the kind; revoked by name.
    let out = run(mtd()
        .args(["ca", "issue", "--site", "site1", "--dir"])
        .arg(&ca));
    assert!(!out.status.success(), "issued twice");
    run_ok(mtd().args(["ca", "renew", "site1", "--dir"]).arg(&ca));
    assert_eq!(subject_ou(&d.join("site.crt")).as_deref(), Some("site"));
    let out = run_ok(mtd().args(["ca", "revoke", "site1", "--dir"]).arg(&ca));
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text.matches("revoked site certificate site1").count(),
        2,
        "{text}"
    );

    // The library call the site makes, into a directory of its choice.
    let out_dir = work.path().join("bundle");
    let f = rewind_mtd::tls::ca::issue(
        &ca,
        rewind_mtd::tls::ca::Kind::Site,
        "site2",
        Some(&out_dir),
        30,
    )
    .unwrap();
    assert_eq!(f.cert, out_dir.join("site.crt"));
    assert_eq!(f.ca.as_deref(), Some(out_dir.join("ca.crt").as_path()));
    // Kinds that are not issued by name are refused by the library too.
    for kind in [
        rewind_mtd::tls::ca::Kind::Server,
        rewind_mtd::tls::ca::Kind::Ca,
    ] {
        assert!(rewind_mtd::tls::ca::issue(&ca, kind, "x", None, 30).is_err());
    }
}

/// Connect as server name `host` and finish the handshake.
fn handshake(addr: &str, host: &str, cfg: Arc<rustls::ClientConfig>) -> std::io::Result<Tls> {
    let tcp = std::net::TcpStream::connect(addr)?;
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    let name = rustls::pki_types::ServerName::try_from(host.to_string()).unwrap();
    let conn = rustls::ClientConnection::new(cfg, name).unwrap();
    let mut s = rustls::StreamOwned::new(conn, tcp);
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock)?;
    }
    Ok(s)
}

#[test]
fn one_ca_issues_server_certificates_for_other_targets() {
    let work = tempdir();
    let ca = work.path().join("ca");
    ca_init(&ca);
    run_ok(
        mtd()
            .args(["ca", "issue", "--agent", "web01", "--dir"])
            .arg(&ca),
    );
    run_ok(
        mtd()
            .args(["ca", "issue", "--site", "site1", "--dir"])
            .arg(&ca),
    );
    // Target "mt2", as the site hands it over: its own directory, no CA key.
    let out = run_ok(
        mtd()
            .args(["ca", "issue", "--server", "mt2", "--host", "mt2.example"])
            .args(["--host", "127.0.0.1", "--host", "localhost", "--dir"])
            .arg(&ca),
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("--tls-dir"));
    let d = ca.join("servers/mt2");
    assert_eq!(mode(&d), 0o700);
    assert_eq!(mode(&d.join("server.key")), 0o600);
    assert!(!d.join("ca.key").exists());
    let names = sans(&d.join("server.crt"));
    assert_eq!(
        names,
        ["mt2.example", "127.0.0.1", "localhost"],
        "only the hosts given"
    );
    let reg = issued(&ca);
    assert!(reg
        .iter()
        .any(|c| c["name"] == "mt2" && c["kind"] == "server"));

    // Bad requests change nothing.
    let n = issued(&ca).len();
    for bad in [
        vec!["--server", "mt2", "--host", "x.example"],
        vec!["--server", "rewind-mtd", "--host", "x.example"],
        vec!["--server", "mt3", "--host", "not a host"],
        vec!["--server", "../mt3", "--host", "x.example"],
        vec!["--server", "mt3"],
    ] {
        let out = run(mtd().args(["ca", "issue"]).args(&bad).arg("--dir").arg(&ca));
        assert!(!out.status.success(), "{bad:?} was accepted");
        assert!(!out.stderr.is_empty(), "{bad:?}: no message");
    }
    assert_eq!(
        issued(&ca).len(),
        n,
        "a refused request registered a certificate"
    );
    // Nothing can be issued from the other target's directory.
    let out = run(mtd().args(["ca", "issue", "--agent", "x", "--dir"]).arg(&d));
    assert!(!out.status.success());

    // The second target serves agents with it; an agent from the same CA connects, and checks
    // the target's name; the site's certificate cannot speak as an agent.
    let t2 = work.path().join("t2");
    std::fs::create_dir(&t2).unwrap();
    let mtd2 = Mtd::start_tls(&t2, &d);
    let addr = mtd2.tcp.clone().unwrap();
    let agent = rewind_mtd::tls::client_config(
        &ca.join("ca.crt"),
        &ca.join("agents/web01.crt"),
        &ca.join("agents/web01.key"),
    )
    .unwrap();
    let mut s = handshake(&addr, "localhost", agent.clone()).expect("agent handshake");
    send(&mut s, &hello("web01", "g1")).unwrap();
    assert!(matches!(recv(&mut s), Some(Message::Welcome(_))));
    let err = handshake(&addr, "other.example", agent).err();
    assert!(err.is_some(), "the certificate is not for other.example");

    let site = ca.join("sites/site1");
    let site_cfg = rewind_mtd::tls::client_config(
        &site.join("ca.crt"),
        &site.join("site.crt"),
        &site.join("site.key"),
    )
    .unwrap();
    let mut s = handshake(&addr, "localhost", site_cfg).expect("TLS itself succeeds");
    send(&mut s, &hello("site1", "stolen")).unwrap();
    assert!(
        !matches!(recv(&mut s), Some(Message::Welcome(_))),
        "a site certificate got an agent session"
    );
    assert!(
        mtd2.log_text()
            .contains("a site certificate tried to speak as an agent"),
        "{}",
        mtd2.log_tail(20)
    );
}
