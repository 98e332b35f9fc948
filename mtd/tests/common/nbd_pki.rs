//! Certificates for NBD over TLS as libnbd and qemu read them: a site CA and, per client name,
//! a directory with `ca-cert.pem`, `client-cert.pem` and `client-key.pem`.

use std::path::{Path, PathBuf};
use std::process::Command;

use rewind_benches::harness::*;

/// A CA, and a libnbd/qemu style certificate directory per client name.
pub struct Pki {
    pub ca: PathBuf,
    root: PathBuf,
}

impl Pki {
    pub fn new(work: &Path) -> Pki {
        let ca = work.join("ca");
        assert_ok(
            &run(Command::new(bin("rewind-mtd"))
                .args(["ca", "init", "--dir"])
                .arg(&ca)),
            "ca init",
        );
        Pki {
            ca,
            root: work.to_path_buf(),
        }
    }

    /// `DIR/{ca-cert.pem, client-cert.pem, client-key.pem}` for client `name`.
    pub fn client(&self, name: &str) -> PathBuf {
        let issued = self.root.join(format!("issued-{name}"));
        assert_ok(
            &run(Command::new(bin("rewind-mtd"))
                .args(["ca", "issue", "--dir"])
                .arg(&self.ca)
                .args(["--agent", name, "--out"])
                .arg(&issued)),
            "ca issue",
        );
        let dir = self.root.join(format!("pki-{name}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(self.ca.join("ca.crt"), dir.join("ca-cert.pem")).unwrap();
        std::fs::copy(
            issued.join(format!("{name}.crt")),
            dir.join("client-cert.pem"),
        )
        .unwrap();
        std::fs::copy(
            issued.join(format!("{name}.key")),
            dir.join("client-key.pem"),
        )
        .unwrap();
        dir
    }
}

/// The `nbds://` URI of `export` at `addr`, authenticated with the client directory `certs`.
pub fn nbds(addr: &str, export: &str, certs: &Path) -> String {
    format!(
        "nbds://{addr}/{export}?tls-certificates={}",
        certs.display()
    )
}
