//! A local SMTP sink: Debian's python3-aiosmtpd with its Maildir handler on a free loopback
//! port, each message a file under `DIR/new/`; killed by pid on drop. With a login, the sink
//! refuses mail from a client that has not authenticated with it (AUTH PLAIN or LOGIN).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct SmtpSink {
    pub port: u16,
    pub maildir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

/// Debian's python3 (the package installs into it, not into another python on the PATH).
fn python() -> &'static str {
    if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

impl SmtpSink {
    /// The sink, or None (said loudly) when aiosmtpd is not installed; with
    /// REWIND_REQUIRE_TOOLS=1 a missing aiosmtpd fails the test.
    pub fn start(dir: &Path) -> Option<SmtpSink> {
        SmtpSink::launch(dir, None)
    }

    /// A sink that requires this user and password.
    pub fn start_with_login(dir: &Path, user: &str, password: &str) -> Option<SmtpSink> {
        SmtpSink::launch(dir, Some((user, password)))
    }

    fn launch(dir: &Path, login: Option<(&str, &str)>) -> Option<SmtpSink> {
        let have = Command::new(python())
            .args(["-c", "import aiosmtpd"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !have {
            let msg = "aiosmtpd is not installed (apt-get install python3-aiosmtpd; scripts/test.sh does)";
            if std::env::var("REWIND_REQUIRE_TOOLS").as_deref() == Ok("1") {
                panic!("{msg}");
            }
            eprintln!("SKIPPED: {msg}");
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let maildir = dir.join("maildir");
        let log = dir.join("smtp.log");
        let mut cmd = Command::new(python());
        match login {
            None => {
                cmd.args(["-m", "aiosmtpd", "-n", "-l"])
                    .arg(format!("127.0.0.1:{port}"))
                    .args(["-c", "aiosmtpd.handlers.Mailbox"])
                    .arg(&maildir);
            }
            Some((user, password)) => {
                // (Plain text on loopback, as the site allows a login only there or over TLS.)
                cmd.arg("-c")
                    .arg(LOGIN_SINK)
                    .arg(port.to_string())
                    .arg(&maildir)
                    .arg(user)
                    .arg(password);
            }
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("smtp log"))
            .spawn()
            .expect("spawn aiosmtpd");
        let mut s = SmtpSink {
            port,
            maildir,
            log,
            child: Some(child),
        };
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(Ok(Some(st))) = s.child.as_mut().map(|c| c.try_wait()) {
                panic!("aiosmtpd exited {st}: {}", s.log_text());
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "aiosmtpd did not listen: {}",
                s.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(s)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Every message received so far, as text.
    pub fn messages(&self) -> Vec<String> {
        let Ok(rd) = std::fs::read_dir(self.maildir.join("new")) else {
            return Vec::new();
        };
        rd.flatten()
            .filter_map(|e| std::fs::read_to_string(e.path()).ok())
            .collect()
    }
}

/// aiosmtpd's controller with an authenticator: argv port, maildir, user, password.
const LOGIN_SINK: &str = r#"
import signal, sys
from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Mailbox
from aiosmtpd.smtp import AuthResult, LoginPassword
port, maildir, user, password = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
def check(server, session, envelope, mechanism, data):
    ok = isinstance(data, LoginPassword) and data.login.decode() == user and data.password.decode() == password
    print("auth", mechanism, "ok" if ok else "refused", file=sys.stderr, flush=True)
    return AuthResult(success=ok)
c = Controller(Mailbox(maildir), hostname="127.0.0.1", port=port, authenticator=check,
               auth_required=True, auth_require_tls=False)
c.start()
signal.pause()
"#;

impl Drop for SmtpSink {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
