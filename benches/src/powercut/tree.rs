//! The directory tree of the power-cut file system, twice: the live entries (what lookups and
//! readdir see now) and the durable entries (what the last fsync of each directory made
//! durable).
//!
//! Every create, mkdir, rename and unlink changes only the live entries of the directories it
//! touches; fsync of a directory copies its live entries to its durable ones. A power cut makes
//! the durable tree, as reachable from the root, the live one. A rename between two directories
//! is durable on each side only once that side is synced, so a cut between the two syncs can
//! leave a file under both names (a hard link, as on file systems without a journal) or under
//! neither; a directory reachable twice that way keeps only its first place in a walk from the
//! root (directories cannot be hard links).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::ffi::{OsStr, OsString};

/// The entries of one directory: name -> inode.
pub type Entries = BTreeMap<OsString, u64>;

pub struct Tree {
    live: HashMap<u64, Entries>,
    durable: HashMap<u64, Entries>,
}

impl Tree {
    /// A tree holding only the root directory `root`.
    pub fn new(root: u64) -> Tree {
        let mut t = Tree {
            live: HashMap::new(),
            durable: HashMap::new(),
        };
        t.add_dir(root);
        t
    }

    /// A new directory inode: empty, live and durable (whether it exists at all after a cut
    /// depends on its parent's entries).
    pub fn add_dir(&mut self, ino: u64) {
        self.live.insert(ino, Entries::new());
        self.durable.insert(ino, Entries::new());
    }

    /// The live entries of `dir`, `None` if it is no (live) directory.
    pub fn entries(&self, dir: u64) -> Option<&Entries> {
        self.live.get(&dir)
    }

    pub fn get(&self, dir: u64, name: &OsStr) -> Option<u64> {
        self.live.get(&dir)?.get(name).copied()
    }

    /// Adds or replaces a live entry; returns the inode it replaced.
    pub fn insert(&mut self, dir: u64, name: &OsStr, ino: u64) -> Option<u64> {
        self.live
            .get_mut(&dir)
            .expect("checked directory")
            .insert(name.to_os_string(), ino)
    }

    pub fn remove(&mut self, dir: u64, name: &OsStr) -> Option<u64> {
        self.live.get_mut(&dir)?.remove(name)
    }

    /// fsync of a directory: its live entries become durable.
    pub fn sync(&mut self, dir: u64) {
        if let Some(e) = self.live.get(&dir) {
            self.durable.insert(dir, e.clone());
        }
    }

    /// Entry changes of `dir` not yet durable (added, removed or pointing elsewhere).
    pub fn unsynced_entries(&self, dir: u64) -> usize {
        let (Some(live), Some(durable)) = (self.live.get(&dir), self.durable.get(&dir)) else {
            return 0;
        };
        let changed = live.iter().filter(|(n, i)| durable.get(*n) != Some(i));
        let gone = durable.keys().filter(|n| !live.contains_key(*n));
        changed.count() + gone.count()
    }

    /// Whether any live or durable entry names `ino`.
    pub fn is_linked(&self, ino: u64) -> bool {
        self.live
            .values()
            .chain(self.durable.values())
            .any(|e| e.values().any(|&i| i == ino))
    }

    /// Whether `ino` is a directory of this tree (live or durable).
    pub fn is_dir(&self, ino: u64) -> bool {
        self.live.contains_key(&ino) || self.durable.contains_key(&ino)
    }

    /// Forgets a directory inode that nothing names any more.
    pub fn drop_dir(&mut self, ino: u64) {
        self.live.remove(&ino);
        self.durable.remove(&ino);
    }

    /// The power cut: the durable tree as reachable from `root` becomes the live one. Returns
    /// every inode still reachable (the root included) and how many live entries were dropped
    /// (unsynced ones, and every entry of a directory the cut made unreachable).
    pub fn cut(&mut self, root: u64) -> (HashSet<u64>, usize) {
        let mut reachable = HashSet::from([root]);
        let mut queue = VecDeque::from([root]);
        let mut live = HashMap::new();
        while let Some(dir) = queue.pop_front() {
            let mut entries = self.durable.get(&dir).cloned().unwrap_or_default();
            entries.retain(|_, ino| {
                let is_dir = self.durable.contains_key(ino);
                if is_dir && reachable.contains(ino) {
                    return false; // a directory's second place: dropped
                }
                if reachable.insert(*ino) && is_dir {
                    queue.push_back(*ino);
                }
                true
            });
            live.insert(dir, entries);
        }
        let dropped = self
            .live
            .iter()
            .map(|(dir, entries)| {
                let kept = live.get(dir);
                entries
                    .iter()
                    .filter(|(name, ino)| kept.and_then(|k| k.get(*name)) != Some(*ino))
                    .count()
            })
            .sum();
        self.durable = live.clone();
        self.live = live;
        (reachable, dropped)
    }
}

#[cfg(test)]
mod tests {
    use super::Tree;
    use std::ffi::OsStr;

    #[test]
    fn only_synced_entries_survive_a_cut() {
        let mut t = Tree::new(1);
        t.add_dir(2);
        t.insert(1, OsStr::new("d"), 2);
        t.insert(2, OsStr::new("f"), 3);
        t.sync(2); // d's entries, but not d itself
        let (reach, dropped) = t.cut(1);
        assert_eq!(dropped, 2);
        assert_eq!(reach.len(), 1);
        assert!(t.get(1, OsStr::new("d")).is_none());

        t.add_dir(2);
        t.insert(1, OsStr::new("d"), 2);
        t.insert(2, OsStr::new("f"), 3);
        t.sync(1);
        t.sync(2);
        t.insert(2, OsStr::new("g"), 4);
        t.remove(2, OsStr::new("f"));
        assert_eq!(t.unsynced_entries(2), 2);
        let (reach, _) = t.cut(1);
        assert_eq!(t.get(2, OsStr::new("f")), Some(3));
        assert!(t.get(2, OsStr::new("g")).is_none());
        assert!(reach.contains(&3) && !reach.contains(&4));
    }

    #[test]
    fn a_directory_renamed_with_both_sides_durable_has_one_place() {
        let mut t = Tree::new(1);
        t.add_dir(2);
        t.add_dir(3);
        t.insert(1, OsStr::new("a"), 2);
        t.insert(1, OsStr::new("b"), 3);
        t.insert(2, OsStr::new("x"), 4);
        t.add_dir(4);
        t.sync(1);
        t.sync(2);
        // Move a/x to b/x; sync b only: x is named twice durably.
        t.remove(2, OsStr::new("x"));
        t.insert(3, OsStr::new("x"), 4);
        t.sync(3);
        t.cut(1);
        let places = [t.get(2, OsStr::new("x")), t.get(3, OsStr::new("x"))];
        assert_eq!(places.iter().flatten().count(), 1, "{places:?}");
    }
}
