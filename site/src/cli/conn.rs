//! How the CLI reaches the site: `--site URL` (or REWIND_SITE, or the address `serve` wrote in
//! the state directory), trusting the site CA, and authenticating with a token, a password or
//! the user's client certificate in the state directory.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use base64::Engine;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::endpoint::Endpoint;
use crate::https::Https;
use crate::state::StateDir;

/// The connection flags every API command takes.
#[derive(clap::Args, Clone, Debug)]
pub struct ConnArgs {
    /// The site's API, https://HOST:PORT (default: what `serve` wrote in STATE/site.url).
    #[arg(long, env = "REWIND_SITE", global = true)]
    pub site: Option<String>,
    /// The state directory (for the CA certificate and local user certificates).
    #[arg(
        long,
        env = "REWIND_SITE_STATE",
        default_value = "/var/lib/rewind-site",
        global = true
    )]
    pub state: PathBuf,
    /// The CA certificate to trust (default STATE/ca/ca.crt).
    #[arg(long, global = true)]
    pub ca: Option<PathBuf>,
    /// An API token, read from this file (or REWIND_SITE_TOKEN holds the token itself).
    #[arg(long, global = true)]
    pub token_file: Option<PathBuf>,
    /// Log in as this user, with the password in --password-file.
    #[arg(long, global = true, requires = "password_file")]
    pub user: Option<String>,
    #[arg(long, global = true)]
    pub password_file: Option<PathBuf>,
    /// Present this user's client certificate from STATE/ca/clients/NAME (default admin, when
    /// no token or password is given).
    #[arg(long = "as", global = true)]
    pub as_user: Option<String>,
    /// Print replies as JSON.
    #[arg(long, global = true)]
    pub json: bool,
}

fn read_secret(path: &std::path::Path) -> Result<String> {
    let s = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(s.trim_end_matches(['\n', '\r']).to_string())
}

impl ConnArgs {
    pub fn client(&self) -> Result<Https> {
        let state = StateDir::new(&self.state);
        let url = match &self.site {
            Some(u) => u.clone(),
            None => {
                let p = self.state.join("site.url");
                read_secret(&p).with_context(|| "give --site https://HOST:PORT (or REWIND_SITE)")?
            }
        };
        let ep = Endpoint::parse(&url)?;
        let ca = self.ca.clone().unwrap_or_else(|| state.ca_cert());
        let token = match &self.token_file {
            Some(f) => Some(read_secret(f)?),
            None => std::env::var("REWIND_SITE_TOKEN")
                .ok()
                .filter(|t| !t.is_empty()),
        };
        if let Some(t) = token {
            return Ok(Https::new(
                ep,
                crate::tls::client_config(&ca)?,
                Some(format!("Bearer {t}")),
            ));
        }
        if let (Some(u), Some(f)) = (&self.user, &self.password_file) {
            let basic = base64::engine::general_purpose::STANDARD
                .encode(format!("{u}:{}", read_secret(f)?));
            return Ok(Https::new(
                ep,
                crate::tls::client_config(&ca)?,
                Some(format!("Basic {basic}")),
            ));
        }
        let who = self.as_user.as_deref().unwrap_or(crate::state::ADMIN);
        let (cert, key) = state.user_cert(who);
        if !cert.exists() {
            bail!(
                "no credentials: give --token-file, --user with --password-file, or a user \
                 certificate ({} not found)",
                cert.display()
            );
        }
        Ok(Https::new(
            ep,
            crate::tls::client_cert_config(&ca, &cert, &key)?,
            None,
        ))
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<T> {
        let h = self.client()?;
        let r = h.request(method, path, body).await?;
        if !(200..300).contains(&r.status) {
            let msg = serde_json::from_slice::<crate::api::ErrorBody>(&r.body)
                .map(|e| e.error)
                .unwrap_or_else(|_| String::from_utf8_lossy(&r.body).into_owned());
            bail!("{msg} (HTTP {})", r.status);
        }
        serde_json::from_slice(&r.body).with_context(|| format!("reply to {method} {path}"))
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.call("GET", path, None).await
    }

    pub async fn send<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: &impl Serialize,
    ) -> Result<T> {
        self.call(method, path, Some(serde_json::to_vec(body)?))
            .await
    }

    pub async fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.call("DELETE", path, None).await
    }
}
