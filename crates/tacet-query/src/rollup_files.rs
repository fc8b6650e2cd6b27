//! Rollup files as reports read them: each one fetched once, its footer (what the planner checks,
//! crate::source) and its rows decoded together, and kept by path and modification time (a rollup is replaced,
//! never changed in place) in a cache bounded in bytes, so a dashboard's rolled days cost no I/O when hot.
//! A day's `filters.parquet` (thousands of rows per filter) is read for one filter value at a time: only
//! that value's rows are decoded (a row filter on `filter` and `filter_value`) and kept, under the path and
//! the value.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use arrow::array::{ArrayRef, AsArray, BooleanArray, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::parquet::arrow::ProjectionMask;
use datafusion::parquet::arrow::arrow_reader::{
    ArrowPredicateFn, ParquetRecordBatchReaderBuilder, RowFilter,
};
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStoreExt;
use object_store::path::Path;

use crate::footer::{
    META_COMPLETE, META_FILES, META_NEAR, META_RESTRICTED, META_SHARED, META_VISITS, META_ZONE,
    RollupMeta,
};
use crate::{Error, QueryEngine, Result};

/// Decoded rollups kept at most, in bytes of Arrow memory; past it the cache starts over.
const CACHE_BYTES: usize = 64 << 20;

/// One rollup file: what its footer says (`None`: written before footers carried it) and its rows.
#[derive(Debug)]
pub(crate) struct RollupFile {
    pub meta: Option<RollupMeta>,
    pub batches: Vec<RecordBatch>,
    bytes: usize,
}

/// A cache key: the path, and the filter value read (`None`: every row).
type Key = (String, Option<(String, String)>);

fn key(path: &Path, filter: Option<&(String, String)>) -> Key {
    (path.to_string(), filter.cloned())
}

/// Key → (modification time it was read at, the file).
type Entries = HashMap<Key, (i64, Arc<RollupFile>)>;

/// The cache of [`RollupFile`]s, and the bytes they hold.
#[derive(Debug, Default)]
pub(crate) struct RollupCache {
    entries: Mutex<(Entries, usize)>,
}

/// Decodes a rollup file: its footer, and its rows (with `filter`, only those of that filter value).
fn parse(
    path: &Path,
    bytes: bytes::Bytes,
    filter: Option<&(String, String)>,
) -> Result<RollupFile> {
    let internal = |e: &dyn std::fmt::Display| Error::Internal(format!("reading {path}: {e}"));
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(|e| internal(&e))?;
    let kv: HashMap<String, String> = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .into_iter()
        .flatten()
        .filter_map(|kv| Some((kv.key.clone(), kv.value.clone()?)))
        .collect();
    let meta = match (
        kv.get(META_FILES),
        kv.get(META_RESTRICTED),
        kv.get(META_SHARED).and_then(|s| s.parse().ok()),
        kv.get(META_NEAR),
    ) {
        (Some(files), Some(restricted), Some(shared), Some(near)) => Some(RollupMeta {
            files: files.clone(),
            restricted: restricted.clone(),
            shared,
            near: near
                .split(',')
                .filter_map(|p| p.split_once('='))
                .map(|(d, h)| (d.to_owned(), h.to_owned()))
                .collect(),
            complete: kv.get(META_COMPLETE).map(String::as_str) == Some("true"),
            zone: kv
                .get(META_ZONE)
                .cloned()
                .unwrap_or_else(|| "UTC".to_owned()),
            visits: kv.get(META_VISITS).and_then(|s| s.parse().ok()),
        }),
        _ => None,
    };
    let builder = match filter {
        None => builder,
        Some((name, value)) => {
            let index = |c: &str| builder.schema().index_of(c).ok();
            let (Some(names), Some(values)) = (index("filter"), index("filter_value")) else {
                return Ok(RollupFile {
                    meta,
                    batches: Vec::new(),
                    bytes: 0,
                });
            };
            let mask = ProjectionMask::roots(builder.parquet_schema(), [names, values]);
            let (name, value) = (name.clone(), value.clone());
            let keep = ArrowPredicateFn::new(mask, move |b: RecordBatch| {
                let n = arrow::compute::cast(b.column(0), &DataType::Utf8)?;
                let v = arrow::compute::cast(b.column(1), &DataType::Utf8)?;
                Ok(n.as_string::<i32>()
                    .iter()
                    .zip(v.as_string::<i32>().iter())
                    .map(|(n, v)| Some(n == Some(&name) && v == Some(&value)))
                    .collect::<BooleanArray>())
            });
            builder.with_row_filter(RowFilter::new(vec![Box::new(keep)]))
        }
    };
    let batches = builder
        .build()
        .map_err(|e| internal(&e))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| internal(&e))?;
    let bytes = batches.iter().map(RecordBatch::get_array_memory_size).sum();
    Ok(RollupFile {
        meta,
        batches,
        bytes,
    })
}

impl RollupCache {
    fn get(&self, key: &Key, modified_ms: i64) -> Option<Arc<RollupFile>> {
        match self.entries.lock().expect("cache lock").0.get(key) {
            Some((at, file)) if *at == modified_ms => Some(Arc::clone(file)),
            _ => None,
        }
    }

    fn put(&self, key: Key, modified_ms: i64, file: &Arc<RollupFile>) {
        let mut entries = self.entries.lock().expect("cache lock");
        if entries.1 + file.bytes > CACHE_BYTES {
            *entries = Default::default();
        }
        entries.1 += file.bytes;
        if let Some((_, old)) = entries.0.insert(key, (modified_ms, Arc::clone(file))) {
            entries.1 = entries.1.saturating_sub(old.bytes);
        }
    }
}

/// Files a cold report reads side by side (decoding runs on the blocking pool, so on every core).
const READ_AHEAD: usize = 8;

impl QueryEngine {
    /// The rollup at `path` (modified at `modified_ms`), through the cache; with `filter`, a day's
    /// `filters.parquet` with that value's rows only.
    pub(crate) async fn rollup_file(
        &self,
        path: &Path,
        modified_ms: i64,
        filter: Option<&(String, String)>,
    ) -> Result<Arc<RollupFile>> {
        let key = key(path, filter);
        if let Some(file) = self.inner.rollup_files.get(&key, modified_ms) {
            return Ok(file);
        }
        let file = read_rollup(Arc::clone(self.store()), path, filter).await?;
        self.inner.rollup_files.put(key, modified_ms, &file);
        Ok(file)
    }

    /// Reads into the cache, side by side, those of `files` (path, modification time) it does not hold: a
    /// cold report's month of rollups at the speed of the machine's cores, not one file after another.
    pub(crate) async fn read_rollups_ahead(
        &self,
        files: &[(Path, i64)],
        filter: Option<&(String, String)>,
    ) -> Result<()> {
        let missing: Vec<(Path, i64)> = files
            .iter()
            .filter(|(path, at)| {
                self.inner
                    .rollup_files
                    .get(&key(path, filter), *at)
                    .is_none()
            })
            .cloned()
            .collect();
        let jobs = missing.into_iter().map(|(path, at)| {
            let (store, filter) = (Arc::clone(self.store()), filter.cloned());
            async move {
                let file = read_rollup(store, &path, filter.as_ref()).await?;
                Ok::<_, Error>((path, at, file))
            }
        });
        let read: Vec<_> = futures::stream::iter(jobs)
            .buffer_unordered(READ_AHEAD)
            .try_collect()
            .await?;
        for (path, at, file) in read {
            self.inner.rollup_files.put(key(&path, filter), at, &file);
        }
        Ok(())
    }
}

/// Fetches and decodes one rollup file (on the blocking pool).
async fn read_rollup(
    store: Arc<dyn object_store::ObjectStore>,
    path: &Path,
    filter: Option<&(String, String)>,
) -> Result<Arc<RollupFile>> {
    let bytes = store
        .get(path)
        .await
        .map_err(|e| Error::Internal(format!("reading {path}: {e}")))?
        .bytes()
        .await
        .map_err(|e| Error::Internal(format!("reading {path}: {e}")))?;
    let (at, filter) = (path.clone(), filter.cloned());
    let file = tokio::task::spawn_blocking(move || parse(&at, bytes, filter.as_ref()))
        .await
        .map_err(|e| Error::Internal(format!("reading {path}: {e}")))??;
    Ok(Arc::new(file))
}

impl QueryEngine {
    /// The rows of the rollups of `days` (paths and modification times, by `date=`) whose dimension is one of
    /// `dimensions`, with their `date` column last: the `rollups` table as a report over those days sees it.
    /// With `filter` (parameter, value), `days` are `filters.parquet` files and only that value's rows count
    /// (crate::source plans from the same cache entries).
    pub(crate) async fn rollup_rows(
        &self,
        days: &[(String, Path, i64)],
        dimensions: &BTreeSet<&str>,
        filter: Option<&(String, String)>,
    ) -> Result<RecordBatch> {
        let mut fields: Vec<Field> = crate::rollup::rollup_schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.push(Field::new("date", DataType::Utf8, false));
        let schema = Arc::new(Schema::new(fields));
        let mut parts = Vec::new();
        for (day, path, modified_ms) in days {
            let file = self.rollup_file(path, *modified_ms, filter).await?;
            for b in &file.batches {
                let Some(dimension) = b.column_by_name("dimension") else {
                    continue;
                };
                let dimension = arrow::compute::cast(dimension, &DataType::Utf8)
                    .map_err(|e| Error::Internal(format!("reading {path}: {e}")))?;
                let keep: BooleanArray = dimension
                    .as_string::<i32>()
                    .iter()
                    .map(|d| Some(d.is_some_and(|d| dimensions.contains(d))))
                    .collect();
                let kept = arrow::compute::filter_record_batch(b, &keep)
                    .map_err(|e| Error::Internal(format!("reading {path}: {e}")))?;
                if kept.num_rows() == 0 {
                    continue;
                }
                // By name: a rollup written before a column existed reads it as null.
                let mut columns: Vec<ArrayRef> = crate::rollup::rollup_schema()
                    .fields()
                    .iter()
                    .map(|f| match kept.column_by_name(f.name()) {
                        Some(c) => arrow::compute::cast(c, f.data_type()),
                        None => Ok(arrow::array::new_null_array(f.data_type(), kept.num_rows())),
                    })
                    .collect::<std::result::Result<_, _>>()
                    .map_err(|e| Error::Internal(format!("reading {path}: {e}")))?;
                columns.push(Arc::new(StringArray::from(vec![
                    day.as_str();
                    kept.num_rows()
                ])));
                parts.push(
                    RecordBatch::try_new(Arc::clone(&schema), columns)
                        .map_err(|e| Error::Internal(format!("reading {path}: {e}")))?,
                );
            }
        }
        arrow::compute::concat_batches(&schema, &parts)
            .map_err(|e| Error::Internal(format!("joining rollups: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rollup_without_a_footer_has_no_meta_but_its_rows() {
        let schema = crate::rollup::rollup_schema();
        let columns: Vec<ArrayRef> = schema
            .fields()
            .iter()
            .map(|f| arrow::array::new_null_array(f.data_type(), 0))
            .collect();
        let batch = RecordBatch::try_new(schema.clone(), columns).unwrap();
        let bytes = crate::format::to_parquet(&schema, &[batch]).unwrap();
        let file = parse(&Path::from("r"), bytes.into(), None).unwrap();
        assert!(file.meta.is_none());
        let footer = vec![
            (META_FILES.to_owned(), "f".to_owned()),
            (META_RESTRICTED.to_owned(), "r".to_owned()),
            (META_SHARED.to_owned(), "2".to_owned()),
            (
                META_NEAR.to_owned(),
                "2025-01-01=aa,2025-01-02=bb".to_owned(),
            ),
            (META_COMPLETE.to_owned(), "true".to_owned()),
        ];
        let bytes = crate::format::to_parquet_with(&schema, &[], footer).unwrap();
        let meta = parse(&Path::from("r"), bytes.into(), None)
            .unwrap()
            .meta
            .unwrap();
        assert_eq!(meta.shared, 2);
        assert!(meta.complete);
        assert_eq!(meta.near["2025-01-02"], "bb");
    }
}
