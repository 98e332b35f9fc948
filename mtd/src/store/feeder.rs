//! Who feeds a group right now. The store keeps one slot per group and knows of its occupant
//! only what it needs itself: a name for messages (a group being fed is not deleted or
//! replaced), and whom to tell when the group is fenced. Sessions, frames and wire codes are
//! the server's (`server::registry` fills the slot).

use std::any::Any;
use std::sync::Arc;

use rewind_formats::agent_report::{AgentMode, AgentReport};

use super::fence::Fenced;
use super::group::Group;

/// The occupant of a group's feeder slot.
pub(crate) trait Feeder: Send + Sync {
    /// The agent feeding the group.
    fn agent(&self) -> &str;
    /// Where it is connected from (for messages and logs).
    fn peer(&self) -> &str;
    /// The agent's software version, when it said (for the inventory).
    fn software(&self) -> Option<&str>;
    /// The group was fenced: its feeder must stop taking anything for it.
    fn fenced(&self, why: &Fenced);
    /// The occupant as its own type (the server reads back what it put in).
    fn as_any(&self) -> &dyn Any;
}

pub use crate::api::groups::AgentSeen;

impl Group {
    /// The current feeder, if any.
    pub(crate) fn feeder(&self) -> Option<Arc<dyn Feeder>> {
        self.feeder.lock().expect("feeder lock").clone()
    }

    /// Take the slot if it is free; otherwise return who holds it.
    pub(crate) fn attach_feeder(&self, new: Arc<dyn Feeder>) -> Result<(), Arc<dyn Feeder>> {
        let mut slot = self.feeder.lock().expect("feeder lock");
        match slot.as_ref() {
            Some(held) => Err(held.clone()),
            None => {
                *slot = Some(new);
                Ok(())
            }
        }
    }

    /// Free the slot if `who` still holds it (a newer feeder may have taken it over).
    pub(crate) fn detach_feeder(&self, who: &Arc<dyn Feeder>) {
        let mut slot = self.feeder.lock().expect("feeder lock");
        if slot.as_ref().is_some_and(|held| Arc::ptr_eq(held, who)) {
            *self.last_feeder.lock().expect("last feeder lock") = Some(AgentSeen {
                agent: who.agent().to_string(),
                host: who.peer().to_string(),
                version: who.software().map(str::to_string),
                report: self.agent_report(),
                connected: false,
                last_seen_ms: rewind_linux::clock::now_ms(),
            });
            *slot = None;
        }
    }

    /// The agent feeding the group now (seen now), or the last one that did (since this daemon
    /// started).
    pub fn agent_seen(&self) -> Option<AgentSeen> {
        if let Some(f) = self.feeder.lock().expect("feeder lock").as_ref() {
            return Some(AgentSeen {
                agent: f.agent().to_string(),
                host: f.peer().to_string(),
                version: f.software().map(str::to_string),
                report: self.agent_report(),
                connected: true,
                last_seen_ms: rewind_linux::clock::now_ms(),
            });
        }
        self.last_feeder.lock().expect("last feeder lock").clone()
    }

    /// Keeps the agent's newest report on the group; returns the mode of the one before (None:
    /// the first since this daemon started).
    pub(crate) fn agent_reported(&self, r: AgentReport) -> Option<AgentMode> {
        let mut slot = self.agent_report.lock().expect("agent report lock");
        slot.replace(r).map(|old| old.mode)
    }

    /// The agent refused the tag request named `tag` (its ERROR said why): kept for the
    /// request's waiter, which takes it.
    pub(crate) fn tag_refused(&self, tag: &str, why: &str) {
        let mut r = self.tag_refusals.lock().expect("tag refusals lock");
        // Bounded: a refusal nobody waits for any more is dropped with the oldest.
        if r.len() >= 16 {
            r.remove(0);
        }
        r.push((tag.to_string(), why.to_string()));
    }

    /// The refusal of the tag request named `tag`, if one came.
    pub(crate) fn take_tag_refusal(&self, tag: &str) -> Option<String> {
        let mut r = self.tag_refusals.lock().expect("tag refusals lock");
        let i = r.iter().position(|(t, _)| t == tag)?;
        Some(r.remove(i).1)
    }

    /// The agent's newest report on the group, if it sent one since this daemon started.
    pub fn agent_report(&self) -> Option<AgentReport> {
        self.agent_report.lock().expect("agent report lock").clone()
    }

    /// What `delete_group` and `install_group` say when the group is being fed.
    pub(crate) fn fed_by(&self) -> Option<(String, String)> {
        self.feeder
            .lock()
            .expect("feeder lock")
            .as_ref()
            .map(|f| (f.agent().to_string(), f.peer().to_string()))
    }
}
