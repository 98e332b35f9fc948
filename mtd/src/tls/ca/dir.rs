//! The CA directory on disk: its lock, its files (written whole, never through a symlink) and
//! the register of issued certificates (`issued.json`).

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use rcgen::KeyPair;
use rewind_linux::atomic;
use serde::{Deserialize, Serialize};

use super::*;

#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct Register {
    /// Number of the last CRL written (CRL numbers must increase).
    #[serde(default)]
    pub(super) crl_number: u64,
    pub(super) certificates: Vec<Issued>,
}

/// Write `text` to `path` atomically with `mode`; the temporary name is unique to this call, as
/// the CLI and a daemon may write the same CA directory at once.
pub(super) fn write_atomic(path: &Path, text: &[u8], mode: u32) -> Result<()> {
    let opts = atomic::Options {
        mode,
        durable: true,
        unique_tmp: true,
    };
    Ok(atomic::write_with(path, text, opts)?)
}

/// Write a file only if it does not exist (never following a symlink).
pub(super) fn write_new(path: &Path, text: &str, mode: u32) -> Result<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(text.as_bytes())
        .and_then(|_| f.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

pub(super) fn make_dir(dir: &Path, mode: u32) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))
}

/// The CA directory, locked for one command (released when dropped).
pub(super) struct CaDir {
    pub(super) dir: PathBuf,
    _lock: nix::fcntl::Flock<fs::File>,
}

impl CaDir {
    pub(super) fn lock(dir: &Path) -> Result<CaDir> {
        let path = dir.join(".lock");
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        let lock = nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| e)
            .with_context(|| format!("locking {}", path.display()))?;
        Ok(CaDir {
            dir: dir.to_path_buf(),
            _lock: lock,
        })
    }

    /// Lock an existing CA directory (one with a CA key).
    pub(super) fn open(dir: &Path) -> Result<CaDir> {
        if !dir.join(CA_KEY).exists() {
            bail!(
                "{} holds no CA (make it first with `rewind-mtd ca init --dir {}`)",
                dir.display(),
                dir.display()
            );
        }
        CaDir::lock(dir)
    }

    pub(super) fn path(&self, f: &str) -> PathBuf {
        self.dir.join(f)
    }

    pub(super) fn read(&self, f: &str) -> Result<String> {
        fs::read_to_string(self.path(f))
            .with_context(|| format!("reading {}", self.path(f).display()))
    }

    pub(super) fn register(&self) -> Result<Register> {
        let p = self.path(ISSUED);
        match fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b).with_context(|| format!("parsing {}", p.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Register::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", p.display())),
        }
    }

    /// The register, with `agents/NAME.crt` added (and saved) if it was issued before the
    /// register existed, so that it can be renewed and revoked like the others.
    pub(super) fn register_with_legacy(&self, name: &str) -> Result<Register> {
        let mut reg = self.register()?;
        let path = self.dir.join("agents").join(format!("{name}.crt"));
        if reg.certificates.iter().any(|c| c.name == name) || !path.exists() {
            return Ok(reg);
        }
        let pem = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let (_, p) = x509_parser::pem::parse_x509_pem(&pem)
            .map_err(|e| anyhow::anyhow!("parsing {}: {e}", path.display()))?;
        let cert = p
            .parse_x509()
            .map_err(|e| anyhow::anyhow!("parsing {}: {e}", path.display()))?;
        let time = |t: x509_parser::time::ASN1Time| {
            rfc3339(UNIX_EPOCH + Duration::from_secs(t.timestamp().max(0) as u64))
        };
        reg.certificates.push(Issued {
            serial: hex(cert.raw_serial()),
            name: name.to_string(),
            kind: Kind::Agent,
            not_before: time(cert.validity().not_before),
            not_after: time(cert.validity().not_after),
            revoked: None,
        });
        self.save(&reg)?;
        Ok(reg)
    }

    pub(super) fn save(&self, r: &Register) -> Result<()> {
        let mut text = serde_json::to_vec_pretty(r)?;
        text.push(b'\n');
        write_atomic(&self.path(ISSUED), &text, 0o600)
    }

    /// The CA as rcgen needs it to sign: rebuilt from its PEM and key (same subject, same key,
    /// so what it signs verifies against ca.crt), and its expiry.
    pub(super) fn signer(&self) -> Result<(rcgen::Certificate, KeyPair, SystemTime)> {
        let key = KeyPair::from_pem(&self.read(CA_KEY)?).context("parsing the CA key")?;
        let pem = self.read(CA_CERT)?;
        let cert = CertificateParams::from_ca_cert_pem(&pem)
            .context("parsing the CA certificate")?
            .self_signed(&key)?;
        let der = rustls::pki_types::CertificateDer::from(cert.der().to_vec());
        let (_, parsed) = x509_parser::parse_x509_certificate(der.as_ref())
            .map_err(|e| anyhow::anyhow!("parsing the CA certificate: {e}"))?;
        let secs = parsed.validity().not_after.timestamp().max(0) as u64;
        Ok((cert, key, UNIX_EPOCH + Duration::from_secs(secs)))
    }
}
