//! Server certificates: this target's own (`ca init`, `ca renew --server`) and, so that one site
//! CA serves many master targets, other targets' (`ca issue --server NAME --host HOST`).
//!
//! Another target's directory (`servers/NAME/` by default) holds `ca.crt`, `server.crt` and
//! `server.key`: what `rewind-mtd serve --tls-dir` reads. It holds no CA key, so nothing can be
//! issued from it, and no `crl.pem`: the site copies the CA's revocation list there (the target
//! re-reads it at the next handshake) whenever it changes.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{bail, Result};
use rcgen::{CertificateParams, ExtendedKeyUsagePurpose, KeyPair};

use super::dir::{make_dir, write_atomic, CaDir};
use super::x509::{dn, leaf_key_usages, san, stamp};
use super::*;

/// The common name of the certificate `ca init` makes for the target that holds the CA.
pub const SERVER_NAME: &str = "rewind-mtd";

/// The names this host's own server certificate carries: loopback, the host name, then `names`.
pub(super) fn local_names(names: &[String]) -> Vec<String> {
    let mut all: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    if let Ok(h) = nix::unistd::gethostname() {
        if let Some(h) = h.to_str() {
            all.push(h.to_string());
        }
    }
    all.extend(names.iter().cloned());
    all
}

/// A server certificate for `hosts` (DNS names or addresses), signed by the CA.
pub(super) fn server_cert(
    name: &str,
    hosts: &[String],
    days: u32,
    ca_cert: &rcgen::Certificate,
    ca_key: &KeyPair,
    ca_expiry: SystemTime,
) -> Result<(rcgen::Certificate, KeyPair, Issued)> {
    let mut all: Vec<&String> = Vec::new();
    for h in hosts {
        if !all.contains(&h) {
            all.push(h);
        }
    }
    let key = KeyPair::generate()?;
    let mut p = CertificateParams::default();
    p.distinguished_name = dn(name, None);
    p.subject_alt_names = all.iter().map(|n| san(n)).collect::<Result<_>>()?;
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    p.key_usages = leaf_key_usages();
    let rec = stamp(&mut p, name, Kind::Server, days, Some(ca_expiry))?;
    let cert = p.signed_by(&key, ca_cert, ca_key)?;
    Ok((cert, key, rec))
}

/// A host a server certificate names: an IP address or a DNS name (labels of letters, digits and
/// inner hyphens, at most 63 characters each, 253 in all). Checked here, as rcgen takes any
/// ASCII string as a DNS name.
fn check_host(h: &str) -> Result<()> {
    if h.parse::<std::net::IpAddr>().is_ok() {
        return Ok(());
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    if h.is_empty() || h.len() > 253 || !h.split('.').all(label_ok) {
        bail!("--host {h:?}: neither an IP address nor a DNS name (letters, digits, '-' and '.')");
    }
    Ok(())
}

/// Issue a server certificate for another master target, `name`, reachable as `hosts` (DNS names
/// or addresses; at least one), signed by the CA in `dir`. Writes `ca.crt`, `server.crt` and
/// `server.key` to `out` (default `dir/servers/NAME`), a directory `rewind-mtd serve --tls-dir`
/// accepts on that host. Refuses to overwrite an existing certificate there, and the name of this
/// target's own certificate.
pub fn issue_server(
    dir: &Path,
    name: &str,
    hosts: &[String],
    out: Option<&Path>,
    days: u32,
) -> Result<IssuedFiles> {
    check_cert_name(name)?;
    if name == SERVER_NAME {
        bail!("{SERVER_NAME} is this target's own certificate: `ca renew --server` renews it");
    }
    if hosts.is_empty() {
        bail!("server {name}: give at least one --host (a DNS name or address agents and the site connect to)");
    }
    for h in hosts {
        check_host(h)?;
    }
    check_days("--days", days)?;
    let ca = CaDir::open(dir)?;
    let out_dir: PathBuf = out
        .map(Path::to_path_buf)
        .unwrap_or_else(|| ca.dir.join("servers").join(name));
    let (cert_path, key_path, ca_copy) = (
        out_dir.join(SERVER_CERT),
        out_dir.join(SERVER_KEY),
        out_dir.join(CA_CERT),
    );
    for p in [&cert_path, &key_path] {
        if p.exists() {
            bail!(
                "{} exists: remove that directory first to issue {name} a new certificate",
                p.display()
            );
        }
    }
    if out_dir.join(CA_KEY).exists() {
        bail!(
            "{} holds a CA key: give the other target's certificate its own directory",
            out_dir.display()
        );
    }
    let mut reg = ca.register()?;
    let (ca_cert, ca_key, ca_expiry) = ca.signer()?;
    let (cert, key, record) = server_cert(name, hosts, days, &ca_cert, &ca_key, ca_expiry)?;
    make_dir(&out_dir, 0o700)?;
    write_atomic(&key_path, key.serialize_pem().as_bytes(), 0o600)?;
    write_atomic(&cert_path, cert.pem().as_bytes(), 0o644)?;
    write_atomic(&ca_copy, ca.read(CA_CERT)?.as_bytes(), 0o644)?;
    reg.certificates.push(record.clone());
    ca.save(&reg)?;
    Ok(IssuedFiles {
        record,
        cert: cert_path,
        key: key_path,
        ca: Some(ca_copy),
    })
}
