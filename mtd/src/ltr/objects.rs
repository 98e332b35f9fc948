//! The object store behind long-term retention, with a blocking face: views read from NBD and
//! FUSE threads, the archiver from a job thread. `object_store` is async, so the store runs on a
//! small runtime of its own and callers wait on a channel (which works from any thread, inside
//! another runtime or not, where `block_on` would panic).

use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use futures_util::StreamExt;
use object_store::path::Path as Key;
use object_store::{ObjectStore, PutPayload};

use super::error::{LtrError, Result};
use super::lock::Retain;
use super::s3::{S3Failure, SignedS3};

/// One object as a listing shows it.
#[derive(Clone, Debug)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
    pub modified_ms: u64,
}

/// Puts under way ([`Objects::put_many_start`]).
pub struct Pending(std::sync::mpsc::Receiver<Result<()>>);

impl Pending {
    /// Wait until every put is done: the first error, if any.
    pub fn wait(self) -> Result<()> {
        self.0.recv().expect("the object store runtime answers")
    }
}

pub struct Objects {
    store: Arc<dyn ObjectStore>,
    /// The URL as given, for messages (never carries a secret: credentials come from the
    /// environment, see `open`).
    url: String,
    /// The directory of a `file://` store: `object_store` writes its files without fsync, so
    /// [`Objects::flush`] makes them durable itself.
    local_root: Option<std::path::PathBuf>,
    /// An S3 store's settings and bucket, for the requests `object_store` cannot make
    /// ([`SignedS3`]).
    s3: Option<(object_store::aws::AmazonS3Builder, String)>,
    /// Set by [`Objects::require_object_lock`]: writes that lock, versioned deletes.
    signed: Option<Arc<SignedS3>>,
    rt: Option<tokio::runtime::Runtime>,
}

/// What [`Objects::delete_versions`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deleted {
    /// Every version is gone (or there was none).
    Gone,
    /// A version is still locked: it stays, for a later collection.
    Locked,
}

impl Objects {
    /// `file:///abs/dir` (made 0700 if missing) or `s3://BUCKET[/PREFIX]?key=value&...` where
    /// the keys are `object_store`'s S3 settings (`endpoint`, `region`, `allow_http`, ...) and
    /// credentials come from the standard `AWS_*` environment variables.
    pub fn open(url: &str) -> Result<Objects> {
        let invalid = |why: String| LtrError::Invalid {
            what: "long-term store URL",
            why: format!("{url}: {why}"),
        };
        let mut local_root = None;
        let mut s3 = None;
        let store: Arc<dyn ObjectStore> = if let Some(path) = url.strip_prefix("file://") {
            let dir = Path::new(path);
            if !dir.is_absolute() {
                return Err(invalid("a file:// URL needs an absolute path".into()));
            }
            std::fs::create_dir_all(dir).map_err(LtrError::io("create", dir))?;
            crate::access::make_private_dir(dir).map_err(LtrError::io("chmod 0700", dir))?;
            local_root = Some(dir.to_path_buf());
            Arc::new(
                object_store::local::LocalFileSystem::new_with_prefix(dir)
                    .map_err(|e| invalid(e.to_string()))?,
            )
        } else if url.starts_with("s3://") {
            let (base, query) = url.split_once('?').unwrap_or((url, ""));
            let mut b = object_store::aws::AmazonS3Builder::from_env().with_url(base);
            for (k, v) in form_urlencoded::parse(query.as_bytes()) {
                let key: object_store::aws::AmazonS3ConfigKey = k
                    .parse()
                    .map_err(|e| invalid(format!("setting {k:?}: {e}")))?;
                b = b.with_config(key, v.into_owned());
            }
            let store = b.clone().build().map_err(|e| invalid(e.to_string()))?;
            // `with_url` is only parsed by `build`: the bucket is the URL's host.
            let bucket = base["s3://".len()..].split('/').next().unwrap_or_default();
            s3 = Some((b, bucket.to_string()));
            Arc::new(store)
        } else {
            return Err(invalid("expected file:///DIR or s3://BUCKET".into()));
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("rewind-ltr-io")
            .enable_all()
            .build()
            .map_err(LtrError::io("start the object store runtime for", url))?;
        Ok(Objects {
            store,
            url: url.split('?').next().unwrap_or(url).to_string(),
            local_root,
            s3,
            signed: None,
            rt: Some(rt),
        })
    }

    /// Turn on Object Lock's requests, once the bucket is checked to have Object Lock enabled:
    /// refused, naming the store, for a `file://` store, S3 settings without static credentials
    /// or a bucket without Object Lock.
    pub fn require_object_lock(&mut self) -> Result<()> {
        let invalid = |why: String| LtrError::Invalid {
            what: "--ltr-object-lock",
            why,
        };
        let Some((b, bucket)) = &self.s3 else {
            return Err(invalid(format!(
                "{} is not an S3 store: only an S3 bucket with Object Lock enabled can lock \
                 objects",
                self.url
            )));
        };
        let signed = Arc::new(
            SignedS3::from_builder(b, bucket)
                .map_err(|why| invalid(format!("{}: {why}", self.url)))?,
        );
        let s = signed.clone();
        let enabled = self
            .run(async move { s.lock_enabled().await })
            .map_err(self.s3_err("get the Object Lock configuration of", "(bucket)"))?;
        if !enabled {
            return Err(invalid(format!(
                "bucket {} ({}) does not have Object Lock enabled: create the bucket with \
                 Object Lock (it cannot be turned on for objects already there without \
                 versioning), or run without --ltr-object-lock",
                signed.bucket, self.url
            )));
        }
        self.signed = Some(signed);
        Ok(())
    }

    /// Whether [`Objects::require_object_lock`] succeeded.
    pub fn locking(&self) -> bool {
        self.signed.is_some()
    }

    fn s3_err(&self, op: &'static str, key: &str) -> impl FnOnce(S3Failure) -> LtrError {
        let (url, key) = (self.url.clone(), key.to_string());
        move |source| LtrError::S3 {
            url,
            op,
            key,
            source,
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Make every object stored so far durable. An S3 PUT is durable once answered; a `file://`
    /// store's files and renames are only in the page cache until this `syncfs` of its file
    /// system (one call for a whole archive's chunks, where an fsync per chunk file would cost
    /// thousands). Called before a manifest is written, so that a power cut never leaves a
    /// manifest naming chunks that were lost, and after it.
    pub fn flush(&self) -> Result<()> {
        let Some(root) = &self.local_root else {
            return Ok(());
        };
        let dir = std::fs::File::open(root).map_err(LtrError::io("open", root))?;
        nix::unistd::syncfs(std::os::fd::AsRawFd::as_raw_fd(&dir))
            .map_err(|e| LtrError::io("syncfs", root)(std::io::Error::from(e)))
    }

    /// Run `fut` on the store's runtime and wait for it.
    fn run<T: Send + 'static>(&self, fut: impl Future<Output = T> + Send + 'static) -> T {
        self.start(fut)
            .recv()
            .expect("the object store runtime answers")
    }

    /// Start `fut` on the store's runtime; its result comes on the channel.
    fn start<T: Send + 'static>(
        &self,
        fut: impl Future<Output = T> + Send + 'static,
    ) -> std::sync::mpsc::Receiver<T> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.rt
            .as_ref()
            .expect("runtime until drop")
            .spawn(async move {
                let _ = tx.send(fut.await);
            });
        rx
    }

    fn err(&self, op: &'static str, key: &str) -> impl FnOnce(object_store::Error) -> LtrError {
        let (url, key) = (self.url.clone(), key.to_string());
        move |source| LtrError::Store {
            url,
            op,
            key,
            source: Box::new(source),
        }
    }

    /// Store `bytes` under `key`, locked as `retain` says (Object Lock on: see
    /// [`Objects::require_object_lock`]) or not (None).
    pub fn put(&self, key: &str, bytes: Vec<u8>, retain: Option<Retain>) -> Result<()> {
        self.put_many_start(vec![(key.to_string(), bytes)], 1, retain)
            .wait()
    }

    /// Store every (key, bytes), at most `parallel` at a time, locked as `retain` says,
    /// without waiting: the caller goes on (reads and compresses the next chunks) while these
    /// are stored, and waits on the [`Pending`] before it counts on them.
    pub fn put_many_start(
        &self,
        items: Vec<(String, Vec<u8>)>,
        parallel: usize,
        retain: Option<Retain>,
    ) -> Pending {
        let store = self.store.clone();
        let signed = self.signed.clone();
        let url = self.url.clone();
        Pending(self.start(async move {
            let sem = Arc::new(tokio::sync::Semaphore::new(parallel.max(1)));
            let mut set = tokio::task::JoinSet::new();
            for (key, bytes) in items {
                let permit = sem.clone().acquire_owned().await.expect("semaphore open");
                let (store, signed, url) = (store.clone(), signed.clone(), url.clone());
                set.spawn(async move {
                    let r = match (retain, &signed) {
                        (Some(retain), Some(s)) => {
                            s.put_locked(&key, bytes, retain)
                                .await
                                .map_err(|source| LtrError::S3 {
                                    url,
                                    op: "put (locked)",
                                    key,
                                    source,
                                })
                        }
                        (Some(_), None) => Err(LtrError::Invalid {
                            what: "object lock",
                            why: format!("{url}: {key}: a locked put without Object Lock on"),
                        }),
                        (None, _) => store
                            .put(&Key::from(key.as_str()), PutPayload::from(bytes))
                            .await
                            .map(|_| ())
                            .map_err(|source| LtrError::Store {
                                url,
                                op: "put",
                                key,
                                source: Box::new(source),
                            }),
                    };
                    drop(permit);
                    r
                });
            }
            let mut first = None;
            while let Some(r) = set.join_next().await {
                if let Err(e) = r.expect("put task") {
                    first.get_or_insert(e);
                }
            }
            first.map_or(Ok(()), Err)
        }))
    }

    /// Lock each of `keys` (its current version) at least as long as `retain` says, at most
    /// `parallel` at a time (Object Lock on): until when each is locked, in order, or the first
    /// failure, naming its object.
    pub fn retain_many(
        &self,
        keys: Vec<String>,
        parallel: usize,
        retain: Retain,
    ) -> Result<Vec<u64>> {
        let Some(signed) = self.signed.clone() else {
            return Ok(vec![0; keys.len()]);
        };
        let n = keys.len();
        let url = self.url.clone();
        self.run(async move {
            let sem = Arc::new(tokio::sync::Semaphore::new(parallel.max(1)));
            let mut set = tokio::task::JoinSet::new();
            for (i, key) in keys.into_iter().enumerate() {
                let permit = sem.clone().acquire_owned().await.expect("semaphore open");
                let (signed, url) = (signed.clone(), url.clone());
                set.spawn(async move {
                    let r = signed.extend_retention(&key, retain).await;
                    drop(permit);
                    r.map(|until| (i, until)).map_err(|source| LtrError::S3 {
                        url,
                        op: "extend the lock of",
                        key,
                        source,
                    })
                });
            }
            let mut first = None;
            let mut until = vec![0; n];
            while let Some(r) = set.join_next().await {
                match r.expect("retention task") {
                    Ok((i, t)) => until[i] = t,
                    Err(e) => {
                        first.get_or_insert(e);
                    }
                }
            }
            first.map_or(Ok(until), Err)
        })
    }

    /// The object's bytes, or None if there is none.
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let store = self.store.clone();
        let k = Key::from(key);
        let r = self.run(async move {
            match store.get(&k).await {
                Ok(g) => g.bytes().await.map(|b| Some(b.to_vec())),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        });
        r.map_err(self.err("get", key))
    }

    pub fn exists(&self, key: &str) -> Result<bool> {
        let store = self.store.clone();
        let k = Key::from(key);
        let r = self.run(async move {
            match store.head(&k).await {
                Ok(_) => Ok(true),
                Err(object_store::Error::NotFound { .. }) => Ok(false),
                Err(e) => Err(e),
            }
        });
        r.map_err(self.err("head", key))
    }

    /// Every object under `prefix` (a folder: `chunks`, `points/G`).
    pub fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        let store = self.store.clone();
        let p = Key::from(prefix);
        let r = self.run(async move {
            let mut out = Vec::new();
            let mut s = store.list(Some(&p));
            while let Some(m) = s.next().await {
                let m = m?;
                out.push(ObjectInfo {
                    key: m.location.to_string(),
                    size: m.size,
                    modified_ms: m.last_modified.timestamp_millis().max(0) as u64,
                });
            }
            Ok(out)
        });
        r.map_err(self.err("list", prefix))
    }

    /// Delete an object and (Object Lock on) every version of it, newest first: the bucket is
    /// versioned, and a plain delete would only hide the data behind a delete marker. Stops at
    /// a version still locked ([`Deleted::Locked`]); without Object Lock, a plain delete.
    pub fn delete_versions(&self, key: &str) -> Result<Deleted> {
        let Some(signed) = self.signed.clone() else {
            self.delete(key)?;
            return Ok(Deleted::Gone);
        };
        // Bounded: a key rewritten that often is not one of ours.
        for _ in 0..1000 {
            let store = self.store.clone();
            let k = Key::from(key);
            let head = self.run(async move {
                match store.head(&k).await {
                    Ok(m) => Ok(Some(m.version)),
                    Err(object_store::Error::NotFound { .. }) => Ok(None),
                    Err(e) => Err(e),
                }
            });
            let version = match head.map_err(self.err("head", key))? {
                None => return Ok(Deleted::Gone),
                Some(Some(v)) => v,
                Some(None) => {
                    // An unversioned answer: the bucket is not versioned after all.
                    self.delete(key)?;
                    return Ok(Deleted::Gone);
                }
            };
            let (s, k) = (signed.clone(), key.to_string());
            match self.run(async move { s.delete_version(&k, &version).await }) {
                Ok(()) => {}
                Err(e) if e.is_locked() => return Ok(Deleted::Locked),
                Err(e) => return Err(self.s3_err("delete a version of", key)(e)),
            }
        }
        Err(LtrError::Invalid {
            what: "object",
            why: format!("{}: {key} has more than 1000 versions", self.url),
        })
    }

    /// Delete an object (one already gone is not an error).
    pub fn delete(&self, key: &str) -> Result<()> {
        let store = self.store.clone();
        let k = Key::from(key);
        let r = self.run(async move {
            match store.delete(&k).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(e),
            }
        });
        r.map_err(self.err("delete", key))
    }
}

impl Drop for Objects {
    fn drop(&mut self) {
        // Dropping a runtime inside another one's context panics; this never waits.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}
