//! The two numberings of the stream. The queue numbers what it records from 1 in each run
//! ([`LocalSeq`]), so capture can start before the target is reachable; the wire numbering
//! ([`Seq`], the target's) is known from the first WELCOME: `base + local`, where the base
//! ([`SeqBase`]) is the target's durable seq then (moved if the target later lost data).

use std::fmt;

use rewind_formats::Seq;

/// A record's seq in this run's numbering (0: nothing recorded yet).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LocalSeq(pub u64);

impl LocalSeq {
    /// The seq after this one.
    pub fn next(self) -> LocalSeq {
        LocalSeq(self.0 + 1)
    }
}

impl fmt::Display for LocalSeq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The wire seq of local seq 0. Arithmetic is modulo 2^64: after a target lost data the base
/// may have to be "negative" (below the local seqs already assigned).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeqBase(pub u64);

impl SeqBase {
    /// The base under which local seq `local` goes out as `wire`.
    pub fn at(wire: Seq, local: LocalSeq) -> SeqBase {
        SeqBase(wire.0.wrapping_sub(local.0))
    }

    pub fn wire(self, local: LocalSeq) -> Seq {
        Seq(self.0.wrapping_add(local.0))
    }

    pub fn local(self, wire: Seq) -> LocalSeq {
        LocalSeq(wire.0.wrapping_sub(self.0))
    }
}

impl fmt::Display for SeqBase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_and_local_seqs_convert_modulo_2_64() {
        let b = SeqBase::at(Seq(1), LocalSeq(4));
        assert_eq!(b.wire(LocalSeq(5)), Seq(2));
        assert_eq!(b.local(Seq(2)), LocalSeq(5));
        assert_eq!(SeqBase(10).wire(LocalSeq(0)), Seq(10));
    }
}
