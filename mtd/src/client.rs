//! A client of the control API over its unix socket (the `rewind` CLI and tests use it).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde_json::Value;

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

    pub fn get(&self, path: &str) -> Result<Value> {
        self.call(Method::GET, path, None)
    }

    pub fn post(&self, path: &str, body: Value) -> Result<Value> {
        self.call(Method::POST, path, Some(body))
    }

    pub fn delete(&self, path: &str) -> Result<Value> {
        self.call(Method::DELETE, path, None)
    }

    /// One request on a fresh connection: the CLI makes one or two calls per run.
    fn call(&self, method: Method, path: &str, body: Option<Value>) -> Result<Value> {
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
            let bytes = body.map(|b| b.to_string()).unwrap_or_default();
            let req = Request::builder()
                .method(method.clone())
                .uri(path)
                .header("host", "rewind-mtd")
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(bytes)))?;
            let resp = sender
                .send_request(req)
                .await
                .with_context(|| format!("{method} {path}"))?;
            let status = resp.status();
            let body = resp.into_body().collect().await?.to_bytes();
            let v: Value = if body.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&body).unwrap_or_else(|_| {
                    Value::String(String::from_utf8_lossy(&body).into_owned())
                })
            };
            if !status.is_success() {
                let msg = v
                    .get("error")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string());
                bail!("{msg}");
            }
            Ok(v)
        })
    }
}
