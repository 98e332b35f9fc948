//! The control API on TCP (`serve --control-listen`, mutual TLS): a site certificate gets what
//! root gets on the unix socket; every other certificate of the site (agent, NBD client), a
//! revoked site certificate, another CA's, and no certificate at all are refused, at the
//! handshake or with a 403 that says why. Requests go through a real rustls client.

mod common;

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::tls_agent::*;
use common::*;
use rewind_formats::message::*;

fn mtd() -> std::process::Command {
    std::process::Command::new(bin("rewind-mtd"))
}

fn issue(ca: &Path, flag: &str, name: &str) {
    run_ok(mtd().args(["ca", "issue", flag, name, "--dir"]).arg(ca));
}

fn cfg(ca: &Path, cert: &Path, key: &Path) -> Arc<rustls::ClientConfig> {
    rewind_mtd::tls::client_config(&ca.join("ca.crt"), cert, key).unwrap()
}

fn site_cfg(ca: &Path, name: &str) -> Arc<rustls::ClientConfig> {
    let d = ca.join("sites").join(name);
    cfg(ca, &d.join("site.crt"), &d.join("site.key"))
}

/// One HTTP/1.1 request over a fresh TLS connection: `Ok((status, body))`, or `Err` when the
/// handshake or the connection was refused.
fn request(
    addr: &str,
    cfg: Arc<rustls::ClientConfig>,
    method: &str,
    path: &str,
    body: &str,
) -> Result<(u16, String), String> {
    let tcp = std::net::TcpStream::connect(addr).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(cfg, name).unwrap();
    let mut s = rustls::StreamOwned::new(conn, tcp);
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .map_err(|e| format!("write: {e}"))?;
    let mut out = Vec::new();
    let r = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).to_string();
    if text.is_empty() {
        return Err(format!("no answer: {r:?}"));
    }
    let status: u16 = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("not HTTP: {text:?}"))?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    Ok((status, body.to_string()))
}

#[test]
fn only_site_certificates_use_the_control_api_over_tcp() {
    let work = tempdir();
    let ca = work.path().join("ca");
    run_ok(mtd().args(["ca", "init", "--dir"]).arg(&ca));
    issue(&ca, "--site", "site1");
    issue(&ca, "--site", "gone");
    issue(&ca, "--agent", "web01");
    issue(&ca, "--client", "reader");
    run_ok(mtd().args(["ca", "revoke", "gone", "--dir"]).arg(&ca));
    let other = work.path().join("other-ca");
    run_ok(mtd().args(["ca", "init", "--dir"]).arg(&other));
    issue(&other, "--site", "site1");

    // Off unless given, and never without TLS.
    let out = run(mtd()
        .args(["serve", "--data-dir"])
        .arg(work.path().join("x"))
        .args(["--control-listen", "127.0.0.1:0"]));
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--tls-dir"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let d = Mtd::start_engine(
        work.path(),
        "sync",
        &[
            "--listen",
            "127.0.0.1:0",
            "--tls-dir",
            ca.to_str().unwrap(),
            "--control-listen",
            "127.0.0.1:0",
        ],
    );
    let lines = d.ready_lines();
    let agents = lines[0].clone();
    let addr = lines
        .iter()
        .find_map(|l| l.strip_prefix("control-tcp "))
        .unwrap_or_else(|| panic!("no control-tcp line in {lines:?}"))
        .to_string();

    // A group to act on, made by its agent.
    let agent_cfg = cfg(
        &ca,
        &ca.join("agents/web01.crt"),
        &ca.join("agents/web01.key"),
    );
    let mut s = connect(&agents, agent_cfg.clone()).expect("agent handshake");
    send(&mut s, &hello("web01", "g1")).unwrap();
    assert!(matches!(recv(&mut s), Some(Message::Welcome(_))));

    // The site reads and changes, as root does on the socket.
    let site = site_cfg(&ca, "site1");
    let (status, body) = request(&addr, site.clone(), "GET", "/v1/groups", "").unwrap();
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        v["groups"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["name"] == "g1"),
        "{v}"
    );
    let (status, body) = request(
        &addr,
        site.clone(),
        "POST",
        "/v1/groups/g1/retention",
        r#"{"retention":"2h"}"#,
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    // Bad input still gets its own answer.
    let (status, _) = request(
        &addr,
        site.clone(),
        "POST",
        "/v1/groups/nosuch/retention",
        r#"{"retention":"2h"}"#,
    )
    .unwrap();
    assert_eq!(status, 404);
    let (status, _) = request(
        &addr,
        site,
        "POST",
        "/v1/groups/g1/retention",
        r#"{"retention":"forever"}"#,
    )
    .unwrap();
    assert_eq!(status, 400);

    // The site's other certificates complete the handshake and get a 403 saying why, for a
    // read as for a change.
    let reader_dir = ca.join("clients/reader");
    let reader = cfg(
        &ca,
        &reader_dir.join("client-cert.pem"),
        &reader_dir.join("client-key.pem"),
    );
    for (who, c) in [("agent", agent_cfg), ("nbd client", reader)] {
        for (method, path, body) in [
            ("GET", "/v1/groups", ""),
            ("POST", "/v1/groups/g1/retention", r#"{"retention":"1h"}"#),
        ] {
            let (status, text) = request(&addr, c.clone(), method, path, body).unwrap();
            assert_eq!(status, 403, "{who} {method} {path}: {text}");
            assert!(text.contains("only a site certificate"), "{text}");
        }
    }

    // Refused at the handshake: revoked, another CA's, none.
    let no_cert = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates({
        let mut r = rustls::RootCertStore::empty();
        for c in rewind_linux::pem::certs(&ca.join("ca.crt")).unwrap() {
            r.add(c).unwrap();
        }
        r
    })
    .with_no_client_auth();
    let other_site = {
        let d = other.join("sites/site1");
        // Trusts our CA (so the server is accepted) but presents the other CA's certificate.
        rewind_mtd::tls::client_config(&ca.join("ca.crt"), &d.join("site.crt"), &d.join("site.key"))
            .unwrap()
    };
    for (who, c) in [
        ("revoked site", site_cfg(&ca, "gone")),
        ("another CA's site", other_site),
        ("no certificate", Arc::new(no_cert)),
    ] {
        let r = request(&addr, c, "GET", "/v1/groups", "");
        assert!(r.is_err(), "{who}: got an answer {r:?}");
    }
    let log = d.log_text();
    assert!(
        log.contains("control API: TLS handshake refused"),
        "{}",
        d.log_tail(30)
    );
    assert!(
        log.contains("control API request refused"),
        "{}",
        d.log_tail(30)
    );

    // The retention the site set is the group's (read back over the unix socket's CLI report).
    let report = inspect(&d.data_dir);
    let g = group_json(&report, "g1");
    assert_eq!(g["retention"], "2h", "{g}");
}
