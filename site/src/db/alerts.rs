//! Alerts: one row per firing, resolved when its condition clears, acknowledged by a person.
//! Firing and resolving also queue a delivery per channel and write an event, in the same
//! transaction, so a message is never lost between the state change and its sending.

use serde::{Deserialize, Serialize};

use super::{int, now_ms, text, Db};
use crate::error::ApiError;

/// One alert as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    pub id: i64,
    /// What is wrong: `target_down`, `agent_not_seen`, `rpo_warning`, ... (see
    /// [`crate::alerts::conditions`]).
    pub kind: String,
    /// The group or target it is about.
    pub subject: String,
    /// `warning` or `critical`.
    pub severity: String,
    /// `firing` or `resolved`.
    pub state: String,
    pub summary: String,
    pub fired_ms: i64,
    /// 0 while firing.
    pub resolved_ms: i64,
    /// Who acknowledged it ("" for nobody) and when.
    pub acked_by: String,
    pub acked_ms: i64,
}

const COLS: &str =
    "id, kind, subject, severity, state, summary, fired_ms, resolved_ms, acked_by, acked_ms";

fn row_alert(r: &sqlx::any::AnyRow) -> Result<Alert, ApiError> {
    Ok(Alert {
        id: int(r, "id")?,
        kind: text(r, "kind")?,
        subject: text(r, "subject")?,
        severity: text(r, "severity")?,
        state: text(r, "state")?,
        summary: text(r, "summary")?,
        fired_ms: int(r, "fired_ms")?,
        resolved_ms: int(r, "resolved_ms")?,
        acked_by: text(r, "acked_by")?,
        acked_ms: int(r, "acked_ms")?,
    })
}

/// What a webhook receives (and an email says): the alert and what just happened to it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Notice {
    /// `fired` or `resolved`.
    pub transition: String,
    pub alert: Alert,
    /// The site instance that evaluated it.
    pub site: String,
}

impl Db {
    /// Firing alerts (all of them, or the newest `limit` of every state with `all`).
    pub async fn alerts(&self, all: bool, limit: i64) -> Result<Vec<Alert>, ApiError> {
        let sql = if all {
            format!("SELECT {COLS} FROM alerts ORDER BY id DESC LIMIT $1")
        } else {
            format!("SELECT {COLS} FROM alerts WHERE state = 'firing' ORDER BY id DESC LIMIT $1")
        };
        let rows = sqlx::query(&sql).bind(limit).fetch_all(&self.pool).await?;
        rows.iter().map(row_alert).collect()
    }

    pub async fn alert(&self, id: i64) -> Result<Alert, ApiError> {
        let row = sqlx::query(&format!("SELECT {COLS} FROM alerts WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        match row {
            Some(r) => row_alert(&r),
            None => Err(ApiError::not_found(format!(
                "no alert {id} (see `rewind-site alerts --all`)"
            ))),
        }
    }

    /// Fire an alert, queue its deliveries and write the event. None if one of that kind and
    /// subject is firing already (another leader fired it first).
    pub async fn fire(
        &self,
        kind: &str,
        subject: &str,
        severity: &str,
        summary: &str,
        site: &str,
    ) -> Result<Option<Alert>, ApiError> {
        let now = now_ms();
        let mut tx = self.begin().await?;
        let r = sqlx::query(
            "INSERT INTO alerts (kind, subject, severity, state, summary, fired_ms, resolved_ms, \
             acked_by, acked_ms) VALUES ($1, $2, $3, 'firing', $4, $5, 0, '', 0) \
             ON CONFLICT DO NOTHING RETURNING id",
        )
        .bind(kind)
        .bind(subject)
        .bind(severity)
        .bind(summary)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(r) = r else { return Ok(None) };
        let alert = Alert {
            id: int(&r, "id")?,
            kind: kind.into(),
            subject: subject.into(),
            severity: severity.into(),
            state: "firing".into(),
            summary: summary.into(),
            fired_ms: now,
            resolved_ms: 0,
            acked_by: String::new(),
            acked_ms: 0,
        };
        let notice = Notice {
            transition: "fired".into(),
            alert: alert.clone(),
            site: site.into(),
        };
        super::channels::queue(&mut tx, &notice).await?;
        event_in(&mut tx, "alert.fired", subject, &alert_detail(&alert)).await?;
        tx.commit().await?;
        Ok(Some(alert))
    }

    /// Resolve a firing alert, queue its deliveries and write the event.
    pub async fn resolve(&self, id: i64, site: &str) -> Result<Option<Alert>, ApiError> {
        let now = now_ms();
        let mut tx = self.begin().await?;
        let n = sqlx::query(
            "UPDATE alerts SET state = 'resolved', resolved_ms = $2 \
             WHERE id = $1 AND state = 'firing'",
        )
        .bind(id)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n == 0 {
            return Ok(None);
        }
        let row = sqlx::query(&format!("SELECT {COLS} FROM alerts WHERE id = $1"))
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
        let alert = row_alert(&row)?;
        let notice = Notice {
            transition: "resolved".into(),
            alert: alert.clone(),
            site: site.into(),
        };
        super::channels::queue(&mut tx, &notice).await?;
        event_in(
            &mut tx,
            "alert.resolved",
            &alert.subject,
            &alert_detail(&alert),
        )
        .await?;
        tx.commit().await?;
        Ok(Some(alert))
    }

    /// Acknowledge an alert (once: a second acknowledgement is refused, naming the first).
    pub async fn ack(&self, id: i64, who: &str) -> Result<Alert, ApiError> {
        let n = sqlx::query(
            "UPDATE alerts SET acked_by = $2, acked_ms = $3 WHERE id = $1 AND acked_by = ''",
        )
        .bind(id)
        .bind(who)
        .bind(now_ms())
        .execute(&self.pool)
        .await?
        .rows_affected();
        let a = self.alert(id).await?;
        if n == 0 {
            return Err(ApiError::conflict(format!(
                "alert {id} was acknowledged already by {}",
                a.acked_by
            )));
        }
        Ok(a)
    }
}

fn alert_detail(a: &Alert) -> String {
    format!("#{} {} {}: {}", a.id, a.severity, a.kind, a.summary)
}

/// [`Db::event`] inside a transaction.
async fn event_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    kind: &str,
    subject: &str,
    detail: &str,
) -> Result<(), ApiError> {
    sqlx::query("INSERT INTO events (at_ms, kind, subject, detail) VALUES ($1, $2, $3, $4)")
        .bind(now_ms())
        .bind(kind)
        .bind(subject)
        .bind(detail)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

impl Db {
    /// A session a target refused or ended with an ERROR code (the alerts count them); rows
    /// older than a day go, they no longer count.
    pub async fn record_refusal(
        &self,
        target: &str,
        group: &str,
        agent: &str,
        code: &str,
    ) -> Result<(), ApiError> {
        let now = now_ms();
        sqlx::query(
            "INSERT INTO refusals (at_ms, target, group_name, agent, code) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(now)
        .bind(target)
        .bind(group)
        .bind(agent)
        .bind(code)
        .execute(&self.pool)
        .await?;
        sqlx::query("DELETE FROM refusals WHERE at_ms < $1")
            .bind(now - 86_400_000)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
