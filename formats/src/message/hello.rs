//! HELLO and WELCOME: how a session starts (who the agent is, where each group resumes).

use std::collections::HashSet;

use super::count_u16;
use crate::bytes::{Reader, Writer};
use crate::dedup::MAX_DEDUP_WINDOW_BLOCKS;
use crate::{DecodeError, Seq, SECTOR};

/// agent -> target, first frame of a session: who I am, my groups and where I stand.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    pub agent: String,
    /// The agent's software version (e.g. `0.1.0`), for the inventory; `None` from a version 1
    /// HELLO, which has no such field, or when the agent sent an empty one.
    pub software: Option<String>,
    /// Version 3 on: the dedup window the sender asks for, in 4 KiB blocks (0: none; at most
    /// [`MAX_DEDUP_WINDOW_BLOCKS`]). A relay asks; agents send 0.
    pub dedup_window: u32,
    /// Version 5 on (false before): the sender can send framed records ([`crate::framed`]) and
    /// asks for them. An agent asks; a relay does not.
    pub framed_records: bool,
    pub groups: Vec<HelloGroup>,
}

/// The longest software version a HELLO carries (bytes of printable ASCII).
pub const MAX_SOFTWARE_LEN: usize = 64;

/// Checks a software version as HELLO carries it: at most [`MAX_SOFTWARE_LEN`] bytes of printable
/// ASCII without spaces, so that it can go into logs, events and the site's inventory verbatim.
pub fn validate_software(s: &str) -> Result<(), DecodeError> {
    if s.len() > MAX_SOFTWARE_LEN {
        return Err(DecodeError::too_large(
            "software version",
            s.len() as u64,
            MAX_SOFTWARE_LEN as u64,
        ));
    }
    if let Some(c) = s.chars().find(|c| !c.is_ascii_graphic()) {
        return Err(DecodeError::invalid(
            "software version",
            format!("{s:?} holds {c:?}: only printable ASCII without spaces is allowed"),
        ));
    }
    Ok(())
}

/// One group of a HELLO. Group names are unique within a HELLO.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HelloGroup {
    pub group: String,
    pub generation: u64,
    /// The last seq the agent saw acknowledged (0: none).
    pub last_acked: Seq,
    /// Version 4 on (0 before): the agent's epoch for this group, bumped whenever it moves to
    /// another target address (another relay, or the target itself). The master target keeps
    /// the highest it has seen and refuses a session below it, so a relay that comes back with
    /// a cache of an older epoch cannot apply it over what came after through another path.
    pub epoch: u64,
    /// The group's disks; a record's `disk` is an index into this list. Names unique.
    pub disks: Vec<DiskInfo>,
}

/// One protected disk. `size_bytes` is a multiple of [`SECTOR`] and > 0.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskInfo {
    pub disk: String,
    pub size_bytes: u64,
}

/// target -> agent, answer to HELLO: per group, where to resume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Welcome {
    pub groups: Vec<WelcomeGroup>,
    /// Version 3 on: the dedup window the target grants, in blocks (0: none, never more than
    /// the HELLO asked). From then on both ends keep a window of this size per group.
    pub dedup_window: u32,
    /// Version 5 on (false before): the target takes framed records ([`crate::framed`]) in this
    /// session; never true unless the HELLO asked.
    pub framed_records: bool,
}

/// One group of a WELCOME.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WelcomeGroup {
    pub group: String,
    pub generation: u64,
    pub status: ResumeStatus,
    /// The last seq durable on the target: the agent resumes after it.
    pub durable: Seq,
}

/// Whether the agent may resume streaming or must resync the group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ResumeStatus {
    Resume = 0,
    ResyncNeeded = 1,
}

impl Hello {
    /// Writes the payload in frame layout `version` (1 has no software field).
    ///
    /// # Panics
    /// If the software version does not pass [`validate_software`]: build it from this
    /// binary's own version, never from outside input.
    pub(super) fn write(&self, w: &mut Writer, version: u16) {
        w.name(&self.agent);
        if version >= 2 {
            let software = self.software.as_deref().unwrap_or("");
            if let Err(e) = validate_software(software) {
                panic!("HELLO software version: {e}");
            }
            w.u8(software.len() as u8);
            w.bytes(software.as_bytes());
        }
        if version >= 3 {
            w.u32(self.dedup_window);
        } else {
            assert_eq!(
                self.dedup_window, 0,
                "a version {version} HELLO has no dedup window"
            );
        }
        write_flags(w, version, self.framed_records, "HELLO");
        w.u16(count_u16("HELLO groups", self.groups.len()));
        for g in &self.groups {
            w.name(&g.group);
            w.u64(g.generation);
            w.u64(g.last_acked.0);
            if version >= 4 {
                w.u64(g.epoch);
            } else {
                assert_eq!(g.epoch, 0, "a version {version} HELLO has no epoch");
            }
            w.u16(count_u16("HELLO disks", g.disks.len()));
            for d in &g.disks {
                w.name(&d.disk);
                w.u64(d.size_bytes);
            }
        }
    }
}

impl Welcome {
    pub(super) fn write(&self, w: &mut Writer, version: u16) {
        w.u16(count_u16("WELCOME groups", self.groups.len()));
        for g in &self.groups {
            w.name(&g.group);
            w.u64(g.generation);
            w.u8(g.status as u8);
            w.u64(g.durable.0);
        }
        if version >= 3 {
            w.u32(self.dedup_window);
        } else {
            assert_eq!(
                self.dedup_window, 0,
                "a version {version} WELCOME has no dedup window"
            );
        }
        write_flags(w, version, self.framed_records, "WELCOME");
    }
}

/// Flags byte bit 0 (HELLO and WELCOME, version 5 on): framed records asked / granted.
const FLAG_FRAMED_RECORDS: u8 = 1;

fn write_flags(w: &mut Writer, version: u16, framed_records: bool, what: &str) {
    if version >= 5 {
        w.u8(if framed_records {
            FLAG_FRAMED_RECORDS
        } else {
            0
        });
    } else {
        assert!(
            !framed_records,
            "a version {version} {what} has no framed records flag"
        );
    }
}

/// Reads the flags byte (version 5 on; false before): whether framed records are asked or
/// granted. Bits this build does not know are refused: the peer means something we cannot do.
fn read_flags(r: &mut Reader<'_>, version: u16, what: &'static str) -> Result<bool, DecodeError> {
    if version < 5 {
        return Ok(false);
    }
    let flags = r.u8()?;
    if flags & !FLAG_FRAMED_RECORDS != 0 {
        return Err(DecodeError::invalid(
            what,
            format!("flags {flags:#04x}: only bit 0 (framed records) is defined"),
        ));
    }
    Ok(flags & FLAG_FRAMED_RECORDS != 0)
}

/// Reads a dedup window (HELLO and WELCOME, version 3 on), at most [`MAX_DEDUP_WINDOW_BLOCKS`].
fn read_dedup_window(r: &mut Reader<'_>, version: u16) -> Result<u32, DecodeError> {
    if version < 3 {
        return Ok(0);
    }
    let n = r.u32()?;
    if n > MAX_DEDUP_WINDOW_BLOCKS {
        return Err(DecodeError::too_large(
            "dedup window blocks",
            u64::from(n),
            u64::from(MAX_DEDUP_WINDOW_BLOCKS),
        ));
    }
    Ok(n)
}

// Smallest encodings (of the oldest version), used to cap counts before allocating: name = 2
// bytes (len + 1 char).
const HELLO_GROUP_MIN: usize = 2 + 8 + 8 + 2;
const DISK_MIN: usize = 2 + 8;
const WELCOME_GROUP_MIN: usize = 2 + 8 + 1 + 8;

pub(super) fn read_hello(r: &mut Reader<'_>, version: u16) -> Result<Hello, DecodeError> {
    let agent = r.name("agent name")?;
    let software = if version >= 2 {
        read_software(r)?
    } else {
        None
    };
    let dedup_window = read_dedup_window(r, version)?;
    let framed_records = read_flags(r, version, "HELLO flags")?;
    let n = u64::from(r.u16()?);
    let n = r.count("HELLO groups", n, HELLO_GROUP_MIN)?;
    let mut groups = Vec::with_capacity(n);
    let mut group_names = HashSet::with_capacity(n);
    for _ in 0..n {
        let group = r.name("group name")?;
        let generation = r.u64()?;
        let last_acked = Seq(r.u64()?);
        let epoch = if version >= 4 { r.u64()? } else { 0 };
        let m = u64::from(r.u16()?);
        let m = r.count("HELLO disks", m, DISK_MIN)?;
        let mut disks = Vec::with_capacity(m);
        let mut disk_names = HashSet::with_capacity(m);
        for _ in 0..m {
            let disk = r.name("disk name")?;
            let size_bytes = r.u64()?;
            if size_bytes == 0 || size_bytes % SECTOR != 0 {
                return Err(DecodeError::invalid(
                    "disk size",
                    format!("disk {disk}: {size_bytes} is not a non-zero multiple of {SECTOR}"),
                ));
            }
            if !disk_names.insert(disk.clone()) {
                return Err(DecodeError::invalid(
                    "HELLO disks",
                    format!("group {group}: disk {disk} listed twice"),
                ));
            }
            disks.push(DiskInfo { disk, size_bytes });
        }
        if !group_names.insert(group.clone()) {
            return Err(DecodeError::invalid(
                "HELLO groups",
                format!("group {group} listed twice"),
            ));
        }
        groups.push(HelloGroup {
            group,
            generation,
            last_acked,
            epoch,
            disks,
        });
    }
    Ok(Hello {
        agent,
        software,
        dedup_window,
        framed_records,
        groups,
    })
}

fn read_software(r: &mut Reader<'_>) -> Result<Option<String>, DecodeError> {
    let len = usize::from(r.u8()?);
    let bytes = r.bytes(len)?;
    let s = std::str::from_utf8(bytes)
        .map_err(|_| DecodeError::invalid("software version", "not UTF-8"))?;
    validate_software(s)?;
    Ok((!s.is_empty()).then(|| s.to_string()))
}

pub(super) fn read_welcome(r: &mut Reader<'_>, version: u16) -> Result<Welcome, DecodeError> {
    let n = u64::from(r.u16()?);
    let n = r.count("WELCOME groups", n, WELCOME_GROUP_MIN)?;
    let mut groups = Vec::with_capacity(n);
    for _ in 0..n {
        let group = r.name("group name")?;
        let generation = r.u64()?;
        let status = match r.u8()? {
            0 => ResumeStatus::Resume,
            1 => ResumeStatus::ResyncNeeded,
            v => {
                return Err(DecodeError::invalid(
                    "resume status",
                    format!("unknown value {v}"),
                ))
            }
        };
        let durable = Seq(r.u64()?);
        groups.push(WelcomeGroup {
            group,
            generation,
            status,
            durable,
        });
    }
    let dedup_window = read_dedup_window(r, version)?;
    let framed_records = read_flags(r, version, "WELCOME flags")?;
    Ok(Welcome {
        groups,
        dedup_window,
        framed_records,
    })
}
