//! SQL over the lake with DataFusion, always scoped to one tenant, read-only and bounded.
//!
//! ```text
//!  SQL text ─► SessionContext (new per query, shared RuntimeEnv with a memory limit)
//!                 └─ one table, `events` = ListingTable over  tacet://lake/events/tenant=<id>/
//!                      (Hive partitions kind=…/date=…; the tenant's own prefix is the only path it can see)
//!             ─► SQLOptions: no DDL, no DML, no statements (COPY, CREATE, INSERT, SET … are refused)
//!             ─► stream, cut at max_rows, stopped at timeout
//! ```
//!
//! Tenant isolation does not depend on a `WHERE` clause the user could remove: the session simply has no
//! table that reaches another tenant's files, no URL tables and no file-reading table functions.

pub mod ballista;
pub mod budget;
mod capped;
mod config;
mod distinct;
mod engine;
mod footer;
pub mod format;
pub mod groups;
mod hiding;
pub mod pgcatalog;
mod report;
pub mod rollup;
mod rollup_files;
mod slots;
pub mod source;
mod threshold;
mod visit;
pub mod visits;

pub use config::QueryConfig;
pub use engine::{FreshEvents, QueryEngine, QueryOutput, Restrictions};
pub use groups::CrashGroups;
pub use report::{
    FILTERS, Interval, MAX_LIMIT, ParamError, REPORTS, Report, ReportParams, ReportScope,
    VISIT_WINDOW, local_dates, utc_dates,
};
pub use slots::SlotGuard;
pub use threshold::{KRule, SUPPRESSED_COLUMN};

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a query did not answer, grouped by whose fault it is.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The query or its parameters are wrong; the message says how. HTTP 400.
    #[error("{0}")]
    User(String),
    /// The query is valid but not allowed (writes, DDL, statements). HTTP 403.
    #[error("{0}")]
    Refused(String),
    /// The query needed more time or memory than its limits allow. HTTP 422.
    #[error("{0}")]
    Resources(String),
    /// Every query slot is taken; retry shortly. HTTP 503 with Retry-After.
    #[error("{0}")]
    Busy(String),
    /// A lake file the query had listed was gone when it was read: another node's compaction or erasure
    /// replaced it meanwhile. The engine runs the query once more on a fresh listing; if that fails too,
    /// HTTP 503 with Retry-After.
    #[error("{0}")]
    Replaced(String),
    /// Something on our side failed. HTTP 500; the details go to the log only.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Whether `e` says a listed lake object was not found when read (directly, or inside a Parquet error).
fn is_not_found(e: &datafusion::error::DataFusionError) -> bool {
    use datafusion::error::DataFusionError as D;
    let not_found = |e: &(dyn std::error::Error + 'static)| {
        let mut cur = Some(e);
        while let Some(err) = cur {
            if matches!(
                err.downcast_ref::<object_store::Error>(),
                Some(object_store::Error::NotFound { .. })
            ) {
                return true;
            }
            cur = err.source();
        }
        false
    };
    match e.find_root() {
        D::ObjectStore(err) => matches!(**err, object_store::Error::NotFound { .. }),
        D::ParquetError(err) => not_found(err.as_ref()),
        D::External(err) => not_found(err.as_ref()),
        _ => false,
    }
}

impl From<tacet_model::ParamError> for Error {
    fn from(e: tacet_model::ParamError) -> Self {
        Error::User(e.0)
    }
}

impl Error {
    fn from_datafusion(e: datafusion::error::DataFusionError) -> Self {
        use datafusion::error::DataFusionError as D;
        if is_not_found(&e) {
            return Error::Replaced(
                "a lake file this query was reading was replaced meanwhile (compaction or erasure on \
                 another node); retry"
                    .into(),
            );
        }
        match e {
            D::ResourcesExhausted(m) if m.contains("query.max_value_bytes") => Error::Resources(m),
            D::ResourcesExhausted(m) => Error::Resources(format!(
                "the query needs more memory than its limit (query.memory_limit_bytes): {m}"
            )),
            D::Plan(m) => Error::User(format!("plan error: {m}")),
            D::SQL(e, _) => Error::User(format!("SQL error: {e}")),
            D::SchemaError(e, _) => Error::User(format!("schema error: {e}")),
            D::NotImplemented(m) => Error::User(format!("not supported: {m}")),
            D::Execution(m) => Error::User(format!("execution error: {m}")),
            D::ArrowError(e, _) => Error::User(format!("arrow error: {e}")),
            D::Context(c, inner) => match Error::from_datafusion(*inner) {
                Error::User(m) => Error::User(format!("{c}: {m}")),
                other => other,
            },
            D::Diagnostic(_, inner) => Error::from_datafusion(*inner),
            D::Shared(inner) => Error::from_datafusion(
                std::sync::Arc::try_unwrap(inner).unwrap_or_else(|a| D::Internal(a.to_string())),
            ),
            other => Error::Internal(other.to_string()),
        }
    }
}
