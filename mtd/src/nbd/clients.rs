//! Who may open what: the grants of one NBD connection, and the clients file (`--nbd-clients`)
//! that says what each TLS client certificate may do.
//!
//! ```toml
//! # The table key is the certificate's common name (`rewind-mtd ca issue ... NAME`).
//! [clients.backup1]
//! read = ["*"]            # every group ("*"), or group names
//! write = ["web"]         # may open writable exports (overlays, @test, @live) of these groups
//! ```
//!
//! `write` implies `read`. A certificate the file does not name gets nothing: NBD_OPT_LIST is
//! empty and every export is unknown. Errors are `PATH:LINE:COL: message`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

/// Groups: all of them, or these.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scope {
    pub all: bool,
    pub groups: BTreeSet<String>,
}

impl Scope {
    pub fn everything() -> Scope {
        Scope {
            all: true,
            groups: BTreeSet::new(),
        }
    }

    pub fn contains(&self, group: &str) -> bool {
        self.all || self.groups.contains(group)
    }
}

/// What one connection may do.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Grants {
    /// Who, for logs: `root`, `uid 1000`, `cert NAME`, `insecure`.
    pub who: String,
    pub read: Scope,
    pub write: Scope,
}

impl Grants {
    pub fn all(who: impl Into<String>) -> Grants {
        Grants {
            who: who.into(),
            read: Scope::everything(),
            write: Scope::everything(),
        }
    }

    pub fn read_all(who: impl Into<String>) -> Grants {
        Grants {
            who: who.into(),
            read: Scope::everything(),
            write: Scope::default(),
        }
    }

    pub fn nothing(who: impl Into<String>) -> Grants {
        Grants {
            who: who.into(),
            ..Default::default()
        }
    }

    pub fn may_read(&self, group: &str) -> bool {
        self.read.contains(group) || self.write.contains(group)
    }

    pub fn may_write(&self, group: &str) -> bool {
        self.write.contains(group)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}:{col}: {message}", path.display())]
pub struct ClientsError {
    pub path: PathBuf,
    pub line: usize,
    pub col: usize,
    pub message: String,
}

/// The parsed clients file: certificate common name -> grants.
#[derive(Clone, Debug, Default)]
pub struct Clients {
    by_name: BTreeMap<String, (Scope, Scope)>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    clients: BTreeMap<Spanned<String>, Spanned<RawClient>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClient {
    #[serde(default)]
    read: Vec<Spanned<String>>,
    #[serde(default)]
    write: Vec<Spanned<String>>,
}

impl Clients {
    /// Read and validate the file at `path`.
    pub fn load(path: &Path) -> anyhow::Result<Clients> {
        use anyhow::Context;
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the NBD clients file {}", path.display()))?;
        Ok(Clients::parse(path, &text)?)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Clients, ClientsError> {
        let err = |at: usize, message: String| {
            let at = at.min(text.len());
            let before = &text[..at];
            let line_start = before.rfind('\n').map_or(0, |i| i + 1);
            ClientsError {
                path: path.to_path_buf(),
                line: before.matches('\n').count() + 1,
                col: before[line_start..].chars().count() + 1,
                message,
            }
        };
        let raw: RawFile = toml::from_str(text).map_err(|e| {
            let at = e.span().map_or(0, |s| s.start);
            err(at, e.message().to_string())
        })?;
        let mut by_name = BTreeMap::new();
        for (name, client) in raw.clients {
            let n = name.get_ref();
            if !valid_cert_name(n) {
                return Err(err(
                    name.span().start,
                    format!(
                        "client {n:?}: a certificate name has letters, digits, '-', '_' and '.', up to 64"
                    ),
                ));
            }
            let client = client.into_inner();
            let scope = |list: Vec<Spanned<String>>| -> Result<Scope, ClientsError> {
                let mut s = Scope::default();
                for g in list {
                    if g.get_ref() == "*" {
                        s.all = true;
                    } else if let Err(e) = rewind_formats::validate_name(g.get_ref()) {
                        return Err(err(
                            g.span().start,
                            format!("client {n}: group {:?}: {e}", g.get_ref()),
                        ));
                    } else {
                        s.groups.insert(g.into_inner());
                    }
                }
                Ok(s)
            };
            let read = scope(client.read)?;
            let write = scope(client.write)?;
            by_name.insert(n.clone(), (read, write));
        }
        Ok(Clients { by_name })
    }

    /// The grants of a verified certificate named `name`; nothing for a name the file omits.
    pub fn grants(&self, name: &str) -> Grants {
        let who = format!("cert {name}");
        match self.by_name.get(name) {
            Some((read, write)) => Grants {
                who,
                read: read.clone(),
                write: write.clone(),
            },
            None => Grants::nothing(who),
        }
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

/// The names `rewind-mtd ca issue` accepts.
fn valid_cert_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 64
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Clients, ClientsError> {
        Clients::parse(Path::new("c.toml"), text)
    }

    #[test]
    fn grants_from_the_file() {
        let c = parse(
            "[clients.backup1]\nread = [\"*\"]\nwrite = [\"web\"]\n\n[clients.\"viewer.x\"]\nread = [\"db\"]\n",
        )
        .unwrap();
        let b = c.grants("backup1");
        assert!(b.may_read("anything") && b.may_write("web") && !b.may_write("db"));
        let v = c.grants("viewer.x");
        assert!(v.may_read("db") && !v.may_read("web") && !v.may_write("db"));
        let u = c.grants("stranger");
        assert!(!u.may_read("db") && !u.may_write("db"));
        assert_eq!(u.who, "cert stranger");
        // write implies read
        let w = parse("[clients.w]\nwrite = [\"g\"]\n").unwrap().grants("w");
        assert!(w.may_read("g") && w.may_write("g") && !w.may_read("h"));
        assert!(parse("").unwrap().is_empty());
    }

    #[test]
    fn errors_point_at_the_line() {
        let e = parse("[clients.a]\nread = [\"ok\"]\nwrite = [\"../x\"]\n").unwrap_err();
        assert_eq!((e.line, e.path.as_path()), (3, Path::new("c.toml")), "{e}");
        assert!(e.to_string().starts_with("c.toml:3:"), "{e}");
        let e = parse("[clients.a]\nread = [\"ok\"]\nwrtie = [\"g\"]\n").unwrap_err();
        assert_eq!(e.line, 3, "{e}");
        let e = parse("[clients.\"a b\"]\nread = []\n").unwrap_err();
        assert_eq!(e.line, 1, "{e}");
        let e = parse("[clients.a]\nread = \"g\"\n").unwrap_err();
        assert_eq!(e.line, 2, "{e}");
        let e = parse("[client.a]\n").unwrap_err();
        assert_eq!(e.line, 1, "{e}");
    }
}
