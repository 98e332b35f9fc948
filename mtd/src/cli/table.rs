//! Output shared by the subcommands: tables, sizes, and the `--json` text.

use std::fmt::Display;

use anyhow::Result;
use serde::Serialize;

/// Left-aligned columns, two spaces apart.
pub fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut w: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let mut l = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                l += c;
            } else {
                l += &format!("{c:<width$}  ", width = w[i]);
            }
        }
        l.trim_end().to_string() + "\n"
    };
    let mut out = line(header.iter().map(|h| h.to_string()).collect());
    for r in rows {
        out += &line(r);
    }
    out
}

/// A size in binary units: `512 B`, `1.5 GiB`.
pub fn bytes(n: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut x = n as f64;
    let mut u = 0;
    while x >= 1024.0 && u + 1 < units.len() {
        x /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{x:.1} {}", units[u])
    }
}

/// A value that may be missing: `-` when it is.
pub fn or_dash(v: Option<impl Display>) -> String {
    v.map_or_else(|| "-".to_string(), |v| v.to_string())
}

/// The name serde gives a value on the wire (`app-consistent`, `running`), for display.
pub fn wire_name(v: &impl Serialize) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => "?".into(),
    }
}

/// `--json` output: pretty, one trailing newline, keys in sorted order at every level (as the
/// CLI has always printed them, whatever order the daemon sent).
pub fn json_text(v: &impl Serialize) -> Result<String> {
    Ok(serde_json::to_string_pretty(&serde_json::to_value(v)?)? + "\n")
}

/// `--json` output of `v`, or else the human one `text` makes of it.
pub fn json_or<T: Serialize>(json: bool, v: &T, text: impl FnOnce(&T) -> String) -> Result<String> {
    if json {
        json_text(v)
    } else {
        Ok(text(v))
    }
}
