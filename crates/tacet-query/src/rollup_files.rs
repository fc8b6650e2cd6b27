//! Rollup files as reports read them: each one fetched once, its footer (what the planner checks,
//! crate::source) and its rows decoded together, and kept by path and modification time (a rollup is replaced,
//! never changed in place) in a cache bounded in bytes, so a dashboard's rolled days cost no I/O when hot.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use arrow::array::{ArrayRef, AsArray, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use object_store::ObjectStoreExt;
use object_store::path::Path;

use crate::source::{
    META_COMPLETE, META_FILES, META_NEAR, META_RESTRICTED, META_SHARED, RollupMeta,
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

/// Path → (modification time it was read at, the file).
type Entries = HashMap<String, (i64, Arc<RollupFile>)>;

/// The cache of [`RollupFile`]s, and the bytes they hold.
#[derive(Debug, Default)]
pub(crate) struct RollupCache {
    entries: Mutex<(Entries, usize)>,
}

fn parse(path: &Path, bytes: bytes::Bytes) -> Result<RollupFile> {
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
        }),
        _ => None,
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

impl QueryEngine {
    /// The rollup at `path` (modified at `modified_ms`), through the cache.
    pub(crate) async fn rollup_file(
        &self,
        path: &Path,
        modified_ms: i64,
    ) -> Result<Arc<RollupFile>> {
        let key = path.to_string();
        let cache = &self.inner.rollup_files;
        if let Some((at, file)) = cache.entries.lock().expect("cache lock").0.get(&key)
            && *at == modified_ms
        {
            return Ok(Arc::clone(file));
        }
        let bytes = self
            .store()
            .get(path)
            .await
            .map_err(|e| Error::Internal(format!("reading {path}: {e}")))?
            .bytes()
            .await
            .map_err(|e| Error::Internal(format!("reading {path}: {e}")))?;
        let file = Arc::new(parse(path, bytes)?);
        let mut entries = cache.entries.lock().expect("cache lock");
        if entries.1 + file.bytes > CACHE_BYTES {
            *entries = Default::default();
        }
        entries.1 += file.bytes;
        if let Some((_, old)) = entries.0.insert(key, (modified_ms, Arc::clone(&file))) {
            entries.1 = entries.1.saturating_sub(old.bytes);
        }
        Ok(file)
    }

    /// The rows of the rollups of `days` (paths and modification times, by `date=`) whose dimension is one of
    /// `dimensions`, with their `date` column last: the `rollups` table as a report over those days sees it.
    pub(crate) async fn rollup_rows(
        &self,
        days: &[(String, Path, i64)],
        dimensions: &BTreeSet<&str>,
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
            let file = self.rollup_file(path, *modified_ms).await?;
            for b in &file.batches {
                let Some(dimension) = b.column_by_name("dimension") else {
                    continue;
                };
                let dimension = arrow::compute::cast(dimension, &DataType::Utf8)
                    .map_err(|e| Error::Internal(format!("reading {path}: {e}")))?;
                let keep: arrow::array::BooleanArray = dimension
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
        let file = parse(&Path::from("r"), bytes.into()).unwrap();
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
        let meta = parse(&Path::from("r"), bytes.into()).unwrap().meta.unwrap();
        assert_eq!(meta.shared, 2);
        assert!(meta.complete);
        assert_eq!(meta.near["2025-01-02"], "bb");
    }
}
