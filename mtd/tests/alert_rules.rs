//! The alert rules shipped for Prometheus users (`docs/prometheus/rewind-alerts.yml`) pass
//! their unit tests (`rewind-alerts.test.yml`) under `promtool test rules`, and `promtool check
//! rules` finds them valid.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

fn promtool(args: &[&str]) -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/prometheus");
    let out = Command::new("promtool")
        .args(args)
        .current_dir(&dir)
        .output()
        .expect("run promtool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "promtool {args:?} in {}:\n{text}",
        dir.display()
    );
    text
}

#[test]
fn alert_rules_are_valid_and_pass_their_unit_tests() {
    if !have_prometheus("alert_rules") {
        return;
    }
    let check = promtool(&["check", "rules", "rewind-alerts.yml"]);
    assert!(check.contains("SUCCESS"), "{check}");
    let test = promtool(&["test", "rules", "rewind-alerts.test.yml"]);
    assert!(test.contains("SUCCESS"), "{test}");
}
