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
}

impl Default for QueryConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
            memory_limit_bytes: 512 << 20,
            max_rows: 100_000,
        }
    }
}
