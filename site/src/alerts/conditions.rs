//! The alert conditions, as one pure function of what the site knows (so they are tested without
//! a database or a target): the same conditions as the Prometheus rules in `docs/prometheus/`,
//! from the facts polls and event streams bring.
//!
//! | kind | subject | fires when |
//! |---|---|---|
//! | `target_down` | target | the target does not answer its poll |
//! | `journal_full` | target | its data file system is over 90% full (critical over 95%) |
//! | `journal_forecast` | target | it fills within 2 days at its recent rate (see [`super::forecast`]) |
//! | `agent_not_seen` | group | the target holds no session of the group's agent for [`AGENT_GRACE_MS`] |
//! | `rpo_warning`, `rpo_breach` | group | the RPO (the agent's, or the bound) is over 0.75x, 1x the policy's RPO target |
//! | `bitmap_mode` | group | the agent reports bitmap mode (its spool is full: writes are only tracked) |
//! | `sync_stalled` | group | the agent's sync has not moved for [`SYNC_STALL_MS`] (it is not converging) |
//! | `resync` | group | a resync (initial sync, or after bitmap mode or a crash) is running |
//! | `crc_rejects` | group | the target refused the agent's frames for a bad checksum lately |
//! | `fenced_agent` | group | an agent fenced by a failover still tries to feed the group |
//! | `drill_failed` | group | the group's last drill (test failover, boot, probes: the target's `rewind drill`) failed |
//! | `drill_overdue` | group | no drill passed for [`DRILL_OVERDUE_MS`] (90 days), or twice the policy's drill period when it sets one |
//! | `verify_mismatch` | group | the group's last online verify found the replica differs from the source and did not repair it (stays until a later verify finds nothing or repairs) |
//!
//! The age of the oldest write the target does not hold is known only to the agent, which the
//! site does not reach: agents of frame version 2 report it to their target (CONTROL op report),
//! and while such a report is fresh (made less than [`REPORT_FRESH_MS`] ago) and the agent is
//! connected, that is the RPO. Otherwise the site falls back to a bound: since when no session
//! has fed the group (the agent's session ended, or the target stopped answering). No write
//! younger than that can be held, so that age bounds the RPO from above whenever the workload
//! writes. Caught up and connected, the bound is 0.

use std::collections::HashMap;

/// A group's agent may be away this long (a reconnect) before it is an alert.
pub const AGENT_GRACE_MS: i64 = 3_000;
/// Refusals count towards `crc_rejects` and `fenced_agent` this long.
pub const REFUSAL_WINDOW_MS: i64 = 120_000;
/// The data file system's use that warns, and that is critical (fractions of its size).
pub const JOURNAL_WARN: f64 = 0.90;
pub const JOURNAL_CRITICAL: f64 = 0.95;
/// An agent report is the group's state while it is younger than this (agents report every
/// 5 s; the site polls every few seconds).
pub const REPORT_FRESH_MS: i64 = 30_000;
/// A sync whose progress has not moved for this long is not converging.
pub const SYNC_STALL_MS: i64 = 10 * 60_000;

/// A target as the inventory has it.
#[derive(Clone, Debug, Default)]
pub struct TargetFacts {
    pub name: String,
    /// `up`, `down` or `unknown`.
    pub state: String,
    pub reason: String,
    pub last_seen_ms: i64,
    pub free_bytes: i64,
    pub capacity_bytes: i64,
}

/// No passing drill for this long is an alert (what ASR asks of test failovers), unless the
/// policy's drill period says otherwise (twice it).
pub const DRILL_OVERDUE_MS: i64 = 90 * 86_400_000;

/// A group as the inventory has it, with its policy's RPO target.
#[derive(Clone, Debug, Default)]
pub struct GroupFacts {
    pub name: String,
    pub target: String,
    /// The group's state on the target when it last answered (`ok`, `syncing`, `unknown`).
    pub state: String,
    /// 1 connected, 0 not, -1 the target has not seen its agent since it started.
    pub agent_connected: i64,
    pub agent_seen_ms: i64,
    /// None: no policy applies (no RPO alerts).
    pub rpo_target_secs: Option<u64>,
    /// The agent's last report: its mode ("" none), RPO (ms, -1 none), when it was made, its
    /// sync's progress (tenths of a percent, -1 none) and since when that progress stands.
    pub agent_mode: String,
    pub agent_rpo_ms: i64,
    pub agent_report_ms: i64,
    pub agent_sync_permille: i64,
    pub agent_progress_ms: i64,
    /// The last drill as its target reports it: failed (false also when none is known); when
    /// the last passing one ended (0: never); the drill period (0: none); its line.
    pub drill_last_failed: bool,
    pub drill_ok_ms: i64,
    pub drill_every_secs: i64,
    pub drill_summary: String,
    /// The last online verify: its job on the target, the bytes it found differing and did
    /// not repair (0: none), in how many ranges.
    pub verify_job: i64,
    pub verify_differs_bytes: i64,
    pub verify_ranges: i64,
}

impl GroupFacts {
    /// How long the group may go without a passing drill.
    fn drill_limit_ms(&self) -> i64 {
        if self.drill_every_secs > 0 {
            self.drill_every_secs.saturating_mul(2000)
        } else {
            DRILL_OVERDUE_MS
        }
    }

    /// The agent's report, if it is recent enough to be the group's state.
    fn fresh_report(&self, now_ms: i64) -> bool {
        !self.agent_mode.is_empty()
            && self.agent_report_ms > 0
            && now_ms - self.agent_report_ms < REPORT_FRESH_MS
    }
}

/// Refusals in the window, per (group, code): code `BadChecksum` or `Fenced`, with the agents.
pub type Refusals = HashMap<(String, String), (u64, Vec<String>)>;

/// An alert that should be firing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Firing {
    pub kind: &'static str,
    pub subject: String,
    /// `warning` or `critical`.
    pub severity: &'static str,
    pub summary: String,
}

fn firing(kind: &'static str, subject: &str, severity: &'static str, summary: String) -> Firing {
    Firing {
        kind,
        subject: subject.to_string(),
        severity,
        summary,
    }
}

/// Since when no session has fed the group (None: one feeds it now, or nothing is known).
pub fn unfed_since(g: &GroupFacts, t: Option<&TargetFacts>) -> Option<i64> {
    let t = t?;
    if t.state != "up" {
        // Whatever fed it then is cut off since the target stopped answering.
        return match g.agent_connected {
            1 if t.last_seen_ms > 0 => Some(t.last_seen_ms),
            0 if g.agent_seen_ms > 0 => Some(g.agent_seen_ms.min(t.last_seen_ms.max(1))),
            _ => None,
        };
    }
    (g.agent_connected == 0 && g.agent_seen_ms > 0).then_some(g.agent_seen_ms)
}

/// Every alert that should be firing now.
pub fn evaluate(
    now_ms: i64,
    targets: &[TargetFacts],
    groups: &[GroupFacts],
    refusals: &Refusals,
) -> Vec<Firing> {
    let mut out = Vec::new();
    for t in targets {
        if t.state == "down" {
            out.push(firing(
                "target_down",
                &t.name,
                "critical",
                format!("target {} does not answer: {}", t.name, t.reason),
            ));
        }
        if t.capacity_bytes > 0 && t.free_bytes >= 0 {
            let used = 1.0 - t.free_bytes as f64 / t.capacity_bytes as f64;
            if used >= JOURNAL_WARN {
                out.push(firing(
                    "journal_full",
                    &t.name,
                    if used >= JOURNAL_CRITICAL {
                        "critical"
                    } else {
                        "warning"
                    },
                    format!(
                        "target {}: data file system {:.1}% full ({} MiB free)",
                        t.name,
                        used * 100.0,
                        t.free_bytes >> 20
                    ),
                ));
            }
        }
    }
    for g in groups {
        let t = targets.iter().find(|t| t.name == g.target);
        let target_up = t.is_some_and(|t| t.state == "up");
        if target_up {
            let away = match g.agent_connected {
                0 => now_ms - g.agent_seen_ms,
                // Never seen since the target started: away since then, as far as we know.
                _ => 0,
            };
            if (g.agent_connected == 0 && away >= AGENT_GRACE_MS) || g.agent_connected == -1 {
                out.push(firing(
                    "agent_not_seen",
                    &g.name,
                    "warning",
                    if g.agent_connected == 0 {
                        format!(
                            "group {}: no agent session on {} for {} s",
                            g.name,
                            g.target,
                            away / 1000
                        )
                    } else {
                        format!(
                            "group {}: {} has seen no agent since it started",
                            g.name, g.target
                        )
                    },
                ));
            }
            if g.state == "syncing" {
                out.push(firing(
                    "resync",
                    &g.name,
                    "warning",
                    format!(
                        "group {}: resync running on {} (the newest point is not recoverable)",
                        g.name, g.target
                    ),
                ));
            }
        }
        let fresh = g.fresh_report(now_ms);
        if fresh && g.agent_mode == "bitmap" {
            out.push(firing(
                "bitmap_mode",
                &g.name,
                "warning",
                format!(
                    "group {}: the agent is in bitmap mode (its spool is full: writes are only \
                     tracked, and a resync is owed)",
                    g.name
                ),
            ));
        }
        let syncing = matches!(g.agent_mode.as_str(), "resync" | "initial-sync");
        if fresh
            && syncing
            && g.agent_progress_ms > 0
            && now_ms - g.agent_progress_ms >= SYNC_STALL_MS
        {
            out.push(firing(
                "sync_stalled",
                &g.name,
                "warning",
                format!(
                    "group {}: the agent's {} has stood at {:.1}% for {} min (not converging)",
                    g.name,
                    g.agent_mode,
                    g.agent_sync_permille.max(0) as f64 / 10.0,
                    (now_ms - g.agent_progress_ms) / 60_000
                ),
            ));
        }
        // The agent's own RPO while its report is fresh and the target, which relays it, is up
        // and fed by it; the bound otherwise; the larger when both are known.
        let measured = (target_up && fresh && g.agent_connected == 1 && g.agent_rpo_ms >= 0)
            .then_some((g.agent_rpo_ms, "as the agent measured it"));
        let bound =
            unfed_since(g, t).map(|since| ((now_ms - since).max(0), "nothing fed since then"));
        let worst = match (measured, bound) {
            (Some(m), Some(b)) => Some(if m.0 >= b.0 { m } else { b }),
            (m, b) => m.or(b),
        };
        if let (Some(rpo), Some((rpo_ms, how))) = (g.rpo_target_secs, worst) {
            let bound_ms = rpo_ms;
            let target_ms = rpo as i64 * 1000;
            for (kind, severity, factor) in [
                ("rpo_warning", "warning", 0.75),
                ("rpo_breach", "critical", 1.0),
            ] {
                if bound_ms as f64 > target_ms as f64 * factor {
                    out.push(firing(
                        kind,
                        &g.name,
                        severity,
                        format!(
                            "group {}: RPO {} s ({how}), over {}x of its {} s target",
                            g.name,
                            bound_ms / 1000,
                            factor,
                            rpo
                        ),
                    ));
                }
            }
        }
        if g.drill_last_failed {
            out.push(firing(
                "drill_failed",
                &g.name,
                "warning",
                format!(
                    "group {}: its last drill on {} failed: {}",
                    g.name, g.target, g.drill_summary
                ),
            ));
        }
        // Overdue from the last passing drill. A group never drilled has nothing to be overdue
        // from: its first scheduled drill runs at once, and fails loudly if it fails.
        if g.drill_ok_ms > 0 && now_ms - g.drill_ok_ms > g.drill_limit_ms() {
            out.push(firing(
                "drill_overdue",
                &g.name,
                "warning",
                format!(
                    "group {}: no drill passed for {} days (want one within {} days)",
                    g.name,
                    (now_ms - g.drill_ok_ms) / 86_400_000,
                    g.drill_limit_ms() as f64 / 86_400_000.0
                ),
            ));
        }
        // Stays until a later verify finds nothing or repairs what it found (the target keeps
        // the last result across restarts).
        if g.verify_differs_bytes > 0 {
            out.push(firing(
                "verify_mismatch",
                &g.name,
                "critical",
                format!(
                    "group {}: the replica differs from the source in {} bytes ({} ranges, \
                     verify job {} on {}; `rewind verify {} --repair` resends them)",
                    g.name, g.verify_differs_bytes, g.verify_ranges, g.verify_job, g.target, g.name
                ),
            ));
        }
        for (code, kind, severity, what, who) in [
            (
                "BadChecksum",
                "crc_rejects",
                "warning",
                "frames refused for a bad checksum",
                "agent",
            ),
            (
                "Fenced",
                "fenced_agent",
                "critical",
                "a fenced agent still tries to feed it",
                "agent",
            ),
        ] {
            if let Some((n, agents)) = refusals.get(&(g.name.clone(), code.to_string())) {
                out.push(firing(
                    kind,
                    &g.name,
                    severity,
                    format!(
                        "group {}: {what} ({n} in {} s; {who} {})",
                        g.name,
                        REFUSAL_WINDOW_MS / 1000,
                        agents.join(", ")
                    ),
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(state: &str) -> TargetFacts {
        TargetFacts {
            name: "t1".into(),
            state: state.into(),
            reason: "connection refused".into(),
            last_seen_ms: 100_000,
            free_bytes: 50 << 30,
            capacity_bytes: 100 << 30,
        }
    }

    fn group(connected: i64, seen: i64) -> GroupFacts {
        GroupFacts {
            name: "g1".into(),
            target: "t1".into(),
            state: "ok".into(),
            agent_connected: connected,
            agent_seen_ms: seen,
            rpo_target_secs: Some(60),
            agent_rpo_ms: -1,
            agent_sync_permille: -1,
            ..GroupFacts::default()
        }
    }

    /// A connected group whose agent reported `mode` at `at`.
    fn reported(mode: &str, at: i64, rpo_ms: i64, permille: i64, progress_ms: i64) -> GroupFacts {
        GroupFacts {
            agent_mode: mode.into(),
            agent_report_ms: at,
            agent_rpo_ms: rpo_ms,
            agent_sync_permille: permille,
            agent_progress_ms: progress_ms,
            ..group(1, at)
        }
    }

    #[test]
    fn the_agents_report_gives_the_rpo_bitmap_mode_and_a_stalled_sync() {
        let none = Refusals::new();
        let up = [target("up")];
        // Connected and streaming, but 50 s behind by the agent's own measure: a warning the
        // bound (0 while connected) could never give.
        let f = evaluate(
            100_000,
            &up,
            &[reported("streaming", 99_000, 50_000, -1, 0)],
            &none,
        );
        assert_eq!(kinds(&f), ["rpo_warning"]);
        assert!(
            f[0].summary.contains("as the agent measured it"),
            "{}",
            f[0].summary
        );
        // The target that relays reports stops: its last report no longer stands, the bound
        // does (down since 100 s: 50 s bound at 150 s).
        let mut down = target("down");
        down.last_seen_ms = 100_000;
        let f = evaluate(
            150_000,
            &[down],
            &[reported("streaming", 140_000, 10, -1, 0)],
            &none,
        );
        assert_eq!(kinds(&f), ["target_down", "rpo_warning"]);
        assert!(f[1].summary.contains("nothing fed"), "{}", f[1].summary);
        // A stale report is not the group's state: the bound (0) applies, nothing fires.
        let f = evaluate(
            200_000,
            &up,
            &[reported("bitmap", 99_000, 50_000, -1, 0)],
            &none,
        );
        assert!(f.is_empty(), "{f:?}");
        // Bitmap mode.
        let f = evaluate(
            100_000,
            &up,
            &[reported("bitmap", 99_000, 1_000, -1, 0)],
            &none,
        );
        assert_eq!(kinds(&f), ["bitmap_mode"]);
        // A resync that moves is fine; one that stood still for 10 min is not converging.
        let moving = reported("resync", 700_000, 0, 420, 650_000);
        assert!(evaluate(700_500, &up, &[moving], &none).is_empty());
        let stuck = reported("resync", 700_000, 0, 420, 100_000);
        let f = evaluate(700_500, &up, &[stuck], &none);
        assert_eq!(kinds(&f), ["sync_stalled"]);
        assert!(f[0].summary.contains("42.0%"), "{}", f[0].summary);
    }

    #[test]
    fn a_failed_drill_and_an_overdue_one() {
        let none = Refusals::new();
        let up = [target("up")];
        let day = 86_400_000;
        let now = 200 * day;
        let drilled = |ok: i64, ok_ms: i64, every: i64| GroupFacts {
            drill_last_failed: ok == 0,
            drill_ok_ms: ok_ms,
            drill_every_secs: every,
            drill_summary: "latest seq 9: 1/2 probes passed".into(),
            ..group(1, now)
        };
        // Passed yesterday: quiet. Never drilled: quiet.
        assert!(evaluate(now, &up, &[drilled(1, now - day, 0)], &none).is_empty());
        assert!(evaluate(now, &up, &[drilled(-1, 0, 0)], &none).is_empty());
        // The last one failed, the one before passed last week.
        let f = evaluate(now, &up, &[drilled(0, now - 7 * day, 0)], &none);
        assert_eq!(kinds(&f), ["drill_failed"]);
        assert!(
            f[0].summary.contains("1/2 probes passed"),
            "{}",
            f[0].summary
        );
        // 91 days since the last pass, no drill period: overdue.
        let f = evaluate(now, &up, &[drilled(1, now - 91 * day, 0)], &none);
        assert_eq!(kinds(&f), ["drill_overdue"]);
        assert!(f[0].summary.contains("91 days"), "{}", f[0].summary);
        // A weekly drill: overdue after two weeks.
        let weekly = 7 * 86_400;
        assert!(evaluate(now, &up, &[drilled(1, now - 13 * day, weekly)], &none).is_empty());
        let f = evaluate(now, &up, &[drilled(1, now - 15 * day, weekly)], &none);
        assert_eq!(kinds(&f), ["drill_overdue"]);
    }

    fn kinds(f: &[Firing]) -> Vec<&str> {
        f.iter().map(|f| f.kind).collect()
    }

    #[test]
    fn healthy_is_silent_and_a_target_down_bounds_the_rpo() {
        let none = Refusals::new();
        assert!(evaluate(100_000, &[target("up")], &[group(1, 100_000)], &none).is_empty());
        // Down 30 s: RPO bound 30 s of 60, no RPO alert yet.
        let f = evaluate(130_000, &[target("down")], &[group(1, 100_000)], &none);
        assert_eq!(kinds(&f), ["target_down"]);
        let f = evaluate(146_000, &[target("down")], &[group(1, 100_000)], &none);
        assert_eq!(kinds(&f), ["target_down", "rpo_warning"]);
        let f = evaluate(161_000, &[target("down")], &[group(1, 100_000)], &none);
        assert_eq!(kinds(&f), ["target_down", "rpo_warning", "rpo_breach"]);
        assert!(
            f[2].summary.contains("RPO 61 s (nothing fed"),
            "{}",
            f[2].summary
        );
        // No policy: no RPO alert.
        let mut g = group(1, 100_000);
        g.rpo_target_secs = None;
        assert_eq!(
            kinds(&evaluate(161_000, &[target("down")], &[g], &none)),
            ["target_down"]
        );
    }

    #[test]
    fn agent_away_after_grace_resync_journal_and_refusals() {
        let none = Refusals::new();
        let t = [target("up")];
        assert!(evaluate(101_000, &t, &[group(0, 100_000)], &none).is_empty());
        let f = evaluate(104_000, &t, &[group(0, 100_000)], &none);
        assert_eq!(kinds(&f), ["agent_not_seen"]);
        assert_eq!(
            kinds(&evaluate(104_000, &t, &[group(-1, 0)], &none)),
            ["agent_not_seen"]
        );
        let mut g = group(1, 104_000);
        g.state = "syncing".into();
        assert_eq!(kinds(&evaluate(104_000, &t, &[g], &none)), ["resync"]);
        let mut full = target("up");
        full.free_bytes = 7 << 30;
        let f = evaluate(104_000, &[full.clone()], &[], &none);
        assert_eq!((f[0].kind, f[0].severity), ("journal_full", "warning"));
        full.free_bytes = 4 << 30;
        assert_eq!(
            evaluate(104_000, &[full], &[], &none)[0].severity,
            "critical"
        );
        let mut r = Refusals::new();
        r.insert(("g1".into(), "Fenced".into()), (3, vec!["a1".into()]));
        r.insert(("g1".into(), "BadChecksum".into()), (1, vec!["a1".into()]));
        let f = evaluate(104_000, &t, &[group(1, 104_000)], &r);
        assert_eq!(kinds(&f), ["crc_rejects", "fenced_agent"]);
        assert!(f[1].summary.contains("3 in 120 s"), "{}", f[1].summary);
        // A verify's unrepaired differences fire however long ago it ran; a clean or
        // repaired verify (0 bytes differing) is quiet.
        let mut g = group(1, 104_000);
        g.verify_job = 7;
        g.verify_differs_bytes = 8192;
        g.verify_ranges = 2;
        let f = evaluate(104_000, &t, &[g.clone()], &none);
        assert_eq!(kinds(&f), ["verify_mismatch"]);
        assert_eq!(f[0].severity, "critical");
        assert!(
            f[0].summary.contains("8192 bytes (2 ranges, verify job 7"),
            "{}",
            f[0].summary
        );
        g.verify_differs_bytes = 0;
        assert!(evaluate(104_000, &t, &[g], &none).is_empty());
    }
}
