//! The inode table: what each inode number of the tree stands for.
//!
//! Every node is named by its path (`Node`), so an inode is just a number given to a path the first
//! time the kernel sees it. Numbers are never reused. The kernel holds an inode from a LOOKUP reply
//! until it FORGETs it, so a node with no lookups outstanding may be dropped at any time: that
//! happens at FORGET, and for nodes only ever listed by READDIR, in a sweep when the table grows.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::views::exports::{ExportName, Target};

/// The root directory's inode (FUSE_ROOT_ID).
pub const ROOT_INO: u64 = 1;

/// Above this many nodes, the ones the kernel holds no reference to are dropped.
const SWEEP_ABOVE: usize = 16_384;

/// A path of the tree.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Node {
    /// `/`
    Root,
    /// `/GROUP`
    Group(String),
    /// `/GROUP/DISK`
    Disk(Disk),
    /// `/GROUP/DISK/at`
    At(Disk),
    /// `/GROUP/DISK/overlays`
    Overlays(Disk),
    /// `/GROUP/DISK/latest.img`, `/GROUP/DISK/at/SPEC.img`, `/GROUP/DISK/overlays/NAME.img`
    Image(Disk, Image),
}

/// One disk of one group.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Disk {
    pub group: String,
    pub disk: String,
}

/// What an image file shows.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Image {
    Latest,
    /// A point spec as the user wrote it (`seq:N`, `tag:NAME`, a time, `-15m`, ...), resolved
    /// again at every open.
    Point(String),
    Overlay(String),
}

impl Node {
    pub fn is_dir(&self) -> bool {
        !matches!(self, Node::Image(..))
    }

    /// The directory holding this node (the root is its own parent).
    pub fn parent(&self) -> Node {
        match self {
            Node::Root | Node::Group(_) => Node::Root,
            Node::Disk(d) => Node::Group(d.group.clone()),
            Node::At(d) | Node::Overlays(d) | Node::Image(d, Image::Latest) => {
                Node::Disk(d.clone())
            }
            Node::Image(d, Image::Point(_)) => Node::At(d.clone()),
            Node::Image(d, Image::Overlay(_)) => Node::Overlays(d.clone()),
        }
    }

    /// The export an image file serves.
    pub fn export_name(&self) -> Option<ExportName> {
        let Node::Image(d, image) = self else {
            return None;
        };
        Some(ExportName {
            group: d.group.clone(),
            disk: d.disk.clone(),
            target: match image {
                Image::Latest => Target::Latest,
                Image::Point(p) => Target::Point(p.clone()),
                Image::Overlay(o) => Target::Overlay(o.clone()),
            },
        })
    }
}

struct Entry {
    node: Node,
    /// Lookups the kernel has not forgotten yet.
    lookups: u64,
}

#[derive(Default)]
struct Inner {
    by_node: HashMap<Node, u64>,
    by_ino: HashMap<u64, Entry>,
    next: u64,
}

impl Inner {
    fn get_or_insert(&mut self, node: Node) -> u64 {
        if let Some(&ino) = self.by_node.get(&node) {
            return ino;
        }
        if self.by_ino.len() >= SWEEP_ABOVE {
            self.sweep();
        }
        let ino = self.next;
        self.next += 1;
        self.by_node.insert(node.clone(), ino);
        self.by_ino.insert(ino, Entry { node, lookups: 0 });
        ino
    }

    /// Drop every node the kernel holds no reference to (the root stays).
    fn sweep(&mut self) {
        let by_node = &mut self.by_node;
        self.by_ino.retain(|&ino, e| {
            let keep = ino == ROOT_INO || e.lookups > 0;
            if !keep {
                by_node.remove(&e.node);
            }
            keep
        });
    }
}

/// Inode numbers <-> nodes, shared by all of fuser's threads.
pub struct Inodes {
    inner: Mutex<Inner>,
}

impl Default for Inodes {
    fn default() -> Self {
        Self::new()
    }
}

impl Inodes {
    pub fn new() -> Inodes {
        let mut inner = Inner {
            next: ROOT_INO,
            ..Default::default()
        };
        inner.get_or_insert(Node::Root);
        Inodes {
            inner: Mutex::new(inner),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("inode table lock")
    }

    pub fn node(&self, ino: u64) -> Option<Node> {
        self.lock().by_ino.get(&ino).map(|e| e.node.clone())
    }

    /// The number of a node, without taking a reference (READDIR entries, `..`).
    pub fn ino(&self, node: &Node) -> u64 {
        let mut inner = self.lock();
        match inner.by_node.get(node) {
            Some(&ino) => ino,
            None => inner.get_or_insert(node.clone()),
        }
    }

    /// The number of a node for a LOOKUP reply: the kernel now holds one more reference.
    pub fn lookup(&self, node: Node) -> u64 {
        let mut inner = self.lock();
        let ino = inner.get_or_insert(node);
        if let Some(e) = inner.by_ino.get_mut(&ino) {
            e.lookups += 1;
        }
        ino
    }

    /// The kernel dropped `n` references; a node left with none is forgotten.
    pub fn forget(&self, ino: u64, n: u64) {
        if ino == ROOT_INO {
            return;
        }
        let mut inner = self.lock();
        let Some(e) = inner.by_ino.get_mut(&ino) else {
            return;
        };
        e.lookups = e.lookups.saturating_sub(n);
        if e.lookups == 0 {
            let e = inner.by_ino.remove(&ino).expect("present");
            inner.by_node.remove(&e.node);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().by_ino.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disk() -> Disk {
        Disk {
            group: "g".into(),
            disk: "d".into(),
        }
    }

    #[test]
    fn numbers_are_stable_until_forgotten_and_never_reused() {
        let t = Inodes::new();
        assert_eq!(t.node(ROOT_INO), Some(Node::Root));
        let img = Node::Image(disk(), Image::Point("seq:5".into()));
        let a = t.lookup(img.clone());
        assert_eq!(t.lookup(img.clone()), a);
        assert_eq!(t.ino(&img), a);
        assert_eq!(t.node(a), Some(img.clone()));
        t.forget(a, 1);
        assert_eq!(t.node(a), Some(img.clone()), "one lookup still held");
        t.forget(a, 1);
        assert_eq!(t.node(a), None);
        let b = t.lookup(img.clone());
        assert!(b > a, "numbers are not reused");
        t.forget(ROOT_INO, 100);
        assert_eq!(t.node(ROOT_INO), Some(Node::Root));
    }

    #[test]
    fn sweep_drops_only_unreferenced_nodes() {
        let t = Inodes::new();
        let held = t.lookup(Node::Group("held".into()));
        for i in 0..SWEEP_ABOVE + 10 {
            t.ino(&Node::Group(format!("listed{i}")));
        }
        assert!(t.len() < SWEEP_ABOVE + 10);
        assert_eq!(t.node(held), Some(Node::Group("held".into())));
        assert_eq!(t.node(ROOT_INO), Some(Node::Root));
    }

    #[test]
    fn parents_and_export_names() {
        let d = disk();
        let img = Node::Image(d.clone(), Image::Overlay("t1".into()));
        assert_eq!(img.parent(), Node::Overlays(d.clone()));
        assert_eq!(img.parent().parent(), Node::Disk(d.clone()));
        assert_eq!(
            img.export_name().unwrap().to_string(),
            "g/d@overlay:t1".to_string()
        );
        assert_eq!(
            Node::Image(d.clone(), Image::Point("tag:v1".into()))
                .export_name()
                .unwrap()
                .to_string(),
            "g/d@tag:v1"
        );
        assert_eq!(Node::Root.parent(), Node::Root);
        assert!(Node::At(d).is_dir());
    }
}
