//! Compaction: a busy partition gets a small file per flush; runs of small files are merged into one
//! (sorted by time), named by the log range it covers, which supersedes the files it merged
//! (`tacet_lake::visible`); the merged files are then deleted while no query runs.
//!
//! Safe against the writers: only files whose whole range is persisted (at or below the log checkpoint)
//! and older than `min_age` are merged, and a run never spans a file it does not merge, so the merged
//! range hides nothing else. A flush after the checkpoint writes ranges above every merged one.

use std::time::Instant;

use arrow::array::RecordBatch;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStoreExt};
use serde::Serialize;
use serde_json::json;
use tacet_lake::{FileName, ParquetFilePath};
use tacet_model::TenantId;

use crate::{Progress, Result, Steward};

/// When files are merged.
#[derive(Debug, Clone, Copy)]
pub struct CompactOptions {
    /// Files younger than this are left alone (a job in another process may be replacing them).
    pub min_age: std::time::Duration,
    /// Files at least this large are left alone, and a merged file stops growing here.
    pub target_bytes: u64,
}

impl Default for CompactOptions {
    fn default() -> Self {
        Self {
            min_age: std::time::Duration::from_secs(300),
            target_bytes: 128 << 20,
        }
    }
}

/// What a compaction did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CompactionReport {
    pub partitions: usize,
    pub files_merged: usize,
    pub files_written: usize,
    pub bytes_before: u64,
    pub bytes_after: u64,
    pub rows: usize,
    /// Superseded leftovers of interrupted jobs, deleted.
    pub leftovers_deleted: usize,
    pub elapsed_ms: u64,
}

/// Runs of at least two consecutive mergeable files, each run at most `target` bytes.
fn runs(
    files: &[(FileName, ObjectMeta)],
    mergeable: impl Fn(&(FileName, ObjectMeta)) -> bool,
    target: u64,
) -> Vec<Vec<usize>> {
    let mut out = Vec::new();
    let mut run: Vec<usize> = Vec::new();
    let mut size = 0u64;
    for (i, f) in files.iter().enumerate() {
        if !mergeable(f) || size + f.1.size > target {
            if run.len() >= 2 {
                out.push(std::mem::take(&mut run));
            }
            run.clear();
            size = 0;
            if !mergeable(f) {
                continue;
            }
        }
        run.push(i);
        size += f.1.size;
    }
    if run.len() >= 2 {
        out.push(run);
    }
    out
}

impl Steward {
    /// Merges runs of small files in every partition of `tenant`.
    pub async fn compact(
        &self,
        tenant: &TenantId,
        options: CompactOptions,
        actor: &str,
        progress: Progress<'_>,
    ) -> Result<CompactionReport> {
        let started = Instant::now();
        let _one_job = self.jobs.lock().await;
        let lake = self.pipeline.lake();
        let persisted = self.pipeline.wal().checkpoint().persisted;
        let node = lake.node();
        let now = self.pipeline.clock().now();
        let old_enough = |m: &ObjectMeta| {
            (now - m.last_modified).to_std().unwrap_or_default() >= options.min_age
        };
        let mut report = CompactionReport::default();
        let all = lake.list_tenant_files(tenant).await?;
        let visible = tacet_lake::visible(all.clone());
        let shown: std::collections::HashSet<&Path> = visible.iter().map(|m| &m.location).collect();
        let mut old: Vec<Path> = all
            .iter()
            .filter(|m| {
                !shown.contains(&m.location)
                    && FileName::parse(&m.location).is_some()
                    && old_enough(m)
            })
            .map(|m| m.location.clone())
            .collect();
        report.leftovers_deleted = old.len();
        let partitions = lake.partitions(tenant).await?;
        let total = partitions.len();
        for (p, (key, files)) in partitions.into_iter().enumerate() {
            if p % 16 == 0 {
                progress(p, total, "compacting partitions");
            }
            let mut named: Vec<(FileName, ObjectMeta)> = files
                .into_iter()
                .filter_map(|m| FileName::parse(&m.location).map(|n| (n, m)))
                .collect();
            named.sort_by_key(|(n, _)| (n.node, n.from, n.to));
            // Only this node's files: their ranges are in its log, whose checkpoint says they are
            // persisted; and two nodes never merge the same files into overlapping ranges.
            let mergeable = |(n, m): &(FileName, ObjectMeta)| {
                n.node == node
                    && n.to <= persisted
                    && m.size < options.target_bytes
                    && old_enough(m)
            };
            let runs = runs(&named, mergeable, options.target_bytes);
            if runs.is_empty() {
                continue;
            }
            report.partitions += 1;
            for run in runs {
                let mut batches: Vec<RecordBatch> = Vec::new();
                for &i in &run {
                    batches.extend(lake.read(&named[i].1).await?);
                }
                let merged = sorted_by_time(&batches)?;
                let name = FileName {
                    node,
                    from: named[run[0]].0.from,
                    to: named[*run.last().expect("a run has files")].0.to,
                    generation: 0,
                };
                let path = ParquetFilePath::in_partition(&key, name);
                lake.replace(&[], Some((&path, std::slice::from_ref(&merged))))
                    .await?;
                report.files_written += 1;
                report.files_merged += run.len();
                report.rows += merged.num_rows();
                for &i in &run {
                    report.bytes_before += named[i].1.size;
                    old.push(named[i].1.location.clone());
                }
                if let Ok(meta) = lake.store().head(path.as_object_path()).await {
                    report.bytes_after += meta.size;
                }
            }
        }
        progress(total, total, "compacting partitions");
        if !old.is_empty() {
            let _no_queries = self.query.exclusive().await?;
            lake.delete(&old).await?;
        }
        report.elapsed_ms = started.elapsed().as_millis() as u64;
        if report.files_merged > 0 || report.leftovers_deleted > 0 {
            self.audit.append(
                actor,
                "compaction",
                Some(tenant.as_str()),
                json!({"partitions": report.partitions, "files_merged": report.files_merged,
                    "files_written": report.files_written, "leftovers_deleted": report.leftovers_deleted}),
            )?;
        }
        Ok(report)
    }
}

/// One batch of all rows, sorted by `ts` then `arrival` (better pruning by time within the file, and
/// the order a flush writes).
fn sorted_by_time(batches: &[RecordBatch]) -> Result<RecordBatch> {
    let schema = batches[0].schema();
    let all = arrow::compute::concat_batches(&schema, batches)?;
    let column = |name: &str| {
        all.column_by_name(name)
            .cloned()
            .ok_or_else(|| crate::Error::Verify(format!("a lake file without {name}")))
    };
    let keys = ["ts", "arrival"]
        .into_iter()
        .map(|name| {
            Ok(arrow::compute::SortColumn {
                values: column(name)?,
                options: None,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let order = arrow::compute::lexsort_to_indices(&keys, None)?;
    Ok(arrow::compute::take_record_batch(&all, &order)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(from: u64, size: u64) -> (FileName, ObjectMeta) {
        (
            FileName {
                node: None,
                from,
                to: from,
                generation: 0,
            },
            ObjectMeta {
                location: Path::from(format!("x/part-{from}-{from}.parquet")),
                last_modified: chrono::DateTime::UNIX_EPOCH,
                size,
                e_tag: None,
                version: None,
            },
        )
    }

    #[test]
    fn runs_stop_at_files_they_do_not_merge_and_at_the_target() {
        let files = vec![
            f(1, 10),
            f(2, 10),
            f(3, 500),
            f(4, 10),
            f(5, 10),
            f(6, 10),
            f(7, 10),
        ];
        // 3 is too large; the target of 25 bytes splits 4..7 into two runs of two.
        let got = runs(&files, |(_, m)| m.size < 100, 25);
        assert_eq!(got, vec![vec![0, 1], vec![3, 4], vec![5, 6]]);
        // A single mergeable file is not a run.
        let got = runs(
            &[f(1, 10), f(2, 500), f(3, 10)],
            |(_, m)| m.size < 100,
            1000,
        );
        assert!(got.is_empty());
    }
}
