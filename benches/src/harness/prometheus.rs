//! A real Prometheus server (Debian's `prometheus`) scraping the daemons: its own temp dir and
//! loopback port, a short scrape interval, stopped by pid on drop. Queried through its HTTP API.

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::http::{free_port, get, try_get};
use super::procs::Proc;
use super::scratch::have_tool;

/// Whether `prometheus` and `promtool` are installed; says loudly why not (and fails instead
/// under `REWIND_REQUIRE_TOOLS`, as in the suite).
pub fn have_prometheus(test: &str) -> bool {
    if have_tool("prometheus") && have_tool("promtool") {
        return true;
    }
    let what = format!("{test}: needs prometheus and promtool (apt-get install prometheus)");
    assert!(std::env::var_os("REWIND_REQUIRE_TOOLS").is_none(), "{what}");
    eprintln!("SKIPPED {what}");
    false
}

/// One sample of a query's answer: its labels and value.
pub type Sample = (BTreeMap<String, String>, f64);

/// A running Prometheus.
pub struct Prometheus {
    /// Killed and reaped on drop.
    _proc: Proc,
    /// `127.0.0.1:PORT` of its web API.
    pub addr: String,
    pub log: PathBuf,
}

impl Prometheus {
    /// Starts Prometheus in `dir` scraping every `(job, HOST:PORT)` each 500 ms; returns once
    /// it is ready.
    pub fn start(dir: &std::path::Path, targets: &[(&str, &str)]) -> Prometheus {
        fs::create_dir_all(dir).expect("prometheus dir");
        let mut config = String::from(
            "global:\n  scrape_interval: 500ms\n  scrape_timeout: 400ms\n  evaluation_interval: 500ms\nscrape_configs:\n",
        );
        for (job, addr) in targets {
            config += &format!(
                "  - job_name: {job:?}\n    static_configs:\n      - targets: [{addr:?}]\n"
            );
        }
        let cfg = dir.join("prometheus.yml");
        fs::write(&cfg, config).expect("write prometheus.yml");
        let addr = format!("127.0.0.1:{}", free_port());
        let log = dir.join("prometheus.log");
        let log_file = fs::File::create(&log).expect("prometheus log");
        let proc = Proc::spawn(
            Command::new("prometheus")
                .arg(format!("--config.file={}", cfg.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.join("tsdb").display()
                ))
                .arg(format!("--web.listen-address={addr}"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log_file),
        );
        let p = Prometheus {
            _proc: proc,
            addr,
            log,
        };
        let t0 = Instant::now();
        while !matches!(try_get(&p.addr, "/-/ready"), Ok((200, _))) {
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "prometheus not ready:\n{}",
                fs::read_to_string(&p.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        p
    }

    /// An instant query's samples (panics on an error answer).
    pub fn query(&self, expr: &str) -> Vec<Sample> {
        let q: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("query", expr)
            .finish();
        let (status, body) = get(&self.addr, &format!("/api/v1/query?{q}"));
        assert_eq!(status, 200, "query {expr}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).expect("query answer is JSON");
        assert_eq!(v["status"], "success", "query {expr}: {body}");
        v["data"]["result"]
            .as_array()
            .map(|r| {
                r.iter()
                    .map(|s| {
                        let labels = s["metric"]
                            .as_object()
                            .map(|m| {
                                m.iter()
                                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").into()))
                                    .collect()
                            })
                            .unwrap_or_default();
                        let value = s["value"][1]
                            .as_str()
                            .and_then(|v| v.parse().ok())
                            .unwrap_or(f64::NAN);
                        (labels, value)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Polls `expr` until `ok` holds for its samples; panics with the last answer after
    /// `limit`.
    pub fn wait_for(
        &self,
        expr: &str,
        limit: Duration,
        ok: impl Fn(&[Sample]) -> bool,
    ) -> Vec<Sample> {
        let t0 = Instant::now();
        loop {
            let s = self.query(expr);
            if ok(&s) {
                return s;
            }
            assert!(t0.elapsed() < limit, "{expr}: still {s:?} after {limit:?}");
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}
