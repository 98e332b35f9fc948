//! TLS for the site's API and its clients (rustls, ring provider).
//!
//! The API asks for a client certificate but does not require one: a caller authenticates with
//! a certificate from the site CA, or else with a token or a password over the encrypted
//! connection (see [`crate::server::auth`]).

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use rewind_linux::pem;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateRevocationListDer;
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;

use crate::state::StateDir;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(ca: &Path) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for c in pem::certs(ca)? {
        roots
            .add(c)
            .with_context(|| format!("adding {} as a trust root", ca.display()))?;
    }
    Ok(roots)
}

/// The API's server side: the site's server certificate; client certificates from the site CA
/// accepted (and checked against its revocation list) but optional.
pub fn server_config(state: &StateDir) -> Result<Arc<rustls::ServerConfig>> {
    let ca = state.ca_dir();
    let mut verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots(&state.ca_cert())?), provider())
            .allow_unauthenticated();
    let crl = ca.join(rewind_mtd::tls::ca::CRL);
    if crl.exists() {
        let bytes = std::fs::read(&crl).with_context(|| format!("reading {}", crl.display()))?;
        let crls = CertificateRevocationListDer::pem_slice_iter(&bytes)
            .collect::<std::result::Result<Vec<_>, _>>()
            .with_context(|| format!("{} is not PEM", crl.display()))?;
        verifier = verifier.with_crls(crls).only_check_end_entity_revocation();
    }
    let verifier = verifier
        .build()
        .context("building the client certificate verifier")?;
    let cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            pem::certs(&ca.join(rewind_mtd::tls::ca::SERVER_CERT))?,
            pem::key(&ca.join(rewind_mtd::tls::ca::SERVER_KEY))?,
        )
        .context("loading the site's server certificate")?;
    Ok(Arc::new(cfg))
}

/// A client that trusts `ca` and presents no certificate (token or password callers).
pub fn client_config(ca: &Path) -> Result<Arc<rustls::ClientConfig>> {
    Ok(Arc::new(
        rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots(ca)?)
            .with_no_client_auth(),
    ))
}

/// A client that trusts `ca` and presents `cert`/`key`.
pub fn client_cert_config(ca: &Path, cert: &Path, key: &Path) -> Result<Arc<rustls::ClientConfig>> {
    rewind_mtd::tls::client_config(ca, cert, key)
}

/// The common name and organisational unit of a verified peer certificate.
pub fn peer_name(conn: &rustls::ServerConnection) -> Option<(String, Option<String>)> {
    let cert = conn.peer_certificates()?.first()?;
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let cn = parsed
        .subject()
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_string();
    let ou = parsed
        .subject()
        .iter_organizational_unit()
        .next()
        .and_then(|o| o.as_str().ok())
        .map(str::to_string);
    Some((cn, ou))
}
