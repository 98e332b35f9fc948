//! The kinds of network fault the proxy injects, by name (`cut`, `stall`, ...).

use std::fmt;
use std::str::FromStr;

/// One kind of fault on a TCP byte stream between agent and target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FaultKind {
    /// Both sockets closed at once, mid-stream (a reset link, a crashed middlebox).
    Cut,
    /// Nothing forwarded in one direction for a while (seconds), the connection kept open.
    Stall,
    /// Every chunk in one direction delayed for a while (a long path).
    Latency,
    /// One direction limited to a few hundred KiB/s for a while (a thin link).
    Bandwidth,
    /// Part of a chunk forwarded, then both sockets closed (a cut in the middle of a frame).
    Truncate,
    /// A stretch of bytes forwarded twice (a broken retransmitting middlebox).
    Duplicate,
    /// A few bits of a chunk flipped (what TCP's 16-bit checksum lets through).
    Corrupt,
}

impl FaultKind {
    /// Every kind, in the order reports print them.
    pub const ALL: [FaultKind; 7] = [
        FaultKind::Cut,
        FaultKind::Stall,
        FaultKind::Latency,
        FaultKind::Bandwidth,
        FaultKind::Truncate,
        FaultKind::Duplicate,
        FaultKind::Corrupt,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Cut => "cut",
            FaultKind::Stall => "stall",
            FaultKind::Latency => "latency",
            FaultKind::Bandwidth => "bandwidth",
            FaultKind::Truncate => "truncate",
            FaultKind::Duplicate => "duplicate",
            FaultKind::Corrupt => "corrupt",
        }
    }

    /// Its place in [`FaultKind::ALL`] (the index of its counter).
    pub fn index(self) -> usize {
        FaultKind::ALL
            .iter()
            .position(|k| *k == self)
            .unwrap_or_default()
    }

    /// Whether the fault breaks the byte stream so that the receiver must reject what follows
    /// (and the session ends): the kinds a checksum or a frame length must catch.
    pub fn breaks_stream(self) -> bool {
        matches!(
            self,
            FaultKind::Truncate | FaultKind::Duplicate | FaultKind::Corrupt
        )
    }

    /// A comma-separated list (`cut,stall`) or `all`.
    pub fn parse_list(s: &str) -> Result<Vec<FaultKind>, String> {
        if s.trim() == "all" {
            return Ok(FaultKind::ALL.to_vec());
        }
        let mut kinds = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let k: FaultKind = part.parse()?;
            if !kinds.contains(&k) {
                kinds.push(k);
            }
        }
        if kinds.is_empty() {
            return Err(format!("no fault kinds in {s:?}"));
        }
        Ok(kinds)
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for FaultKind {
    type Err = String;

    fn from_str(s: &str) -> Result<FaultKind, String> {
        FaultKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = FaultKind::ALL.iter().map(|k| k.name()).collect();
                format!("unknown fault kind {s:?} (known: {})", names.join(", "))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_lists_parse() {
        for k in FaultKind::ALL {
            assert_eq!(k.name().parse::<FaultKind>(), Ok(k));
            assert_eq!(FaultKind::ALL[k.index()], k);
        }
        assert_eq!(
            FaultKind::parse_list("cut, corrupt,cut"),
            Ok(vec![FaultKind::Cut, FaultKind::Corrupt])
        );
        assert_eq!(FaultKind::parse_list("all").unwrap().len(), 7);
        let e = FaultKind::parse_list("cut,flood").unwrap_err();
        assert!(e.contains("\"flood\"") && e.contains("known: cut"), "{e}");
        assert!(FaultKind::parse_list(" ,").is_err());
    }
}
