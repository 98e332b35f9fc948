//! Open files: each OPEN makes a fresh `Volume` (a read-only one frozen at the seq it resolved to
//! then, pinning it), and RELEASE drops it, which unpins.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::views::exports::Volume;

/// An open image file.
pub struct Handle {
    pub volume: Arc<Volume>,
    /// Opened for writing (only overlays can be).
    pub write: bool,
}

#[derive(Default)]
pub struct Handles {
    inner: Mutex<(u64, HashMap<u64, Arc<Handle>>)>,
}

impl Handles {
    pub fn insert(&self, volume: Volume, write: bool) -> u64 {
        let mut inner = self.inner.lock().expect("handle table lock");
        inner.0 += 1;
        let fh = inner.0;
        inner.1.insert(
            fh,
            Arc::new(Handle {
                volume: Arc::new(volume),
                write,
            }),
        );
        fh
    }

    /// The handle, cloned out so IO runs without the table locked.
    pub fn get(&self, fh: u64) -> Option<Arc<Handle>> {
        self.inner
            .lock()
            .expect("handle table lock")
            .1
            .get(&fh)
            .cloned()
    }

    pub fn remove(&self, fh: u64) -> Option<Arc<Handle>> {
        self.inner.lock().expect("handle table lock").1.remove(&fh)
    }
}
