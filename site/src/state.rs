//! The state directory (mode 0700): the site CA and the site's own certificates, and the SQLite
//! database when no other is given.
//!
//! ```text
//! STATE/
//!   ca/                      the site CA (rewind_mtd::tls::ca): ca.crt, ca.key, server.crt,
//!                            server.key (this site's HTTPS certificate), crl.pem, issued.json
//!   ca/sites/site/           the site's client certificate towards master targets
//!   ca/clients/NAME/         users' client certificates (`rewind-site user cert NAME`)
//!   ca/servers/NAME/         master targets' server certificates (`rewind-site target cert`)
//!   site.db                  the SQLite database (default --db)
//!   bundles/HOST-GROUP/      agent settings bundles written by `protect` (default --out)
//! ```

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// The name the site's own client certificate has (what targets see).
pub const SITE_CERT_NAME: &str = "site";
/// The first administrator `init` makes.
pub const ADMIN: &str = "admin";

#[derive(Clone, Debug)]
pub struct StateDir {
    pub root: PathBuf,
}

impl StateDir {
    pub fn new(root: &Path) -> StateDir {
        StateDir {
            root: root.to_path_buf(),
        }
    }

    /// Refuse a state directory anyone but its owner can read (it holds the CA key).
    pub fn check(&self) -> Result<()> {
        let m = std::fs::metadata(&self.root).with_context(|| {
            format!(
                "state directory {} (make it with `rewind-site init`)",
                self.root.display()
            )
        })?;
        if m.permissions().mode() & 0o077 != 0 {
            bail!(
                "state directory {} is mode {:o}: it holds the site CA key, make it 0700",
                self.root.display(),
                m.permissions().mode() & 0o777
            );
        }
        if !self.ca_dir().join(rewind_mtd::tls::ca::CA_KEY).exists() {
            bail!(
                "{} holds no site CA: run `rewind-site init --state {}`",
                self.root.display(),
                self.root.display()
            );
        }
        Ok(())
    }

    pub fn ca_dir(&self) -> PathBuf {
        self.root.join("ca")
    }

    pub fn ca_cert(&self) -> PathBuf {
        self.ca_dir().join(rewind_mtd::tls::ca::CA_CERT)
    }

    /// The default database.
    pub fn default_db(&self) -> String {
        format!("sqlite:{}", self.root.join("site.db").display())
    }

    /// Where a user's client certificate lives: (cert, key).
    pub fn user_cert(&self, name: &str) -> (PathBuf, PathBuf) {
        let d = self.ca_dir().join("clients").join(name);
        (
            d.join(rewind_mtd::tls::ca::CLIENT_CERT),
            d.join(rewind_mtd::tls::ca::CLIENT_KEY),
        )
    }

    /// The site's client certificate towards master targets: (cert, key).
    pub fn site_cert(&self) -> (PathBuf, PathBuf) {
        let d = self.ca_dir().join("sites").join(SITE_CERT_NAME);
        (d.join("site.crt"), d.join("site.key"))
    }

    /// Default directory for agent bundles.
    pub fn bundles(&self) -> PathBuf {
        self.root.join("bundles")
    }
}
