//! A throwaway PostgreSQL cluster for one test: initdb into a temp dir owned by an unprivileged
//! user (PostgreSQL refuses to run as root), its own port on 127.0.0.1 and its own socket dir,
//! stopped by pid and removed on drop.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The user the cluster runs as.
const PG_USER: &str = "nobody";

pub struct Pg {
    pub dir: tempfile::TempDir,
    pub port: u16,
    bin: PathBuf,
    uid: u32,
    gid: u32,
    child: Option<Child>,
}

/// The newest installed PostgreSQL's bin directory (Debian: /usr/lib/postgresql/N/bin).
fn bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let b = e.path().join("bin");
            b.join("initdb").exists().then_some((v, b))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, b)| b)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

impl Pg {
    /// A running cluster with database `site`, or None (said loudly) when PostgreSQL is not
    /// installed; with REWIND_REQUIRE_TOOLS=1 a missing PostgreSQL fails the test.
    pub fn start() -> Option<Pg> {
        let Some(bin) = bin_dir() else {
            let msg =
                "PostgreSQL is not installed (apt-get install postgresql; scripts/test.sh does)";
            if std::env::var("REWIND_REQUIRE_TOOLS").as_deref() == Ok("1") {
                panic!("{msg}");
            }
            eprintln!("SKIPPED: {msg}");
            return None;
        };
        let user = nix::unistd::User::from_name(PG_USER)
            .expect("user lookup")
            .unwrap_or_else(|| panic!("no user {PG_USER} to run PostgreSQL as"));
        let dir = tempfile::Builder::new()
            .prefix("rewind-test-pg-")
            .tempdir_in("/var/tmp")
            .expect("temp dir");
        nix::unistd::chown(dir.path(), Some(user.uid), Some(user.gid)).expect("chown pg dir");
        let mut pg = Pg {
            port: free_port(),
            bin,
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
            child: None,
            dir,
        };
        let out = pg
            .cmd("initdb")
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"])
            .arg(pg.data())
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        pg.restart();
        let out = pg
            .cmd("createdb")
            .args(["-h", "127.0.0.1", "-U", "postgres", "-p"])
            .arg(pg.port.to_string())
            .arg("site")
            .output()
            .expect("createdb");
        assert!(
            out.status.success(),
            "createdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Some(pg)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn cmd(&self, tool: &str) -> Command {
        let mut c = Command::new(self.bin.join(tool));
        c.uid(self.uid).gid(self.gid).current_dir(self.dir.path());
        c
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/site", self.port)
    }

    /// Start the server (again) and wait until it takes connections.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "postgres still running");
        let log = std::fs::File::create(self.dir.path().join("pg.log")).expect("pg log");
        nix::unistd::chown(
            &self.dir.path().join("pg.log"),
            Some(self.uid.into()),
            Some(self.gid.into()),
        )
        .ok();
        let child = self
            .cmd("postgres")
            .arg("-D")
            .arg(self.data())
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-p"])
            .arg(self.port.to_string())
            .arg("-k")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn postgres");
        self.child = Some(child);
        let start = Instant::now();
        loop {
            let ok = self
                .cmd("pg_isready")
                .args(["-h", "127.0.0.1", "-p"])
                .arg(self.port.to_string())
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "postgres did not start: {}",
                std::fs::read_to_string(self.dir.path().join("pg.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stop the server (fast shutdown: SIGINT to the postmaster, by pid) and wait for it.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(c.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
            let start = Instant::now();
            loop {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                if start.elapsed() > Duration::from_secs(20) {
                    let _ = c.kill();
                    let _ = c.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        self.stop();
    }
}
