//! Sizes, disks and addresses as written on the command line.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// Parses a byte size: `4096`, `4KiB`, `4k`, `256MiB`, `1GiB`, `1.5GiB`, `100MB` (decimal).
///
/// Single-letter suffixes (`k`, `M`, `G`, `T`) are binary, as in fio.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let unit = unit.trim();
    let mult: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        _ => return Err(format!("size {s:?}: unknown unit {unit:?}")),
    };
    if num.is_empty() {
        return Err(format!("size {s:?}: no number"));
    }
    if let Ok(n) = num.parse::<u64>() {
        return n
            .checked_mul(mult)
            .ok_or_else(|| format!("size {s:?}: too large"));
    }
    let f: f64 = num
        .parse()
        .map_err(|_| format!("size {s:?}: bad number {num:?}"))?;
    let v = f * mult as f64;
    if !(0.0..1.8e19).contains(&v) || v.fract() != 0.0 {
        return Err(format!("size {s:?}: not a whole number of bytes"));
    }
    Ok(v as u64)
}

/// A disk of the workload: `NAME:SIZE`, e.g. `sda:256MiB`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskSpec {
    pub name: String,
    pub size_bytes: u64,
}

impl FromStr for DiskSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (name, size) = s
            .rsplit_once(':')
            .ok_or_else(|| format!("disk {s:?}: expected NAME:SIZE (e.g. sda:256MiB)"))?;
        rewind_formats::validate_name(name).map_err(|e| format!("disk {s:?}: name: {e}"))?;
        let size_bytes = parse_size(size)?;
        if size_bytes == 0 || size_bytes % rewind_formats::SECTOR != 0 {
            return Err(format!(
                "disk {s:?}: size must be a positive multiple of {} bytes",
                rewind_formats::SECTOR
            ));
        }
        Ok(DiskSpec {
            name: name.to_string(),
            size_bytes,
        })
    }
}

impl fmt::Display for DiskSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.name, self.size_bytes)
    }
}

/// Where the target listens: `tcp:HOST:PORT` (or bare `HOST:PORT`) or `unix:PATH`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Addr {
    Tcp(String),
    Unix(PathBuf),
}

impl FromStr for Addr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(p) = s.strip_prefix("unix:") {
            if p.is_empty() {
                return Err(format!("address {s:?}: empty socket path"));
            }
            return Ok(Addr::Unix(PathBuf::from(p)));
        }
        let hp = s.strip_prefix("tcp:").unwrap_or(s);
        match hp.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                Ok(Addr::Tcp(hp.to_string()))
            }
            _ => Err(format!(
                "address {s:?}: expected tcp:HOST:PORT or unix:PATH"
            )),
        }
    }
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Addr::Tcp(hp) => write!(f, "tcp:{hp}"),
            Addr::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("4KiB").unwrap(), 4096);
        assert_eq!(parse_size("4k").unwrap(), 4096);
        assert_eq!(parse_size("256MiB").unwrap(), 256 << 20);
        assert_eq!(parse_size("1GiB").unwrap(), 1 << 30);
        assert_eq!(parse_size("1.5GiB").unwrap(), 3 << 29);
        assert_eq!(parse_size("100MB").unwrap(), 100_000_000);
        assert!(parse_size("").is_err());
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("4 parsecs").is_err());
        assert!(parse_size("0.3").is_err());
        assert!(parse_size("99999999999TiB").is_err());
    }

    #[test]
    fn disks_and_addrs() {
        let d: DiskSpec = "sda:256MiB".parse().unwrap();
        assert_eq!(d.name, "sda");
        assert_eq!(d.size_bytes, 256 << 20);
        assert!("sda".parse::<DiskSpec>().is_err());
        assert!("sda:1000".parse::<DiskSpec>().is_err());
        assert!("bad/name:1MiB".parse::<DiskSpec>().is_err());
        assert_eq!(
            "tcp:127.0.0.1:4000".parse::<Addr>().unwrap(),
            Addr::Tcp("127.0.0.1:4000".into())
        );
        assert_eq!(
            "localhost:4000".parse::<Addr>().unwrap(),
            Addr::Tcp("localhost:4000".into())
        );
        assert_eq!(
            "unix:/run/x.sock".parse::<Addr>().unwrap(),
            Addr::Unix("/run/x.sock".into())
        );
        assert!("tcp:nohost".parse::<Addr>().is_err());
        assert!("unix:".parse::<Addr>().is_err());
    }
}
