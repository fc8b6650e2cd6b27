//! The ingestion pipeline, without HTTP: validate → pseudonymise → buffer → flush to the lake.
//!
//! ```text
//!  server ──RawEvent batch──► Pipeline::accept ──► Privacy::pseudonymise (keys from KeyStore)
//!                                   │
//!                                   ▼
//!                     Buffer: partition (tenant, kind, day) → Vec<Event>
//!                                   │  every flush_interval, at flush_events, on shutdown
//!                                   ▼
//!                     Lake::write: one Parquet file per partition per flush
//! ```
//!
//! Until the write-ahead log lands, events acknowledged but not yet flushed live only in memory: a crash
//! loses at most one flush interval of events. A failed flush puts its events back in the buffer, and
//! [`Pipeline::accept`] refuses new events once `max_buffered_events` are waiting, so memory stays bounded.

mod config;
mod keystore;
mod pipeline;

use std::path::Path;

pub use config::IngestConfig;
pub use keystore::KeyStore;
pub use pipeline::{FlushSummary, Pipeline};

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why the pipeline could not take or store events.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Too many events are waiting to be written; the client should retry later.
    #[error("{buffered} events are waiting to be written (limit {limit}); retry later")]
    Backpressure { buffered: usize, limit: usize },
    #[error("key store at {path}: {source}")]
    Keys {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Lake(#[from] tacet_lake::Error),
    #[error("building an Arrow batch: {0}")]
    Arrow(#[from] tacet_privacy::ArrowError),
}

impl Error {
    fn keys(path: &Path, source: std::io::Error) -> Self {
        Error::Keys {
            path: path.display().to_string(),
            source,
        }
    }
}
