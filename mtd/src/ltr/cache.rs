//! A bounded local cache of chunks read from the object store: plain bytes in one file per chunk
//! under the cache directory, least recently used evicted past the size limit. Entries are
//! checked against their hash on every read (BLAKE3 of 64 KiB is microseconds), so a damaged
//! cache file is dropped and fetched again rather than served.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::chunk::{self, Hash};
use super::error::{LtrError, Result};

pub struct Cache {
    dir: PathBuf,
    limit: u64,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// hash -> (size, last use)
    entries: HashMap<Hash, (u64, u64)>,
    bytes: u64,
    clock: u64,
}

impl Cache {
    /// A cache in `dir` (emptied: what an earlier run left is not trusted to be within the
    /// limit) holding at most `limit` bytes.
    pub fn open(dir: &Path, limit: u64) -> Result<Cache> {
        if dir.exists() {
            std::fs::remove_dir_all(dir).map_err(LtrError::io("empty the chunk cache", dir))?;
        }
        std::fs::create_dir_all(dir).map_err(LtrError::io("create the chunk cache", dir))?;
        crate::access::make_private_dir(dir).map_err(LtrError::io("chmod 0700", dir))?;
        Ok(Cache {
            dir: dir.to_path_buf(),
            limit,
            state: Mutex::default(),
        })
    }

    fn path(&self, h: &Hash) -> PathBuf {
        self.dir.join(chunk::to_hex(h))
    }

    /// The chunk's plain bytes if cached (and intact).
    pub fn get(&self, h: &Hash) -> Option<Vec<u8>> {
        {
            let mut st = self.state.lock().expect("cache lock");
            st.clock += 1;
            let now = st.clock;
            st.entries.get_mut(h)?.1 = now;
        }
        match std::fs::read(self.path(h)) {
            Ok(b) if chunk::hash(&b) == *h => Some(b),
            _ => {
                tracing::warn!(chunk = %chunk::to_hex(h), "a cached chunk is damaged or gone: fetching it again");
                self.remove(h);
                None
            }
        }
    }

    /// Keep `plain` (already checked against `h`), evicting the least recently used past the
    /// limit. A failure to write only costs a later fetch.
    pub fn put(&self, h: &Hash, plain: &[u8]) {
        let size = plain.len() as u64;
        if size > self.limit {
            return;
        }
        let path = self.path(h);
        let tmp = self.dir.join(format!(".{}.tmp", chunk::to_hex(h)));
        if std::fs::write(&tmp, plain)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .is_err()
        {
            let _ = std::fs::remove_file(&tmp);
            return;
        }
        let mut evict = Vec::new();
        {
            let mut st = self.state.lock().expect("cache lock");
            st.clock += 1;
            let now = st.clock;
            if st.entries.insert(*h, (size, now)).is_none() {
                st.bytes += size;
            }
            while st.bytes > self.limit {
                let Some((old, (sz, _))) = st
                    .entries
                    .iter()
                    .min_by_key(|(_, (_, used))| *used)
                    .map(|(k, v)| (*k, *v))
                else {
                    break;
                };
                st.entries.remove(&old);
                st.bytes -= sz;
                evict.push(old);
            }
        }
        for old in evict {
            let _ = std::fs::remove_file(self.path(&old));
        }
    }

    fn remove(&self, h: &Hash) {
        let mut st = self.state.lock().expect("cache lock");
        if let Some((sz, _)) = st.entries.remove(h) {
            st.bytes -= sz;
        }
        drop(st);
        let _ = std::fs::remove_file(self.path(h));
    }

    /// Bytes held.
    pub fn bytes(&self) -> u64 {
        self.state.lock().expect("cache lock").bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_least_recently_used_and_drops_damaged_entries() {
        let dir = tempfile::tempdir().unwrap();
        let c = Cache::open(&dir.path().join("c"), 250).unwrap();
        let (a, b, d) = (vec![1u8; 100], vec![2u8; 100], vec![3u8; 100]);
        let (ha, hb, hd) = (chunk::hash(&a), chunk::hash(&b), chunk::hash(&d));
        c.put(&ha, &a);
        c.put(&hb, &b);
        assert_eq!(c.get(&ha), Some(a.clone()));
        c.put(&hd, &d);
        assert_eq!(c.bytes(), 200);
        assert_eq!(c.get(&hb), None, "b was the least recently used");
        assert_eq!(c.get(&ha), Some(a));
        std::fs::write(c.path(&hd), b"damaged").unwrap();
        assert_eq!(c.get(&hd), None, "a damaged entry is not served");
        assert_eq!(c.bytes(), 100);
    }
}
