//! The target's event stream (`GET /v1/events`, server-sent events): what changed, as it
//! happens, for the configuration server and anyone watching.
//!
//! One JSON object per event, `{"time_ms", "kind", "group", ...}`; the kinds and their fields:
//!
//! | kind | fields besides `group` |
//! |---|---|
//! | `group.connected` | `agent`, `host` (the peer address), `version` (the agent's software version from its HELLO; null from a frame version 1 agent) |
//! | `group.disconnected` | `agent`, `host`, `reason`, `code` (the ERROR code sent, or null) |
//! | `session.refused` | `agent`, `host`, `reason`, `code`: a HELLO naming the group was refused |
//! | `agent.mode` | `mode` (`streaming`, `bitmap`, `initial-sync`, `resync`), `was` (null: the first report since the target started), `rpo_seconds`: the agent's report changed mode |
//! | `sync.started`, `sync.finished` | `seq`, `name` (the SyncBegin / SyncEnd tag) |
//! | `point.tagged` | `seq`, `name`, `tag_kind` |
//! | `policy.applied` | `policy`, `version`, `by` (`target` or `agent`) |
//! | `job.started`, `job.progress`, `job.finished` | `job`, `job_kind`, `percent`, `message`, `state` |
//! | `verify.mismatch` | `job`, `disk`, `offset`, `len`, `seq`, `time_ms`: an online verify found this range of the replica differs from the source (compared at `seq`, at `time_ms`) |
//! | `verify.finished` | `job`, `mismatched_bytes`, `ranges`, `compared_bytes`, `not_compared_bytes`, `recompared_bytes`, `repaired` |
//! | `failover.step` | `job`, `job_kind` (a `failover-*` job), `percent`, `message` |
//! | `drill.done`, `drill.failed` | `seq`, `point`, `point_time_ms`, `scheduled`, `summary`, `evidence` (the run's directory) |
//! | `drill.deferred` | `reason`, `retry_in_secs`: a scheduled drill could not start (a test failover is up, a job runs) |
//! | `lagged` | `missed`: this reader fell behind and lost that many events |
//!
//! A bounded [`tokio::sync::broadcast`] channel carries them: sending never waits (the data path
//! emits), and a reader that falls more than [`CAPACITY`] events behind loses the oldest and is
//! told so by a `lagged` event, then goes on from the oldest still held.

use std::sync::Arc;

use rewind_linux::clock::now_ms;
use serde::Serialize;
use serde_json::{Map, Value};
use tokio::sync::broadcast;

/// Events held for the slowest reader.
pub const CAPACITY: usize = 1024;

/// One event.
#[derive(Clone, Debug, Serialize)]
pub struct Event {
    pub time_ms: u64,
    pub kind: &'static str,
    /// The group it concerns (null for none).
    pub group: Option<String>,
    #[serde(flatten)]
    pub fields: Map<String, Value>,
}

impl Event {
    /// The `lagged` event a reader gets after missing `missed` events.
    pub fn lagged(missed: u64) -> Event {
        let mut fields = Map::new();
        fields.insert("missed".into(), missed.into());
        Event {
            time_ms: now_ms(),
            kind: "lagged",
            group: None,
            fields,
        }
    }
}

/// The sending side, shared by everything that emits.
#[derive(Debug)]
pub struct Events {
    tx: broadcast::Sender<Arc<Event>>,
}

impl Default for Events {
    fn default() -> Self {
        Events::with_capacity(CAPACITY)
    }
}

impl Events {
    pub fn with_capacity(n: usize) -> Events {
        Events {
            tx: broadcast::channel(n).0,
        }
    }

    /// Emit an event; `fields` is a JSON object (anything else is put under `detail`). Never
    /// waits; with no reader it is dropped.
    pub fn emit(&self, kind: &'static str, group: Option<&str>, fields: Value) {
        if self.tx.receiver_count() == 0 {
            return;
        }
        let fields = match fields {
            Value::Object(m) => m,
            Value::Null => Map::new(),
            other => Map::from_iter([("detail".to_string(), other)]),
        };
        let _ = self.tx.send(Arc::new(Event {
            time_ms: now_ms(),
            kind,
            group: group.map(str::to_string),
            fields,
        }));
    }

    pub fn subscribe(&self) -> Subscription {
        Subscription {
            rx: self.tx.subscribe(),
        }
    }
}

/// One reader's place in the stream.
pub struct Subscription {
    rx: broadcast::Receiver<Arc<Event>>,
}

impl Subscription {
    /// The next event; a `lagged` one when this reader lost some. `None` once the sender is gone.
    pub async fn next(&mut self) -> Option<Arc<Event>> {
        match self.rx.recv().await {
            Ok(e) => Some(e),
            Err(broadcast::error::RecvError::Lagged(n)) => Some(Arc::new(Event::lagged(n))),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_slow_reader_is_told_what_it_missed_and_never_blocks_the_sender() {
        let ev = Events::with_capacity(4);
        ev.emit("nobody", None, Value::Null);
        let mut slow = ev.subscribe();
        for i in 0..10u64 {
            ev.emit("point.tagged", Some("g1"), serde_json::json!({ "seq": i }));
        }
        let first = slow.next().await.unwrap();
        assert_eq!(first.kind, "lagged");
        assert_eq!(first.fields["missed"], 6);
        let next = slow.next().await.unwrap();
        assert_eq!(next.kind, "point.tagged");
        assert_eq!(next.fields["seq"], 6);
        let json = serde_json::to_value(&*next).unwrap();
        assert_eq!(json["group"], "g1");
        assert!(json["time_ms"].as_u64().unwrap() > 0);
    }
}
