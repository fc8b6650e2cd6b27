use std::time::Duration;

use serde::Deserialize;

/// Limits for SQL and reports (`[query]` in the configuration).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueryConfig {
    /// A query still running after this long is stopped, e.g. `"30s"`.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Memory all queries together may use for sorts, joins and aggregations, in bytes.
    pub memory_limit_bytes: usize,
    /// Rows returned at most; the answer says when it was cut.
    pub max_rows: usize,
    /// Worker threads of the query runtime, separate from the one ingestion runs on.
    pub threads: usize,
    /// Queries running at once; more wait for a slot up to `queue_timeout`, then are refused.
    pub max_concurrent: usize,
    /// How long a query waits for a slot before it is refused (HTTP 503 with Retry-After).
    #[serde(with = "humantime_serde")]
    pub queue_timeout: Duration,
    /// Run SQL and reports on Apache DataFusion Ballista: `"standalone"` (a scheduler and executor in this
    /// process) or a cluster's scheduler, `"df://host:port"` (`tacet ballista scheduler|executor`). Not set:
    /// the local DataFusion session. Ballista answers leave out events not flushed yet.
    pub ballista: Option<String>,
}

impl Default for QueryConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
            memory_limit_bytes: 512 << 20,
            max_rows: 100_000,
            threads: 2,
            max_concurrent: 4,
            queue_timeout: Duration::from_secs(5),
            ballista: None,
        }
    }
}
