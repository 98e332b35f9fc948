//! Opening groups for a feeder: the store's half of admitting an agent. Every group asked for is
//! checked first (owner, disks, generation, the group quota) and only when all pass are the
//! missing groups created and anything recorded, so a refused request creates and changes
//! nothing. The request is typed; the server builds it from a HELLO and turns the errors into
//! wire codes.

use std::sync::Arc;

use super::fence::Fenced;
use super::group::Group;
use super::manifest::{DiskManifest, Manifest, MANIFEST_VERSION};
use super::segment_file::LoadMode;
use super::{Store, StoreError};
use rewind_linux::clock::now_ms;

/// Groups an agent asks to feed.
#[derive(Debug, Clone)]
pub(crate) struct Admission {
    pub(crate) agent: String,
    pub(crate) groups: Vec<GroupRequest>,
    /// How many groups the agent may own in all (`--max-groups-per-agent`).
    pub(crate) max_groups_per_agent: usize,
}

/// One group as its feeder describes it.
#[derive(Debug, Clone)]
pub(crate) struct GroupRequest {
    pub(crate) group: String,
    /// Disk names and sizes, in the group's order.
    pub(crate) disks: Vec<(String, u64)>,
    pub(crate) generation: u64,
}

/// A group opened for feeding, and the generation its feeder runs at.
pub(crate) struct Admitted {
    pub(crate) group: Arc<Group>,
    pub(crate) generation: u64,
}

/// Why groups were not opened. Messages never name another agent: the agent asking learns that
/// a group is not its own, not whose it is.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AdmitError {
    #[error("store is read-only")]
    ReadOnly,
    #[error("group {group} belongs to another agent; agent {agent} may not write to it")]
    NotOwner { group: String, agent: String },
    #[error("group {group} has {have} disks at the target; the agent named {named}")]
    DiskCount {
        group: String,
        have: usize,
        named: usize,
    },
    #[error("group {group} has no disk {disk} (its disks are {disks:?})")]
    NoSuchDisk {
        group: String,
        disk: String,
        disks: Vec<String>,
    },
    #[error("disk {group}/{disk} is {have} bytes at the target; the agent says {said}")]
    DiskSize {
        group: String,
        disk: String,
        have: u64,
        said: u64,
    },
    /// The request is older than the group: its source was fenced.
    #[error(transparent)]
    Fenced(#[from] Fenced),
    #[error(
        "group {group} is at generation {have}; the agent's generation {said} is unknown here"
    )]
    UnknownGeneration { group: String, have: u64, said: u64 },
    // (The run of spaces is in the text agents have always been sent.)
    #[error(
        "agent {agent} owns {owned} groups and the HELLO would create {new} more;                          at most {max} per agent (--max-groups-per-agent)"
    )]
    GroupQuota {
        agent: String,
        owned: usize,
        new: usize,
        max: usize,
    },
    /// Creating a group or recording its owner or generation failed.
    #[error("{doing}: {source}")]
    Failed {
        doing: String,
        #[source]
        source: StoreError,
    },
}

/// What admitting one existing group changes.
struct Existing {
    group: Arc<Group>,
    /// Record the agent as owner (a group without one).
    set_owner: bool,
    /// The group takes the agent's generation (adopted, never fed).
    adopt_generation: bool,
    generation: u64,
}

impl Store {
    /// Open the groups of `req` for feeding, creating the missing ones; returns each group and
    /// its generation, in the request's order. Where the feeder resumes is decided once queued
    /// writes are durable (the server's business).
    pub(crate) fn admit(&self, req: &Admission) -> Result<Vec<Admitted>, AdmitError> {
        if self.mode != LoadMode::Repair {
            return Err(AdmitError::ReadOnly);
        }
        let agent = req.agent.as_str();
        // Held until the new groups are in the table: two requests cannot both pass the group
        // quota, or both create one name.
        let mut groups = self.groups.write().expect("groups lock");
        let mut plans = Vec::with_capacity(req.groups.len());
        for r in &req.groups {
            plans.push(match groups.get(&r.group) {
                None => None,
                Some(g) => Some(check_existing(g, r, agent)?),
            });
        }
        let new = plans.iter().filter(|p| p.is_none()).count();
        if new > 0 {
            let owned = groups
                .values()
                .filter(|g| g.owner().as_deref() == Some(agent))
                .count();
            if owned + new > req.max_groups_per_agent {
                return Err(AdmitError::GroupQuota {
                    agent: agent.into(),
                    owned,
                    new,
                    max: req.max_groups_per_agent,
                });
            }
        }
        let mut out = Vec::with_capacity(plans.len());
        for (r, plan) in req.groups.iter().zip(plans) {
            let failed = |doing: &str| {
                let doing = format!("{doing} group {}", r.group);
                move |source| AdmitError::Failed { doing, source }
            };
            let Some(e) = plan else {
                let g = self.create_group(r, agent).map_err(failed("creating"))?;
                groups.insert(r.group.clone(), g.clone());
                out.push(Admitted {
                    group: g,
                    generation: r.generation,
                });
                continue;
            };
            if e.set_owner {
                e.group
                    .set_owner(agent)
                    .map_err(failed("recording the owner of"))?;
            }
            if e.adopt_generation {
                // An adopted group takes the generation of the first agent to feed it (the
                // one reverse replication runs with the promotion's generation).
                e.group
                    .set_generation(r.generation)
                    .map_err(failed("recording the generation of"))?;
            }
            out.push(Admitted {
                group: e.group,
                generation: e.generation,
            });
        }
        Ok(out)
    }

    fn create_group(&self, r: &GroupRequest, agent: &str) -> Result<Arc<Group>, StoreError> {
        let manifest = Manifest {
            version: MANIFEST_VERSION,
            group: r.group.clone(),
            disks: r
                .disks
                .iter()
                .map(|(name, size_bytes)| DiskManifest {
                    name: name.clone(),
                    size_bytes: *size_bytes,
                })
                .collect(),
            generation: r.generation,
            retention_ms: self.default_retention_ms(),
            horizon_seq: 0,
            horizon_ms: 0,
            horizon_tags: Vec::new(),
            created_ms: now_ms(),
            owner: Some(agent.to_string()),
            history_end: None,
            adopted: false,
            fenced_reason: None,
            epoch: 0,
        };
        let g = Group::create(self.dir.join("groups").join(&r.group), manifest)?;
        tracing::info!(group = %r.group, disks = r.disks.len(), agent, "created group");
        Ok(g)
    }
}

/// Check a request against an existing group, changing nothing.
fn check_existing(
    group: &Arc<Group>,
    r: &GroupRequest,
    agent: &str,
) -> Result<Existing, AdmitError> {
    let m = group.manifest();
    let set_owner = match &m.owner {
        Some(o) if o != agent => {
            return Err(AdmitError::NotOwner {
                group: r.group.clone(),
                agent: agent.into(),
            })
        }
        Some(_) => false,
        None => true,
    };
    if r.disks.len() != m.disks.len() {
        return Err(AdmitError::DiskCount {
            group: r.group.clone(),
            have: m.disks.len(),
            named: r.disks.len(),
        });
    }
    for ((disk, size), md) in r.disks.iter().zip(&m.disks) {
        if *disk != md.name {
            return Err(AdmitError::NoSuchDisk {
                group: r.group.clone(),
                disk: disk.clone(),
                disks: m.disks.iter().map(|d| d.name.clone()).collect(),
            });
        }
        if *size != md.size_bytes {
            return Err(AdmitError::DiskSize {
                group: r.group.clone(),
                disk: disk.clone(),
                have: md.size_bytes,
                said: *size,
            });
        }
    }
    let existing = |adopt_generation, generation| Existing {
        group: group.clone(),
        set_owner,
        adopt_generation,
        generation,
    };
    if m.adopted && m.generation == 0 {
        return Ok(existing(true, r.generation));
    }
    if r.generation < m.generation {
        return Err(Fenced {
            group: r.group.clone(),
            reason: m.fenced_reason.clone(),
            agent_generation: r.generation,
            group_generation: m.generation,
        }
        .into());
    }
    if r.generation > m.generation {
        return Err(AdmitError::UnknownGeneration {
            group: r.group.clone(),
            have: m.generation,
            said: r.generation,
        });
    }
    Ok(existing(false, m.generation))
}
