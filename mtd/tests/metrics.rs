//! Metrics end to end: a real `rewind-mtd serve` and `rewind-agent run` with `--metrics-listen`,
//! scraped by a real Prometheus (Debian's `prometheus`, started here on a temp port with a
//! 500 ms scrape interval), queried through its HTTP API while replication runs: bytes applied
//! grow with the writes, RPO is small when caught up, grows while the target is down and falls
//! back once it returns.

mod common;

use std::time::Duration;

use common::*;
use rewind_benches::harness::http::{free_port, get};
use rewind_benches::harness::prometheus::Sample;

const LONG: Duration = Duration::from_secs(60);

fn one(s: &[Sample]) -> Option<f64> {
    (s.len() == 1).then(|| s[0].1)
}

#[test]
fn prometheus_scrapes_rpo_and_bytes_while_replication_runs() {
    if !can_run() || !have_prometheus("metrics") {
        return;
    }
    let work = tempdir();
    let w = work.path();
    let img = w.join("disk.img");
    sparse_image(&img, 64 << 20);
    let mtd_metrics = format!("127.0.0.1:{}", free_port());
    let mut mtd = Mtd::start_with(w, &["--metrics-listen", &mtd_metrics]);
    assert_eq!(mtd.metrics_addr(), mtd_metrics, "the ready file names it");
    let agent_metrics = format!("127.0.0.1:{}", free_port());
    let agent = Agent::start(
        w,
        "g1",
        &[("d0", &img)],
        &mtd.target(),
        // (The capture latency is observed on the /dev/fuse transport; FUSE over io_uring does
        // not feed it yet.)
        &[
            "--metrics-listen",
            &agent_metrics,
            "--rpo-target",
            "60",
            "--fuse-transport",
            "dev-fuse",
        ],
    );
    let dev = agent.link("d0");
    let caught_up = || agent.wait_caught_up(Duration::from_secs(120));
    caught_up();

    // The endpoints themselves: OpenMetrics text with the group's series.
    let (status, text) = get(&agent_metrics, "/metrics");
    assert_eq!(status, 200);
    for want in [
        "rewind_rpo_seconds{group=\"g1\"} ",
        "rewind_build_info{component=\"agent\",",
        "# TYPE rewind_capture_seconds histogram",
        "rewind_captured_bytes_total{group=\"g1\",disk=\"d0\"} ",
    ] {
        assert!(
            text.contains(want),
            "agent /metrics lacks {want:?}:\n{text}"
        );
    }
    let (status, text) = get(&mtd_metrics, "/metrics");
    assert_eq!(status, 200);
    for want in [
        "rewind_applied_bytes_total{group=\"g1\",disk=\"d0\"} ",
        "rewind_state{group=\"g1\",state=\"replicating\"} 1",
        "rewind_store_free_bytes ",
        "# EOF",
    ] {
        assert!(text.contains(want), "mtd /metrics lacks {want:?}:\n{text}");
    }
    let (status, _) = get(&mtd_metrics, "/nothing");
    assert_eq!(status, 404, "only /metrics is served");

    let prom = Prometheus::start(
        &w.join("prometheus"),
        &[("mtd", &mtd_metrics), ("agent", &agent_metrics)],
    );
    // Both jobs up, each with its build_info.
    prom.wait_for("up == 1", LONG, |s| s.len() == 2);
    let builds = prom.query("rewind_build_info");
    let mut components: Vec<&str> = builds
        .iter()
        .map(|(l, _)| l["component"].as_str())
        .collect();
    components.sort_unstable();
    assert_eq!(components, ["agent", "mtd"]);

    // Caught up: RPO small, the target says replicating and fed, the RPO target is exported.
    prom.wait_for("rewind_rpo_seconds{group=\"g1\"}", LONG, |s| {
        one(s).is_some_and(|v| v < 2.0)
    });
    prom.wait_for("rewind_rpo_target_seconds{group=\"g1\"}", LONG, |s| {
        one(s) == Some(60.0)
    });
    prom.wait_for(
        "rewind_agent_connected{job=\"mtd\",group=\"g1\"}",
        LONG,
        |s| one(s) == Some(1.0),
    );

    // 16 MiB written: applied bytes at the target grow by at least that; captured too.
    let applied_q = "rewind_applied_bytes_total{group=\"g1\",disk=\"d0\"}";
    let before = one(&prom.wait_for(applied_q, LONG, |s| one(s).is_some())).unwrap();
    write_random_mib(&dev, 8, 16, 7);
    caught_up();
    prom.wait_for(applied_q, LONG, |s| {
        one(s).is_some_and(|v| v >= before + (16 << 20) as f64)
    });
    prom.wait_for(
        "rewind_captured_bytes_total{group=\"g1\",disk=\"d0\"}",
        LONG,
        |s| one(s).is_some_and(|v| v >= (16 << 20) as f64),
    );
    prom.wait_for(
        "rewind_backlog_bytes{group=\"g1\",disk=\"d0\"}",
        LONG,
        |s| one(s) == Some(0.0),
    );
    prom.wait_for("rewind_apply_seconds_count", LONG, |s| {
        one(s).is_some_and(|v| v > 0.0)
    });
    prom.wait_for("rewind_capture_seconds_count{group=\"g1\"}", LONG, |s| {
        one(s).is_some_and(|v| v >= 16.0)
    });

    // The target goes away and the workload writes on: the agent's RPO grows with the age of
    // its oldest unacknowledged write, and it says why (link down).
    mtd.stop();
    write_random_mib(&dev, 32, 4, 8);
    prom.wait_for("rewind_rpo_seconds{group=\"g1\"}", LONG, |s| {
        one(s).is_some_and(|v| v >= 3.0)
    });
    prom.wait_for(
        "rewind_sync_reason{group=\"g1\",reason=\"link_down\"}",
        LONG,
        |s| one(s) == Some(1.0),
    );
    prom.wait_for(
        "rewind_state{group=\"g1\",state=\"disconnected\"}",
        LONG,
        |s| one(s) == Some(1.0),
    );
    // The RPO alert's own expression sees it against the 60 s target only when over.
    assert!(prom
        .query("rewind_rpo_seconds > 0.75 * rewind_rpo_target_seconds")
        .is_empty());

    // The target returns: the agent catches up and RPO falls back.
    mtd.restart();
    caught_up();
    prom.wait_for("rewind_rpo_seconds{group=\"g1\"}", LONG, |s| {
        one(s).is_some_and(|v| v < 2.0)
    });
    prom.wait_for(
        "rewind_state{job=\"mtd\",group=\"g1\",state=\"replicating\"}",
        LONG,
        |s| one(s) == Some(1.0),
    );
    drop(prom);
    drop(agent);
}
