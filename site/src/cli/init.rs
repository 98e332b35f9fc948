//! `rewind-site init`: the state directory, the site CA and certificates, the database schema and
//! the first administrator (certificate login, no password).

use std::path::Path;

use anyhow::{Context, Result};
use rewind_mtd::tls::ca;

use crate::db::Db;
use crate::roles::Role;
use crate::state::{StateDir, ADMIN, SITE_CERT_NAME};

pub async fn init(state: &StateDir, db: &str, hosts: &[String]) -> Result<()> {
    let root = &state.root;
    std::fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o700))?;
    let ca_dir = state.ca_dir();
    if !ca_dir.join(ca::CA_KEY).exists() {
        ca::init(&ca_dir, hosts, ca::Validity::default()).context("making the site CA")?;
        println!("site CA and server certificate in {}", ca_dir.display());
    }
    let (admin_cert, _) = state.user_cert(ADMIN);
    if !admin_cert.exists() {
        ca::issue(&ca_dir, ca::Kind::Client, ADMIN, None, ca::DEFAULT_DAYS)
            .context("issuing the admin's client certificate")?;
    }
    let (site_cert, _) = state.site_cert();
    if !site_cert.exists() {
        issue_site_cert(&ca_dir)?;
    }
    let db = Db::open(db).await?;
    if db.user_login(ADMIN).await?.is_none() {
        db.add_user(ADMIN, Role::Admin, None).await?;
        db.audit("local", "user.add", ADMIN, "role=admin (init)", "ok")
            .await?;
    }
    println!(
        "database {} at schema {:?}; user {ADMIN} logs in with {}",
        crate::db::redact(db.url.as_str()),
        db.schema_versions().await?,
        admin_cert.display()
    );
    Ok(())
}

/// The site's client certificate towards master targets (kind site).
fn issue_site_cert(ca_dir: &Path) -> Result<()> {
    ca::issue(
        ca_dir,
        ca::Kind::Site,
        SITE_CERT_NAME,
        None,
        ca::DEFAULT_DAYS,
    )
    .context("issuing the site's client certificate")?;
    Ok(())
}
