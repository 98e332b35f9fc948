//! The database stopped under a running site: every request gets 503 with the reason (never a
//! wrong or empty answer), the site keeps running, and once PostgreSQL is back it serves again
//! and its instance leads again.

mod common;

use std::time::{Duration, Instant};

use common::pg::Pg;
use common::site::{init, scratch, Site};

#[test]
fn a_stopped_database_gives_503_and_the_site_recovers() {
    let Some(mut pg) = Pg::start() else { return };
    let work = scratch();
    let state = work.path().join("state");
    let db = pg.url();
    init(&state, &db);
    let s = Site::start(&state, &db, 1);
    s.wait_leader(Duration::from_secs(10));
    s.ok(&[
        "policy",
        "create",
        "gold",
        "--rpo",
        "1m",
        "--retention",
        "1h",
    ]);

    pg.stop();
    for args in [
        &["groups"][..],
        &["policy", "show", "gold"],
        &[
            "policy",
            "create",
            "silver",
            "--rpo",
            "1m",
            "--retention",
            "1h",
        ],
    ] {
        let e = s.fails(args);
        assert!(
            e.contains("503") && e.contains("database unavailable"),
            "{args:?} while the database is down: {e}"
        );
    }
    // The lease went with the database's session: this instance stops leading at once, so
    // it can never lead beside one that takes the lock when the database returns.
    let t0 = Instant::now();
    while !s.log_text().contains("no longer leading") {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "still leading without a database:\n{}",
            s.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let alive = nix::sys::signal::kill(nix::unistd::Pid::from_raw(s.pid()), None).is_ok();
    assert!(
        alive,
        "the site exited with its database:\n{}",
        s.log_text()
    );

    pg.restart();
    let back = Instant::now();
    loop {
        if s.cli(&["policy", "show", "gold"]).status.success() {
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(30),
            "the site did not recover:\n{}",
            s.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!(
        "site serving {:?} after the database came back",
        back.elapsed()
    );
    // Nothing the failed requests tried was half-made; the retried write goes through.
    assert!(!s.ok(&["policy", "list"]).contains("silver"));
    s.ok(&[
        "policy",
        "create",
        "silver",
        "--rpo",
        "1m",
        "--retention",
        "1h",
    ]);
    let took = s.wait_leader(Duration::from_secs(30));
    eprintln!("leading again {took:?} later");
}
