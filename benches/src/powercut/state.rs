//! The whole power-cut file system without FUSE: inodes, their live and durable bytes
//! ([`FileData`]) and names ([`Tree`]), and the cut. The FUSE layer ([`super::fs`]) only
//! translates requests into these calls, so the semantics are tested here directly.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use nix::errno::Errno;

use super::file::FileData;
use super::tree::Tree;

/// The root directory's inode (FUSE's fixed root).
pub const ROOT: u64 = 1;

pub type Result<T> = std::result::Result<T, Errno>;

fn errno(e: io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

enum Kind {
    Dir,
    File(FileData),
    /// A unix socket's name (bind(2) makes one; the kernel keeps the socket itself).
    Socket,
}

struct Node {
    kind: Kind,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: SystemTime,
    /// Open handles: an unlinked file lives until its last one closes.
    open: u32,
}

/// What `stat` says of an inode.
#[derive(Clone, Debug)]
pub struct Stat {
    pub ino: u64,
    pub dir: bool,
    pub socket: bool,
    pub size: u64,
    pub blocks: u64,
    /// Permission bits only.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: SystemTime,
}

/// What a power cut dropped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CutReport {
    /// Bytes written (truncated, punched) since their file's last sync.
    pub bytes: u64,
    /// Directory entries changed since their directory's last sync.
    pub entries: usize,
    /// Inodes that no longer exist (created or unlinked-while-open since the last sync).
    pub inodes: usize,
}

pub struct State {
    backing: PathBuf,
    nodes: HashMap<u64, Node>,
    tree: Tree,
    next_ino: u64,
    /// Bumped by every cut: requests of a session from before it are refused.
    pub epoch: u64,
    /// How long a file's fsync waits, after its bytes became durable, before it returns. Writes
    /// made meanwhile complete before the fsync does without being covered by it: what a
    /// caller that assumes otherwise (a flush that writes "everything written so far" after
    /// its data sync) gets wrong, made likely instead of rare.
    pub sync_delay: std::time::Duration,
}

impl State {
    /// A new, empty file system keeping its bytes in `backing`, which must be an empty directory.
    pub fn new(backing: &Path) -> io::Result<State> {
        if std::fs::read_dir(backing)?.next().is_some() {
            return Err(io::Error::other(format!(
                "power-cut fs: backing directory {} is not empty",
                backing.display()
            )));
        }
        let uid = nix::unistd::geteuid().as_raw();
        let gid = nix::unistd::getegid().as_raw();
        let root = Node {
            kind: Kind::Dir,
            mode: 0o755,
            uid,
            gid,
            mtime: SystemTime::now(),
            open: 0,
        };
        Ok(State {
            backing: backing.to_path_buf(),
            nodes: HashMap::from([(ROOT, root)]),
            tree: Tree::new(ROOT),
            next_ino: ROOT + 1,
            epoch: 0,
            sync_delay: std::time::Duration::ZERO,
        })
    }

    fn node(&self, ino: u64) -> Result<&Node> {
        self.nodes.get(&ino).ok_or(Errno::ENOENT)
    }

    fn file_mut(&mut self, ino: u64) -> Result<&mut FileData> {
        match &mut self.nodes.get_mut(&ino).ok_or(Errno::ENOENT)?.kind {
            Kind::File(f) => Ok(f),
            Kind::Dir => Err(Errno::EISDIR),
            Kind::Socket => Err(Errno::ENXIO),
        }
    }

    fn file(&self, ino: u64) -> Result<&FileData> {
        match &self.node(ino)?.kind {
            Kind::File(f) => Ok(f),
            Kind::Dir => Err(Errno::EISDIR),
            Kind::Socket => Err(Errno::ENXIO),
        }
    }

    pub fn stat(&self, ino: u64) -> Result<Stat> {
        let n = self.node(ino)?;
        let (dir, size, blocks) = match &n.kind {
            Kind::Dir | Kind::Socket => (matches!(n.kind, Kind::Dir), 0, 0),
            Kind::File(f) => (false, f.size().map_err(errno)?, f.blocks().map_err(errno)?),
        };
        Ok(Stat {
            ino,
            dir,
            socket: matches!(n.kind, Kind::Socket),
            size,
            blocks,
            mode: n.mode & 0o7777,
            uid: n.uid,
            gid: n.gid,
            mtime: n.mtime,
        })
    }

    fn dir_entries(&self, dir: u64) -> Result<()> {
        if self.tree.entries(dir).is_some() {
            Ok(())
        } else if self.nodes.contains_key(&dir) {
            Err(Errno::ENOTDIR)
        } else {
            Err(Errno::ENOENT)
        }
    }

    pub fn lookup(&self, dir: u64, name: &OsStr) -> Result<Stat> {
        self.dir_entries(dir)?;
        let ino = self.tree.get(dir, name).ok_or(Errno::ENOENT)?;
        self.stat(ino)
    }

    fn new_node(
        &mut self,
        dir: u64,
        name: &OsStr,
        mode: u32,
        uid: u32,
        gid: u32,
        is_dir: bool,
    ) -> Result<Stat> {
        self.dir_entries(dir)?;
        if self.tree.get(dir, name).is_some() {
            return Err(Errno::EEXIST);
        }
        if name.len() > 255 {
            return Err(Errno::ENAMETOOLONG);
        }
        let ino = self.next_ino;
        let kind = if is_dir {
            self.tree.add_dir(ino);
            Kind::Dir
        } else if mode & libc::S_IFMT == libc::S_IFSOCK {
            Kind::Socket
        } else {
            Kind::File(FileData::create(&self.backing, ino).map_err(errno)?)
        };
        self.next_ino += 1;
        let node = Node {
            kind,
            mode,
            uid,
            gid,
            mtime: SystemTime::now(),
            open: 0,
        };
        self.nodes.insert(ino, node);
        self.tree.insert(dir, name, ino);
        self.touch(dir);
        self.stat(ino)
    }

    /// creat/open with O_CREAT: a new empty file (EEXIST if the name is taken; the kernel
    /// opens an existing name without asking us to create it).
    pub fn create(
        &mut self,
        dir: u64,
        name: &OsStr,
        mode: u32,
        uid: u32,
        gid: u32,
    ) -> Result<Stat> {
        self.new_node(dir, name, mode, uid, gid, false)
    }

    /// mknod: only unix sockets (what bind(2) asks for); other special files are refused.
    pub fn mknod(&mut self, dir: u64, name: &OsStr, mode: u32, uid: u32, gid: u32) -> Result<Stat> {
        if mode & libc::S_IFMT != libc::S_IFSOCK {
            return Err(Errno::EPERM);
        }
        self.new_node(dir, name, mode, uid, gid, false)
    }

    pub fn mkdir(&mut self, dir: u64, name: &OsStr, mode: u32, uid: u32, gid: u32) -> Result<Stat> {
        self.new_node(dir, name, mode, uid, gid, true)
    }

    fn touch(&mut self, ino: u64) {
        if let Some(n) = self.nodes.get_mut(&ino) {
            n.mtime = SystemTime::now();
        }
    }

    pub fn unlink(&mut self, dir: u64, name: &OsStr) -> Result<()> {
        let ino = self.lookup(dir, name)?.ino;
        if self.tree.is_dir(ino) {
            return Err(Errno::EISDIR);
        }
        self.tree.remove(dir, name);
        self.touch(dir);
        self.collect(ino)
    }

    pub fn rmdir(&mut self, dir: u64, name: &OsStr) -> Result<()> {
        let ino = self.lookup(dir, name)?.ino;
        match self.tree.entries(ino) {
            None => return Err(Errno::ENOTDIR),
            Some(e) if !e.is_empty() => return Err(Errno::ENOTEMPTY),
            Some(_) => {}
        }
        self.tree.remove(dir, name);
        self.touch(dir);
        self.collect(ino)
    }

    /// rename(2), with RENAME_NOREPLACE when `noreplace`.
    pub fn rename(
        &mut self,
        dir: u64,
        name: &OsStr,
        to_dir: u64,
        to_name: &OsStr,
        noreplace: bool,
    ) -> Result<()> {
        let ino = self.lookup(dir, name)?.ino;
        self.dir_entries(to_dir)?;
        let is_dir = self.tree.is_dir(ino);
        if let Some(old) = self.tree.get(to_dir, to_name) {
            if old == ino {
                return Ok(());
            }
            if noreplace {
                return Err(Errno::EEXIST);
            }
            match (is_dir, self.tree.entries(old)) {
                (true, None) => return Err(Errno::ENOTDIR),
                (false, Some(_)) => return Err(Errno::EISDIR),
                (true, Some(e)) if !e.is_empty() => return Err(Errno::ENOTEMPTY),
                _ => {}
            }
        }
        if is_dir && self.is_under(to_dir, ino) {
            return Err(Errno::EINVAL);
        }
        self.tree.remove(dir, name);
        let replaced = self.tree.insert(to_dir, to_name, ino);
        self.touch(dir);
        self.touch(to_dir);
        match replaced {
            Some(old) => self.collect(old),
            None => Ok(()),
        }
    }

    /// Whether `dir` is `ancestor` or lies below it (a directory cannot move into itself).
    fn is_under(&self, dir: u64, ancestor: u64) -> bool {
        let mut stack = vec![ancestor];
        while let Some(d) = stack.pop() {
            if d == dir {
                return true;
            }
            if let Some(e) = self.tree.entries(d) {
                stack.extend(e.values().filter(|&&i| self.tree.is_dir(i)));
            }
        }
        false
    }

    /// Frees an inode that no entry (live or durable) names and no handle holds.
    fn collect(&mut self, ino: u64) -> Result<()> {
        let Some(n) = self.nodes.get(&ino) else {
            return Ok(());
        };
        if n.open > 0 || ino == ROOT || self.tree.is_linked(ino) {
            return Ok(());
        }
        match self.nodes.remove(&ino).expect("present").kind {
            Kind::Dir => self.tree.drop_dir(ino),
            Kind::File(f) => f.remove().map_err(errno)?,
            Kind::Socket => {}
        }
        Ok(())
    }

    pub fn open(&mut self, ino: u64) -> Result<()> {
        self.nodes.get_mut(&ino).ok_or(Errno::ENOENT)?.open += 1;
        Ok(())
    }

    pub fn release(&mut self, ino: u64) -> Result<()> {
        if let Some(n) = self.nodes.get_mut(&ino) {
            n.open = n.open.saturating_sub(1);
        }
        self.collect(ino)
    }

    pub fn read(&self, ino: u64, offset: u64, size: u32) -> Result<Vec<u8>> {
        self.file(ino)?.read(offset, size).map_err(errno)
    }

    pub fn write(&mut self, ino: u64, offset: u64, data: &[u8]) -> Result<()> {
        self.file_mut(ino)?.write(offset, data).map_err(errno)?;
        self.touch(ino);
        Ok(())
    }

    pub fn truncate(&mut self, ino: u64, size: u64) -> Result<()> {
        self.file_mut(ino)?.truncate(size).map_err(errno)?;
        self.touch(ino);
        Ok(())
    }

    /// chmod/chown (kept in memory: permissions are not what a power cut tests).
    pub fn set_owner_mode(
        &mut self,
        ino: u64,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
    ) -> Result<()> {
        let n = self.nodes.get_mut(&ino).ok_or(Errno::ENOENT)?;
        if let Some(m) = mode {
            n.mode = m & 0o7777;
        }
        if let Some(u) = uid {
            n.uid = u;
        }
        if let Some(g) = gid {
            n.gid = g;
        }
        Ok(())
    }

    pub fn fallocate(&mut self, ino: u64, offset: u64, len: u64, mode: i32) -> Result<()> {
        self.file_mut(ino)?
            .fallocate(offset, len, mode)
            .map_err(errno)
    }

    pub fn lseek(&self, ino: u64, offset: i64, whence: i32) -> Result<i64> {
        self.file(ino)?.lseek(offset, whence).map_err(errno)
    }

    /// fsync/fdatasync of a file (its bytes and size) or of a directory (its entries).
    pub fn fsync(&mut self, ino: u64) -> Result<()> {
        if self.tree.entries(ino).is_some() {
            self.tree.sync(ino);
            return Ok(());
        }
        self.file_mut(ino)?.sync().map_err(errno)
    }

    /// The live entries of a directory: `(inode, is_dir, name)`.
    pub fn readdir(&self, dir: u64) -> Result<Vec<(u64, bool, std::ffi::OsString)>> {
        self.dir_entries(dir)?;
        Ok(self
            .tree
            .entries(dir)
            .expect("checked")
            .iter()
            .map(|(n, &i)| (i, self.tree.is_dir(i), n.clone()))
            .collect())
    }

    /// Bytes and entries a cut would drop now.
    pub fn unsynced(&self) -> CutReport {
        let bytes = self
            .nodes
            .values()
            .filter_map(|n| match &n.kind {
                Kind::File(f) => Some(f.unsynced_bytes()),
                Kind::Dir | Kind::Socket => None,
            })
            .sum();
        let entries = self
            .nodes
            .keys()
            .map(|&i| self.tree.unsynced_entries(i))
            .sum();
        CutReport {
            bytes,
            entries,
            inodes: 0,
        }
    }

    /// The power cut: every file's bytes and size go back to its last sync, every directory's
    /// entries to its last sync, and what no durable entry reaches is gone. Open handles are
    /// forgotten (the processes that held them died with the power).
    pub fn cut(&mut self) -> io::Result<CutReport> {
        self.epoch += 1;
        let (reachable, entries) = self.tree.cut(ROOT);
        let gone: Vec<u64> = self
            .nodes
            .keys()
            .copied()
            .filter(|i| !reachable.contains(i))
            .collect();
        let mut report = CutReport {
            entries,
            inodes: gone.len(),
            ..CutReport::default()
        };
        for ino in gone {
            if let Kind::File(f) = self.nodes.remove(&ino).expect("listed").kind {
                report.bytes += f.unsynced_bytes();
                f.remove()?;
            }
        }
        for n in self.nodes.values_mut() {
            n.open = 0;
            if let Kind::File(f) = &mut n.kind {
                report.bytes += f.roll_back()?;
            }
        }
        Ok(report)
    }

    /// statfs of the backing directory's file system.
    pub fn statfs(&self) -> Result<nix::sys::statvfs::Statvfs> {
        nix::sys::statvfs::statvfs(&self.backing)
    }
}
