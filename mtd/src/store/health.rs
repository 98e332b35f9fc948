//! Store health: whether writes are flowing, paused for space or descriptors, or stopped for good.
//!
//! A shortage (ENOSPC, EDQUOT, EMFILE, ENFILE; see `shortage.rs`) pauses the component that met
//! it until the resource comes back (nothing is dropped; the writer acknowledges nothing
//! meanwhile). Each component (the journal writer, the merger) has its own pause, so one that
//! recovers does not clear another's. An fsync or EIO failure is fatal for the store: after a
//! failed fsync the kernel may have dropped dirty pages, so retrying could acknowledge data that
//! is not on disk.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use super::shortage::Shortage;
use super::StoreError;
use rewind_linux::clock::now_ms;

/// A part of the store that can be paused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Component {
    /// The journal writer: while it is paused no acknowledgement is sent.
    Writer,
    /// The merger: while it is paused history is not folded and no journal space is freed.
    Merger,
}

impl Component {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Component::Writer => "writer",
            Component::Merger => "merger",
        }
    }
}

/// One component's current pause: what ran out, what it was doing, on what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Pause {
    pub(crate) component: Component,
    pub(crate) shortage: Shortage,
    /// The step (`create segment`, `write footer`, `write base image`, ...).
    pub(crate) what: String,
    /// The file or directory it was on.
    pub(crate) path: String,
    /// The error as the kernel told it.
    pub(crate) detail: String,
    pub(crate) since_ms: u64,
}

#[derive(Debug, Default)]
struct State {
    pauses: BTreeMap<Component, Pause>,
    failed: Option<String>,
}

#[derive(Debug, Default)]
pub(crate) struct Health {
    state: Mutex<State>,
    /// Pauses begun, by shortage (space, descriptors): a counter for monitoring.
    pauses_total: [AtomicU64; 2],
}

impl Health {
    /// The state's name for monitoring: `ok`, `no_space`, `no_descriptors` or `failed`. It
    /// says whether acknowledgements flow, so only the writer's pause counts (a paused merger
    /// shows in [`Health::pauses`]).
    pub(crate) fn state_name(&self) -> &'static str {
        let s = self.state.lock().expect("health lock");
        if s.failed.is_some() {
            return "failed";
        }
        s.pauses
            .get(&Component::Writer)
            .map_or("ok", |p| p.shortage.state_name())
    }

    pub(crate) fn failed(&self) -> Option<String> {
        self.state.lock().expect("health lock").failed.clone()
    }

    /// The current pauses, one per paused component.
    pub(crate) fn pauses(&self) -> Vec<Pause> {
        let s = self.state.lock().expect("health lock");
        s.pauses.values().cloned().collect()
    }

    /// Pauses begun so far for a shortage.
    pub(crate) fn pauses_total(&self, shortage: Shortage) -> u64 {
        self.pauses_total[shortage as usize].load(Ordering::Relaxed)
    }

    /// Report that `component` is paused by `shortage`, met as `err` (logged once per episode:
    /// a new episode is a new shortage or a new step).
    pub(crate) fn pause(&self, component: Component, shortage: Shortage, err: &StoreError) {
        let (what, path) = match err {
            StoreError::Io { op, path, .. } => (op.to_string(), path.display().to_string()),
            other => (other.to_string(), String::new()),
        };
        let detail = std::error::Error::source(err).map_or_else(String::new, |s| s.to_string());
        let mut s = self.state.lock().expect("health lock");
        let same = s
            .pauses
            .get(&component)
            .is_some_and(|p| p.shortage == shortage && p.what == what && p.path == path);
        if same {
            return;
        }
        let new_episode = !s.pauses.contains_key(&component);
        if new_episode {
            self.pauses_total[shortage as usize].fetch_add(1, Ordering::Relaxed);
        }
        let msg = match shortage {
            Shortage::Space => "no space left",
            Shortage::Descriptors => "out of file descriptors",
        };
        tracing::error!(
            component = component.name(),
            what,
            path,
            "{msg}: {what} {path}: {detail}; {} is paused and retries until it comes back{}",
            component.name(),
            if component == Component::Writer {
                " (nothing is acknowledged meanwhile)"
            } else {
                ""
            }
        );
        s.pauses.insert(
            component,
            Pause {
                component,
                shortage,
                what,
                path,
                detail,
                since_ms: now_ms(),
            },
        );
    }

    /// `component` works again after a pause (a no-op when it was not paused).
    pub(crate) fn recovered(&self, component: Component) {
        let mut s = self.state.lock().expect("health lock");
        if let Some(p) = s.pauses.remove(&component) {
            let what = match p.shortage {
                Shortage::Space => "space",
                Shortage::Descriptors => "file descriptors",
            };
            tracing::warn!(
                component = component.name(),
                paused_ms = now_ms().saturating_sub(p.since_ms),
                "{what} available again: {} resumes{}",
                component.name(),
                if component == Component::Writer {
                    "; replication resumes"
                } else {
                    ""
                }
            );
        }
    }

    pub(crate) fn fail(&self, detail: String) {
        let mut s = self.state.lock().expect("health lock");
        if s.failed.is_none() {
            tracing::error!("store failed, accepting no more writes: {detail}");
            s.failed = Some(detail);
        }
    }
}
