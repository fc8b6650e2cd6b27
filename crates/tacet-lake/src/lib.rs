//! The lake: Parquet files on an object store, in Hive-style partitions per tenant, kind and day.
//!
//! ```text
//! <store root>/events/tenant=<id>/kind=<pageview|event|crash>/date=<YYYY-MM-DD>/part-<from>-<to>.parquet
//! ```
//!
//! `from` and `to` are the write-ahead-log sequence numbers the flush covered: a flush redone after a crash
//! writes the same names and replaces what it had half written, so no row is stored twice.
//!
//! The store is `LocalFileSystem` under the data directory by default, and any `object_store` backend
//! otherwise. Files are written whole with one `put` (a temporary file and a rename on local disk), so a
//! reader sees a file entirely or not at all, and the same code is correct on S3, which has no rename. On
//! local disk the file and its directories are fsynced before `write` returns: the caller deletes the
//! write-ahead log behind it. This crate accepts only [`tacet_privacy::EventBatch`]es: it cannot be handed
//! raw identifiers.

mod path;
mod writer;

use std::sync::Arc;

use object_store::local::LocalFileSystem;
use object_store::{ObjectStore, ObjectStoreExt};

pub use path::{EVENTS_ROOT, ParquetFilePath, PartitionKey, tenant_prefix};
pub use writer::{encode_parquet, writer_properties};

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong in the lake. Variants name the object, never the data.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("object store: {source} (at {path})")]
    Store {
        path: String,
        #[source]
        source: object_store::Error,
    },
    #[error("encoding Parquet for {path}: {source}")]
    Parquet {
        path: String,
        #[source]
        source: parquet::errors::ParquetError,
    },
    #[error("cannot fsync {path}: {source}")]
    Sync {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open the lake directory {path}: {source}")]
    Open {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// fsyncs a file written under `root` and every directory from its parent up to `root`, so that both its
/// bytes and its directory entries survive a power cut.
fn sync_local(root: &std::path::Path, rel: &str) -> std::io::Result<()> {
    let file = root.join(rel);
    std::fs::File::open(&file)?.sync_all()?;
    let mut dir = file.parent();
    while let Some(d) = dir {
        std::fs::File::open(d)?.sync_all()?;
        if d == root {
            break;
        }
        dir = d.parent();
    }
    Ok(())
}

/// The lake: an object store and the layout on it.
#[derive(Debug, Clone)]
pub struct Lake {
    store: Arc<dyn ObjectStore>,
    /// The directory behind a `LocalFileSystem` store, whose writes must be fsynced by hand.
    local_root: Option<std::path::PathBuf>,
}

impl Lake {
    /// A lake on any object store whose successful `put` is durable (S3, GCS, Azure, in-memory for tests).
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        Self {
            store,
            local_root: None,
        }
    }

    /// A lake on local disk under `dir` (created if missing).
    pub fn local(dir: &std::path::Path) -> Result<Self> {
        let open = |source| Error::Open {
            path: dir.display().to_string(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(open)?;
        let store = LocalFileSystem::new_with_prefix(dir).map_err(|e| Error::Open {
            path: dir.display().to_string(),
            source: std::io::Error::other(e.to_string()),
        })?;
        let root = std::fs::canonicalize(dir).map_err(open)?;
        Ok(Self {
            store: Arc::new(store),
            local_root: Some(root),
        })
    }

    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// Writes one batch as the partition's file for write-ahead-log records `from..=to` (replacing a file of
    /// the same name), durably; returns where it went.
    pub async fn write(
        &self,
        partition: &PartitionKey,
        (from, to): (u64, u64),
        batch: &tacet_privacy::EventBatch,
    ) -> Result<ParquetFilePath> {
        let path = ParquetFilePath::for_wal_range(partition, from, to);
        let bytes = encode_parquet(batch).map_err(|source| Error::Parquet {
            path: path.to_string(),
            source,
        })?;
        self.store
            .put(path.as_object_path(), bytes.into())
            .await
            .map_err(|source| Error::Store {
                path: path.to_string(),
                source,
            })?;
        if let Some(root) = &self.local_root {
            let (root, rel) = (root.clone(), path.to_string());
            let synced = tokio::task::spawn_blocking(move || sync_local(&root, &rel))
                .await
                .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())));
            synced.map_err(|source| Error::Sync {
                path: path.to_string(),
                source,
            })?;
        }
        Ok(path)
    }

    /// Every Parquet file of a tenant, in path order.
    pub async fn list_tenant_files(
        &self,
        tenant: &tacet_model::TenantId,
    ) -> Result<Vec<object_store::ObjectMeta>> {
        use futures::TryStreamExt;
        let prefix = object_store::path::Path::from(tenant_prefix(tenant));
        let mut files: Vec<_> =
            self.store
                .list(Some(&prefix))
                .try_collect()
                .await
                .map_err(|source| Error::Store {
                    path: prefix.to_string(),
                    source,
                })?;
        files.sort_by(|a, b| a.location.cmp(&b.location));
        Ok(files)
    }
}
