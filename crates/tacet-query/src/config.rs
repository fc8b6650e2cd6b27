use std::time::Duration;

use serde::Deserialize;

/// Limits for SQL and reports (`[query]` in the configuration).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueryConfig {
    /// A query still running after this long is stopped, e.g. `"30s"`.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Memory all queries together may use for sorts, joins and aggregations (DataFusion's pool; operators
    /// that can spill do), in bytes.
    pub memory_limit_bytes: usize,
    /// Memory all queries together may hold, counted at the allocator on the query threads (everything a
    /// query builds: values made by functions, windows, buffers outside the pool). Past it the query
    /// holding the most is stopped with HTTP 422 naming this setting. At least `memory_limit_bytes`.
    pub memory_backstop_bytes: usize,
    /// Bytes one call of a function that builds values (`repeat`, `lpad`, `rpad`, `replace`,
    /// `regexp_replace`, `concat`, `array_repeat`, `range`, `generate_series`, `array_resize`) may return
    /// for one batch; a bigger answer is refused before it is built.
    pub max_value_bytes: usize,
    /// Rows returned at most; the answer says when it was cut.
    pub max_rows: usize,
    /// Worker threads of each query: every query runs on a small runtime of its own (so that the memory
    /// backstop counts exactly what it holds), separate from the one ingestion runs on.
    pub threads: usize,
    /// Queries running at once; more wait for a slot up to `queue_timeout`, then are refused.
    pub max_concurrent: usize,
    /// Queries of one tenant running at once (not set: half of `max_concurrent`, rounded up), so one tenant's
    /// long queries always leave slots for the others.
    pub max_concurrent_per_tenant: Option<usize>,
    /// Queries of one tenant waiting for a slot; more are refused at once (HTTP 503).
    pub max_queued_per_tenant: usize,
    /// How long a query waits for a slot before it is refused (HTTP 503 with Retry-After).
    #[serde(with = "humantime_serde")]
    pub queue_timeout: Duration,
    /// Run SQL and reports on Apache DataFusion Ballista: `"standalone"` (a scheduler and executor in this
    /// process) or a cluster's scheduler, `"df://host:port"` (`tacet ballista scheduler|executor`). Not set:
    /// the local DataFusion session. Ballista answers leave out events not flushed yet.
    pub ballista: Option<String>,
    /// Unfiltered reports answer closed days from their daily rollups when the planner can prove a rollup
    /// gives the raw events' exact answer (crate::source); `false` reads raw events for every day.
    pub from_rollups: bool,
}

impl Default for QueryConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
            memory_limit_bytes: 512 << 20,
            memory_backstop_bytes: 2 << 30,
            max_value_bytes: 16 << 20,
            max_rows: 100_000,
            threads: 2,
            max_concurrent: 4,
            max_concurrent_per_tenant: None,
            max_queued_per_tenant: 32,
            queue_timeout: Duration::from_secs(5),
            ballista: None,
            from_rollups: true,
        }
    }
}

impl QueryConfig {
    /// Queries one tenant may run at once.
    pub fn per_tenant(&self) -> usize {
        self.max_concurrent_per_tenant
            .unwrap_or(self.max_concurrent.div_ceil(2))
            .clamp(1, self.max_concurrent.max(1))
    }

    /// What makes no sense, in words naming the setting.
    pub fn check(&self) -> Result<(), String> {
        if self.memory_backstop_bytes < self.memory_limit_bytes {
            return Err(format!(
                "query.memory_backstop_bytes ({}) is below query.memory_limit_bytes ({}): the backstop counts \
                 everything a query holds, the pool only part of it; set it at least as high",
                self.memory_backstop_bytes, self.memory_limit_bytes
            ));
        }
        if self.max_value_bytes == 0 || self.max_value_bytes > self.memory_backstop_bytes {
            return Err(format!(
                "query.max_value_bytes ({}) must be above 0 and at most query.memory_backstop_bytes ({})",
                self.max_value_bytes, self.memory_backstop_bytes
            ));
        }
        if self.max_concurrent == 0 || self.max_concurrent_per_tenant == Some(0) {
            return Err(
                "query.max_concurrent and query.max_concurrent_per_tenant must be at least 1"
                    .into(),
            );
        }
        Ok(())
    }
}
