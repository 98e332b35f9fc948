//! Boot command templates: the placeholders `{nbd:DISK}`, `{loop:DISK}`, `{group}` and
//! `{machine}`, parsed when the plan is read and filled in when the machine boots.
//!
//! A `{` followed by a name (letters, digits, `_`, `-`) and then `}` or `:` is a placeholder, and an
//! unknown one is an error, so a typo cannot boot a machine with a literal `{nbd:rot}` in its
//! command. `{{` and `}}` stand for literal braces (needed for shell `${VAR}`; `$VAR` works as is);
//! any other brace (`{ cmd; }`, `}`) is kept as written. Values are inserted verbatim, not quoted:
//! quote the placeholder where the value can hold shell metacharacters (`?` in an NBD URI).

use super::ops::PreparedDisk;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Text(String),
    Nbd(String),
    Loop(String),
    Group,
    Machine,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootCommand {
    parts: Vec<Part>,
}

/// What fills the placeholders of one machine.
pub struct Values<'a> {
    pub group: &'a str,
    pub machine: &'a str,
    pub disks: &'a [PreparedDisk],
}

impl BootCommand {
    /// Parse a template; an error is `(byte offset in text, message)`.
    pub fn parse(text: &str) -> Result<BootCommand, (usize, String)> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(c) = rest.chars().next() {
            let at = text.len() - rest.len();
            if rest.starts_with("{{") || rest.starts_with("}}") {
                literal.push(c);
                rest = &rest[2..];
                continue;
            }
            if c == '{' {
                if let Some((part, len)) = placeholder(&rest[1..]).map_err(|m| (at, m))? {
                    if !literal.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut literal)));
                    }
                    parts.push(part);
                    rest = &rest[1 + len..];
                    continue;
                }
            }
            literal.push(c);
            rest = &rest[c.len_utf8()..];
        }
        if !literal.is_empty() {
            parts.push(Part::Text(literal));
        }
        Ok(BootCommand { parts })
    }

    /// The disk names that `{nbd:..}` and `{loop:..}` refer to, each once, in order.
    pub fn disks(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for p in &self.parts {
            if let Part::Nbd(d) | Part::Loop(d) = p {
                if !out.contains(&d.as_str()) {
                    out.push(d);
                }
            }
        }
        out
    }

    /// The command with every placeholder filled in; an error names what is missing.
    pub fn render(&self, v: &Values<'_>) -> Result<String, String> {
        let find = |d: &str| {
            v.disks
                .iter()
                .find(|p| p.disk == d)
                .ok_or_else(|| format!("prepare returned no disk {d:?} for group {}", v.group))
        };
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Nbd(d) => out.push_str(&find(d)?.nbd_uri),
                Part::Loop(d) => match &find(d)?.loop_device {
                    Some(dev) => out.push_str(dev),
                    None => return Err(format!("disk {d:?} has no loop device for {{loop:{d}}}")),
                },
                Part::Group => out.push_str(v.group),
                Part::Machine => out.push_str(v.machine),
            }
        }
        Ok(out)
    }
}

/// After a `{`: a placeholder and the length it takes up to and including its `}`; `None` when the
/// brace does not start one (kept literally).
fn placeholder(s: &str) -> Result<Option<(Part, usize)>, String> {
    let name_len = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
        .unwrap_or(s.len());
    let name = &s[..name_len];
    let after = &s[name_len..];
    if name.is_empty() || !(after.starts_with('}') || after.starts_with(':')) {
        return Ok(None);
    }
    let Some(close) = s.find('}') else {
        return Err(format!("placeholder {{{name}: has no closing }}"));
    };
    let arg = after.strip_prefix(':').map(|a| &a[..close - name_len - 1]);
    let part = match (name, arg) {
        ("nbd", Some(d)) if !d.is_empty() => Part::Nbd(d.to_string()),
        ("loop", Some(d)) if !d.is_empty() => Part::Loop(d.to_string()),
        ("nbd" | "loop", _) => {
            return Err(format!(
                "placeholder {{{name}}} needs a disk: {{{name}:DISK}}"
            ))
        }
        ("group", None) => Part::Group,
        ("machine", None) => Part::Machine,
        _ => {
            return Err(format!(
                "unknown placeholder {{{}}}: expected {{nbd:DISK}}, {{loop:DISK}}, {{group}} or \
                 {{machine}} (write {{{{ and }}}} for literal braces)",
                &s[..close]
            ))
        }
    };
    Ok(Some((part, close + 1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disks() -> Vec<PreparedDisk> {
        vec![PreparedDisk {
            disk: "root".into(),
            nbd_uri: "nbd://h/g-root".into(),
            loop_device: Some("/dev/loop7".into()),
        }]
    }

    #[test]
    fn fills_placeholders_and_keeps_shell_braces() {
        let t = BootCommand::parse(
            "run {machine} {group} file={nbd:root} dev={loop:root} ${{HOME}} {{x}} { a; } }",
        )
        .unwrap();
        assert_eq!(t.disks(), vec!["root"]);
        let d = disks();
        let v = Values {
            group: "g",
            machine: "m",
            disks: &d,
        };
        assert_eq!(
            t.render(&v).unwrap(),
            "run m g file=nbd://h/g-root dev=/dev/loop7 ${HOME} {x} { a; } }"
        );
    }

    #[test]
    fn errors() {
        let e = BootCommand::parse("qemu {nbd:root} {ndb:root}").unwrap_err();
        assert_eq!(e.0, 16);
        assert!(e.1.contains("unknown placeholder {ndb:root}"), "{}", e.1);
        assert!(BootCommand::parse("x ${HOME}")
            .unwrap_err()
            .1
            .contains("{HOME}"));
        assert!(BootCommand::parse("{nbd}")
            .unwrap_err()
            .1
            .contains("needs a disk"));
        assert!(BootCommand::parse("{nbd:root")
            .unwrap_err()
            .1
            .contains("closing"));
        let t = BootCommand::parse("{loop:data}").unwrap();
        let d = disks();
        let v = Values {
            group: "g",
            machine: "m",
            disks: &d,
        };
        assert!(t.render(&v).unwrap_err().contains("no disk \"data\""));
    }
}
