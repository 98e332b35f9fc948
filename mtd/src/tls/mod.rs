//! Mutual TLS for agent sessions (rustls with the ring provider).
//!
//! The target presents `server.crt` and accepts a client only with a certificate signed by the
//! site CA (`ca.crt`). The agent's identity is that certificate's common name; a session may feed
//! only the groups that identity owns.

pub mod ca;

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("reading {}", path.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("parsing {}", path.display()))?;
    if certs.is_empty() {
        anyhow::bail!("{} holds no certificate", path.display());
    }
    Ok(certs)
}

fn key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_file(path).with_context(|| format!("reading key {}", path.display()))
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

/// The server side, from a CA directory made by `rewind-mtd ca init`.
pub fn server_config(dir: &Path) -> Result<Arc<ServerConfig>> {
    let verifier = WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots(&dir.join(ca::CA_CERT))?),
        provider(),
    )
    .build()
    .context("building the client certificate verifier")?;
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
