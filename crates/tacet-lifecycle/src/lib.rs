//! What happens to data once it is stored: retention, the data subject's rights (access and
//! portability, erasure, objection and restriction, rectification), tenant offboarding and compaction,
//! each recorded in the audit log.
//!
//! ```text
//!  tacet retention run ─┐                    ┌─► Lake: list, read, bloom-filter probes, replace, delete
//!  tacet subject …     ─┼─► Steward ─────────┼─► Pipeline: persist_everywhere (flush + purge the log, all nodes), KeyStore
//!  tacet tenant offboard┤   (one job at a    ├─► QueryEngine: rollups before a drop, subject rows,
//!  /v1/admin/…         ─┤    time)           │   `exclusive` while old files are deleted
//!  server schedule     ─┘                    └─► AuditLog: one hash-chained entry per action
//! ```
//!
//! Files are never changed in place. A job writes the replacement (the next generation of a file, or a
//! compacted file covering several) and then deletes the old ones while no query runs; readers hide
//! superseded files (`tacet_lake::visible`), so a query sees the old rows or the new ones, never both and
//! never neither.

mod compact;
mod offboard;
mod retention;
mod rewrite;
mod subject;

use std::sync::Arc;

use tacet_audit::AuditLog;
use tacet_ingest::Pipeline;
use tacet_model::TenantId;
use tacet_query::QueryEngine;

pub use compact::{CompactOptions, CompactionReport};
pub use offboard::Certificate;
pub use retention::{Expired, RetentionReport, Target};
pub use rewrite::RewriteReport;
pub use subject::{BegunErasure, PropChange, SubjectExport};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is wrong; the message says how.
    #[error("{0}")]
    User(String),
    #[error(transparent)]
    Ingest(#[from] tacet_ingest::Error),
    #[error(transparent)]
    Lake(#[from] tacet_lake::Error),
    #[error(transparent)]
    Query(#[from] tacet_query::Error),
    #[error(transparent)]
    Audit(#[from] tacet_audit::Error),
    #[error("building a batch: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// Reading back after a job found what should be gone (or missed what should be there).
    #[error("verification failed: {0}")]
    Verify(String),
    /// Another node or pod runs this job now (it holds the job's lease); nothing was done.
    #[error("{0}")]
    Busy(String),
    /// The shared state (a lease) could not be read or written.
    #[error("shared state: {0}")]
    State(#[from] std::io::Error),
}

/// How long a job's lease lasts without renewal (the job renews it at every step).
const LEASE_TTL: std::time::Duration = std::time::Duration::from_secs(600);

/// Reports progress of long jobs: (done, total, what).
pub type Progress<'a> = &'a (dyn Fn(usize, usize, &str) + Send + Sync);

/// A [`Progress`] that says nothing (the server's scheduled jobs log their summary instead).
pub fn quiet(_: usize, _: usize, _: &str) {}

/// Runs the lifecycle jobs over one pipeline's lake, keys and log.
#[derive(Debug)]
pub struct Steward {
    pipeline: Arc<Pipeline>,
    query: Arc<QueryEngine>,
    audit: Arc<AuditLog>,
    /// One job at a time: two rewrites of the same file must not race.
    jobs: tokio::sync::Mutex<()>,
    /// Where the leases of jobs that run once for all nodes are taken, and this process's name there.
    leases: std::sync::OnceLock<(tacet_state::Dir, String)>,
    /// Erasures this process is finishing (by record id), which `resume_erasures` leaves alone.
    erasing: Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
}

impl Steward {
    /// Also makes `query` leave out the events of people who objected (the pipeline's key store keeps
    /// the list).
    pub fn new(pipeline: Arc<Pipeline>, query: Arc<QueryEngine>, audit: Arc<AuditLog>) -> Self {
        query.set_restrictions(Arc::new(Objected(Arc::clone(&pipeline))));
        Self {
            pipeline,
            query,
            audit,
            jobs: tokio::sync::Mutex::new(()),
            leases: std::sync::OnceLock::new(),
            erasing: Arc::default(),
        }
    }

    /// Takes leases in `dir` (`leases/` of the shared state) as `holder` for jobs that must run once for
    /// all nodes (retention), so that a node's schedule and a CronJob never run one twice at once. Once.
    pub fn set_leases(&self, dir: tacet_state::Dir, holder: String) {
        let _ = self.leases.set((dir, holder));
    }

    /// The lease of job `name`, if leases are set: refused (`Error::Busy`) while another holds it.
    pub(crate) fn lease(&self, name: &str) -> Result<Option<tacet_state::Lease>> {
        let Some((dir, holder)) = self.leases.get() else {
            return Ok(None);
        };
        match dir.acquire(name, holder, LEASE_TTL)? {
            Ok(lease) => Ok(Some(lease)),
            Err(held) => Err(Error::Busy(format!(
                "{name} is running elsewhere ({}, its lease lasts until {} unless renewed); nothing was \
                 done here. If that holder is gone for good, the lease lapses by then",
                held.holder,
                chrono::DateTime::from_timestamp_millis(held.until_ms as i64)
                    .map_or_else(|| held.until_ms.to_string(), |t| t.to_rfc3339())
            ))),
        }
    }

    pub fn audit(&self) -> &Arc<AuditLog> {
        &self.audit
    }

    pub fn pipeline(&self) -> &Arc<Pipeline> {
        &self.pipeline
    }

    /// A person's pseudonyms: one per subject key version the tenant has had.
    fn pseudonyms(&self, tenant: &TenantId, user_id: &str) -> Result<Vec<String>> {
        if user_id.is_empty() {
            return Err(Error::User("user_id is empty".into()));
        }
        Ok(self
            .pipeline
            .keys()
            .subject_keys(tenant)?
            .iter()
            .map(|(_, key)| tacet_privacy::user_pseudonym(key, tenant, user_id))
            .collect())
    }

    /// Runs SQL over the tenant's events with one more table, `audit`: the tenant's audit entries (seq,
    /// time, actor, action, detail as JSON, prev, hash). For the admin key only.
    pub async fn audit_sql(
        &self,
        tenant: &TenantId,
        sql: &str,
    ) -> Result<tacet_query::QueryOutput> {
        let batch = audit_batch(&self.audit.read()?, tenant)?;
        Ok(self
            .query
            .sql_with_tables(tenant, sql, vec![("audit", batch)])
            .await?)
    }
}

/// The restriction list queries apply: everyone on the tenant's objection list.
#[derive(Debug)]
struct Objected(Arc<Pipeline>);

impl tacet_query::Restrictions for Objected {
    /// People who objected, and people whose erasure is under way (from the moment of the request until
    /// the lake is rewritten and every node has applied the record).
    fn restricted(&self, tenant: &TenantId) -> std::result::Result<Vec<String>, String> {
        let keys = self.0.keys();
        let mut out = keys
            .objections(tenant)
            .map(|o| o.pseudonyms().to_vec())
            .map_err(|e| e.to_string())?;
        out.extend(
            keys.erasing(tenant)
                .map_err(|e| e.to_string())?
                .iter()
                .cloned(),
        );
        Ok(out)
    }
}

/// A random id for a request, so the audit log can refer to it without naming the person.
fn request_id() -> String {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).expect("the OS random source");
    hex::encode(bytes)
}

/// The tenant's audit entries as a table.
pub fn audit_batch(
    entries: &[tacet_audit::Sealed],
    tenant: &TenantId,
) -> Result<arrow::array::RecordBatch> {
    use arrow::array::{ArrayRef, StringArray, UInt64Array};
    use arrow::datatypes::{DataType, Field, Schema};
    let mine: Vec<&tacet_audit::Sealed> = entries
        .iter()
        .filter(|e| e.entry.tenant.as_deref() == Some(tenant.as_str()))
        .collect();
    let text = |f: &dyn Fn(&tacet_audit::Sealed) -> String| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(mine.iter().map(|e| f(e))))
    };
    let schema = Arc::new(Schema::new(vec![
        Field::new("seq", DataType::UInt64, false),
        Field::new("time", DataType::Utf8, false),
        Field::new("actor", DataType::Utf8, false),
        Field::new("action", DataType::Utf8, false),
        Field::new("detail", DataType::Utf8, false),
        Field::new("prev", DataType::Utf8, false),
        Field::new("hash", DataType::Utf8, false),
    ]));
    Ok(arrow::array::RecordBatch::try_new(
        schema,
        vec![
            Arc::new(UInt64Array::from_iter_values(
                mine.iter().map(|e| e.entry.seq),
            )),
            text(&|e| e.entry.time.clone()),
            text(&|e| e.entry.actor.clone()),
            text(&|e| e.entry.action.clone()),
            text(&|e| e.entry.detail.to_string()),
            text(&|e| e.entry.prev.clone()),
            text(&|e| e.hash.clone()),
        ],
    )?)
}
