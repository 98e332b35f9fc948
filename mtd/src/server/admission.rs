//! HELLO admission: what an agent's HELLO must be, what the store must agree to (its groups
//! opened or created), which groups the session then holds, and where each one resumes.

use std::sync::Arc;
use std::time::Duration;

use rewind_formats::dedup::DedupWindow;
use rewind_formats::message::{ErrorCode, Hello, HelloGroup, ResumeStatus, Welcome, WelcomeGroup};
use rewind_formats::Seq;

use super::ingest::Feed;
use super::refusal::{refuse, Refusal};
use super::registry::{self, Claim, Holder, SessionLink, StopSignal};
use crate::store::admit::{Admission, GroupRequest};
use crate::store::compression::JournalCompression;
use crate::store::group::Group;
use crate::store::quota::Quotas;
use crate::store::Store;

/// How long a new session waits for the writes an earlier session queued to become durable.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(60);

/// What an admitted session feeds, what holds its groups, and the WELCOME to send.
pub(crate) struct Admitted {
    pub(crate) fed: Vec<Feed>,
    pub(crate) claims: Vec<Claim>,
    pub(crate) welcome: Welcome,
}

/// The store's request for a HELLO, once its shape is checked against the quotas.
fn admission(hello: &Hello, q: &Quotas) -> Result<Admission, Refusal> {
    if hello.groups.is_empty() {
        return Err(refuse(ErrorCode::Protocol, "HELLO names no group"));
    }
    for hg in &hello.groups {
        if hello.groups.iter().filter(|o| o.group == hg.group).count() > 1 {
            return Err(refuse(
                ErrorCode::Protocol,
                format!("HELLO names group {} twice", hg.group),
            ));
        }
    }
    for hg in &hello.groups {
        check_shape(hg, q).map_err(|m| refuse(ErrorCode::Protocol, m))?;
    }
    Ok(Admission {
        agent: hello.agent.clone(),
        groups: hello
            .groups
            .iter()
            .map(|hg| GroupRequest {
                group: hg.group.clone(),
                disks: hg
                    .disks
                    .iter()
                    .map(|d| (d.disk.clone(), d.size_bytes))
                    .collect(),
                generation: hg.generation,
            })
            .collect(),
        max_groups_per_agent: q.max_groups_per_agent,
    })
}

/// Admit a HELLO: every group is checked (shape, quotas, owner, disks, generation) before any
/// is created, then each is claimed for this session, and resumes once the writes an earlier
/// session queued are durable.
pub(crate) async fn admit(
    store: &Arc<Store>,
    quotas: &Quotas,
    hello: &Hello,
    peer: &str,
    stop: &Arc<StopSignal>,
    session: &SessionLink,
) -> Result<Admitted, Refusal> {
    let req = admission(hello, quotas)?;
    // Creating groups makes files and fsyncs them: never on a tokio worker.
    let admitted = {
        let store = store.clone();
        tokio::task::spawn_blocking(move || store.admit(&req))
            .await
            .map_err(|e| refuse(ErrorCode::Internal, format!("admitting the HELLO: {e}")))??
    };
    let mut fed = Vec::new();
    let mut claims = Vec::new();
    let mut groups = Vec::new();
    // The window a relay asked for, up to what this target spends per group.
    let dedup_window = hello.dedup_window.min(quotas.max_dedup_window_blocks);
    // Framed records (journal-encoded by the agent) are stored as they come: granted when the
    // journal stores records compressed. With `--journal-compression off` the agent is not
    // granted them and sends plain records, which are stored raw. A session with a dedup
    // window (a relay's) resolves references in plain records: never both.
    let framed_records = hello.framed_records
        && dedup_window == 0
        && store.journal_compression() != JournalCompression::Off;
    for (hg, a) in hello.groups.iter().zip(admitted) {
        let (group, generation) = (a.group, a.generation);
        // Before the claim: a stale path must not end the session of the current one. A new
        // epoch is written to the manifest (an fsync): never on a tokio worker.
        let took_over = {
            let (group, epoch) = (group.clone(), hg.epoch);
            tokio::task::spawn_blocking(move || group.admit_epoch(epoch))
                .await
                .map_err(|e| refuse(ErrorCode::Internal, format!("admitting the epoch: {e}")))??
        };
        if took_over {
            tracing::info!(group = %hg.group, epoch = hg.epoch, %peer, "a newer epoch: this session takes the group over");
        }
        let holder = Holder {
            peer: peer.to_string(),
            agent: hello.agent.clone(),
            software: hello.software.clone(),
            stop: stop.clone(),
            link: session.clone(),
        };
        claims.push(registry::claim(&group, holder).await?);
        // A newer epoch may have come while this session waited for its claim.
        group.check_epoch(hg.epoch)?;
        // A previous session's batches may still be in the writer's queue: resume after them.
        let durable = match tokio::time::timeout(DRAIN_TIMEOUT, group.drained()).await {
            Ok(durable) => durable,
            Err(_) => {
                let why = store
                    .health
                    .failed()
                    .unwrap_or_else(|| "the journal writer is not keeping up".into());
                return Err(refuse(
                    ErrorCode::Busy,
                    format!(
                        "group {} still has queued writes from an earlier session: {why}",
                        hg.group
                    ),
                ));
            }
        };
        let status = resume_status(&group, hg, durable);
        let disk_sizes = hg.disks.iter().map(|d| d.size_bytes).collect();
        fed.push(Feed {
            group,
            generation,
            next_seq: Seq(durable.0 + 1),
            disk_sizes,
            dedup: (dedup_window > 0).then(|| DedupWindow::receiver(dedup_window)),
            compressor: store.journal_compression().compressor(),
        });
        groups.push(WelcomeGroup {
            group: hg.group.clone(),
            generation,
            status,
            durable,
        });
    }
    Ok(Admitted {
        fed,
        claims,
        welcome: Welcome {
            groups,
            dedup_window,
            framed_records,
        },
    })
}

/// Whether the agent resumes after `durable` or must compare every block.
fn resume_status(group: &Group, hg: &HelloGroup, durable: Seq) -> ResumeStatus {
    if group.adopt_pending() {
        tracing::info!(group = %hg.group, "adopted group: the agent compares every block");
        ResumeStatus::ResyncNeeded
    } else if hg.last_acked > durable {
        tracing::warn!(group = %hg.group, agent_acked = hg.last_acked.0, durable = durable.0,
            "agent holds acks for seqs the target does not have: resync needed");
        ResumeStatus::ResyncNeeded
    } else {
        ResumeStatus::Resume
    }
}

/// Open (creating it on first contact) one HELLO group for `agent` with the default quotas,
/// outside any session; returns the group and its generation. For tests and fuzzing, which
/// feed a store directly.
pub fn hello_group(
    store: &Store,
    hg: &HelloGroup,
    agent: &str,
) -> Result<(Arc<Group>, u64), Refusal> {
    let hello = Hello {
        agent: agent.to_string(),
        software: None,
        dedup_window: 0,
        framed_records: false,
        groups: vec![hg.clone()],
    };
    let mut out = store.admit(&admission(&hello, &Quotas::default())?)?;
    let a = out.remove(0);
    Ok((a.group, a.generation))
}

fn check_shape(hg: &HelloGroup, q: &Quotas) -> Result<(), String> {
    if hg.group.starts_with('.') {
        return Err(format!(
            "group name {:?} may not start with a dot",
            hg.group
        ));
    }
    if hg.disks.is_empty() {
        return Err(format!("group {} has no disks", hg.group));
    }
    if hg.disks.len() > q.max_disks_per_group {
        return Err(format!(
            "group {} has {} disks; at most {} per group (--max-disks-per-group)",
            hg.group,
            hg.disks.len(),
            q.max_disks_per_group
        ));
    }
    for (i, d) in hg.disks.iter().enumerate() {
        if d.disk.starts_with('.') {
            return Err(format!("disk name {:?} may not start with a dot", d.disk));
        }
        if hg.disks[..i].iter().any(|o| o.disk == d.disk) {
            return Err(format!("group {} names disk {} twice", hg.group, d.disk));
        }
        if d.size_bytes == 0 || d.size_bytes % rewind_formats::SECTOR != 0 {
            return Err(format!(
                "disk {}/{} size {} is not a positive multiple of 512",
                hg.group, d.disk, d.size_bytes
            ));
        }
        if d.size_bytes > q.max_disk_size {
            return Err(format!(
                "disk {}/{} is declared {} bytes; at most {} (--max-disk-size)",
                hg.group, d.disk, d.size_bytes, q.max_disk_size
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::testing::{batch, batch_ref, group, hello, runtime, session, store, DISK};

    #[test]
    fn a_first_hello_creates_its_groups_and_a_second_resumes_them() {
        let (_d, store) = store();
        let rt = runtime();
        let h = hello(
            "a",
            vec![group("g", 1, &["sda"]), group("h", 1, &["sda", "sdb"])],
        );
        let s = rt.block_on(session(&store, &h)).unwrap();
        let w = &s.admitted.welcome.groups;
        assert_eq!(w.len(), 2);
        assert_eq!((w[0].generation, w[0].durable), (1, Seq(0)));
        assert_eq!(w[0].status, ResumeStatus::Resume);
        assert_eq!(s.admitted.fed[1].next_seq, Seq(1));
        assert_eq!(store.group("h").unwrap().disk_names(), ["sda", "sdb"]);
        assert_eq!(store.group("g").unwrap().owner().as_deref(), Some("a"));
        drop(s);
        // The agent again, after its session ended: the same groups, nothing created twice.
        let s = rt.block_on(session(&store, &h)).unwrap();
        assert_eq!(s.admitted.fed.len(), 2);
        assert_eq!(store.groups().len(), 2);
    }

    #[test]
    fn a_hello_must_name_each_group_once_in_a_valid_shape() {
        let (_d, store) = store();
        let rt = runtime();
        let refused = |h: Hello| rt.block_on(session(&store, &h)).err().unwrap();
        let r = refused(hello("a", vec![]));
        assert_eq!(
            (r.code, r.message.as_str()),
            (ErrorCode::Protocol, "HELLO names no group")
        );
        let r = refused(hello(
            "a",
            vec![group("g", 1, &["sda"]), group("g", 1, &["sda"])],
        ));
        assert_eq!(r.code, ErrorCode::Protocol);
        assert!(r.message.contains("twice"), "{}", r.message);
        let r = refused(hello("a", vec![group(".g", 1, &["sda"])]));
        assert_eq!(r.code, ErrorCode::Protocol);
        let r = refused(hello("a", vec![group("g", 1, &["sda", "sda"])]));
        assert!(r.message.contains("names disk sda twice"), "{}", r.message);
        let mut odd = group("g", 1, &["sda"]);
        odd.disks[0].size_bytes = 1000;
        let r = refused(hello("a", vec![odd]));
        assert!(r.message.contains("multiple of 512"), "{}", r.message);
        assert!(store.groups().is_empty(), "a refused HELLO creates nothing");
    }

    #[test]
    fn wrong_disks_or_sizes_are_refused_and_change_nothing() {
        let (_d, store) = store();
        hello_group(&store, &group("g", 1, &["sda"]), "a").unwrap();
        let rt = runtime();
        let refused = |hg: HelloGroup| {
            // A new group beside the bad one: it must not be created either.
            let h = hello("a", vec![group("new", 1, &["sda"]), hg]);
            rt.block_on(session(&store, &h)).err().unwrap()
        };
        let r = refused(group("g", 1, &["sdb"]));
        assert_eq!(r.code, ErrorCode::UnknownDisk);
        assert!(r.message.contains("has no disk sdb"), "{}", r.message);
        let r = refused(group("g", 1, &["sda", "sdb"]));
        assert_eq!(r.code, ErrorCode::UnknownDisk);
        assert!(
            r.message.contains("has 1 disks at the target"),
            "{}",
            r.message
        );
        let mut big = group("g", 1, &["sda"]);
        big.disks[0].size_bytes = 2 * DISK;
        let r = refused(big);
        assert_eq!(r.code, ErrorCode::WrongDiskSize);
        assert!(store.group("new").is_err());
    }

    #[test]
    fn another_agents_group_is_refused_without_naming_the_owner() {
        let (_d, store) = store();
        hello_group(&store, &group("g", 1, &["sda"]), "owner-a").unwrap();
        let r = hello_group(&store, &group("g", 1, &["sda"]), "b")
            .err()
            .unwrap();
        assert_eq!(r.code, ErrorCode::Forbidden);
        assert!(!r.message.contains("owner-a"), "{}", r.message);
    }

    #[test]
    fn stale_generations_are_fenced_and_unknown_ones_refused() {
        let (_d, store) = store();
        let (g, _) = hello_group(&store, &group("g", 1, &["sda"]), "a").unwrap();
        assert_eq!(g.fence("planned failover").unwrap(), 2);
        let r = hello_group(&store, &group("g", 1, &["sda"]), "a")
            .err()
            .unwrap();
        assert_eq!(r.code, ErrorCode::Fenced);
        assert!(
            r.message.contains("fenced") && r.message.contains("planned failover"),
            "{}",
            r.message
        );
        let r = hello_group(&store, &group("g", 3, &["sda"]), "a")
            .err()
            .unwrap();
        assert_eq!(r.code, ErrorCode::StaleGeneration);
        assert!(r.message.contains("unknown here"), "{}", r.message);
        assert_eq!(
            hello_group(&store, &group("g", 2, &["sda"]), "a")
                .unwrap()
                .1,
            2
        );
    }

    #[test]
    fn a_second_session_of_the_same_agent_supersedes_the_first() {
        let (_d, store) = store();
        let rt = runtime();
        let h = hello("a", vec![group("g", 1, &["sda"])]);
        let first = rt.block_on(session(&store, &h)).unwrap();
        let second = rt.block_on(async {
            let release = async {
                let (code, why) = first.stop.stopped().await;
                assert_eq!(code, ErrorCode::Busy);
                assert!(why.contains("superseded"), "{why}");
                drop(first);
            };
            tokio::join!(session(&store, &h), release).0
        });
        assert!(second.is_ok());
        let other = hello("b", vec![group("g", 1, &["sda"])]);
        let r = rt.block_on(session(&store, &other)).err().unwrap();
        assert_eq!(r.code, ErrorCode::Forbidden);
    }

    fn at_epoch(epoch: u64) -> Hello {
        let mut g = group("g", 1, &["sda"]);
        g.epoch = epoch;
        hello("a", vec![g])
    }

    #[test]
    fn a_session_of_an_older_epoch_is_refused_and_leaves_the_current_one_alone() {
        let (_d, store) = store();
        let rt = runtime();
        let current = rt.block_on(session(&store, &at_epoch(2))).unwrap();
        let g = &current.admitted.fed[0].group;
        assert_eq!(g.epoch(), 2, "kept before the WELCOME");
        let r = rt.block_on(session(&store, &at_epoch(1))).err().unwrap();
        assert_eq!(r.code, ErrorCode::StaleEpoch);
        assert!(
            r.message.contains("group g")
                && r.message.contains("epoch 1")
                && r.message.contains("epoch 2"),
            "{}",
            r.message
        );
        // An agent whose state went back reads the held epoch from it, to move past it.
        assert_eq!(rewind_formats::stale_epoch_held(&r.message), Some(2));
        // The current session was not asked to stop, and still holds the group.
        let stopped = rt.block_on(async {
            tokio::time::timeout(Duration::from_millis(100), current.stop.stopped())
                .await
                .is_ok()
        });
        assert!(!stopped, "a stale session must not end the current one");
        assert!(registry::connected(g));
        // An older build's HELLO (no epoch: 0) is as stale.
        let r = rt.block_on(session(&store, &at_epoch(0))).err().unwrap();
        assert_eq!(r.code, ErrorCode::StaleEpoch);
    }

    #[test]
    fn a_session_of_a_newer_epoch_takes_the_group_over() {
        let (_d, store) = store();
        let rt = runtime();
        let old = rt.block_on(session(&store, &at_epoch(1))).unwrap();
        let h5 = at_epoch(5);
        let new = rt.block_on(async {
            let release = async {
                let (code, why) = old.stop.stopped().await;
                assert_eq!(code, ErrorCode::Busy);
                assert!(why.contains("superseded"), "{why}");
                drop(old);
            };
            tokio::join!(session(&store, &h5), release).0
        });
        let new = new.unwrap();
        let g = &new.admitted.fed[0].group;
        assert_eq!(g.epoch(), 5);
        // The same epoch reconnecting is the same path: it supersedes as before epochs.
        let again = rt.block_on(async {
            let release = async {
                new.stop.stopped().await;
                drop(new);
            };
            tokio::join!(session(&store, &h5), release).0
        });
        assert!(again.is_ok());
        // And the old path, coming back, is refused.
        drop(again);
        let r = rt.block_on(session(&store, &at_epoch(1))).err().unwrap();
        assert_eq!(r.code, ErrorCode::StaleEpoch);
    }

    #[test]
    fn a_new_session_resumes_after_what_is_durable() {
        let (_d, store) = store();
        let rt = runtime();
        let h = hello("a", vec![group("g", 1, &["sda"])]);
        let mut s = rt.block_on(session(&store, &h)).unwrap();
        let b = batch(1, 1, 5);
        let q = Quotas::default();
        rt.block_on(s.admitted.fed[0].batch(&store, &batch_ref(&b), &q))
            .unwrap();
        drop(s);
        let s = rt.block_on(session(&store, &h)).unwrap();
        let w = &s.admitted.welcome.groups[0];
        assert_eq!((w.durable, w.status), (Seq(5), ResumeStatus::Resume));
        assert_eq!(s.admitted.fed[0].next_seq, Seq(6));
        drop(s);
        // An agent that holds acks past what the target has must compare every block.
        let mut ahead = group("g", 1, &["sda"]);
        ahead.last_acked = Seq(9);
        let s = rt
            .block_on(session(&store, &hello("a", vec![ahead])))
            .unwrap();
        assert_eq!(
            s.admitted.welcome.groups[0].status,
            ResumeStatus::ResyncNeeded
        );
    }

    #[test]
    fn a_relay_gets_the_dedup_window_it_asks_for_up_to_the_quota() {
        let (_d, store) = store();
        let rt = runtime();
        let mut h = hello("relay", vec![group("g", 1, &["sda"])]);
        for (asked, granted) in [
            (0, 0),
            (100, 100),
            (60_000, Quotas::default().max_dedup_window_blocks),
        ] {
            h.dedup_window = asked;
            let s = rt.block_on(session(&store, &h)).unwrap();
            assert_eq!(s.admitted.welcome.dedup_window, granted, "asked {asked}");
            let w = s.admitted.fed[0].dedup.as_ref().map(|w| w.capacity());
            assert_eq!(w, (granted > 0).then_some(granted), "asked {asked}");
        }
    }
}
