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

pub mod background;
mod file;
mod path;
mod reader;
mod routed;
mod writer;

use std::sync::Arc;

use std::collections::BTreeMap;

use arrow::array::RecordBatch;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};
use parquet::arrow::async_reader::ParquetRecordBatchStreamBuilder;

use crate::reader::StoreReader;

pub use file::{FileName, parent, visible};
pub use path::{EVENTS_ROOT, ParquetFilePath, PartitionKey, tenant_prefix};
pub use routed::RoutedStore;
pub use writer::{
    encode_batches, encode_batches_with, encode_parquet, writer_properties, writer_properties_with,
};

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
    #[error(
        "{path} already exists: another job (on this node or another) replaced the same files; run it again"
    )]
    Exists { path: String },
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
    #[error("the data key for {path}: {reason}")]
    Key { path: String, reason: String },
    #[error("reading Parquet {path}: {source}")]
    Read {
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

/// `batch` in the file schema: its columns by name, a missing nullable column as nulls.
fn conform(batch: &RecordBatch) -> std::result::Result<RecordBatch, arrow::error::ArrowError> {
    let schema = tacet_model::schema::file_schema();
    if batch.schema() == schema {
        return Ok(batch.clone());
    }
    let columns = schema
        .fields()
        .iter()
        .map(|f| match batch.column_by_name(f.name()) {
            Some(c) => Ok(c.clone()),
            None if f.is_nullable() => Ok(arrow::array::new_null_array(
                f.data_type(),
                batch.num_rows(),
            )),
            None => Err(arrow::error::ArrowError::SchemaError(format!(
                "the file has no column {}",
                f.name()
            ))),
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    RecordBatch::try_new(schema, columns)
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

/// Where the lake gets each tenant's data key (encryption at rest). `None`: the tenant's files are not
/// encrypted.
pub trait DataKeys: Send + Sync + std::fmt::Debug {
    fn key(&self, tenant: &tacet_model::TenantId) -> std::result::Result<Option<Vec<u8>>, String>;
}

/// The lake: an object store and the layout on it.
#[derive(Debug, Clone)]
pub struct Lake {
    store: Arc<dyn ObjectStore>,
    /// The directory behind a `LocalFileSystem` store, whose writes must be fsynced by hand.
    local_root: Option<std::path::PathBuf>,
    /// Tenants' data keys: files are written with Parquet modular encryption under them.
    keys: Option<Arc<dyn DataKeys>>,
    /// This ingestion node's id, in the names of the files its flushes write (several nodes, one lake).
    node: Option<u16>,
}

impl Lake {
    /// A lake on any object store whose successful `put` is durable (S3, GCS, Azure, in-memory for tests).
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        Self {
            store,
            local_root: None,
            keys: None,
            node: None,
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
            keys: None,
            node: None,
        })
    }

    /// Names the files this process's flushes write after ingestion node `node` (see [`FileName`]).
    pub fn with_node(mut self, node: Option<u16>) -> Self {
        self.node = node;
        self
    }

    pub fn node(&self) -> Option<u16> {
        self.node
    }

    /// Encrypts every events file with its tenant's data key from `keys` (and decrypts on reading).
    pub fn with_keys(mut self, keys: Arc<dyn DataKeys>) -> Self {
        self.keys = Some(keys);
        self
    }

    /// The data key of the tenant whose file `path` is, if the lake encrypts.
    pub fn key_for_path(&self, path: &str) -> Result<Option<Vec<u8>>> {
        let Some(keys) = &self.keys else {
            return Ok(None);
        };
        let Some(partition) = PartitionKey::parse(path) else {
            return Ok(None);
        };
        keys.key(&partition.tenant).map_err(|e| Error::Key {
            path: path.to_owned(),
            reason: e,
        })
    }

    fn reader_options(
        &self,
        meta: &ObjectMeta,
    ) -> Result<parquet::arrow::arrow_reader::ArrowReaderOptions> {
        let options = parquet::arrow::arrow_reader::ArrowReaderOptions::new();
        match self.key_for_path(meta.location.as_ref())? {
            None => Ok(options),
            Some(key) => {
                let props = parquet::encryption::decrypt::FileDecryptionProperties::builder(key)
                    .build()
                    .map_err(|source| Error::Read {
                        path: meta.location.to_string(),
                        source,
                    })?;
                Ok(options.with_file_decryption_properties(props))
            }
        }
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
        let path = ParquetFilePath::for_wal_range(partition, self.node, from, to);
        let bytes = self
            .encode(&path, vec![batch.record_batch().clone()])
            .await?;
        self.put_durable(path.as_object_path(), bytes).await?;
        Ok(path)
    }

    /// `batches` as the Parquet bytes of the file at `path` (encrypted under its tenant's key if the lake
    /// encrypts), encoded on a [`background`] thread.
    async fn encode(&self, path: &ParquetFilePath, batches: Vec<RecordBatch>) -> Result<Vec<u8>> {
        let key = self.key_for_path(&path.to_string())?;
        let name = path.to_string();
        background::encode(move || {
            encode_batches_with(&batches, key.as_deref())
                .map_err(|source| Error::Parquet { path: name, source })
        })
        .await
    }

    /// One `put` of a whole object; on local disk the file and its directories are fsynced too.
    pub async fn put_durable(&self, path: &Path, bytes: Vec<u8>) -> Result<()> {
        self.put_durable_mode(path, bytes, object_store::PutMode::Overwrite)
            .await
    }

    async fn put_durable_mode(
        &self,
        path: &Path,
        bytes: Vec<u8>,
        mode: object_store::PutMode,
    ) -> Result<()> {
        let opts = object_store::PutOptions {
            mode,
            ..Default::default()
        };
        self.store
            .put_opts(path, bytes.into(), opts)
            .await
            .map_err(|source| match source {
                object_store::Error::AlreadyExists { .. } => Error::Exists {
                    path: path.to_string(),
                },
                source => Error::Store {
                    path: path.to_string(),
                    source,
                },
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
        Ok(())
    }

    /// Deletes objects (a missing one is not an error); on local disk the directories are fsynced and
    /// those left empty removed, so a dropped partition leaves no trace.
    pub async fn delete(&self, paths: &[Path]) -> Result<()> {
        for path in paths {
            match self.store.delete(path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(source) => {
                    return Err(Error::Store {
                        path: path.to_string(),
                        source,
                    });
                }
            }
        }
        if let Some(root) = &self.local_root {
            let mut dirs: Vec<String> = paths.iter().map(parent).collect();
            dirs.sort();
            dirs.dedup();
            let root = root.clone();
            let synced = tokio::task::spawn_blocking(move || {
                for dir in dirs {
                    let mut d = root.join(&dir);
                    // Remove directories left empty, up to (not including) the lake root.
                    while d != root && std::fs::remove_dir(&d).is_ok() {
                        d.pop();
                    }
                    std::fs::File::open(&d)?.sync_all()?;
                }
                Ok(())
            })
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())));
            synced.map_err(|source| Error::Sync {
                path: "lake directories".into(),
                source,
            })?;
        }
        Ok(())
    }

    /// Every object under `prefix`, in path order.
    pub async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        use futures::TryStreamExt;
        let prefix = Path::from(prefix);
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

    /// A tenant's partitions and, in each, the files a reader sees ([`visible`]), in path order.
    pub async fn partitions(
        &self,
        tenant: &tacet_model::TenantId,
    ) -> Result<BTreeMap<PartitionKey, Vec<ObjectMeta>>> {
        let mut out: BTreeMap<PartitionKey, Vec<ObjectMeta>> = BTreeMap::new();
        for meta in visible(self.list_tenant_files(tenant).await?) {
            if FileName::parse(&meta.location).is_none() {
                continue;
            }
            if let Some(key) = PartitionKey::parse(meta.location.as_ref()) {
                out.entry(key).or_default().push(meta);
            }
        }
        Ok(out)
    }

    /// The rows of one lake file, in today's file schema: a column added since the file was written (such
    /// as `arrival`) is null, so rows of old and new files can be merged and written back.
    pub async fn read(&self, meta: &ObjectMeta) -> Result<Vec<RecordBatch>> {
        use futures::TryStreamExt;
        let read = |source| Error::Read {
            path: meta.location.to_string(),
            source,
        };
        let reader = StoreReader::new(&self.store, meta);
        let batches: Vec<RecordBatch> =
            ParquetRecordBatchStreamBuilder::new_with_options(reader, self.reader_options(meta)?)
                .await
                .map_err(read)?
                .build()
                .map_err(read)?
                .try_collect()
                .await
                .map_err(read)?;
        batches
            .iter()
            .map(|b| conform(b).map_err(|e| read(e.into())))
            .collect()
    }

    /// Whether a lake file may hold a row whose `column` is one of `values`, from its row groups' bloom
    /// filters (reading only the footer and the filters). `false` is certain; `true` may be a false
    /// positive, or a file without filters on that column.
    pub async fn may_hold(&self, meta: &ObjectMeta, column: &str, values: &[&str]) -> Result<bool> {
        let read = |source| Error::Read {
            path: meta.location.to_string(),
            source,
        };
        let reader = StoreReader::new(&self.store, meta);
        let mut builder =
            ParquetRecordBatchStreamBuilder::new_with_options(reader, self.reader_options(meta)?)
                .await
                .map_err(read)?;
        let Some(index) = builder
            .parquet_schema()
            .columns()
            .iter()
            .position(|c| c.name() == column)
        else {
            return Ok(false);
        };
        for rg in 0..builder.metadata().num_row_groups() {
            let chunk = builder.metadata().row_group(rg).column(index);
            let all_null = chunk
                .statistics()
                .and_then(|s| s.null_count_opt())
                .is_some_and(|n| n as i64 == builder.metadata().row_group(rg).num_rows());
            if all_null {
                continue;
            }
            match builder
                .get_row_group_column_bloom_filter(rg, index)
                .await
                .map_err(read)?
            {
                None => return Ok(true),
                Some(filter) => {
                    if values.iter().any(|v| filter.check(*v)) {
                        return Ok(true);
                    }
                }
            }
        }
        Ok(false)
    }

    /// Replaces lake files: writes `new` (rows that came from the lake: erasure, rectification and
    /// compaction rewrite what is there, they add nothing), durably, then deletes `old`. A reader listing
    /// meanwhile sees the old files or the new one and never both, because the new file's name supersedes
    /// the old ones ([`visible`]); the caller picks that name. The new file is created only if no object
    /// has its name (a conditional put: `If-None-Match: *` on S3), so two jobs replacing the same file,
    /// on one node or two, cannot both win: the second gets [`Error::Exists`].
    pub async fn replace(
        &self,
        old: &[Path],
        new: Option<(&ParquetFilePath, &[RecordBatch])>,
    ) -> Result<()> {
        if let Some((path, batches)) = new {
            let bytes = self.encode(path, batches.to_vec()).await?;
            self.put_durable_mode(path.as_object_path(), bytes, object_store::PutMode::Create)
                .await?;
        }
        self.delete(old).await
    }

    /// Every object under a tenant's prefix, in path order (all generations; see [`Lake::partitions`]).
    /// The object at `path`, named by `path` itself: object_store 0.13's `PrefixStore` answers `head`
    /// with the location under its prefix (a lake with `prefix` on S3), which no read of it would find.
    pub async fn meta(&self, path: &object_store::path::Path) -> Result<ObjectMeta> {
        let mut meta = self.store.head(path).await.map_err(|source| Error::Store {
            path: path.to_string(),
            source,
        })?;
        meta.location = path.clone();
        Ok(meta)
    }

    pub async fn list_tenant_files(
        &self,
        tenant: &tacet_model::TenantId,
    ) -> Result<Vec<ObjectMeta>> {
        self.list(&tenant_prefix(tenant)).await
    }
}
