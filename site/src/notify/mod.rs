//! Delivering alerts: the leader sends every pending delivery whose time has come, to a webhook
//! ([`webhook`]) or by email ([`email`]); a failed attempt is retried with exponential backoff
//! ([`backoff_ms`]) up to [`MAX_ATTEMPTS`], then the delivery is marked failed. Every attempt's
//! outcome is in the database (`rewind-site alerts deliveries`).

pub mod channel;
pub mod email;
pub mod webhook;

use std::time::Duration;

use crate::db::channels::Due;
use crate::db::now_ms;
use crate::server::AppState;

/// Attempts before a delivery is given up (about two minutes of retries in all).
pub const MAX_ATTEMPTS: i64 = 8;
/// The first retry's wait; each next one doubles, up to [`MAX_BACKOFF_MS`].
pub const FIRST_BACKOFF_MS: i64 = 1_000;
pub const MAX_BACKOFF_MS: i64 = 60_000;
/// How long one attempt may take.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// The wait after failed attempt number `attempts` (1-based).
pub fn backoff_ms(attempts: i64) -> i64 {
    let shift = (attempts - 1).clamp(0, 20) as u32;
    (FIRST_BACKOFF_MS << shift).min(MAX_BACKOFF_MS)
}

/// Run forever; idle while this instance does not lead.
pub async fn run(st: AppState) {
    let http = match webhook::client() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "no HTTP client: webhooks will not be sent");
            return;
        }
    };
    loop {
        if st.is_leader() {
            match st.db.due_deliveries(now_ms()).await {
                Ok(due) => {
                    // All at once: one slow receiver does not hold up the others.
                    let mut set = tokio::task::JoinSet::new();
                    for d in due {
                        let (st, http) = (st.clone(), http.clone());
                        set.spawn(async move { attempt(&st, &http, d).await });
                    }
                    while set.join_next().await.is_some() {}
                }
                Err(e) => tracing::warn!(error = %e, "reading due deliveries"),
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            _ = st.deliver_now.notified() => {}
        }
    }
}

async fn attempt(st: &AppState, http: &reqwest::Client, d: Due) {
    let id = d.delivery.id;
    let attempts = d.delivery.attempts + 1;
    let r = match d.channel.kind.as_str() {
        "webhook" => webhook::send(http, &d).await,
        "email" => email::send(&d).await,
        other => Err(anyhow::anyhow!("channel kind {other:?} unknown")),
    };
    let (error, next) = match r {
        Ok(()) => (String::new(), None),
        Err(e) => {
            let error = format!("{e:#}");
            let next = (attempts < MAX_ATTEMPTS).then(|| now_ms() + backoff_ms(attempts));
            tracing::warn!(delivery = id, channel = %d.channel.name, attempts, %error, "delivery failed");
            (error, next)
        }
    };
    if let Err(e) = st.db.record_attempt(id, attempts, &error, next).await {
        tracing::warn!(delivery = id, error = %e, "recording a delivery attempt");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_bounded() {
        let waits: Vec<i64> = (1..=MAX_ATTEMPTS).map(backoff_ms).collect();
        assert_eq!(waits[..4], [1_000, 2_000, 4_000, 8_000]);
        assert_eq!(backoff_ms(30), MAX_BACKOFF_MS);
        assert!(waits.iter().sum::<i64>() < 200_000);
    }
}
