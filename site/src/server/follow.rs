//! `GET /v1/events/follow?after=ID`: the event log as server-sent events, from the event after
//! `ID` (default: the newest, so only what happens from now on) and on as events are written.
//! Read from the database, not from this instance's memory: a standby serves the same stream as
//! the leader, and a client that reconnects with the last id it saw misses nothing.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use serde::Deserialize;

use super::auth::Caller;
use super::AppState;
use crate::error::ApiError;
use crate::roles::Role;

/// How often the stream looks for new events.
const EVERY: Duration = Duration::from_millis(250);

#[derive(Deserialize)]
pub struct After {
    after: Option<i64>,
}

pub async fn follow(
    st: State<AppState>,
    c: Caller,
    q: Query<After>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    c.may_read(Role::Viewer, "events")?;
    let after = match q.after {
        Some(n) if n >= 0 => n,
        Some(n) => return Err(ApiError::bad_request(format!("after {n}: give an id >= 0"))),
        None => st.db.last_event_id().await?,
    };
    let db = st.db.clone();
    let stream = futures_util::stream::unfold(
        (db, after, VecDeque::new()),
        |(db, mut last, mut queue)| async move {
            while queue.is_empty() {
                match db.events_after(last, 500).await {
                    Ok(es) if !es.is_empty() => queue.extend(es),
                    Ok(_) => tokio::time::sleep(EVERY).await,
                    // The database is away: end the stream, the client reconnects with `after`.
                    Err(_) => return None,
                }
            }
            let e = queue.pop_front()?;
            last = e.id;
            let data = serde_json::to_string(&e).unwrap_or_default();
            let ev = Event::default().id(e.id.to_string()).data(data);
            Some((Ok(ev), (db, last, queue)))
        },
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
