//! The lake: Parquet files on an object store, in Hive-style partitions per tenant, kind and day.
//!
//! ```text
//! <store root>/events/tenant=<id>/kind=<pageview|event|crash>/date=<YYYY-MM-DD>/part-<millis>-<random>.parquet
//! ```
//!
//! The store is `LocalFileSystem` under the data directory by default, and any `object_store` backend
//! otherwise. Files are written whole with one `put` and never modified, so a reader sees a file entirely or
//! not at all, and the same code is correct on S3, which has no rename. This crate accepts only
//! [`tacet_privacy::EventBatch`]es: it cannot be handed raw identifiers.

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
    #[error("cannot open the lake directory {path}: {source}")]
    Open {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// The lake: an object store and the layout on it.
#[derive(Debug, Clone)]
pub struct Lake {
    store: Arc<dyn ObjectStore>,
}

impl Lake {
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        Self { store }
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
        Ok(Self::new(Arc::new(store)))
    }

    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// Writes one batch as a new Parquet file in its partition; returns where it went.
    pub async fn write(
        &self,
        partition: &PartitionKey,
        batch: &tacet_privacy::EventBatch,
    ) -> Result<ParquetFilePath> {
        let path = ParquetFilePath::new_unique(partition);
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
