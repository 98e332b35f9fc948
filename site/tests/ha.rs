//! High availability on PostgreSQL: two `rewind-site serve` on one database, one leads; kill -9
//! of the leader and the standby leads within 10 s, while both serve reads meanwhile.

mod common;

use std::time::{Duration, Instant};

use common::pg::Pg;
use common::site::{init, scratch, Site};

#[test]
fn standby_takes_over_within_ten_seconds_of_a_kill_9() {
    let Some(pg) = Pg::start() else { return };
    let work = scratch();
    let state = work.path().join("state");
    let db = pg.url();
    init(&state, &db);
    // A second init on the same database (and state) is harmless: nothing made twice.
    init(&state, &db);
    let mut a = Site::start(&state, &db, 1);
    a.wait_leader(Duration::from_secs(10));
    let b = Site::start(&state, &db, 2);
    std::thread::sleep(Duration::from_secs(2));
    let sb = b.json(&["status"]);
    assert_eq!(sb["leader"], false, "two leaders: {sb}");
    // The standby serves reads and takes writes (the database is shared).
    b.ok(&[
        "policy",
        "create",
        "gold",
        "--rpo",
        "1m",
        "--retention",
        "1h",
    ]);
    assert_eq!(a.json(&["policy", "show", "gold"])["version"], 1);

    let killed = Instant::now();
    a.kill9();
    b.wait_leader(Duration::from_secs(10));
    let takeover = killed.elapsed();
    eprintln!(
        "bar site-takeover-s: {:.2} (want < 10)",
        takeover.as_secs_f64()
    );
    assert!(takeover < Duration::from_secs(10), "{takeover:?}");
    let events = b.ok(&["events"]);
    assert_eq!(events.matches("site.leader").count(), 2, "{events}");
    // The old leader comes back as a standby.
    let a2 = Site::start(&state, &db, 3);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(a2.json(&["status"])["leader"], false);
    assert_eq!(b.json(&["status"])["leader"], true);
}
