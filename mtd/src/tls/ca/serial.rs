//! Certificate serial numbers: random, positive, and written as lower-case hex everywhere
//! (`issued.json`, `ca list`, `ca revoke --serial`).

use std::fs;
use std::io::Read;

use anyhow::{bail, Context, Result};

/// A random serial: 16 bytes, the top bit clear (a positive DER integer, no padding byte) and the
/// next one set (no leading zero byte), so its hex is the same everywhere it is printed.
pub(super) fn new_serial() -> Result<Vec<u8>> {
    let mut b = [0u8; 16];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .context("reading /dev/urandom for a serial number")?;
    b[0] = (b[0] & 0x7f) | 0x40;
    Ok(b.to_vec())
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub(super) fn unhex(s: &str) -> Result<Vec<u8>> {
    let s = s.trim();
    if s.is_empty() || s.len() & 1 != 0 || s.len() > 64 {
        bail!("serial {s:?}: expected an even number of hex digits (see `rewind-mtd ca list`)");
    }
    (0..s.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(&s[i..i + 2], 16)
                .with_context(|| format!("serial {s:?}: not hex (see `rewind-mtd ca list`)"))
        })
        .collect()
}

/// Normalise a serial as typed by a user (`AB:CD`, `abcd`, `0xabcd`) to the register's form.
pub fn normalise_serial(s: &str) -> Result<String> {
    let s = s.trim();
    let s = s.strip_prefix("0x").unwrap_or(s);
    let digits: String = s.chars().filter(|c| *c != ':').collect();
    Ok(hex(&unhex(&digits.to_ascii_lowercase())?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_are_normalised_and_checked() {
        assert_eq!(normalise_serial("4F:3A:00:01").unwrap(), "4f3a0001");
        assert_eq!(normalise_serial(" 0x4f3a ").unwrap(), "4f3a");
        for bad in ["", "4", "zz", "4f3", "0x", &"ab".repeat(33)] {
            assert!(normalise_serial(bad).is_err(), "{bad:?} accepted");
        }
        let s = new_serial().unwrap();
        assert_eq!(s.len(), 16);
        // Positive, no leading zero byte: the hex is the same as x509 parsers print it.
        assert!(s[0] & 0x80 == 0 && s[0] != 0);
        assert_eq!(unhex(&hex(&s)).unwrap(), s);
    }
}
