//! State in an object store (the lake's bucket): create-if-absent is `PutMode::Create` (`If-None-Match: *`
//! on S3), compare-and-swap is `PutMode::Update` (`If-Match: <ETag>`), an append is a compare-and-swap of
//! the whole object retried until it wins.
//!
//! Callers are synchronous (key lookups under a lock, the flusher's ticks); each call runs on a runtime of
//! this store's own (one worker thread) and the caller waits for it, which works from any thread, a tokio
//! worker's included.

use std::io;
use std::sync::Arc;

use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, UpdateVersion};

use crate::{Backend, Listed, Stored, Version};

/// A prefix of an object store.
pub struct Objects {
    store: Arc<dyn ObjectStore>,
    root: String,
    /// What [`Backend::place`] shows before a key (`s3://bucket/prefix`).
    shown: String,
    runtime: Option<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for Objects {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Objects").field("at", &self.shown).finish()
    }
}

impl Drop for Objects {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl Objects {
    /// State under `root` (`_tacet/state`) of `store`; `shown` is how messages name the store.
    pub fn new(store: Arc<dyn ObjectStore>, root: &str, shown: &str) -> io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("tacet-state")
            .enable_all()
            .build()?;
        let root = root.trim_matches('/').to_owned();
        Ok(Self {
            shown: format!("{}/{root}", shown.trim_end_matches('/')),
            store,
            root,
            runtime: Some(runtime),
        })
    }

    fn path(&self, key: &str) -> ObjectPath {
        let key = key.trim_matches('/');
        match (self.root.is_empty(), key.is_empty()) {
            (true, _) => ObjectPath::from(key),
            (false, true) => ObjectPath::from(self.root.as_str()),
            (false, false) => ObjectPath::from(format!("{}/{key}", self.root)),
        }
    }

    /// Runs `f` on this store's runtime and waits for it.
    fn run<T: Send + 'static>(
        &self,
        f: impl std::future::Future<Output = io::Result<T>> + Send + 'static,
    ) -> io::Result<T> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let rt = self.runtime.as_ref().expect("runtime until drop");
        rt.spawn(async move {
            let _ = tx.send(f.await);
        });
        rx.recv()
            .map_err(|_| io::Error::other("the state store's runtime stopped"))?
    }

    fn fail(&self, key: &str, e: object_store::Error) -> io::Error {
        let kind = match e {
            object_store::Error::NotFound { .. } => io::ErrorKind::NotFound,
            object_store::Error::AlreadyExists { .. } => io::ErrorKind::AlreadyExists,
            object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. } => io::ErrorKind::PermissionDenied,
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, format!("{}: {e}", self.place(key)))
    }

    /// The object's bytes and version, or `None`.
    fn get_now(&self, key: &str) -> io::Result<Option<Stored>> {
        let (store, path) = (self.store.clone(), self.path(key));
        let got = self.run(async move {
            match store.get(&path).await {
                Ok(r) => {
                    let version = Version {
                        e_tag: r.meta.e_tag.clone(),
                        version: r.meta.version.clone(),
                    };
                    let bytes = r.bytes().await.map_err(io::Error::other)?;
                    Ok(Ok(Some((bytes.to_vec(), version))))
                }
                Err(object_store::Error::NotFound { .. }) => Ok(Ok(None)),
                Err(e) => Ok(Err(e)),
            }
        })?;
        Ok(got
            .map_err(|e| self.fail(key, e))?
            .map(|(bytes, version)| Stored { bytes, version }))
    }

    /// Puts with `mode`; `Ok(false)` when its precondition did not hold.
    fn put_mode(&self, key: &str, bytes: &[u8], mode: PutMode) -> io::Result<bool> {
        let (store, path) = (self.store.clone(), self.path(key));
        let payload = bytes::Bytes::copy_from_slice(bytes);
        let put = self.run(async move {
            let opts = PutOptions {
                mode,
                ..Default::default()
            };
            Ok(store.put_opts(&path, payload.into(), opts).await)
        })?;
        match put {
            Ok(_) => Ok(true),
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) => Ok(false),
            Err(e) => Err(self.fail(key, e)),
        }
    }
}

impl Backend for Objects {
    fn get(&self, key: &str) -> io::Result<Option<Stored>> {
        self.get_now(key)
    }

    fn head(&self, key: &str) -> io::Result<Option<Version>> {
        let (store, path) = (self.store.clone(), self.path(key));
        let meta = self.run(async move { Ok(store.head(&path).await) })?;
        match meta {
            Ok(m) => Ok(Some(Version {
                e_tag: m.e_tag,
                version: m.version,
            })),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.fail(key, e)),
        }
    }

    fn create(&self, key: &str, bytes: &[u8]) -> io::Result<bool> {
        self.put_mode(key, bytes, PutMode::Create)
    }

    fn replace(&self, key: &str, bytes: &[u8], expected: &Version) -> io::Result<bool> {
        let version = UpdateVersion {
            e_tag: expected.e_tag.clone(),
            version: expected.version.clone(),
        };
        self.put_mode(key, bytes, PutMode::Update(version))
    }

    fn put(&self, key: &str, bytes: &[u8]) -> io::Result<()> {
        self.put_mode(key, bytes, PutMode::Overwrite).map(drop)
    }

    fn append_with(
        &self,
        key: &str,
        f: &mut dyn FnMut(Option<&str>) -> io::Result<String>,
    ) -> io::Result<String> {
        crate::append_by_swapping(self, key, f)
    }

    fn delete(&self, key: &str) -> io::Result<bool> {
        let (store, path) = (self.store.clone(), self.path(key));
        let done = self.run(async move {
            Ok(match store.head(&path).await {
                Ok(_) => store.delete(&path).await.map(|()| true),
                Err(object_store::Error::NotFound { .. }) => Ok(false),
                Err(e) => Err(e),
            })
        })?;
        done.map_err(|e| self.fail(key, e))
    }

    fn delete_all(&self, prefix: &str) -> io::Result<usize> {
        let (store, path) = (self.store.clone(), self.path(prefix));
        let done = self.run(async move {
            let listed: Vec<_> = match store.list(Some(&path)).try_collect().await {
                Ok(l) => l,
                Err(e) => return Ok(Err(e)),
            };
            for meta in &listed {
                match store.delete(&meta.location).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Ok(Err(e)),
                }
            }
            Ok(Ok(listed.len()))
        })?;
        done.map_err(|e| self.fail(prefix, e))
    }

    fn list(&self, prefix: &str) -> io::Result<Vec<Listed>> {
        let (store, path) = (self.store.clone(), self.path(prefix));
        let listed = self.run(async move { Ok(store.list_with_delimiter(Some(&path)).await) })?;
        let listed = match listed {
            Ok(l) => l,
            Err(object_store::Error::NotFound { .. }) => return Ok(Vec::new()),
            Err(e) => return Err(self.fail(prefix, e)),
        };
        let name = |p: &ObjectPath| p.filename().map(str::to_owned);
        Ok(listed
            .common_prefixes
            .iter()
            .filter_map(|p| name(p).map(|name| Listed { name, is_dir: true }))
            .chain(listed.objects.iter().filter_map(|o| {
                name(&o.location).map(|name| Listed {
                    name,
                    is_dir: false,
                })
            }))
            .collect())
    }

    fn place(&self, key: &str) -> String {
        let key = key.trim_matches('/');
        if key.is_empty() {
            self.shown.clone()
        } else {
            format!("{}/{key}", self.shown)
        }
    }

    fn local_path(&self, _key: &str) -> Option<std::path::PathBuf> {
        None
    }
}
