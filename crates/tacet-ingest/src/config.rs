use std::time::Duration;

use serde::Deserialize;

/// How events are buffered before they are written to Parquet (`[ingest]` in the configuration).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestConfig {
    /// How often buffered events are written to Parquet, e.g. `"2s"`. Events become queryable after at
    /// most this long; they are durable earlier, in the write-ahead log, from the moment they are accepted.
    #[serde(with = "humantime_serde")]
    pub flush_interval: Duration,
    /// Write early once this many events are buffered.
    pub flush_events: usize,
    /// Refuse new events (HTTP 503 with `Retry-After`) while this many are buffered, e.g. when the object
    /// store is failing. Bounds memory.
    pub max_buffered_events: usize,
    /// Partitions (kind and day) one tenant may have waiting for a flush; a request that would open more
    /// is refused (503 with Retry-After) and the flush starts at once. Bounds the files one flush writes.
    pub max_partitions_per_tenant: usize,
    /// Partition files one flush writes at once, so that one slow partition does not hold up the others.
    pub flush_parallel_writes: usize,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            flush_interval: Duration::from_secs(2),
            flush_events: 50_000,
            max_buffered_events: 500_000,
            max_partitions_per_tenant: 64,
            flush_parallel_writes: 8,
        }
    }
}
