//! The Debian packages under a real systemd. This machine's PID 1 is not systemd, so the other
//! tests check the units offline (`systemd-analyze verify`, packaging.rs) and push-install runs
//! the agent without systemd under a test root. Here a Debian 12 root boots with systemd as
//! PID 1 in a container (harness/container.rs), the three packages are installed with
//! `dpkg -i`, and systemd starts, restarts and stops the daemons with every hardening
//! directive of their units in force: a directive that breaks a daemon at run time (a system
//! call filter, a read-only path, a dynamic user that cannot read its files) fails here.
//!
//! Not covered: the agent's unit running capture, which needs FUSE and loop devices the
//! container does not get (push_install.rs runs the agent under a test root instead).

use std::time::{Duration, Instant};

use rewind_benches::harness::container::{can_boot, Container};
use rewind_benches::harness::packages::{build_deb, have_cargo_deb, PACKAGES};
use rewind_benches::harness::*;

/// The site's CLI as root in the container, against the site the unit runs.
const SITE: &str = "rewind-site --state /var/lib/rewind-site --site https://127.0.0.1:7443";

/// Runs `script` in `c` until it succeeds, for up to `limit`; its stdout.
fn until_ok(c: &Container, script: &str, limit: Duration) -> String {
    let t0 = Instant::now();
    loop {
        let out = c.sh(script);
        if out.status.success() {
            return String::from_utf8_lossy(&out.stdout).into_owned();
        }
        if t0.elapsed() > limit {
            // Once more through sh_ok: it fails naming the script, its output and the journal.
            return c.sh_ok(script);
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Whether something listens on TCP `port` in the container (its own network namespace).
fn listening(c: &Container, port: u16) -> bool {
    let table = c.sh_ok("cat /proc/net/tcp /proc/net/tcp6");
    let want = format!(":{port:04X}");
    // Columns: sl, local address:port, remote, state (0A is LISTEN).
    table.lines().any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() > 3 && f[1].ends_with(&want) && f[3] == "0A"
    })
}

#[test]
fn packages_install_start_restart_and_stop_under_systemd() {
    if !can_boot("packages under systemd")
        || !have_tools("packages under systemd", &["dpkg-deb"])
        || !have_cargo_deb()
    {
        return;
    }
    let debs = tempdir();
    for (krate, _, _) in PACKAGES {
        build_deb(krate, debs.path());
    }
    let c = Container::boot(&[(debs.path(), "/debs")]);
    let minute = Duration::from_secs(60);

    // Installed with dpkg: the group made, the target's unit enabled (and started, failing
    // until it has certificates), the relay's shipped but not enabled.
    c.sh_ok("DEBIAN_FRONTEND=noninteractive dpkg -i /debs/*.deb");
    c.sh_ok("getent group rewind");
    let enabled = |unit: &str| c.sh_text(&format!("systemctl is-enabled {unit}"));
    assert_eq!(enabled("rewind-mtd.service").trim(), "enabled");
    assert_eq!(enabled("rewind-site.service").trim(), "enabled");
    assert_eq!(enabled("rewind-relay.service").trim(), "disabled");

    // The site's CA (as README and docs/SITE_OPS.md set a site up), the target's certificate
    // from it, and the target's control API for the site.
    c.sh_ok("rewind-site --state /var/lib/rewind-site init --host 127.0.0.1 >/dev/null");
    c.sh_ok(
        "rewind-mtd ca issue --dir /var/lib/rewind-site/ca --server t1 --host 127.0.0.1 \
         --out /etc/rewind/mtd",
    );
    c.sh_ok("echo 'REWIND_MTD_ARGS=--control-listen 127.0.0.1:7041' > /etc/default/rewind-mtd");
    c.sh_ok("systemctl restart rewind-mtd.service");
    c.wait_unit("rewind-mtd.service", "active", minute);
    let groups = until_ok(&c, "rewind groups", minute);
    assert!(!groups.contains("error"), "rewind groups: {groups}");
    // Its run-time directory as the unit says: root's, readable by the rewind group only.
    let perms = c.sh_ok("stat -c '%a %U %G' /run/rewind");
    assert_eq!(perms.trim(), "750 root rewind");
    // So a member of the group reads through the control socket; anybody else is refused.
    c.sh_ok("useradd --no-create-home -G rewind rwop && useradd --no-create-home rwother");
    let listed = c.sh_ok("runuser -u rwop -- rewind groups");
    assert!(
        !listed.contains("error"),
        "rewind groups as a member: {listed}"
    );
    let refused = c.sh("runuser -u rwother -- rewind groups");
    assert!(!refused.status.success(), "a non-member read the target");
    assert!(listening(&c, 7040) && listening(&c, 7041), "target ports");

    // The site, as a dynamic user that owns the state directory root made, registers the target
    // over the control API's mutual TLS.
    c.sh_ok("systemctl start rewind-site.service");
    c.wait_unit("rewind-site.service", "active", minute);
    until_ok(&c, &format!("{SITE} target list"), minute);
    c.sh_ok(&format!(
        "{SITE} target add t1 --url https://127.0.0.1:7041 --agents 127.0.0.1:7040"
    ));
    let targets = until_ok(&c, &format!("{SITE} target list"), minute);
    assert!(targets.contains("t1"), "target list: {targets}");
    let owner = c.sh_ok("stat -L -c '%U' /var/lib/rewind-site/ca");
    assert_ne!(
        owner.trim(),
        "root",
        "the dynamic user owns the site's state"
    );

    // A restart of each comes back up and answers again.
    c.sh_ok("systemctl restart rewind-mtd.service rewind-site.service");
    c.wait_unit("rewind-mtd.service", "active", minute);
    c.wait_unit("rewind-site.service", "active", minute);
    until_ok(&c, "rewind groups", minute);
    let targets = until_ok(&c, &format!("{SITE} target list"), minute);
    assert!(
        targets.contains("t1"),
        "target list after restart: {targets}"
    );

    // Stopped: both exit on SIGTERM as systemd expects (inactive, not failed).
    c.sh_ok("systemctl stop rewind-mtd.service rewind-site.service");
    c.wait_unit("rewind-mtd.service", "inactive", minute);
    c.wait_unit("rewind-site.service", "inactive", minute);

    // The relay runs only once configured; then, as its own dynamic user, it reads the TLS
    // files root put in its state directory and listens for agents (its upstream, the target,
    // is stopped: it keeps running and retries).
    c.sh_ok("systemctl start rewind-relay.service");
    let cond = c.sh_ok("systemctl show -p ConditionResult --value rewind-relay.service");
    assert_eq!(cond.trim(), "no", "the relay started without its settings");
    c.sh_ok(
        "rewind-mtd ca issue --dir /var/lib/rewind-site/ca --relay r1 \
           --out /var/lib/rewind-relay/tls && \
         rewind-mtd ca issue --dir /var/lib/rewind-site/ca --server r1-agents \
           --host 127.0.0.1 --out /var/lib/rewind-relay/tls && \
         printf 'REWIND_RELAY_UPSTREAM=tcp:127.0.0.1:7040\\nREWIND_RELAY_CACHE_SIZE=64MiB\\n' \
           > /etc/default/rewind-relay",
    );
    c.sh_ok("systemctl start rewind-relay.service");
    c.wait_unit("rewind-relay.service", "active", minute);
    let t0 = Instant::now();
    while !listening(&c, 7040) {
        assert!(
            t0.elapsed() < minute,
            "the relay does not listen on 7040:\n{}",
            c.unit_log("rewind-relay.service")
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    // Still up a few seconds later: not killed by its system call filter on first use.
    std::thread::sleep(Duration::from_secs(3));
    c.wait_unit("rewind-relay.service", "active", Duration::from_secs(1));
    c.sh_ok("systemctl stop rewind-relay.service");
    c.wait_unit("rewind-relay.service", "inactive", minute);

    // An agent's unit waits for the settings bundle push-install writes.
    c.sh_ok("systemctl start rewind-agent@demo.service");
    let cond = c.sh_ok("systemctl show -p ConditionResult --value rewind-agent@demo.service");
    assert_eq!(cond.trim(), "no", "the agent started without its settings");

    // Removed: the units and binaries go with the packages, and systemd forgets them.
    c.sh_ok("systemctl start rewind-mtd.service");
    c.wait_unit("rewind-mtd.service", "active", minute);
    c.sh_ok("DEBIAN_FRONTEND=noninteractive dpkg -r rewind-agent rewind-site rewind-mtd");
    c.wait_unit("rewind-mtd.service", "inactive", minute);
    c.sh_ok(
        "! test -e /usr/lib/systemd/system/rewind-mtd.service && ! test -e /usr/bin/rewind-mtd",
    );
    // Debian masks a removed package's units until it is purged.
    let load = || c.sh_ok("systemctl show -p LoadState --value rewind-mtd.service");
    assert_eq!(load().trim(), "masked", "a removed package's unit");
    c.sh_ok("DEBIAN_FRONTEND=noninteractive dpkg --purge rewind-agent rewind-site rewind-mtd");
    assert_eq!(
        load().trim(),
        "not-found",
        "systemd still knows the purged unit"
    );
}
