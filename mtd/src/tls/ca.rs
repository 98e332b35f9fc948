//! The site's certificate authority: `rewind-mtd ca init` and `rewind-mtd ca issue`.
//!
//! A CA directory holds `ca.crt`/`ca.key` (the site CA), `server.crt`/`server.key` (this
//! target, signed by the CA) and, once issued, `agents/NAME.crt`/`agents/NAME.key`. An agent's
//! identity is the common name of its certificate; the target accepts agents only with a
//! certificate from its CA.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};

pub const CA_CERT: &str = "ca.crt";
pub const CA_KEY: &str = "ca.key";
pub const SERVER_CERT: &str = "server.crt";
pub const SERVER_KEY: &str = "server.key";

/// Write a file only if it does not exist; keys are readable by their owner only.
fn write_new(path: &Path, text: &str, mode: u32) -> Result<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(text.as_bytes())
        .and_then(|_| f.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

fn dn(cn: &str) -> DistinguishedName {
    let mut d = DistinguishedName::new();
    d.push(DnType::OrganizationName, "Rewind");
    d.push(DnType::CommonName, cn);
    d
}

/// Names a user may give for a certificate: DNS names and IP addresses, nothing that would not
/// parse as either.
fn san(name: &str) -> Result<SanType> {
    if let Ok(ip) = name.parse::<std::net::IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    Ok(SanType::DnsName(name.try_into().with_context(|| {
        format!("{name:?} is neither a DNS name nor an IP address")
    })?))
}

/// Make the site CA and this target's server certificate in `dir` (refuses to overwrite).
/// `names` are the DNS names and addresses agents will connect to.
pub fn init(dir: &Path, names: &[String]) -> Result<Vec<PathBuf>> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    if dir.join(CA_KEY).exists() {
        bail!(
            "{} already holds a CA; issue agent certificates with `rewind-mtd ca issue`",
            dir.display()
        );
    }
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::default();
    ca.distinguished_name = dn("Rewind site CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.not_after = rcgen::date_time_ymd(2046, 1, 1);
    let ca_cert = ca.self_signed(&ca_key)?;

    let mut all: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    if let Ok(h) = nix::unistd::gethostname() {
        if let Some(h) = h.to_str() {
            all.push(h.to_string());
        }
    }
    all.extend(names.iter().cloned());
    all.dedup();
    let server_key = KeyPair::generate()?;
    let mut server = CertificateParams::default();
    server.distinguished_name = dn("rewind-mtd");
    server.subject_alt_names = all.iter().map(|n| san(n)).collect::<Result<_>>()?;
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    server.not_after = rcgen::date_time_ymd(2046, 1, 1);
    let server_cert = server.signed_by(&server_key, &ca_cert, &ca_key)?;

    let out = vec![
        dir.join(CA_CERT),
        dir.join(CA_KEY),
        dir.join(SERVER_CERT),
        dir.join(SERVER_KEY),
    ];
    write_new(&out[0], &ca_cert.pem(), 0o644)?;
    write_new(&out[1], &ca_key.serialize_pem(), 0o600)?;
    write_new(&out[2], &server_cert.pem(), 0o644)?;
    write_new(&out[3], &server_key.serialize_pem(), 0o600)?;
    Ok(out)
}

/// Issue a certificate for agent `name`, signed by the CA in `dir`. Returns the certificate and
/// key paths (under `out`, default `dir/agents`).
pub fn issue(dir: &Path, name: &str, out: Option<&Path>) -> Result<(PathBuf, PathBuf)> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        bail!("agent name {name:?}: use letters, digits, '-', '_' and '.', up to 64");
    }
    let read = |f: &str| {
        fs::read_to_string(dir.join(f)).with_context(|| {
            format!(
                "reading {} (make the CA first with `rewind-mtd ca init --dir {}`)",
                dir.join(f).display(),
                dir.display()
            )
        })
    };
    let ca_key = KeyPair::from_pem(&read(CA_KEY)?).context("parsing the CA key")?;
    // rcgen signs with a Certificate object: rebuild the CA's from its PEM and key (same
    // subject, same key, so what it signs verifies against ca.crt).
    let ca_cert = CertificateParams::from_ca_cert_pem(&read(CA_CERT)?)
        .context("parsing the CA certificate")?
        .self_signed(&ca_key)?;
    let key = KeyPair::generate()?;
    let mut p = CertificateParams::default();
    p.distinguished_name = dn(name);
    p.subject_alt_names = vec![san(&format!("{name}.agent.rewind"))?];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    p.not_after = rcgen::date_time_ymd(2046, 1, 1);
    let cert = p.signed_by(&key, &ca_cert, &ca_key)?;
    let out = out
        .map(Path::to_path_buf)
        .unwrap_or_else(|| dir.join("agents"));
    fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let (c, k) = (
        out.join(format!("{name}.crt")),
        out.join(format!("{name}.key")),
    );
    write_new(&c, &cert.pem(), 0o644)?;
    write_new(&k, &key.serialize_pem(), 0o600)?;
    Ok((c, k))
}
