//! Where alerts are sent (webhooks and email) and the state of every delivery.

use serde::{Deserialize, Serialize};

use super::alerts::Notice;
use super::{int, now_ms, text, Db};
use crate::error::ApiError;

/// A notification channel. The secret is never shown back: only whether there is one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Channel {
    pub name: String,
    /// `webhook` or `email`.
    pub kind: String,
    /// `https://...` (webhook) or `smtp://HOST:PORT` (email).
    pub url: String,
    /// Whether webhook bodies are signed (`X-Rewind-Signature`).
    pub signed: bool,
    pub mail_from: String,
    /// Recipients, comma-separated.
    pub mail_to: String,
    /// The SMTP login ("" for none); its password is the secret.
    #[serde(default)]
    pub smtp_user: String,
    pub created_ms: i64,
}

/// One message to one channel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    pub id: i64,
    pub alert_id: i64,
    /// `fired` or `resolved`.
    pub transition: String,
    pub channel: String,
    /// `pending`, `delivered` or `failed`.
    pub state: String,
    pub attempts: i64,
    pub last_error: String,
    /// When the next attempt is due (pending only).
    pub next_ms: i64,
    pub updated_ms: i64,
}

fn row_channel(r: &sqlx::any::AnyRow) -> Result<Channel, ApiError> {
    Ok(Channel {
        name: text(r, "name")?,
        kind: text(r, "kind")?,
        url: text(r, "url")?,
        signed: !text(r, "secret")?.is_empty(),
        mail_from: text(r, "mail_from")?,
        mail_to: text(r, "mail_to")?,
        smtp_user: text(r, "smtp_user")?,
        created_ms: int(r, "created_ms")?,
    })
}

fn row_delivery(r: &sqlx::any::AnyRow) -> Result<Delivery, ApiError> {
    Ok(Delivery {
        id: int(r, "id")?,
        alert_id: int(r, "alert_id")?,
        transition: text(r, "transition")?,
        channel: text(r, "channel")?,
        state: text(r, "state")?,
        attempts: int(r, "attempts")?,
        last_error: text(r, "last_error")?,
        next_ms: int(r, "next_ms")?,
        updated_ms: int(r, "updated_ms")?,
    })
}

const DCOLS: &str =
    "id, alert_id, transition, channel, state, attempts, last_error, next_ms, updated_ms";

/// A due delivery with what the sender needs: the payload and the channel's secret.
pub struct Due {
    pub delivery: Delivery,
    pub payload: String,
    pub channel: Channel,
    pub secret: String,
}

/// Queue `notice` for every channel (inside the transaction that fires or resolves).
pub(crate) async fn queue(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    notice: &Notice,
) -> Result<(), ApiError> {
    let payload = serde_json::to_string(notice).map_err(anyhow::Error::from)?;
    let now = now_ms();
    sqlx::query(
        "INSERT INTO deliveries (alert_id, transition, channel, state, attempts, last_error, \
         next_ms, updated_ms, payload) \
         SELECT $1, $2, name, 'pending', 0, '', $3, $3, $4 FROM channels",
    )
    .bind(notice.alert.id)
    .bind(&notice.transition)
    .bind(now)
    .bind(payload)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

impl Db {
    pub async fn add_channel(
        &self,
        name: &str,
        c: &crate::notify::channel::Checked,
    ) -> Result<(), ApiError> {
        sqlx::query(
            "INSERT INTO channels (name, kind, url, secret, mail_from, mail_to, smtp_user, \
             created_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(name)
        .bind(&c.kind)
        .bind(&c.url)
        .bind(&c.secret)
        .bind(&c.mail_from)
        .bind(&c.mail_to)
        .bind(&c.smtp_user)
        .bind(now_ms())
        .execute(&self.pool)
        .await
        .map_err(|e| ApiError::from_insert(e, format!("channel {name} exists already")))?;
        Ok(())
    }

    pub async fn remove_channel(&self, name: &str) -> Result<(), ApiError> {
        let n = sqlx::query("DELETE FROM channels WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await?
            .rows_affected();
        if n == 0 {
            return Err(ApiError::not_found(format!(
                "no channel {name} (see `rewind-site alerts channels`)"
            )));
        }
        // What was still to be sent there has nowhere to go.
        sqlx::query(
            "UPDATE deliveries SET state = 'failed', last_error = 'channel removed' \
             WHERE channel = $1 AND state = 'pending'",
        )
        .bind(name)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn channels(&self) -> Result<Vec<Channel>, ApiError> {
        let rows = sqlx::query("SELECT * FROM channels ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(row_channel).collect()
    }

    /// The newest `limit` deliveries, newest first.
    pub async fn deliveries(&self, limit: i64) -> Result<Vec<Delivery>, ApiError> {
        let rows = sqlx::query(&format!(
            "SELECT {DCOLS} FROM deliveries ORDER BY id DESC LIMIT $1"
        ))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(row_delivery).collect()
    }

    /// Pending deliveries whose time has come, oldest first.
    pub async fn due_deliveries(&self, now: i64) -> Result<Vec<Due>, ApiError> {
        let rows = sqlx::query(
            "SELECT d.id, d.alert_id, d.transition, d.channel, d.state, d.attempts, \
             d.last_error, d.next_ms, d.updated_ms, d.payload, c.name, c.kind, c.url, c.secret, \
             c.mail_from, c.mail_to, c.smtp_user, c.created_ms \
             FROM deliveries d JOIN channels c ON c.name = d.channel \
             WHERE d.state = 'pending' AND d.next_ms <= $1 ORDER BY d.id LIMIT 100",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Due {
                    delivery: row_delivery(r)?,
                    payload: text(r, "payload")?,
                    channel: row_channel(r)?,
                    secret: text(r, "secret")?,
                })
            })
            .collect()
    }

    /// Record an attempt: `next_ms` Some = retry then, None = done (`error` empty: delivered;
    /// else failed for good).
    pub async fn record_attempt(
        &self,
        id: i64,
        attempts: i64,
        error: &str,
        next_ms: Option<i64>,
    ) -> Result<(), ApiError> {
        let state = match (next_ms, error.is_empty()) {
            (Some(_), _) => "pending",
            (None, true) => "delivered",
            (None, false) => "failed",
        };
        sqlx::query(
            "UPDATE deliveries SET state = $2, attempts = $3, last_error = $4, next_ms = $5, \
             updated_ms = $6 WHERE id = $1",
        )
        .bind(id)
        .bind(state)
        .bind(attempts)
        .bind(error)
        .bind(next_ms.unwrap_or(0))
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
