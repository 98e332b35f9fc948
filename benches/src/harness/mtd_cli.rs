//! The `rewind` CLI, the control API and the offline `rewind-mtd` commands (dump, inspect)
//! against a test daemon.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::bins::bin;
use super::cmd::{assert_ok, run, run_ok};
use super::disk::assert_same;
use super::mtd::Mtd;

impl Mtd {
    /// The `rewind` CLI pointed at this daemon.
    pub fn rewind_cmd(&self) -> Command {
        let mut c = Command::new(bin("rewind"));
        c.arg("--control").arg(&self.control);
        c
    }

    /// `rewind ARGS` against this daemon; the output of a successful run.
    pub fn rewind(&self, args: &[&str]) -> String {
        let out = run_ok(self.rewind_cmd().args(args));
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    /// `rewind --json ...`, parsed.
    pub fn rewind_json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        let text = self.rewind(&a);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("rewind {args:?}: {e}: {text}"))
    }

    /// A `rewind` command that must fail: its stderr.
    pub fn rewind_fails(&self, args: &[&str]) -> String {
        let out = run(self.rewind_cmd().args(args));
        assert!(
            !out.status.success(),
            "rewind {args:?} should have failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).to_string()
    }

    /// POST `body` (JSON) to the control API at `path` (curl over the unix socket); returns the
    /// HTTP status and the body.
    pub fn control_post(&self, path: &str, body: &str) -> (u16, String) {
        self.control_call("POST", path, Some(body))
    }

    /// PUT `body` (JSON) to the control API at `path`; returns the HTTP status and the body.
    pub fn control_put(&self, path: &str, body: &str) -> (u16, String) {
        self.control_call("PUT", path, Some(body))
    }

    /// GET from the control API at `path`; returns the HTTP status and the body.
    pub fn control_get(&self, path: &str) -> (u16, String) {
        self.control_call("GET", path, None)
    }

    fn control_call(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "--max-time", "300", "-X", method])
            .arg("--unix-socket")
            .arg(&self.control)
            .args(["-w", "\n%{http_code}"]);
        if let Some(b) = body {
            cmd.args(["-H", "Content-Type: application/json", "-d", b]);
        }
        cmd.arg(format!("http://localhost{path}"));
        let out = run_ok(&mut cmd);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        let code = code
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("no HTTP status in curl output {text:?}"));
        (code, body.to_string())
    }

    /// `rewind-mtd dump` of a point of a disk to `out` (the daemon must be stopped).
    pub fn dump(&self, group: &str, disk: &str, at: &str, out: &Path) {
        let o = dump(&self.data_dir, group, disk, at, out);
        assert_ok(&o, &format!("rewind-mtd dump {group}/{disk} at {at}"));
    }

    /// Stops the target, dumps `group/disk` at latest beside its data dir, and asserts it
    /// equals `source` byte for byte. Returns the dump's path.
    pub fn stop_and_check_latest(&mut self, group: &str, disk: &str, source: &Path) -> PathBuf {
        self.stop();
        let latest = self
            .data_dir
            .with_extension(format!("{group}-{disk}-latest.img"));
        let _ = std::fs::remove_file(&latest);
        self.dump(group, disk, "latest", &latest);
        assert_same(&latest, source);
        latest
    }
}

/// Dump a view to a file; returns the command's output (for error cases too).
pub fn dump(data_dir: &Path, group: &str, disk: &str, at: &str, out: &Path) -> Output {
    run(Command::new(bin("rewind-mtd"))
        .args([
            "dump",
            "--group",
            group,
            "--disk",
            disk,
            "--at",
            at,
            "--data-dir",
        ])
        .arg(data_dir)
        .arg("-o")
        .arg(out))
}

/// `rewind-mtd inspect --json` as a serde_json value.
pub fn inspect(data_dir: &Path) -> serde_json::Value {
    let out = run_ok(
        Command::new(bin("rewind-mtd"))
            .args(["inspect", "--json", "--data-dir"])
            .arg(data_dir),
    );
    serde_json::from_slice(&out.stdout).expect("inspect json")
}

/// The group named `group` in an [`inspect`] report.
pub fn group_json<'a>(report: &'a serde_json::Value, group: &str) -> &'a serde_json::Value {
    report["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .find(|g| g["name"] == group)
        .expect("group in report")
}
