//! Connection tests: TLS both ways at once, timeouts, a foreign CA, a silent peer.
use std::net::TcpListener;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls::server::WebPkiClientVerifier;

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::PrivateKeyDer;
use rustls::RootCertStore;

use super::tls::certs;
use super::*;
use crate::config::TlsFiles;

/// A CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files in `dir`.
fn pki(dir: &Path) -> TlsFiles {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::default();
    ca.distinguished_name.push(DnType::CommonName, "test CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca.self_signed(&ca_key).unwrap();
    let leaf = |names: Vec<String>, cn: &str| {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(names).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        (p.signed_by(&key, &ca, &ca_key).unwrap(), key)
    };
    let (server, server_key) = leaf(vec!["127.0.0.1".into()], "server");
    let (client, client_key) = leaf(vec!["agent.test".into()], "agent");
    for (name, text) in [
        ("ca.crt", ca.pem()),
        ("server.crt", server.pem()),
        ("server.key", server_key.serialize_pem()),
        ("agent.crt", client.pem()),
        ("agent.key", client_key.serialize_pem()),
    ] {
        std::fs::write(dir.join(name), text).unwrap();
    }
    TlsFiles {
        ca: dir.join("ca.crt"),
        cert: dir.join("agent.crt"),
        key: dir.join("agent.key"),
    }
}

fn server_config(dir: &Path) -> Arc<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for c in certs(&dir.join("ca.crt")).unwrap() {
        roots.add(c).unwrap();
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .unwrap();
    let key =
        PrivateKeyDer::from_pem_slice(&std::fs::read(dir.join("server.key")).unwrap()).unwrap();
    Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs(&dir.join("server.crt")).unwrap(), key)
            .unwrap(),
    )
}

/// A blocking TLS echo server for one connection: it reads a chunk, then writes it back, so
/// it stops reading whenever the client is not reading its echoes.
fn echo_server(cfg: Arc<rustls::ServerConfig>) -> (TargetAddr, std::thread::JoinHandle<u64>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = TargetAddr::parse(&format!("tcp:{}", l.local_addr().unwrap())).unwrap();
    let h = std::thread::spawn(move || {
        let (s, _) = l.accept().unwrap();
        let conn = rustls::ServerConnection::new(cfg).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, s);
        let mut buf = vec![0u8; 64 << 10];
        let mut total = 0u64;
        loop {
            match tls.read(&mut buf) {
                Ok(0) | Err(_) => return total,
                Ok(n) => {
                    total += n as u64;
                    if tls.write_all(&buf[..n]).is_err() {
                        return total;
                    }
                }
            }
        }
    });
    (addr, h)
}

/// The writer pushes far more than the socket buffers hold while a reader on a clone drains
/// the echoes: neither may starve the other (the lock is never held across a wait).
#[test]
fn concurrent_writer_and_reader_do_not_deadlock() {
    let dir = tempfile::tempdir().unwrap();
    let files = pki(dir.path());
    let client = TlsClient::load(&files).unwrap();
    let (addr, server) = echo_server(server_config(dir.path()));
    let mut w = Conn::connect(&addr, Some(&client)).unwrap();
    let mut r = w.try_clone().unwrap();
    const TOTAL: usize = 48 << 20;
    let reader = std::thread::spawn(move || {
        let mut buf = vec![0u8; 100_000];
        let mut got = 0usize;
        let mut sum = 0u64;
        while got < TOTAL {
            let n = r.read(&mut buf).unwrap();
            assert!(n > 0, "EOF after {got} bytes");
            sum = buf[..n]
                .iter()
                .fold(sum, |s, &b| s.wrapping_mul(31).wrapping_add(b as u64));
            got += n;
        }
        sum
    });
    let mut sum = 0u64;
    let mut sent = 0usize;
    let mut i = 0u8;
    while sent < TOTAL {
        let chunk: Vec<u8> = (0..(1 << 20)).map(|j: usize| (j as u8) ^ i).collect();
        sum = chunk
            .iter()
            .fold(sum, |s, &b| s.wrapping_mul(31).wrapping_add(b as u64));
        w.write_all(&chunk).unwrap();
        sent += chunk.len();
        i = i.wrapping_add(1);
    }
    assert_eq!(reader.join().unwrap(), sum, "the echo is what was sent");
    w.shutdown();
    assert_eq!(server.join().unwrap(), TOTAL as u64);
}

#[test]
fn read_timeout_and_shutdown_wake_the_reader() {
    let dir = tempfile::tempdir().unwrap();
    let client = TlsClient::load(&pki(dir.path())).unwrap();
    let (addr, server) = echo_server(server_config(dir.path()));
    let w = Conn::connect(&addr, Some(&client)).unwrap();
    let mut r = w.try_clone().unwrap();
    r.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let t0 = Instant::now();
    let e = r.read(&mut [0u8; 16]).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
    assert!(t0.elapsed() >= Duration::from_millis(100));
    // A reader waiting without a timeout wakes when the connection is shut down.
    r.set_read_timeout(None).unwrap();
    let reader = std::thread::spawn(move || r.read(&mut [0u8; 16]));
    std::thread::sleep(Duration::from_millis(100));
    w.shutdown();
    let res = reader.join().unwrap();
    assert!(matches!(res, Ok(0) | Err(_)), "{res:?}");
    server.join().unwrap();
}

#[test]
fn a_server_from_another_ca_fails_the_handshake() {
    let ours = tempfile::tempdir().unwrap();
    let theirs = tempfile::tempdir().unwrap();
    let client = TlsClient::load(&pki(ours.path())).unwrap();
    pki(theirs.path());
    let (addr, server) = echo_server(server_config(theirs.path()));
    let e = Conn::connect(&addr, Some(&client))
        .err()
        .expect("handshake refused")
        .to_string();
    assert!(
        e.contains("TLS handshake: invalid peer certificate") && e.contains("ca.crt"),
        "{e}"
    );
    server.join().unwrap();
}

#[test]
fn tcp_connections_give_up_on_a_silent_peer() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = TargetAddr::parse(&format!("tcp:{}", l.local_addr().unwrap())).unwrap();
    let conn = Conn::connect(&addr, None).unwrap();
    let Conn::Tcp(s) = &conn else {
        panic!("a plain TCP connection")
    };
    let sock = socket2::SockRef::from(s);
    assert!(sock.keepalive().unwrap());
    assert_eq!(sock.keepalive_time().unwrap(), KEEPALIVE_IDLE);
    assert_eq!(sock.tcp_user_timeout().unwrap(), Some(DEAD_PEER_AFTER));
}
