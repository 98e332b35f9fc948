//! `rewind-site` processes for tests: `init` a state directory, `serve` on a free loopback port
//! (killed by pid on drop), and the CLI against it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn site_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_rewind-site"))
}

/// `rewind-site init` of `state` on `db`.
pub fn init(state: &Path, db: &str) {
    let out = Command::new(site_bin())
        .arg("--state")
        .arg(state)
        .args(["init", "--db", db])
        .output()
        .expect("run rewind-site init");
    assert!(
        out.status.success(),
        "rewind-site init: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A fresh site on `backend` for one test: its state under `work/state`, initialised, serving
/// and leading (within 10 s).
pub fn start_fresh(work: &Path, backend: &Backend) -> Site {
    let state = work.join("state");
    let db = backend.url(&state);
    init(&state, &db);
    let site = Site::start(&state, &db, 0);
    site.wait_leader(Duration::from_secs(10));
    site
}

/// One `rewind-site serve`.
pub struct Site {
    pub state: PathBuf,
    pub db: String,
    pub url: String,
    pub log: PathBuf,
    child: Option<Child>,
}

impl Site {
    /// Serve `state` on `db`; `n` tells instances apart (their logs and ready files).
    pub fn start(state: &Path, db: &str, n: u32) -> Site {
        let ready = state.join(format!("ready.{n}"));
        let _ = std::fs::remove_file(&ready);
        let log = state.join(format!("site.{n}.log"));
        let child = Command::new(site_bin())
            .arg("--state")
            .arg(state)
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--poll-every",
                "500ms",
                "--db",
                db,
            ])
            .arg("--ready-file")
            .arg(&ready)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("site log"))
            .spawn()
            .expect("spawn rewind-site serve");
        let mut s = Site {
            state: state.to_path_buf(),
            db: db.to_string(),
            url: String::new(),
            log,
            child: Some(child),
        };
        let start = Instant::now();
        while !ready.exists() {
            if let Some(c) = s.child.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    panic!("rewind-site serve exited {st}: {}", s.log_text());
                }
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "rewind-site did not start: {}",
                s.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let addr = std::fs::read_to_string(&ready).expect("ready file");
        s.url = format!("https://{}", addr.trim());
        s
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("running").id() as i32
    }

    /// kill -9, by pid, and reap.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The CLI against this instance, as the local admin (certificate) unless `args` say
    /// otherwise.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_env(args, &[])
    }

    pub fn cli_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut c = Command::new(site_bin());
        c.arg("--state")
            .arg(&self.state)
            .arg("--site")
            .arg(&self.url);
        c.env_remove("REWIND_SITE_TOKEN");
        for (k, v) in env {
            c.env(k, v);
        }
        c.args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run rewind-site")
    }

    /// Run the CLI; panic with its stderr unless it succeeds; stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "rewind-site {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Run the CLI expecting failure; its stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            !out.status.success(),
            "rewind-site {args:?} succeeded: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// Wait (at most `limit`) until this instance says it leads; how long it took.
    pub fn wait_leader(&self, limit: Duration) -> Duration {
        let start = Instant::now();
        loop {
            let out = self.cli(&["--json", "status"]);
            if out.status.success() {
                let v: serde_json::Value =
                    serde_json::from_slice(&out.stdout).expect("status JSON");
                if v["leader"] == true {
                    return start.elapsed();
                }
            }
            assert!(
                start.elapsed() < limit,
                "{} did not lead within {limit:?}: {}",
                self.url,
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `--json` output of a read command.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        serde_json::from_str(&self.ok(&a)).expect("JSON reply")
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        self.kill9();
        // A failed test's reader needs what the site said (polls that failed, targets marked
        // down) more than the assertion alone.
        if std::thread::panicking() {
            let tail = rewind_benches::harness::tail(&self.log_text(), 60);
            eprintln!("--- last lines of {} ---\n{tail}", self.log.display());
        }
    }
}

/// Both backends: SQLite in the state dir, and a throwaway PostgreSQL cluster when installed.
pub enum Backend {
    Sqlite,
    Postgres(super::pg::Pg),
}

impl Backend {
    pub fn url(&self, state: &Path) -> String {
        match self {
            Backend::Sqlite => format!("sqlite:{}", state.join("site.db").display()),
            Backend::Postgres(pg) => pg.url(),
        }
    }

    /// SQLite always; PostgreSQL when present (see [`super::pg::Pg::start`]).
    pub fn all() -> Vec<Backend> {
        let mut v = vec![Backend::Sqlite];
        if let Some(pg) = super::pg::Pg::start() {
            v.push(Backend::Postgres(pg));
        }
        v
    }

    pub fn name(&self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }
}

/// A scratch directory (0700) under /var/tmp, removed on drop.
pub fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("rewind-test-site-")
        .tempdir_in("/var/tmp")
        .expect("temp dir")
}
