//! Packaging: the binaries write their own man pages and shell completions
//! (`REWIND_GENERATE_DOCS`, linux/src/clidocs.rs); the systemd units pass `systemd-analyze
//! verify` (with those man pages found) and keep their hardening (`systemd-analyze security`
//! exposure at most what it was measured at); cargo-deb builds the three Debian packages with
//! the binaries, units, man pages, completions and the `rewind` group in postinst.
//!
//! Tested on the debug binaries (`--profile dev`, `--fast`): what is checked is the layout,
//! not the release build, which `scripts/package.sh` makes.

use std::fs;
use std::path::Path;
use std::process::Command;

use rewind_benches::harness::packages::{
    build_deb, generate_docs, have_cargo_deb, workspace, PACKAGES,
};
use rewind_benches::harness::*;

/// The highest `systemd-analyze security` exposure each unit may have (measured 5.2, 5.0 and
/// 1.5 when written: the target and the agent keep CAP_SYS_ADMIN for mounts, FUSE and loop
/// devices; the site keeps no capability at all).
const MAX_EXPOSURE: [(&str, f64); 4] = [
    ("rewind-mtd.service", 5.3),
    ("rewind-relay.service", 1.6),
    ("rewind-agent@.service", 5.1),
    ("rewind-site.service", 1.6),
];

/// Runs `cmd`: whether it succeeded, and its stdout and stderr.
fn run_text(cmd: &mut Command) -> (bool, String) {
    let out = run(cmd);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn every_binary_writes_its_man_pages_and_completions() {
    let tmp = tempdir();
    // A subcommand each binary must have a page for, and its bash completion must know.
    for (name, sub) in [
        ("rewind-mtd", "serve"),
        ("rewind", "verify"),
        ("rewind-agent", "run"),
        ("rewind-site", "protect"),
    ] {
        let dir = tmp.path().join(name);
        generate_docs(name, &dir);
        let man = dir.join("man/man1");
        let page = fs::read_to_string(man.join(format!("{name}.1"))).unwrap();
        assert!(page.starts_with(".ie") || page.contains(".TH"), "{page}");
        let subpage = fs::read_to_string(man.join(format!("{name}-{sub}.1"))).unwrap();
        assert!(subpage.contains(".TH"), "{subpage}");
        let bash = fs::read_to_string(dir.join("completions/bash").join(name)).unwrap();
        assert!(bash.contains(sub), "{name}'s bash completion lacks {sub}");
        for f in [format!("zsh/_{name}"), format!("fish/{name}.fish")] {
            let c = fs::read_to_string(dir.join("completions").join(&f)).unwrap();
            assert!(c.contains(sub), "{name}'s {f} lacks {sub}");
        }
    }
    // A directory it cannot write is an error, not a silent success.
    let (ok, text) =
        run_text(Command::new(bin("rewind")).env("REWIND_GENERATE_DOCS", "/proc/nope"));
    assert!(!ok && text.contains("/proc/nope"), "{text}");
}

/// Links `from` at `to` (a copy when they are on different file systems).
fn place(from: &Path, to: &Path) {
    fs::create_dir_all(to.parent().unwrap()).unwrap();
    if fs::hard_link(from, to).is_err() {
        fs::copy(from, to).unwrap();
    }
}

#[test]
fn units_pass_systemd_analyze_verify_and_stay_hardened() {
    if !have_tools("units", &["systemd-analyze", "man"]) {
        return;
    }
    let tmp = tempdir();
    // A root holding what the units name: the system's targets, the binaries in /usr/bin and
    // the units where the packages put them. Their man pages on MANPATH (verify looks up each
    // Documentation=man:... page).
    let root = tmp.path().join("root");
    let units = root.join("usr/lib/systemd/system");
    fs::create_dir_all(&units).unwrap();
    for e in fs::read_dir("/usr/lib/systemd/system").unwrap().flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "target") && p.is_file() {
            fs::copy(&p, units.join(e.file_name())).unwrap();
        }
    }
    let mut manpath = Vec::new();
    for (krate, bins, unit_files) in PACKAGES {
        for b in bins {
            place(&bin(b), &root.join("usr/bin").join(b));
            let docs = tmp.path().join("docs").join(b);
            generate_docs(b, &docs);
            manpath.push(docs.join("man").display().to_string());
        }
        for unit in unit_files {
            fs::copy(
                workspace().join(krate).join("systemd").join(unit),
                units.join(unit),
            )
            .unwrap();
        }
    }
    let manpath = manpath.join(":");
    for unit in PACKAGES.iter().flat_map(|(_, _, u)| u.iter()) {
        let (ok, text) = run_text(
            Command::new("systemd-analyze")
                .arg("verify")
                .arg(format!("--root={}", root.display()))
                .arg(format!("/usr/lib/systemd/system/{unit}"))
                .env("MANPATH", &manpath),
        );
        assert!(ok && text.trim().is_empty(), "{unit}: {text}");
    }
    for (unit, max) in MAX_EXPOSURE {
        let (_, text) = run_text(
            Command::new("systemd-analyze")
                .args(["security", "--offline=true", "--no-pager"])
                .arg(format!("--root={}", root.display()))
                .arg(format!("/usr/lib/systemd/system/{unit}")),
        );
        let level: f64 = text
            .lines()
            .find_map(|l| l.split("Overall exposure level for ").nth(1))
            .and_then(|l| l.split(": ").nth(1))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{unit}: no exposure level in {text}"));
        assert!(level <= max, "{unit}: exposure {level} > {max}\n{text}");
    }
    // A unit that is wrong fails verify: the check can fail.
    let bad = units.join("rewind-bad.service");
    fs::write(&bad, "[Service]\nExecStart=/usr/bin/rewind-nope serve\n").unwrap();
    let (ok, text) = run_text(
        Command::new("systemd-analyze")
            .arg("verify")
            .arg(format!("--root={}", root.display()))
            .arg("/usr/lib/systemd/system/rewind-bad.service"),
    );
    assert!(!ok && text.contains("rewind-nope"), "{text}");
}

#[test]
fn debian_packages_hold_binaries_units_docs_and_make_the_group() {
    if !have_tools("packages", &["dpkg-deb"]) {
        return;
    }
    if !have_cargo_deb() {
        return;
    }
    let tmp = tempdir();
    for (krate, bins, unit_files) in PACKAGES {
        let deb = build_deb(krate, tmp.path());
        let (ok, files) = run_text(Command::new("dpkg-deb").arg("-c").arg(&deb));
        assert!(ok, "{files}");
        let mut want: Vec<String> = unit_files
            .iter()
            .map(|u| format!("./usr/lib/systemd/system/{u}"))
            .collect();
        for b in bins {
            want.push(format!("./usr/bin/{b}"));
            want.push(format!("./usr/share/man/man1/{b}.1"));
            want.push(format!("./usr/share/bash-completion/completions/{b}"));
            want.push(format!("./usr/share/zsh/vendor-completions/_{b}"));
            want.push(format!("./usr/share/fish/vendor_completions.d/{b}.fish"));
        }
        for w in &want {
            assert!(
                files.lines().any(|l| l.ends_with(w.as_str())),
                "{} lacks {w}:\n{files}",
                deb.display()
            );
        }
        let (ok, postinst) = run_text(Command::new("sh").arg("-c").arg(format!(
            "dpkg-deb --ctrl-tarfile '{}' | tar -xOf - ./postinst",
            deb.display()
        )));
        assert!(ok, "{postinst}");
        assert!(postinst.contains("addgroup --system rewind"), "{postinst}");
        // The package's own unit is enabled at install; a template has no instance to enable
        // until a group is pushed (`rewind-agent@GROUP`), so systemd only reloads; the relay's
        // is shipped, not enabled (a host is a relay only when configured as one).
        let unit = unit_files[0];
        let wanted = if unit.contains('@') {
            "systemctl --system daemon-reload".to_string()
        } else {
            format!("deb-systemd-helper enable {unit}")
        };
        assert!(postinst.contains(&wanted), "{postinst}");
        for other in &unit_files[1..] {
            // dh_installsystemd's form for a unit not enabled by default: it is enabled again
            // only where an administrator had enabled it before an upgrade.
            let guard = format!("deb-systemd-helper debian-installed {other}");
            assert!(
                postinst.contains(&guard),
                "{other} must not be enabled at install: {postinst}"
            );
        }
        let (_, control) = run_text(
            Command::new("dpkg-deb")
                .args(["-f"])
                .arg(&deb)
                .arg("Depends"),
        );
        assert!(control.contains("adduser"), "{control}");
    }
}
