//! A client of the control API over its unix socket (the `rewind` CLI and tests use it). It
//! sends and reads the types of [`crate::api`].

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::api::error::ErrorReply;

/// Where the CLI looks for the daemon unless told: `--control`, then `REWIND_CONTROL`, then this.
pub const DEFAULT_CONTROL: &str = "/run/rewind/mtd.sock";

pub struct Client {
    socket: PathBuf,
    rt: tokio::runtime::Runtime,
}

impl Client {
    pub fn new(socket: &Path) -> Result<Client> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting a tokio runtime")?;
        Ok(Client {
            socket: socket.to_path_buf(),
            rt,
        })
    }

    pub fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.call(Method::GET, path, String::new())
    }

    pub fn post<T: DeserializeOwned>(&self, path: &str, body: &impl Serialize) -> Result<T> {
        let body = serde_json::to_string(body).context("encoding the request")?;
        self.call(Method::POST, path, body)
    }

    pub fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.call(Method::DELETE, path, String::new())
    }

    /// One request on a fresh connection: the CLI makes one or two calls per run.
    fn call<T: DeserializeOwned>(&self, method: Method, path: &str, body: String) -> Result<T> {
        self.rt.block_on(async {
            let stream = tokio::net::UnixStream::connect(&self.socket)
                .await
                .with_context(|| {
                    format!(
                        "cannot reach rewind-mtd's control API at {}: is `rewind-mtd serve` running? (give --control PATH or set REWIND_CONTROL)",
                        self.socket.display()
                    )
                })?;
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .context("HTTP handshake with rewind-mtd")?;
            tokio::spawn(conn);
            let req = Request::builder()
                .method(method.clone())
                .uri(path)
                .header("host", "rewind-mtd")
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(body)))?;
            let resp = sender
                .send_request(req)
                .await
                .with_context(|| format!("{method} {path}"))?;
            let status = resp.status();
            let body = resp.into_body().collect().await?.to_bytes();
            if !status.is_success() {
                bail!("{}", error_message(&body));
            }
            // An empty body reads as JSON null (a reply type that is an Option takes it).
            let json: &[u8] = if body.is_empty() { b"null" } else { &body };
            serde_json::from_slice(json)
                .with_context(|| format!("the daemon's answer to {method} {path}"))
        })
    }
}

/// What a failed request says: the [`ErrorReply`]'s text; else the body quoted as a JSON string
/// (a plain-text axum rejection, say), or `null` for an empty one.
fn error_message(body: &[u8]) -> String {
    if let Ok(e) = serde_json::from_slice::<ErrorReply>(body) {
        return e.error;
    }
    if body.is_empty() {
        return "null".into();
    }
    let text = String::from_utf8_lossy(body);
    serde_json::to_string(&text).unwrap_or_else(|_| text.into_owned())
}
