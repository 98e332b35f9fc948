//! `rewind --site URL` (or REWIND_SITE): failover, test failover, cleanup, commit and recovery
//! plans go to the configuration server (`rewind-site`) instead of one target's control socket.
//! The site finds the group's target and runs the operation as a site job, which this follows
//! to its end.
//!
//! Authentication is the site's API token, as `rewind-site` takes it: REWIND_SITE_TOKEN, or the
//! file in REWIND_SITE_TOKEN_FILE; the site's CA certificate from REWIND_SITE_CA (default
//! `$REWIND_SITE_STATE/ca/ca.crt`, state default /var/lib/rewind-site). The client is here, not
//! in the site crate: the site depends on this crate (for the targets' API types), so this
//! crate cannot depend on it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use super::failover::FailoverCmd;
use super::plan::PlanCmd;
use super::table::json_text;

/// A client of the site's HTTPS API with a bearer token.
pub struct SiteClient {
    host: String,
    port: u16,
    tls: Arc<rustls::ClientConfig>,
    token: String,
    rt: tokio::runtime::Runtime,
}

fn env_path(var: &str) -> Option<PathBuf> {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

impl SiteClient {
    /// `url` is `https://HOST:PORT`.
    pub fn new(url: &str) -> Result<SiteClient> {
        let rest = url.strip_prefix("https://").ok_or_else(|| {
            anyhow::anyhow!("--site {url:?}: give https://HOST:PORT (the site's API)")
        })?;
        let rest = rest.trim_end_matches('/');
        let (host, port) = rest
            .rsplit_once(':')
            .ok_or_else(|| anyhow::anyhow!("--site {url:?}: no :PORT"))?;
        let port: u16 = port
            .parse()
            .map_err(|_| anyhow::anyhow!("--site {url:?}: port {port:?} is not a number"))?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let token = match std::env::var("REWIND_SITE_TOKEN")
            .ok()
            .filter(|t| !t.is_empty())
        {
            Some(t) => t,
            None => match env_path("REWIND_SITE_TOKEN_FILE") {
                Some(f) => std::fs::read_to_string(&f)
                    .with_context(|| format!("reading REWIND_SITE_TOKEN_FILE {}", f.display()))?
                    .trim()
                    .to_string(),
                None => bail!(
                    "--site: give the site's API token in REWIND_SITE_TOKEN (or a file holding it \
                     in REWIND_SITE_TOKEN_FILE); `rewind-site token add NAME --role operator` \
                     makes one"
                ),
            },
        };
        let ca = env_path("REWIND_SITE_CA").unwrap_or_else(|| {
            env_path("REWIND_SITE_STATE")
                .unwrap_or_else(|| "/var/lib/rewind-site".into())
                .join("ca/ca.crt")
        });
        let tls = trust(&ca)?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting a tokio runtime")?;
        Ok(SiteClient {
            host,
            port,
            tls,
            token,
            rt,
        })
    }

    /// One request; the reply's JSON, or the site's error.
    pub fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<T> {
        let url = format!("https://{}:{}", self.host, self.port);
        self.rt.block_on(async {
            let tcp = tokio::time::timeout(
                Duration::from_secs(10),
                tokio::net::TcpStream::connect((self.host.as_str(), self.port)),
            )
            .await
            .map_err(|_| anyhow::anyhow!("connecting to the site {url}: timed out"))?
            .with_context(|| format!("cannot reach the site at {url} (--site, REWIND_SITE)"))?;
            let name = ServerName::try_from(self.host.clone())
                .with_context(|| format!("server name {:?}", self.host))?;
            let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
                .connect(name, tcp)
                .await
                .with_context(|| format!("TLS handshake with the site {url}"))?;
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                .await
                .context("HTTP handshake with the site")?;
            tokio::spawn(conn);
            let req = hyper::Request::builder()
                .method(method)
                .uri(path)
                .header("host", format!("{}:{}", self.host, self.port))
                .header("authorization", format!("Bearer {}", self.token))
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(
                    body.map(|b| b.to_string()).unwrap_or_default(),
                )))?;
            let resp = sender
                .send_request(req)
                .await
                .with_context(|| format!("{method} {path}"))?;
            let status = resp.status();
            let bytes = resp.into_body().collect().await?.to_bytes();
            let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            if !status.is_success() {
                let msg = v["error"]
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
                bail!("the site: {msg} (HTTP {})", status.as_u16());
            }
            serde_json::from_value(v)
                .with_context(|| format!("the site's answer to {method} {path}"))
        })
    }

    /// Follow a site job to its end, printing its progress lines; the job's last state.
    pub fn follow(&self, job: i64, quiet: bool) -> Result<Value> {
        let mut last = String::new();
        loop {
            let j: Value = self.call("GET", &format!("/v1/jobs/{job}"), None)?;
            let line = format!(
                "job {job} {}: {}/{} {}",
                j["state"].as_str().unwrap_or(""),
                j["done"],
                j["total"],
                j["detail"].as_str().unwrap_or("")
            );
            if !quiet && line != last {
                eprintln!("{line}");
                last = line;
            }
            if j["state"] != "running" {
                return Ok(j);
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// Start an operation (its answer is `{"job": ID}`), follow it; fail if the job failed.
    fn job(&self, path: &str, body: Value, json: bool) -> Result<String> {
        let r: Value = self.call("POST", path, Some(body))?;
        let id = r["job"]
            .as_i64()
            .ok_or_else(|| anyhow::anyhow!("the site's answer to POST {path} has no job: {r}"))?;
        let j = self.follow(id, json)?;
        if j["state"] != "done" {
            bail!(
                "site job {id} {}: {}",
                j["state"].as_str().unwrap_or(""),
                j["detail"].as_str().unwrap_or("")
            );
        }
        if json {
            json_text(&j)
        } else {
            Ok(format!("{}\n", j["detail"].as_str().unwrap_or("")))
        }
    }
}

/// Trust the site's CA only; no client certificate (the token authenticates).
fn trust(ca: &Path) -> Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    for c in rewind_linux::pem::certs(ca).with_context(|| {
        format!(
            "the site's CA certificate {} (REWIND_SITE_CA)",
            ca.display()
        )
    })? {
        roots
            .add(c)
            .with_context(|| format!("adding {} as a trust root", ca.display()))?;
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(cfg))
}

/// `rewind --site URL failover ...`.
pub fn failover(c: &SiteClient, json: bool, cmd: &FailoverCmd) -> Result<String> {
    let (group, op, body) = match cmd {
        FailoverCmd::Test { group, point } => (group, "test", json!({ "point": point })),
        FailoverCmd::Cleanup { group } => (group, "cleanup", json!({})),
        FailoverCmd::Planned { group } => (group, "planned", json!({})),
        FailoverCmd::Unplanned { group, point } => (group, "unplanned", json!({ "point": point })),
        FailoverCmd::ChangePoint { group, point } => {
            (group, "change-point", json!({ "point": point }))
        }
        FailoverCmd::Commit { group } => (group, "commit", json!({})),
        FailoverCmd::Status { group: Some(g) } => {
            let v: Value = c.call("GET", &format!("/v1/groups/{g}/failover"), None)?;
            return json_text(&v);
        }
        FailoverCmd::Status { group: None } | FailoverCmd::Configure { .. } => bail!(
            "--site: `failover status GROUP`, test, cleanup, planned, unplanned, change-point \
             and commit go to the site; configure a boot command on the target (--control)"
        ),
    };
    c.job(&format!("/v1/groups/{group}/failover/{op}"), body, json)
}

/// `rewind --site URL plan run FILE --mode M` (the plan is stored at the site under its name,
/// replacing an older text of that name), `plan status NAME`, `plan cleanup NAME`.
pub fn plan(c: &SiteClient, json: bool, cmd: &PlanCmd) -> Result<String> {
    match cmd {
        PlanCmd::Run {
            plan, mode, point, ..
        } => {
            let text = std::fs::read_to_string(plan)
                .with_context(|| format!("reading plan {}", plan.display()))?;
            let parsed = crate::plan::Plan::parse(plan, &text)?;
            let name = parsed.name;
            let have: Result<Value> = c.call("GET", &format!("/v1/plans/{name}"), None);
            match have {
                Ok(p) if p["text"].as_str() == Some(text.as_str()) => {}
                Ok(_) => {
                    let _: Value = c.call("DELETE", &format!("/v1/plans/{name}"), None)?;
                    let _: Value =
                        c.call("POST", "/v1/plans", Some(json!({"name": name, "text": text})))?;
                }
                Err(_) => {
                    let _: Value =
                        c.call("POST", "/v1/plans", Some(json!({"name": name, "text": text})))?;
                }
            }
            let r = c.job(
                &format!("/v1/plans/{name}/run"),
                json!({ "mode": mode, "point": point }),
                json,
            );
            let runs: Value = c.call("GET", &format!("/v1/plans/{name}/runs"), None)?;
            let last = runs.get(0).cloned().unwrap_or(Value::Null);
            match r {
                Ok(_) if json => json_text(&last),
                Ok(out) => Ok(out + &run_summary(&last)),
                Err(e) => {
                    eprint!("{}", run_summary(&last));
                    Err(e)
                }
            }
        }
        PlanCmd::Status { name: Some(name) } => {
            let runs: Value = c.call("GET", &format!("/v1/plans/{name}/runs"), None)?;
            let last = runs.get(0).cloned().unwrap_or(Value::Null);
            if json {
                json_text(&last)
            } else {
                Ok(run_summary(&last))
            }
        }
        PlanCmd::Cleanup { name: Some(name) } => {
            c.job(&format!("/v1/plans/{name}/cleanup"), json!({}), json)
        }
        _ => bail!("--site: give the plan's name (`plan status NAME`, `plan cleanup NAME`); `plan continue` is per target (--control)"),
    }
}

/// A site plan run: its steps and the RTO.
fn run_summary(r: &Value) -> String {
    if r.is_null() {
        return String::new();
    }
    let mut out = format!(
        "plan {} run {} ({} mode) on {}: {}\n",
        r["plan"].as_str().unwrap_or(""),
        r["id"],
        r["mode"].as_str().unwrap_or(""),
        r["targets"].as_str().unwrap_or(""),
        r["state"].as_str().unwrap_or("")
    );
    let start = r["started_ms"].as_i64().unwrap_or(0);
    for s in r["steps"].as_array().into_iter().flatten() {
        let end = s["ended_ms"].as_i64().unwrap_or(0);
        out += &format!(
            "  [+{:>6.1}s] {:<8} {:<8} {:<20} {}: {}\n",
            (end.max(s["started_ms"].as_i64().unwrap_or(0)) - start) as f64 / 1000.0,
            s["target"].as_str().unwrap_or(""),
            s["kind"].as_str().unwrap_or(""),
            format!(
                "{}/{}",
                s["boot_group"].as_str().unwrap_or(""),
                s["machine"].as_str().unwrap_or("")
            ),
            s["outcome"].as_str().unwrap_or(""),
            s["message"].as_str().unwrap_or("")
        );
    }
    if let Some(rto) = r["rto_ms"].as_i64().filter(|r| *r >= 0) {
        out += &format!(
            "RTO: {:.1} s (start to every machine healthy)\n",
            rto as f64 / 1000.0
        );
    }
    out
}
