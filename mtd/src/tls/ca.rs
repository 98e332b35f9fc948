//! The site's certificate authority: `rewind-mtd ca init|issue|renew|revoke|list`.
//!
//! A CA directory (mode 0700) holds:
//! - `ca.crt`/`ca.key`: the site CA (10 years by default);
//! - `server.crt`/`server.key`: this target, signed by the CA (a year by default);
//! - `agents/NAME.crt`/`agents/NAME.key`: agent certificates (a year by default);
//! - `clients/NAME/{ca-cert,client-cert,client-key}.pem`: NBD client certificates, in the layout
//!   qemu (`--object tls-creds-x509,dir=...`) and libnbd (`nbd_set_tls_certificates`) read;
//! - `sites/NAME/{ca.crt,site.crt,site.key}`: configuration server (`rewind-site`) certificates,
//!   the only ones the TCP control listener (`serve --control-listen`) accepts;
//! - `servers/NAME/{ca.crt,server.crt,server.key}`: server certificates for other master
//!   targets of the same site ([`issue_server`]), a directory `serve --tls-dir` takes;
//! - `issued.json`: every certificate issued (serial, name, kind, validity, revocation);
//! - `crl.pem`: the revocation list, signed by the CA, rewritten by every `ca revoke`; the target
//!   re-reads it at the next handshake (see [`super::RevocationCheck`]).
//!
//! A certificate's identity is its common name; its kind (agent, NBD client or site) is its
//! organisational unit, so that an NBD client certificate is never mistaken for an agent's and
//! only a site's opens the control API over TCP. A name belongs to one kind: issuing a client
//! certificate under an agent's name is refused.
//!
//! Every command takes an exclusive lock on the directory (`.lock`), and every file is written
//! whole to a temporary name, synced and renamed (a crash leaves the old file or the new one).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, ExtendedKeyUsagePurpose,
    IsCa, KeyIdMethod, KeyPair, KeyUsagePurpose, SerialNumber,
};
use serde::{Deserialize, Serialize};

pub const CA_CERT: &str = "ca.crt";
pub const CA_KEY: &str = "ca.key";
pub const SERVER_CERT: &str = "server.crt";
pub const SERVER_KEY: &str = "server.key";
/// The revocation list (PEM), rewritten by `ca revoke`.
pub const CRL: &str = "crl.pem";
/// The record of every certificate issued.
pub const ISSUED: &str = "issued.json";
/// File names of an NBD client's directory, as qemu's tls-creds-x509 and libnbd expect them.
pub const CLIENT_CA: &str = "ca-cert.pem";
pub const CLIENT_CERT: &str = "client-cert.pem";
pub const CLIENT_KEY: &str = "client-key.pem";
/// File names of a configuration server's directory (`sites/NAME/`, with a copy of `ca.crt`).
pub const SITE_CERT: &str = "site.crt";
pub const SITE_KEY: &str = "site.key";

/// Validity of agent, client and server certificates unless `--days` says otherwise.
pub const DEFAULT_DAYS: u32 = 365;
/// Validity of the CA itself unless `--ca-days` says otherwise.
pub const DEFAULT_CA_DAYS: u32 = 3650;
/// Upper bound for any `--days` (keeps the date arithmetic far from overflow).
pub const MAX_DAYS: u32 = 36_500;
/// X.509 caps a common name at 64 characters (ub-common-name).
pub const MAX_CERT_NAME: usize = 64;
/// Certificates start being valid this long before they are made, so that a target whose clock
/// is a little behind the CA's accepts them at once.
const BACKDATE: Duration = Duration::from_secs(3600);

/// Organisational units marking a certificate's kind.
pub const OU_AGENT: &str = "agent";
pub const OU_CLIENT: &str = "nbd-client";
pub const OU_SITE: &str = "site";
/// A relay's (`rewind-mtd relay`) certificate for its sessions with the master target.
pub const OU_RELAY: &str = "relay";
/// File names of a relay's directory (`relays/NAME/`, with a copy of `ca.crt`).
pub const RELAY_CERT: &str = "relay.crt";
pub const RELAY_KEY: &str = "relay.key";

/// What a certificate is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Ca,
    Server,
    Agent,
    Client,
    /// The configuration server (`rewind-site`): the control API over TCP.
    Site,
    /// A relay (`rewind-mtd relay`): speaks upstream for the agents whose certificates it
    /// verified, at targets that trust it by name (`serve --trusted-relay`).
    Relay,
}

impl Kind {
    /// Kinds issued to a name (`ca issue --agent|--client|--site`): the name owns the kind.
    fn is_named(self) -> bool {
        matches!(self, Kind::Agent | Kind::Client | Kind::Site | Kind::Relay)
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Kind::Ca => "ca",
            Kind::Server => "server",
            Kind::Agent => "agent",
            Kind::Client => "client",
            Kind::Site => "site",
            Kind::Relay => "relay",
        })
    }
}

/// One certificate in `issued.json`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Issued {
    /// Lower-case hex of the serial number's bytes (what `ca list` shows and `--serial` takes).
    pub serial: String,
    pub name: String,
    pub kind: Kind,
    /// RFC 3339, UTC.
    pub not_before: String,
    pub not_after: String,
    /// When it was revoked (RFC 3339), if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked: Option<String>,
}

/// Validity periods, in days.
#[derive(Clone, Copy, Debug)]
pub struct Validity {
    pub ca_days: u32,
    pub days: u32,
}

impl Default for Validity {
    fn default() -> Self {
        Validity {
            ca_days: DEFAULT_CA_DAYS,
            days: DEFAULT_DAYS,
        }
    }
}

fn check_days(what: &str, days: u32) -> Result<Duration> {
    if days == 0 || days > MAX_DAYS {
        bail!("{what} {days}: give 1 to {MAX_DAYS} days");
    }
    Ok(Duration::from_secs(u64::from(days) * 86_400))
}

/// A name for a certificate: one of the project's names ([`rewind_formats::validate_name`]),
/// short enough for a common name.
pub fn check_cert_name(name: &str) -> Result<()> {
    rewind_formats::validate_name(name).with_context(|| format!("certificate name {name:?}"))?;
    if name.len() > MAX_CERT_NAME {
        bail!(
            "certificate name {:?}...: {} characters, at most {MAX_CERT_NAME}",
            &name[..MAX_CERT_NAME],
            name.len()
        );
    }
    Ok(())
}

/// rcgen takes `time::OffsetDateTime`; build one from a `SystemTime` without naming the type
/// (mtd does not depend on `time` itself).
macro_rules! x509_time {
    ($t:expr) => {
        rcgen::date_time_ymd(1970, 1, 1) + ($t).duration_since(UNIX_EPOCH).unwrap_or_default()
    };
}

mod dir;
mod serial;
mod server;
mod x509;

use dir::{make_dir, write_atomic, write_new, CaDir, Register};
use serial::unhex;
pub use serial::{hex, normalise_serial};
pub use server::{issue_server, SERVER_NAME};
use server::{local_names, server_cert};
use x509::{dn, leaf_key_usages, rfc3339, san, stamp};

/// Make the site CA and this target's server certificate in `dir` (refuses to overwrite).
/// `names` are the DNS names and addresses agents and NBD clients will connect to.
pub fn init(dir: &Path, names: &[String], validity: Validity) -> Result<Vec<PathBuf>> {
    check_days("--ca-days", validity.ca_days)?;
    check_days("--days", validity.days)?;
    make_dir(dir, 0o700)?;
    let ca_dir = CaDir::lock(dir)?;
    if dir.join(CA_KEY).exists() {
        bail!(
            "{} already holds a CA; issue certificates with `rewind-mtd ca issue`",
            dir.display()
        );
    }
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::default();
    ca.distinguished_name = dn("Rewind site CA", None);
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_rec = stamp(&mut ca, "Rewind site CA", Kind::Ca, validity.ca_days, None)?;
    let ca_expiry = humantime::parse_rfc3339(&ca_rec.not_after)?;
    let ca_cert = ca.self_signed(&ca_key)?;

    let (server_cert, server_key, server_rec) = server_cert(
        SERVER_NAME,
        &local_names(names),
        validity.days,
        &ca_cert,
        &ca_key,
        ca_expiry,
    )?;

    let out = vec![
        dir.join(CA_CERT),
        dir.join(CA_KEY),
        dir.join(SERVER_CERT),
        dir.join(SERVER_KEY),
    ];
    // The key last: its presence is what says "this directory holds a CA".
    write_new(&out[0], &ca_cert.pem(), 0o644)?;
    write_new(&out[2], &server_cert.pem(), 0o644)?;
    write_new(&out[3], &server_key.serialize_pem(), 0o600)?;
    ca_dir.save(&Register {
        crl_number: 0,
        certificates: vec![ca_rec, server_rec],
    })?;
    write_new(&out[1], &ca_key.serialize_pem(), 0o600)?;
    Ok(out)
}

/// Where a certificate's files go: `(directory, cert file, key file)`.
fn layout(dir: &Path, kind: Kind, name: &str, out: Option<&Path>) -> (PathBuf, PathBuf, PathBuf) {
    let own_dir = |sub: &str| {
        out.map(Path::to_path_buf)
            .unwrap_or_else(|| dir.join(sub).join(name))
    };
    match kind {
        Kind::Client => {
            let d = own_dir("clients");
            (d.clone(), d.join(CLIENT_CERT), d.join(CLIENT_KEY))
        }
        Kind::Site => {
            let d = own_dir("sites");
            (d.clone(), d.join(SITE_CERT), d.join(SITE_KEY))
        }
        Kind::Relay => {
            let d = own_dir("relays");
            (d.clone(), d.join(RELAY_CERT), d.join(RELAY_KEY))
        }
        _ => {
            let d = out
                .map(Path::to_path_buf)
                .unwrap_or_else(|| dir.join("agents"));
            (
                d.clone(),
                d.join(format!("{name}.crt")),
                d.join(format!("{name}.key")),
            )
        }
    }
}

/// What `issue` and `renew` wrote.
#[derive(Debug)]
pub struct IssuedFiles {
    pub record: Issued,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The CA certificate copied next to them (NBD clients', sites' and servers' layouts).
    pub ca: Option<PathBuf>,
}

/// Issue a certificate for agent, NBD client or configuration server `name`, signed by the CA in
/// `dir`. Agents' files go to `out` (default `dir/agents`) as NAME.crt/NAME.key; a client's to
/// `out` (default `dir/clients/NAME`) as ca-cert.pem, client-cert.pem, client-key.pem; a site's to
/// `out` (default `dir/sites/NAME`) as ca.crt, site.crt, site.key. Refuses to overwrite (that is
/// `renew`), to give a name of one kind to another, and the kinds that are not issued to a name
/// (CA, server: see [`issue_server`]).
pub fn issue(
    dir: &Path,
    kind: Kind,
    name: &str,
    out: Option<&Path>,
    days: u32,
) -> Result<IssuedFiles> {
    check_cert_name(name)?;
    if !kind.is_named() {
        bail!("a {kind} certificate is not issued by name (`ca init`, `ca issue --server`)");
    }
    let ca = CaDir::open(dir)?;
    make(&ca, kind, name, out, days, false)
}

/// Issue `name` a new certificate (new key, new serial, same name and kind: it keeps owning
/// what the old one owned), replacing its files. The old certificate stays valid until it
/// expires or is revoked (`ca revoke --serial OLD`), so agents can be switched one by one.
pub fn renew(dir: &Path, name: &str, out: Option<&Path>, days: u32) -> Result<IssuedFiles> {
    check_cert_name(name)?;
    let ca = CaDir::open(dir)?;
    let reg = ca.register_with_legacy(name)?;
    let kind = match reg
        .certificates
        .iter()
        .rev()
        .find(|c| c.name == name && c.kind.is_named())
    {
        Some(c) => c.kind,
        None => bail!(
            "no certificate was issued to {name} in {} (see `rewind-mtd ca list`; \
             `ca issue` makes a first one)",
            dir.display()
        ),
    };
    make(&ca, kind, name, out, days, true)
}

fn make(
    ca: &CaDir,
    kind: Kind,
    name: &str,
    out: Option<&Path>,
    days: u32,
    replace: bool,
) -> Result<IssuedFiles> {
    check_days("--days", days)?;
    let mut reg = ca.register()?;
    if let Some(other) = reg
        .certificates
        .iter()
        .find(|c| c.name == name && c.kind.is_named() && c.kind != kind)
    {
        bail!(
            "{name} is already the name of an {} certificate (serial {}): use another name for \
             the {kind}",
            other.kind,
            other.serial
        );
    }
    if kind != Kind::Agent && ca.dir.join("agents").join(format!("{name}.crt")).exists() {
        bail!("{name} is already the name of an agent certificate: use another name");
    }
    let (out_dir, cert_path, key_path) = layout(&ca.dir, kind, name, out);
    if !replace {
        for p in [&cert_path, &key_path] {
            if p.exists() {
                bail!(
                    "{} exists: `rewind-mtd ca renew --dir {} {name}` issues a new certificate",
                    p.display(),
                    ca.dir.display()
                );
            }
        }
    }
    let (ca_cert, ca_key, ca_expiry) = ca.signer()?;
    let key = KeyPair::generate()?;
    let mut p = CertificateParams::default();
    let (ou, san_kind) = match kind {
        Kind::Client => (OU_CLIENT, "client"),
        Kind::Site => (OU_SITE, "site"),
        Kind::Relay => (OU_RELAY, "relay"),
        _ => (OU_AGENT, "agent"),
    };
    p.distinguished_name = dn(name, Some(ou));
    // A DNS-style alternative name where the name allows one (':' and '_' are not DNS).
    if name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.'))
    {
        p.subject_alt_names = vec![san(&format!("{name}.{san_kind}.rewind"))?];
    }
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    p.key_usages = leaf_key_usages();
    let record = stamp(&mut p, name, kind, days, Some(ca_expiry))?;
    let cert = p.signed_by(&key, &ca_cert, &ca_key)?;

    make_dir(&out_dir, if kind == Kind::Agent { 0o755 } else { 0o700 })?;
    // The key first: a reader that sees the new certificate also finds its key.
    write_atomic(&key_path, key.serialize_pem().as_bytes(), 0o600)?;
    write_atomic(&cert_path, cert.pem().as_bytes(), 0o644)?;
    let ca_copy = match kind {
        Kind::Client => Some(out_dir.join(CLIENT_CA)),
        Kind::Site | Kind::Relay => Some(out_dir.join(CA_CERT)),
        _ => None,
    };
    if let Some(p) = &ca_copy {
        write_atomic(p, ca.read(CA_CERT)?.as_bytes(), 0o644)?;
    }
    reg.certificates.push(record.clone());
    ca.save(&reg)?;
    Ok(IssuedFiles {
        record,
        cert: cert_path,
        key: key_path,
        ca: ca_copy,
    })
}

/// Renew this target's own certificate (the daemon reads it at start: restart it afterwards).
pub fn renew_server(dir: &Path, names: &[String], days: u32) -> Result<IssuedFiles> {
    let ca = CaDir::open(dir)?;
    let mut reg = ca.register()?;
    let (ca_cert, ca_key, ca_expiry) = ca.signer()?;
    let (cert, key, record) = server_cert(
        SERVER_NAME,
        &local_names(names),
        days,
        &ca_cert,
        &ca_key,
        ca_expiry,
    )?;
    write_atomic(&ca.path(SERVER_KEY), key.serialize_pem().as_bytes(), 0o600)?;
    write_atomic(&ca.path(SERVER_CERT), cert.pem().as_bytes(), 0o644)?;
    reg.certificates.push(record.clone());
    ca.save(&reg)?;
    Ok(IssuedFiles {
        record,
        cert: ca.path(SERVER_CERT),
        key: ca.path(SERVER_KEY),
        ca: None,
    })
}

/// Which certificates `revoke` revokes.
#[derive(Debug, Clone)]
pub enum RevokeWhat {
    /// Every agent, client or site certificate issued to this name.
    Name(String),
    /// One certificate, by serial (hex, as `ca list` shows it).
    Serial(String),
}

/// Revoke certificates and rewrite `crl.pem`. Returns the certificates newly revoked (revoking
/// one again is not an error: the CRL is rewritten all the same).
pub fn revoke(dir: &Path, what: &RevokeWhat) -> Result<Vec<Issued>> {
    let ca = CaDir::open(dir)?;
    let (what, mut reg) = match what {
        RevokeWhat::Name(n) => {
            check_cert_name(n)?;
            (RevokeWhat::Name(n.clone()), ca.register_with_legacy(n)?)
        }
        RevokeWhat::Serial(s) => (RevokeWhat::Serial(normalise_serial(s)?), ca.register()?),
    };
    let matches = |c: &Issued| match &what {
        RevokeWhat::Name(n) => c.name == *n && c.kind.is_named(),
        RevokeWhat::Serial(s) => c.serial == *s,
    };
    let found: Vec<&Issued> = reg.certificates.iter().filter(|c| matches(c)).collect();
    if found.is_empty() {
        match &what {
            RevokeWhat::Name(n) => bail!(
                "no agent, client or site certificate was issued to {n} in {} (see `rewind-mtd ca list`)",
                dir.display()
            ),
            RevokeWhat::Serial(s) => bail!(
                "no certificate with serial {s} in {} (see `rewind-mtd ca list`)",
                dir.display()
            ),
        }
    }
    if let Some(c) = found
        .iter()
        .find(|c| matches!(c.kind, Kind::Ca | Kind::Server))
    {
        bail!(
            "serial {} is the {} certificate: make a new CA (`ca init` in a new directory) or \
             renew the server's (`ca renew --server`) instead",
            c.serial,
            c.kind
        );
    }
    let now = rfc3339(SystemTime::now());
    let mut newly = Vec::new();
    for c in reg.certificates.iter_mut().filter(|c| matches(c)) {
        if c.revoked.is_none() {
            c.revoked = Some(now.clone());
            newly.push(c.clone());
        }
    }
    reg.crl_number += 1;
    write_crl(&ca, &reg)?;
    ca.save(&reg)?;
    Ok(newly)
}

/// Sign and write `crl.pem` listing every revoked certificate of the register.
fn write_crl(ca: &CaDir, reg: &Register) -> Result<()> {
    let (ca_cert, ca_key, ca_expiry) = ca.signer()?;
    let now = SystemTime::now();
    let mut revoked = Vec::new();
    for c in &reg.certificates {
        let Some(when) = &c.revoked else { continue };
        let t = humantime::parse_rfc3339(when)
            .with_context(|| format!("revocation time {when:?} of serial {}", c.serial))?;
        revoked.push(rcgen::RevokedCertParams {
            serial_number: SerialNumber::from_slice(&unhex(&c.serial)?),
            revocation_time: x509_time!(t),
            reason_code: None,
            invalidity_date: None,
        });
    }
    // The target ignores nextUpdate (a CRL stays in force until replaced); other readers get
    // the CA's expiry, after which nothing it signed is valid anyway.
    let next = ca_expiry.max(now + Duration::from_secs(86_400));
    let params = CertificateRevocationListParams {
        this_update: x509_time!(now),
        next_update: x509_time!(next),
        crl_number: SerialNumber::from(reg.crl_number),
        issuing_distribution_point: None,
        revoked_certs: revoked,
        key_identifier_method: KeyIdMethod::Sha256,
    };
    let crl = params
        .signed_by(&ca_cert, &ca_key)
        .context("signing the revocation list")?;
    write_atomic(&ca.path(CRL), crl.pem()?.as_bytes(), 0o644)
}

/// Every certificate issued from `dir` (oldest first).
pub fn list(dir: &Path) -> Result<Vec<Issued>> {
    let ca = CaDir::open(dir)?;
    Ok(ca.register()?.certificates)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_names_are_checked() {
        for ok in ["web01", "a", "db-01.site_b", &"n".repeat(MAX_CERT_NAME)] {
            assert!(check_cert_name(ok).is_ok(), "{ok:?} refused");
        }
        for bad in [
            "",
            ".",
            "..",
            "../x",
            "a/b",
            "a b",
            &"n".repeat(MAX_CERT_NAME + 1),
        ] {
            assert!(check_cert_name(bad).is_err(), "{bad:?} accepted");
        }
        assert!(check_days("--days", 0).is_err());
        assert!(check_days("--days", MAX_DAYS + 1).is_err());
        assert_eq!(
            check_days("--days", 1).unwrap(),
            Duration::from_secs(86_400)
        );
    }
}
