//! Certificates and private keys from PEM files, for the TLS configs of both sides. A missing,
//! unreadable or malformed file is an error naming it.

use std::io;
use std::path::{Path, PathBuf};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read.
    #[error("reading {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    /// The file was read but does not hold what was asked for.
    #[error("{}: {why}", path.display())]
    Bad { path: PathBuf, why: String },
}

impl Error {
    /// The file the error is about.
    pub fn path(&self) -> &Path {
        match self {
            Error::Read { path, .. } | Error::Bad { path, .. } => path,
        }
    }
}

fn read(path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn bad(path: &Path, why: String) -> Error {
    Error::Bad {
        path: path.to_path_buf(),
        why,
    }
}

/// Every certificate in the PEM file `path`; at least one.
pub fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let pem = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(path, format!("not a PEM certificate file ({e})")))?;
    if certs.is_empty() {
        return Err(bad(path, "holds no PEM certificate".into()));
    }
    Ok(certs)
}

/// The (first) private key in the PEM file `path`.
pub fn key(path: &Path) -> Result<PrivateKeyDer<'static>, Error> {
    PrivateKeyDer::from_pem_slice(&read(path)?)
        .map_err(|e| bad(path, format!("no PEM private key ({e})")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.crt");
        assert!(matches!(certs(&missing), Err(Error::Read { .. })));
        let empty = dir.path().join("empty.crt");
        std::fs::write(&empty, b"no pem here\n").unwrap();
        let e = certs(&empty).unwrap_err();
        assert_eq!(e.path(), empty);
        assert!(e.to_string().contains("holds no PEM certificate"), "{e}");
        assert!(key(&empty)
            .unwrap_err()
            .to_string()
            .contains("no PEM private key"));
    }
}
