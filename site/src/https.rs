//! A small HTTPS client (one connection per request): the CLI to the site, the site to its
//! master targets. Requests and replies are JSON; a reply's status is returned with its body.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;

use crate::endpoint::Endpoint;

/// How long connecting (TCP and TLS) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where to send requests, and how to authenticate.
#[derive(Clone)]
pub struct Https {
    pub endpoint: Endpoint,
    tls: Arc<rustls::ClientConfig>,
    /// An `Authorization` header value, if the client authenticates by header.
    auth: Option<String>,
    /// How long a whole request may take.
    pub timeout: Duration,
}

/// A reply: status and body.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Bytes,
}

impl Https {
    pub fn new(endpoint: Endpoint, tls: Arc<rustls::ClientConfig>, auth: Option<String>) -> Https {
        Https {
            endpoint,
            tls,
            auth,
            timeout: Duration::from_secs(30),
        }
    }

    async fn connect(&self) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
        let addr = (self.endpoint.host.as_str(), self.endpoint.port);
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr))
            .await
            .map_err(|_| anyhow::anyhow!("connecting to {}: timed out", self.endpoint.url()))?
            .with_context(|| format!("connecting to {}", self.endpoint.url()))?;
        let name = ServerName::try_from(self.endpoint.host.clone())
            .with_context(|| format!("server name {:?}", self.endpoint.host))?;
        let tls = tokio::time::timeout(
            CONNECT_TIMEOUT,
            tokio_rustls::TlsConnector::from(self.tls.clone()).connect(name, tcp),
        )
        .await
        .map_err(|_| anyhow::anyhow!("TLS handshake with {}: timed out", self.endpoint.url()))?
        .with_context(|| format!("TLS handshake with {}", self.endpoint.url()))?;
        Ok(tls)
    }

    /// Send one request (a JSON body if given) and read the whole reply.
    pub async fn request(&self, method: &str, path: &str, body: Option<Vec<u8>>) -> Result<Reply> {
        let fut = async {
            let (mut sender, conn) =
                hyper::client::conn::http1::handshake(TokioIo::new(self.connect().await?))
                    .await
                    .context("HTTP handshake")?;
            let conn = tokio::spawn(conn);
            let mut req = hyper::Request::builder().method(method).uri(path).header(
                "host",
                format!("{}:{}", self.endpoint.host, self.endpoint.port),
            );
            if let Some(a) = &self.auth {
                req = req.header("authorization", a);
            }
            if body.is_some() {
                req = req.header("content-type", "application/json");
            }
            let req = req.body(Full::new(Bytes::from(body.unwrap_or_default())))?;
            let resp = sender
                .send_request(req)
                .await
                .with_context(|| format!("{method} {path}"))?;
            let status = resp.status().as_u16();
            let body = resp
                .into_body()
                .collect()
                .await
                .with_context(|| format!("reading the reply to {method} {path}"))?
                .to_bytes();
            conn.abort();
            Ok(Reply { status, body })
        };
        tokio::time::timeout(self.timeout, fut).await.map_err(|_| {
            anyhow::anyhow!(
                "{method} {}{path}: no reply within {:?}",
                self.endpoint.url(),
                self.timeout
            )
        })?
    }

    /// Open a streaming GET (server-sent events): the reply's status and its body, read as it
    /// comes.
    pub async fn stream(&self, path: &str) -> Result<(u16, hyper::body::Incoming)> {
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(self.connect().await?))
                .await
                .context("HTTP handshake")?;
        tokio::spawn(conn);
        let mut req = hyper::Request::builder()
            .method("GET")
            .uri(path)
            .header(
                "host",
                format!("{}:{}", self.endpoint.host, self.endpoint.port),
            )
            .header("accept", "text/event-stream");
        if let Some(a) = &self.auth {
            req = req.header("authorization", a);
        }
        let resp = sender
            .send_request(req.body(Full::new(Bytes::new()))?)
            .await
            .with_context(|| format!("GET {path}"))?;
        Ok((resp.status().as_u16(), resp.into_body()))
    }
}
