//! Rewriting the files that hold one person's rows (erasure and rectification).
//!
//! 1. Everything accepted so far goes to the lake and out of the write-ahead log, on this node and on
//!    every other ingestion node sharing the key store (`Pipeline::persist_everywhere`), so no buffer and
//!    no log holds the person's earlier events. An erasure waits for the running nodes only
//!    (`Pipeline::persist_running`): its record, written first, makes the others drop the person's events
//!    before they flush again or when they restart.
//! 2. Leftovers of an interrupted earlier replacement (superseded files) are deleted.
//! 3. Each visible file is probed: its row groups' bloom filters on `user_pseudonym` (footer and
//!    filters only) say whether it may hold one of the person's pseudonyms. Only those files are read.
//! 4. A file that does hold them is written again as its next generation with the edit applied (rows
//!    removed, or changed); a file left empty is simply deleted.
//! 5. Then, while no query runs (`QueryEngine::exclusive`), the old files are deleted.
//! 6. Every new file is read back and checked; the old ones must be gone.

use std::collections::HashSet;
use std::time::Instant;

use arrow::array::{Array, AsArray, BooleanArray, RecordBatch};
use futures::StreamExt;
use object_store::ObjectStoreExt;
use object_store::path::Path;
use serde::Serialize;
use tacet_lake::{FileName, ParquetFilePath, PartitionKey};
use tacet_model::TenantId;

use crate::{Error, Progress, Result, Steward};

/// How many files' bloom filters a subject request probes at once.
const PROBES_AT_ONCE: usize = 16;

/// What a rewrite did. File paths are lake paths (no identifiers in them).
#[derive(Debug, Clone, Default, Serialize)]
pub struct RewriteReport {
    /// A random id, also in the audit log.
    pub request: String,
    /// Subject key versions searched (one pseudonym each).
    pub pseudonyms: usize,
    /// The tenant's files looked at (bloom filters only).
    pub files_scanned: usize,
    /// Files whose bloom filters said "maybe", which were read.
    pub files_read: usize,
    /// Files written again without (or with changed) rows of the person.
    pub files_rewritten: usize,
    /// Files that held only the person's rows, deleted.
    pub files_deleted: usize,
    /// The person's rows removed or changed.
    pub rows: usize,
    /// Bytes of the files replaced or deleted, and of all the tenant's files.
    pub bytes_replaced: u64,
    pub bytes_total: u64,
    /// Superseded leftovers of earlier interrupted jobs, deleted on the way.
    pub leftovers_deleted: usize,
    /// The files replaced or deleted.
    pub replaced: Vec<String>,
    /// Stored visits of the days around the files replaced (`visits/…`, tacet_query::visits): deleted, as
    /// they were computed from the rows before; the next rollup run writes them again.
    pub visit_files_deleted: usize,
    pub elapsed_ms: u64,
    /// An erasure's record: every node drops the person's events it still holds when it sees it, before
    /// it flushes again or, if it is down, when it restarts. It is deleted once no node needs it (at once
    /// when every node answered).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub erasure_record: Option<String>,
    /// Ingestion nodes that did not answer (down, or slow): whatever of the person's events their logs
    /// hold is dropped by the record when they run again, never written to the lake.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub nodes_pending: Vec<u16>,
    /// For each of them, what its last heartbeat said it held (the records its log had not written to
    /// the lake, and when): what is lost with it if it never comes back and is not drained.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub gaps: Vec<tacet_ingest::Gap>,
}

/// Whom a rewrite waits for before it reads the lake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Waiting {
    /// Every registered node: a rewrite that nothing else completes (rectification).
    Everyone,
    /// The running nodes only: an erasure, whose record reaches the others (erasures.rs in tacet-ingest).
    Running,
}

/// What to do with one batch, given which of its rows are the person's: the new batch, or `None` to leave
/// the batch out.
pub(crate) type Edit<'a> =
    &'a (dyn Fn(&RecordBatch, &BooleanArray) -> Result<Option<RecordBatch>> + Send + Sync);

/// Which rows of `batch` carry one of `pseudonyms`.
pub(crate) fn subject_mask(batch: &RecordBatch, pseudonyms: &HashSet<&str>) -> BooleanArray {
    let Some(col) = batch.column_by_name("user_pseudonym") else {
        return BooleanArray::from(vec![false; batch.num_rows()]);
    };
    let values = col.as_string::<i32>();
    (0..values.len())
        .map(|i| Some(!values.is_null(i) && pseudonyms.contains(values.value(i))))
        .collect()
}

fn count(mask: &BooleanArray) -> usize {
    mask.true_count()
}

impl Steward {
    /// Applies `edit` to every row of `pseudonyms` in the tenant's lake; see the module docs.
    pub(crate) async fn rewrite_subject(
        &self,
        tenant: &TenantId,
        pseudonyms: &[String],
        edit: Edit<'_>,
        waiting: Waiting,
        progress: Progress<'_>,
    ) -> Result<RewriteReport> {
        let started = Instant::now();
        let _one_job = self.jobs.lock().await;
        let mut report = RewriteReport {
            request: crate::request_id(),
            pseudonyms: pseudonyms.len(),
            ..RewriteReport::default()
        };
        match waiting {
            Waiting::Everyone => self.pipeline.persist_everywhere().await?,
            Waiting::Running => {
                report.nodes_pending = self.pipeline.persist_running().await?;
                report.gaps = self.pipeline.gaps(&report.nodes_pending);
            }
        }
        let lake = self.pipeline.lake();
        let wanted: HashSet<&str> = pseudonyms.iter().map(String::as_str).collect();
        let values: Vec<&str> = wanted.iter().copied().collect();

        let all = lake.list_tenant_files(tenant).await?;
        let visible = tacet_lake::visible(all.clone());
        let shown: HashSet<&Path> = visible.iter().map(|m| &m.location).collect();
        let leftovers: Vec<Path> = all
            .iter()
            .filter(|m| !shown.contains(&m.location) && FileName::parse(&m.location).is_some())
            .map(|m| m.location.clone())
            .collect();
        let files: Vec<_> = visible
            .into_iter()
            .filter(|m| FileName::parse(&m.location).is_some())
            .collect();
        report.files_scanned = files.len();
        report.bytes_total = files.iter().map(|m| m.size).sum();

        let mut old: Vec<Path> = leftovers.clone();
        let mut written: Vec<(ParquetFilePath, usize)> = Vec::new();
        if !values.is_empty() {
            // The probes (a footer and a bloom filter each, two round trips to S3) run 16 at a time: most
            // files hold nothing of the person, and an erasure should not take a round trip per file.
            let mut probed = 0;
            let candidates: Vec<usize> = futures::stream::iter(0..files.len())
                .map(|i| {
                    let (meta, values) = (files[i].clone(), values.clone());
                    async move { (i, lake.may_hold(&meta, "user_pseudonym", &values).await) }
                })
                .buffered(PROBES_AT_ONCE)
                .inspect(|_| {
                    if probed % 64 == 0 {
                        progress(probed, files.len(), "probing bloom filters");
                    }
                    probed += 1;
                })
                .collect::<Vec<_>>()
                .await
                .into_iter()
                .filter_map(|(i, may)| match may {
                    Ok(true) => Some(Ok(i)),
                    Ok(false) => None,
                    Err(e) => Some(Err(e)),
                })
                .collect::<std::result::Result<_, _>>()?;
            for meta in candidates.into_iter().map(|i| &files[i]) {
                report.files_read += 1;
                let batches = lake.read(meta).await?;
                let mut kept = Vec::with_capacity(batches.len());
                let mut rows = 0;
                for batch in &batches {
                    let mask = subject_mask(batch, &wanted);
                    rows += count(&mask);
                    if count(&mask) == 0 {
                        kept.push(batch.clone());
                    } else if let Some(b) = edit(batch, &mask)?
                        && b.num_rows() > 0
                    {
                        kept.push(b);
                    }
                }
                if rows == 0 {
                    continue; // a bloom filter false positive
                }
                report.rows += rows;
                report.bytes_replaced += meta.size;
                report.replaced.push(meta.location.to_string());
                old.push(meta.location.clone());
                if kept.is_empty() {
                    report.files_deleted += 1;
                    continue;
                }
                let (Some(partition), Some(name)) = (
                    PartitionKey::parse(meta.location.as_ref()),
                    FileName::parse(&meta.location),
                ) else {
                    continue;
                };
                let path = ParquetFilePath::in_partition(&partition, name.next_generation());
                lake.replace(&[], Some((&path, &kept))).await?;
                let left: usize = kept.iter().map(RecordBatch::num_rows).sum();
                written.push((path, left));
                report.files_rewritten += 1;
            }
            progress(files.len(), files.len(), "probing bloom filters");
        }
        // The stored visits of every local day a replaced file's UTC date runs into (a day either side
        // covers every zone) go too: they hold the person's visits as the old rows made them.
        let touched: std::collections::BTreeSet<chrono::NaiveDate> = report
            .replaced
            .iter()
            .filter_map(|p| PartitionKey::parse(p))
            .flat_map(|k| [k.date.pred_opt(), Some(k.date), k.date.succ_opt()])
            .flatten()
            .collect();
        let visits: Vec<Path> = if touched.is_empty() {
            Vec::new()
        } else {
            lake.list(&tacet_query::visits::visits_prefix(tenant))
                .await?
                .into_iter()
                .filter(|m| {
                    tacet_query::visits::visits_date(&m.location)
                        .is_some_and(|d| touched.contains(&d))
                })
                .map(|m| m.location)
                .collect()
        };
        report.visit_files_deleted = visits.len();
        {
            // Delete the old files while no query can be reading them.
            let _no_queries = self.query.exclusive().await?;
            lake.delete(&old).await?;
            lake.delete(&visits).await?;
        }
        old.extend(visits);
        report.leftovers_deleted = leftovers.len();

        // Read back: the new files hold the edited rows and the old ones are gone.
        for (path, rows) in &written {
            let meta = lake
                .meta(path.as_object_path())
                .await
                .map_err(|e| Error::Verify(format!("{path} is missing after the rewrite: {e}")))?;
            let batches = lake.read(&meta).await?;
            let got: usize = batches.iter().map(RecordBatch::num_rows).sum();
            if got != *rows {
                return Err(Error::Verify(format!(
                    "{path} holds {got} rows, {rows} were written"
                )));
            }
            for batch in &batches {
                let mask = subject_mask(batch, &wanted);
                if count(&mask) > 0
                    && let Some(again) = edit(batch, &mask)?
                    && again != *batch
                {
                    return Err(Error::Verify(format!(
                        "{path} still holds rows the request changes"
                    )));
                }
            }
        }
        for path in &old {
            if lake.store().head(path).await.is_ok() {
                return Err(Error::Verify(format!("{path} was not deleted")));
            }
        }
        report.elapsed_ms = started.elapsed().as_millis() as u64;
        Ok(report)
    }
}
