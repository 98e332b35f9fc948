//! The group page's history window and journal forecast: how far back the group's points go
//! against its policy's retention, how fast its journal grows, and how long the target's free
//! space lasts at the rate all of that target's journals grew over the last hours. The rates are
//! least-squares lines through the console's samples ([`crate::alerts::forecast::Trend`], the
//! same fit the `journal_forecast` alert makes on the target's free space).

use std::time::Duration;

use maud::{html, Markup};

use super::chart::fmt_bytes;
use super::facts::GroupRow;
use super::samples::RES_S;
use crate::alerts::forecast::{Trend, HORIZON_MS, MIN_SPAN_MS, WINDOW_MS};
use crate::db::Db;
use crate::error::ApiError;

/// What the panel shows.
#[derive(Debug, Default, PartialEq)]
pub struct Forecast {
    /// The policy's retention, seconds (0: no policy or none set).
    pub retention_target_s: i64,
    /// How far back the points go, seconds (None: no points known).
    pub history_s: Option<i64>,
    /// The group's journal growth, bytes per hour (None: not enough samples yet).
    pub group_rate_per_h: Option<f64>,
    /// The growth of all the journals on the group's target, bytes per hour.
    pub target_rate_per_h: Option<f64>,
    /// The target's free space and capacity (-1: unknown).
    pub free_bytes: i64,
    pub capacity_bytes: i64,
}

impl Forecast {
    /// How long the target's free space lasts at `target_rate_per_h` (None: not filling, or
    /// unknown).
    pub fn lasts(&self) -> Option<Duration> {
        let rate = self.target_rate_per_h.filter(|r| *r > 0.0)?;
        (self.free_bytes >= 0)
            .then(|| Duration::from_secs_f64(self.free_bytes as f64 / rate * 3600.0))
    }
}

/// The bytes-per-hour line through `(ms, bytes)` samples (None: less than
/// [`MIN_SPAN_MS`] of them).
fn rate_per_h(samples: impl IntoIterator<Item = (i64, i64)>) -> Option<f64> {
    let mut t = Trend::default();
    for (at, v) in samples {
        t.sample(at, v as f64);
    }
    t.rate().map(|per_ms| per_ms * 3_600_000.0)
}

/// Gathers the panel's figures for group `g` at `now` (`history_s` from the target's points).
pub async fn gather(
    db: &Db,
    g: &GroupRow,
    history_s: Option<i64>,
    now: i64,
) -> Result<Forecast, ApiError> {
    let since = now - WINDOW_MS;
    let own: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT at_ms, journal_bytes FROM group_samples \
         WHERE group_name = $1 AND res_s = $2 AND at_ms >= $3 ORDER BY at_ms",
    )
    .bind(&g.name)
    .bind(RES_S)
    .bind(since)
    .fetch_all(&db.pool)
    .await?;
    // Every group of the target, summed per sample time (all are sampled at the same aligned
    // instants).
    let all: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT s.at_ms, CAST(SUM(s.journal_bytes) AS BIGINT) FROM group_samples s \
         JOIN groups g ON g.name = s.group_name \
         WHERE g.target = $1 AND s.res_s = $2 AND s.at_ms >= $3 GROUP BY s.at_ms ORDER BY s.at_ms",
    )
    .bind(&g.target)
    .bind(RES_S)
    .bind(since)
    .fetch_all(&db.pool)
    .await?;
    let (free_bytes, capacity_bytes) = match db.target(&g.target).await {
        Ok(t) => (t.free_bytes, t.capacity_bytes),
        Err(_) => (-1, -1),
    };
    let retention_target_s = match db
        .policies()
        .await?
        .into_iter()
        .find(|p| p.name == g.policy)
    {
        Some(p) => p.retention_secs as i64,
        None => 0,
    };
    Ok(Forecast {
        retention_target_s,
        history_s,
        group_rate_per_h: rate_per_h(own),
        target_rate_per_h: rate_per_h(all),
        free_bytes,
        capacity_bytes,
    })
}

fn span(s: i64) -> String {
    humantime::format_duration(Duration::from_secs(s.max(0) as u64)).to_string()
}

/// A growth rate as the panel says it.
fn rate_text(r: Option<f64>) -> String {
    match r {
        Some(r) if r < 0.0 => format!("shrinking by {} / h", fmt_bytes(-r)),
        Some(r) => format!("{} / h", fmt_bytes(r)),
        None => format!(
            "not enough samples yet ({} minutes needed)",
            MIN_SPAN_MS / 60_000
        ),
    }
}

/// The panel.
pub fn panel(f: &Forecast, target: &str) -> Markup {
    let short = f.retention_target_s > 0 && f.history_s.is_some_and(|h| h < f.retention_target_s);
    html! {
        section #forecast {
            h2 { "History window and journal forecast" }
            dl.facts {
                dt { "History" }
                dd #history-span class=(if short { "warn" } else { "" }) {
                    @if let Some(h) = f.history_s { (span(h)) } @else { "no points yet" }
                    @if f.retention_target_s > 0 { " of the policy's " (span(f.retention_target_s)) }
                    @if short { " (still filling, or cut short)" }
                }
                dt { "Journal growth (this group)" }
                dd #group-rate { (rate_text(f.group_rate_per_h)) }
                dt { "Journals on " (target) }
                dd #target-rate { (rate_text(f.target_rate_per_h)) }
                dt { "Free space on " (target) }
                dd { @if f.free_bytes >= 0 && f.capacity_bytes > 0 {
                    (fmt_bytes(f.free_bytes as f64)) " of " (fmt_bytes(f.capacity_bytes as f64))
                } @else { "unknown" } }
                dt { "Full in" }
                dd #full-in class=(if f.lasts().is_some_and(|d| (d.as_millis() as i64) < HORIZON_MS) { "warn" } else { "" }) {
                    @if let Some(d) = f.lasts() {
                        "about " (span(d.as_secs() as i64 / 60 * 60)) " at that rate"
                    } @else { "not filling (or not known yet)" }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_steady_growth_gives_a_rate_and_a_time_to_full() {
        // 1 GiB an hour for an hour, sampled every 10 s.
        let gib = 1i64 << 30;
        let samples = (0..=360).map(|i| (i * 10_000, gib * i / 360));
        let r = rate_per_h(samples).unwrap();
        assert!((r - gib as f64).abs() / (gib as f64) < 0.01, "{r}");
        let f = Forecast {
            retention_target_s: 86_400,
            history_s: Some(3_600),
            group_rate_per_h: Some(r),
            target_rate_per_h: Some(r),
            free_bytes: 10 * gib,
            capacity_bytes: 100 * gib,
        };
        let h = f.lasts().unwrap().as_secs_f64() / 3600.0;
        assert!((h - 10.0).abs() < 0.2, "{h}");
        let m = panel(&f, "t1").into_string();
        assert!(
            m.contains("1h of the policy&#39;s 1day") || m.contains("1h of the policy's 1day"),
            "{m}"
        );
        assert!(m.contains("still filling"), "{m}");
        assert!(m.contains("about 10h") || m.contains("about 9h"), "{m}");
        assert!(
            m.contains("class=\"warn\""),
            "under two days is a warning: {m}"
        );
        // Too little history: no rate, and no forecast.
        assert_eq!(rate_per_h((0..60).map(|i| (i * 10_000, i))), None);
        let none = Forecast {
            free_bytes: gib,
            ..Forecast::default()
        };
        assert_eq!(none.lasts(), None);
        assert!(panel(&none, "t1")
            .into_string()
            .contains("not enough samples yet"));
    }
}
