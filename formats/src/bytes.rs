//! Small cursor helpers: a bounds-checked little-endian [`Reader`] and a [`Writer`].
//!
//! Every read checks the remaining length first and returns [`DecodeError::Truncated`] instead of
//! panicking, so decoders are written as straight-line code with `?` and cannot index out of
//! bounds. Counts read from the input go through [`Reader::count`], which refuses a count whose
//! minimal encoding would not fit in the remaining bytes: no decoder allocates from a length it
//! has not checked against the bytes it actually holds.

use crate::name::check_name;
use crate::{DecodeError, MAX_MESSAGE_LEN, MAX_NAME_LEN};

/// A little-endian cursor over a byte slice. Never panics.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, pos: 0 }
    }

    /// Bytes not read yet.
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Takes the next `n` bytes.
    pub(crate) fn bytes(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.remaining() {
            return Err(DecodeError::Truncated {
                need: self.pos.saturating_add(n),
                have: self.buf.len(),
            });
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.bytes(N)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// A name: u8 length, then that many bytes, validated by [`crate::validate_name`].
    pub(crate) fn name(&mut self, what: &'static str) -> Result<String, DecodeError> {
        let len = usize::from(self.u8()?);
        let s = self.utf8(what, len)?;
        check_name(what, &s)?;
        Ok(s)
    }

    /// A free-text string: u16 length (at most [`MAX_MESSAGE_LEN`]), then UTF-8 bytes.
    pub(crate) fn long_str(&mut self, what: &'static str) -> Result<String, DecodeError> {
        let len = usize::from(self.u16()?);
        if len > MAX_MESSAGE_LEN {
            return Err(DecodeError::too_large(
                what,
                len as u64,
                MAX_MESSAGE_LEN as u64,
            ));
        }
        self.utf8(what, len)
    }

    fn utf8(&mut self, what: &'static str, len: usize) -> Result<String, DecodeError> {
        let raw = self.bytes(len)?;
        match std::str::from_utf8(raw) {
            Ok(s) => Ok(s.to_owned()),
            Err(e) => Err(DecodeError::invalid(what, format!("not UTF-8: {e}"))),
        }
    }

    /// Checks a count read from the input: each element takes at least `min_size` bytes, so the
    /// count cannot exceed what the remaining bytes could hold. Returns it as a usize that is
    /// safe to pass to `Vec::with_capacity`.
    pub(crate) fn count(
        &self,
        what: &'static str,
        count: u64,
        min_size: usize,
    ) -> Result<usize, DecodeError> {
        let max = (self.remaining() / min_size.max(1)) as u64;
        if count > max {
            return Err(DecodeError::too_large(what, count, max));
        }
        // count <= remaining bytes, so it fits in usize.
        Ok(count as usize)
    }

    /// Fails unless every byte was consumed: trailing bytes mean the writer and the reader
    /// disagree about the layout, which must never pass silently.
    pub(crate) fn finish(&self, what: &'static str) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(DecodeError::invalid(what, format!("{n} trailing bytes"))),
        }
    }
}

/// A little-endian writer appending to a `Vec<u8>`.
#[derive(Default)]
pub(crate) struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    pub(crate) fn new() -> Writer {
        Writer::default()
    }

    pub(crate) fn with_capacity(n: usize) -> Writer {
        Writer {
            buf: Vec::with_capacity(n),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.buf.len()
    }

    pub(crate) fn into_vec(self) -> Vec<u8> {
        self.buf
    }

    pub(crate) fn bytes(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
    }

    pub(crate) fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    pub(crate) fn u16(&mut self, v: u16) {
        self.bytes(&v.to_le_bytes());
    }

    pub(crate) fn u32(&mut self, v: u32) {
        self.bytes(&v.to_le_bytes());
    }

    pub(crate) fn u64(&mut self, v: u64) {
        self.bytes(&v.to_le_bytes());
    }

    /// A name with its u8 length prefix.
    ///
    /// # Panics
    /// If `s` is longer than [`MAX_NAME_LEN`]: the prefix cannot represent it, and writing it
    /// truncated would produce bytes no reader accepts. Callers validate names on the way in.
    pub(crate) fn name(&mut self, s: &str) {
        assert!(
            s.len() <= MAX_NAME_LEN,
            "name of {} bytes is longer than {MAX_NAME_LEN}",
            s.len()
        );
        self.u8(s.len() as u8);
        self.bytes(s.as_bytes());
    }

    /// A free-text string with its u16 length prefix.
    ///
    /// # Panics
    /// If `s` is longer than [`MAX_MESSAGE_LEN`] (see [`Writer::name`]).
    pub(crate) fn long_str(&mut self, s: &str) {
        assert!(
            s.len() <= MAX_MESSAGE_LEN,
            "string of {} bytes is longer than {MAX_MESSAGE_LEN}",
            s.len()
        );
        self.u16(s.len() as u16);
        self.bytes(s.as_bytes());
    }
}

/// Reads a little-endian u16 at a fixed offset of a slice already known to be long enough.
pub(crate) fn le_u16(b: &[u8], off: usize) -> u16 {
    let mut a = [0u8; 2];
    a.copy_from_slice(&b[off..off + 2]);
    u16::from_le_bytes(a)
}

/// Reads a little-endian u32 at a fixed offset of a slice already known to be long enough.
pub(crate) fn le_u32(b: &[u8], off: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[off..off + 4]);
    u32::from_le_bytes(a)
}

/// Reads a little-endian u64 at a fixed offset of a slice already known to be long enough.
pub(crate) fn le_u64(b: &[u8], off: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_reports_truncation_instead_of_panicking() {
        let mut r = Reader::new(&[1, 2, 3]);
        assert_eq!(r.u16().unwrap(), 0x0201);
        assert_eq!(r.u32(), Err(DecodeError::Truncated { need: 6, have: 3 }));
        assert_eq!(r.u8().unwrap(), 3);
        assert_eq!(r.finish("x"), Ok(()));
        assert_eq!(
            r.bytes(usize::MAX),
            Err(DecodeError::Truncated {
                need: usize::MAX,
                have: 3
            })
        );
    }

    #[test]
    fn count_is_capped_by_remaining_bytes() {
        let r = Reader::new(&[0; 100]);
        assert_eq!(r.count("things", 10, 10), Ok(10));
        assert!(matches!(
            r.count("things", 11, 10),
            Err(DecodeError::TooLarge { .. })
        ));
        assert!(r.count("things", u64::MAX, 0).is_err());
    }

    #[test]
    fn strings_round_trip_and_are_checked() {
        let mut w = Writer::new();
        w.name("sda");
        w.long_str("hello wörld");
        let v = w.into_vec();
        let mut r = Reader::new(&v);
        assert_eq!(r.name("disk").unwrap(), "sda");
        assert_eq!(r.long_str("message").unwrap(), "hello wörld");
        assert_eq!(r.finish("x"), Ok(()));

        let mut r = Reader::new(&[2, b'a', b'/']);
        assert!(matches!(r.name("disk"), Err(DecodeError::Invalid { .. })));
        let mut r = Reader::new(&[1, 0, 0xff]);
        assert!(matches!(
            r.long_str("message"),
            Err(DecodeError::Invalid { .. })
        ));
        let mut r = Reader::new(&[0x01, 0x10]);
        assert!(matches!(
            r.long_str("message"),
            Err(DecodeError::TooLarge { .. })
        ));
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let r = Reader::new(&[0]);
        assert!(matches!(r.finish("x"), Err(DecodeError::Invalid { .. })));
    }
}
