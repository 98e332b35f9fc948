//! Who may use the daemon's unix sockets: root, and members of the access group (`rewind` by
//! default, `--access-group`). The data directory is nobody else's ([`make_private_dir`]).
//!
//! Every unix socket the daemon serves (agents, NBD, control API) is bound through [`LocalAccess::bind`]:
//! mode 0660, owner root, group the access group, published by renaming a socket bound under a
//! temporary name, so that there is no moment at which the final path accepts anybody. Then each
//! accepted connection is checked with [`LocalAccess::check`] (`SO_PEERCRED`): file modes alone do not
//! stop a process that inherited or was passed a descriptor, and the check says who connected.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use tokio::net::{UnixListener, UnixStream};

/// The default name of the access group.
pub const DEFAULT_GROUP: &str = "rewind";

/// The access group, looked up (or created) once at start.
#[derive(Debug, Clone)]
pub struct LocalAccess {
    name: String,
    gid: u32,
}

/// Who is on the other end of a unix socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    pub uid: u32,
    pub gid: u32,
    /// The connecting process (0 when the kernel did not say).
    pub pid: i32,
    pub role: Role,
}

/// What a permitted peer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// uid 0: may do everything.
    Root,
    /// A member of the access group (primary or supplementary): what each socket allows it is
    /// that socket's decision.
    Member,
}

/// A peer that is neither root nor in the access group.
#[derive(Debug, thiserror::Error)]
#[error("uid {uid} (pid {pid}) is neither root nor in group {group}")]
pub struct Refused {
    pub uid: u32,
    pub pid: i32,
    pub group: String,
}

impl LocalAccess {
    /// Look up group `name`, creating it as a system group when missing (as root).
    pub fn init(name: &str) -> Result<Arc<LocalAccess>> {
        rewind_formats::validate_name(name)
            .with_context(|| format!("access group name {name:?}"))?;
        if let Some(g) = lookup(name)? {
            return Ok(Arc::new(LocalAccess {
                name: name.to_string(),
                gid: g,
            }));
        }
        let out = std::process::Command::new("groupadd")
            .arg("--system")
            .arg(name)
            .output()
            .with_context(|| format!("running groupadd to create the access group {name}"))?;
        // Another daemon may have created it meanwhile: look again before failing.
        if let Some(g) = lookup(name)? {
            tracing::info!(group = name, gid = g, "created the access group");
            return Ok(Arc::new(LocalAccess {
                name: name.to_string(),
                gid: g,
            }));
        }
        anyhow::bail!(
            "cannot create the access group {name}: groupadd said {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )
    }

    /// An access group known by number (tests, and callers that looked it up already).
    pub fn with_gid(name: &str, gid: u32) -> Arc<LocalAccess> {
        Arc::new(LocalAccess {
            name: name.to_string(),
            gid,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn gid(&self) -> u32 {
        self.gid
    }

    /// Make `dir` (a socket's directory) if missing, as root:GROUP 0750, so members can reach the
    /// sockets in it and nobody else can. An existing directory is left as its owner made it.
    pub fn ensure_socket_dir(&self, dir: &Path) -> Result<()> {
        if dir.as_os_str().is_empty() || dir.exists() {
            return Ok(());
        }
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        self.restrict(dir, 0o750)
    }

    /// Bind a unix socket at `path` that only root and the access group may connect to.
    /// `what` names the socket and `flag` the option that moves it, for errors.
    pub async fn bind(&self, path: &Path, what: &str, flag: &str) -> Result<UnixListener> {
        remove_stale_socket(path, what, flag).await?;
        let name = path
            .file_name()
            .with_context(|| format!("{what} socket path {} has no file name", path.display()))?;
        let mut tmp_name = name.to_os_string();
        tmp_name.push(format!(".{}.bind", std::process::id()));
        let tmp = path.with_file_name(tmp_name);
        let _ = std::fs::remove_file(&tmp);
        let listener = UnixListener::bind(&tmp)
            .with_context(|| format!("{what}: listening on {}", tmp.display()))?;
        let published = self
            .restrict(&tmp, 0o660)
            .and_then(|()| {
                std::fs::rename(&tmp, path).with_context(|| {
                    format!("{what}: moving {} to {}", tmp.display(), path.display())
                })
            })
            .with_context(|| format!("{what}: publishing socket {}", path.display()));
        if let Err(e) = published {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        Ok(listener)
    }

    /// Who connected on `s`, if they may use the socket at all.
    pub fn check(&self, s: &UnixStream) -> std::result::Result<Peer, Refused> {
        let refused = |uid, pid| Refused {
            uid,
            pid,
            group: self.name.clone(),
        };
        let Ok(cred) = s.peer_cred() else {
            return Err(refused(u32::MAX, 0));
        };
        let (uid, gid, pid) = (cred.uid(), cred.gid(), cred.pid().unwrap_or(0));
        let role = if uid == 0 {
            Role::Root
        } else if gid == self.gid || supplementary_groups(pid).contains(&self.gid) {
            Role::Member
        } else {
            return Err(refused(uid, pid));
        };
        Ok(Peer {
            uid,
            gid,
            pid,
            role,
        })
    }

    /// chown root:GROUP and chmod `mode`, without following a symlink at `path`.
    fn restrict(&self, path: &Path, mode: u32) -> Result<()> {
        std::os::unix::fs::lchown(path, Some(0), Some(self.gid))
            .with_context(|| format!("chown root:{} {}", self.name, path.display()))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("chmod {mode:o} {}", path.display()))
    }
}

/// The gid of group `name`, if it exists.
fn lookup(name: &str) -> Result<Option<u32>> {
    let g =
        nix::unistd::Group::from_name(name).with_context(|| format!("looking up group {name}"))?;
    Ok(g.map(|g| g.gid.as_raw()))
}

/// The supplementary groups of a live process (its `Groups:` line in /proc); none when it is gone.
fn supplementary_groups(pid: i32) -> Vec<u32> {
    if pid <= 0 {
        return Vec::new();
    }
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return Vec::new();
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("Groups:"))
        .map(|g| {
            g.split_whitespace()
                .filter_map(|n| n.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Make `dir` 0700 if it is open to anybody else (the data directory of an older version, or
/// one made under another umask), saying so: replica data is nobody else's business.
pub fn make_private_dir(dir: &Path) -> std::io::Result<()> {
    if let Some(mode) = rewind_linux::atomic::make_private_dir(dir)? {
        tracing::warn!(
            dir = %dir.display(),
            mode = format!("{mode:o}"),
            "the data directory was open to other users; making it 0700"
        );
    }
    Ok(())
}

/// Before binding a unix socket: remove a socket file left by a daemon that died (binding would
/// fail on it), but refuse one a live server answers on, and anything that is not a socket.
/// `what` names the socket and `flag` the option that moves it, for the error.
async fn remove_stale_socket(path: &Path, what: &str, flag: &str) -> Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let Ok(meta) = path.symlink_metadata() else {
        return Ok(());
    };
    if !meta.file_type().is_socket() {
        anyhow::bail!(
            "{what} socket path {} exists and is not a socket; remove it or choose another {flag}",
            path.display()
        );
    }
    if UnixStream::connect(path).await.is_ok() {
        anyhow::bail!(
            "another rewind-mtd serves the {what} socket {}; give this one another {flag}",
            path.display()
        );
    }
    std::fs::remove_file(path)
        .with_context(|| format!("removing stale {what} socket {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_groups_are_read_from_proc() {
        let me = std::process::id() as i32;
        let status = std::fs::read_to_string(format!("/proc/{me}/status")).unwrap();
        let line = status.lines().find(|l| l.starts_with("Groups:")).unwrap();
        let want: Vec<u32> = line[7..]
            .split_whitespace()
            .map(|n| n.parse().unwrap())
            .collect();
        assert_eq!(supplementary_groups(me), want);
        assert!(supplementary_groups(0).is_empty());
        assert!(supplementary_groups(i32::MAX).is_empty());
    }

    #[tokio::test]
    async fn socket_is_0660_root_group_and_checks_peers() {
        let dir = tempfile::tempdir().unwrap();
        let access = LocalAccess::with_gid("test", 4242);
        let path = dir.path().join("s.sock");
        let l = access.bind(&path, "test", "--test").await.unwrap();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_eq!(meta.mode() & 0o777, 0o660);
        assert_eq!(meta.gid(), 4242);
        // No temporary name left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        let c = UnixStream::connect(&path).await.unwrap();
        let (s, _) = l.accept().await.unwrap();
        let me = nix::unistd::geteuid().as_raw();
        match access.check(&s) {
            Ok(p) => {
                assert_eq!(p.uid, me);
                assert_eq!(p.role, Role::Root);
                assert_eq!(me, 0);
            }
            Err(r) => {
                assert_ne!(me, 0);
                assert_eq!(r.uid, me);
            }
        }
        drop(c);
    }

    #[test]
    fn an_open_directory_is_made_private() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        make_private_dir(dir.path()).unwrap();
        let mode = std::fs::metadata(dir.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }
}
