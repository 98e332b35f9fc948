//! Mutual TLS for agent sessions and NBD clients (rustls with the ring provider).
//!
//! The target presents `server.crt` and accepts a client only with a certificate signed by the
//! site CA (`ca.crt`) and not revoked by `crl.pem` (re-read whenever it changes, see
//! [`RevocationCheck`]). The peer's identity is that certificate's common name; its kind
//! (agent, NBD client or configuration server) its organisational unit ([`peer_kind`]).

pub mod ca;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use rewind_linux::pem;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig,
    SignatureScheme,
};

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    Ok(pem::certs(path)?)
}

fn key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    Ok(pem::key(path)?)
}

fn roots(ca: &Path) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for c in certs(ca)? {
        roots
            .add(c)
            .with_context(|| format!("adding {} as a trust root", ca.display()))?;
    }
    Ok(roots)
}

/// The server side, from a CA directory made by `rewind-mtd ca init`. Client certificates are
/// checked against `dir/crl.pem` at every handshake ([`RevocationCheck`]).
pub fn server_config(dir: &Path) -> Result<Arc<ServerConfig>> {
    let verifier = Arc::new(RevocationCheck::new(dir)?);
    let cfg = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            certs(&dir.join(ca::SERVER_CERT))?,
            key(&dir.join(ca::SERVER_KEY))?,
        )
        .context("loading the server certificate and key")?;
    Ok(Arc::new(cfg))
}

/// The client side (agents, and tests): trust `ca`, present `cert`/`key`.
pub fn client_config(ca: &Path, cert: &Path, key_path: &Path) -> Result<Arc<rustls::ClientConfig>> {
    let cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots(ca)?)
        .with_client_auth_cert(certs(cert)?, key(key_path)?)
        .context("loading the client certificate and key")?;
    Ok(Arc::new(cfg))
}

/// The agent identity a verified client certificate carries: its common name.
pub fn peer_identity(conn: &rustls::ServerConnection) -> Option<String> {
    let cert = conn.peer_certificates()?.first()?;
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let cn = parsed
        .subject()
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_string();
    Some(cn)
}

/// The kind of certificate a verified peer presented, from its organisational unit
/// (`ca issue --agent`, `--client` or `--site`). `None` for certificates without one (issued
/// before kinds existed: agents').
pub fn peer_kind(conn: &rustls::ServerConnection) -> Option<ca::Kind> {
    let cert = conn.peer_certificates()?.first()?;
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let ou = parsed
        .subject()
        .iter_organizational_unit()
        .next()?
        .as_str()
        .ok()?
        .to_string();
    match ou.as_str() {
        ca::OU_AGENT => Some(ca::Kind::Agent),
        ca::OU_CLIENT => Some(ca::Kind::Client),
        ca::OU_SITE => Some(ca::Kind::Site),
        ca::OU_RELAY => Some(ca::Kind::Relay),
        _ => None,
    }
}

/// Common name and serial (hex) of a certificate, for log lines; placeholders if it does not
/// parse. The name may come from an unverified certificate (a refusal before the chain was
/// checked): it is cut to a common name's length and anything but printable ASCII replaced, so
/// it cannot forge log lines.
fn describe(cert: &CertificateDer<'_>) -> (String, String) {
    match x509_parser::parse_x509_certificate(cert.as_ref()) {
        Ok((_, c)) => (
            c.subject()
                .iter_common_name()
                .next()
                .and_then(|n| n.as_str().ok())
                .unwrap_or("(no common name)")
                .chars()
                .take(ca::MAX_CERT_NAME)
                .map(|c| if c.is_ascii_graphic() { c } else { '?' })
                .collect(),
            ca::hex(c.raw_serial()),
        ),
        Err(_) => ("(unparsable)".into(), "?".into()),
    }
}

/// What identifies one version of the CRL file: a rewrite (rename over it, or in place) changes
/// at least one of these.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

#[derive(Debug)]
struct Loaded {
    /// `None`: no CRL file.
    stamp: Option<Stamp>,
    /// The verifier for that file, or why there is none (then every certificate is refused).
    verifier: std::result::Result<Arc<dyn ClientCertVerifier>, String>,
}

/// The target's client certificate verifier: webpki's (chain to the site CA, validity dates,
/// client-auth usage) plus the site's revocation list, `crl.pem` in the CA directory.
///
/// At every handshake it stats the file (cheap) and, when it changed since the last look
/// (device, inode, size, mtime or ctime), rebuilds the inner verifier with the new list, so a
/// `ca revoke` takes effect at the next handshake without a restart. It fails closed: a CRL file
/// that exists but cannot be read or parsed refuses every certificate (with an ERROR naming the
/// file) until it is fixed; no file means nothing is revoked.
#[derive(Debug)]
pub struct RevocationCheck {
    crl: PathBuf,
    roots: Arc<RootCertStore>,
    /// Without a CRL: serves the parts of the trait that do not depend on revocation (hints,
    /// signature checks, schemes).
    base: Arc<dyn ClientCertVerifier>,
    loaded: Mutex<Loaded>,
}

impl RevocationCheck {
    pub fn new(dir: &Path) -> Result<RevocationCheck> {
        let roots = Arc::new(roots(&dir.join(ca::CA_CERT))?);
        let base = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
            .build()
            .context("building the client certificate verifier")?;
        let check = RevocationCheck {
            crl: dir.join(ca::CRL),
            roots,
            base,
            loaded: Mutex::new(Loaded {
                stamp: None,
                verifier: Err("not loaded yet".into()),
            }),
        };
        // Load now so that a broken CRL is reported at start (and fails closed from then on).
        {
            let mut l = check.loaded.lock().expect("crl lock");
            let (stamp, verifier) = check.load();
            *l = Loaded { stamp, verifier };
        }
        Ok(check)
    }

    fn stat(&self) -> std::result::Result<Option<Stamp>, String> {
        match std::fs::metadata(&self.crl) {
            Ok(m) => Ok(Some(Stamp {
                dev: m.dev(),
                ino: m.ino(),
                size: m.size(),
                mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
                ctime_ns: i128::from(m.ctime()) * 1_000_000_000 + i128::from(m.ctime_nsec()),
            })),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("cannot stat {}: {e}", self.crl.display())),
        }
    }

    /// Read the CRL as it is now and build the verifier for it (logged: this runs only when the
    /// file changed).
    fn load(
        &self,
    ) -> (
        Option<Stamp>,
        std::result::Result<Arc<dyn ClientCertVerifier>, String>,
    ) {
        let stamp = match self.stat() {
            Ok(None) => return (None, Ok(self.base.clone())),
            Ok(Some(s)) => s,
            Err(e) => {
                tracing::error!(crl = %self.crl.display(), error = %e, "revocation list unreadable: refusing every client certificate");
                return (None, Err(e));
            }
        };
        let built = (|| -> std::result::Result<Arc<dyn ClientCertVerifier>, String> {
            let bytes = std::fs::read(&self.crl).map_err(|e| format!("reading: {e}"))?;
            let crls: Vec<CertificateRevocationListDer<'static>> =
                CertificateRevocationListDer::pem_slice_iter(&bytes)
                    .collect::<std::result::Result<_, _>>()
                    .map_err(|e| format!("not PEM: {e}"))?;
            if crls.is_empty() {
                return Err("holds no revocation list".into());
            }
            WebPkiClientVerifier::builder_with_provider(self.roots.clone(), provider())
                .with_crls(crls)
                // The chain is the CA and the certificate: only the certificate can be revoked.
                .only_check_end_entity_revocation()
                .build()
                .map_err(|e| format!("not a valid revocation list: {e}"))
        })();
        match &built {
            Ok(_) => {
                tracing::info!(crl = %self.crl.display(), "revocation list loaded");
            }
            Err(e) => {
                tracing::error!(crl = %self.crl.display(), error = %e, "revocation list unusable: refusing every client certificate until it is fixed");
            }
        }
        (Some(stamp), built)
    }

    /// The verifier for the CRL file as it is now.
    fn current(&self) -> std::result::Result<Arc<dyn ClientCertVerifier>, rustls::Error> {
        let mut l = self.loaded.lock().expect("crl lock");
        let now = self.stat();
        let changed = match &now {
            Ok(s) => *s != l.stamp || (l.verifier.is_err() && s.is_none()),
            Err(_) => true,
        };
        if changed {
            let (stamp, verifier) = self.load();
            *l = Loaded { stamp, verifier };
        }
        l.verifier.clone().map_err(|why| {
            rustls::Error::General(format!(
                "revocation list {} unusable ({why}): refusing client certificates",
                self.crl.display()
            ))
        })
    }
}

impl ClientCertVerifier for RevocationCheck {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.base.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> std::result::Result<ClientCertVerified, rustls::Error> {
        let inner = match self.current() {
            Ok(v) => v,
            Err(e) => {
                let (name, serial) = describe(end_entity);
                tracing::warn!("certificate {name} serial {serial} refused: {e}");
                return Err(e);
            }
        };
        let r = inner.verify_client_cert(end_entity, intermediates, now);
        if let Err(rustls::Error::InvalidCertificate(CertificateError::Revoked)) = &r {
            let (name, serial) = describe(end_entity);
            tracing::warn!("certificate {name} serial {serial} revoked");
        }
        r
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.base.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.base.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.base.supported_verify_schemes()
    }
}
