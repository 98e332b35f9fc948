//! `GET /v1/events`: the target's events ([`crate::events`]) as server-sent events
//! (`text/event-stream`), one JSON object per `data:` line, from the moment of the request on.
//! A comment line every 15 s keeps idle connections (and proxies) open.

use std::convert::Infallible;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;

use super::handler::Ctl;

pub async fn events(State(c): Ctl) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let sub = c.exports.store.events.subscribe();
    let stream = futures_util::stream::unfold(sub, |mut sub| async move {
        let e = sub.next().await?;
        // An Event of plain strings and numbers always serialises.
        let data = serde_json::to_string(&*e).unwrap_or_default();
        Some((Ok(Event::default().data(data)), sub))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}
